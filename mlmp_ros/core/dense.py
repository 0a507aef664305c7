"""A CLIP ViT turned into a dense (per-patch) feature extractor, with multi-level features.

Every block before the deepest selected block ``m`` runs as in CLIP.  Block ``m`` uses
the open-vocabulary attention strategy (NACLIP's k-k attention plus a Gaussian
neighbourhood prior, SCLIP's q-q + k-k attention, or plain CLIP attention).  The
feature of a selected block is either its attention-branch output ("reduced", used
with NACLIP) or its full output ("vanilla").  All selected layers come from one forward
pass.  The image tower's modules are open_clip's own; nothing is forked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# CLIP's normalisation on the 0-255 scale, as the reference pipeline uses it.
CLIP_MEAN = (122.7709, 116.7460, 104.0937)
CLIP_STD = (68.5005, 66.6322, 70.3232)


class UnsupportedModelError(ValueError):
    """The open_clip model's image tower is not a plain CLIP ViT."""


@dataclass
class DenseFeatures:
    """Raw multi-level features of one forward pass.

    ``raw[i]`` is the feature of block ``layers[i]``: (N, 1 + h*w, D), token 0 the class
    token, before ``ln_post`` and ``proj``.  ``vanilla_cls`` is token 0 of the ordinary
    (CLIP-attention) deepest block, (N, D), when asked for.
    """

    layers: tuple[int, ...]
    raw: list[torch.Tensor]
    grid: tuple[int, int]
    vanilla_cls: torch.Tensor | None = None


def entropy(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """Shannon entropy of ``softmax(logits)`` along ``dim``, computed in float32."""
    logits = logits.float()
    return -(logits.softmax(dim) * logits.log_softmax(dim)).sum(dim)


# Sequences up to this length take the plain matrix-product attention under CPU autocast.
MATH_ATTENTION_MAX_TOKENS = 1024


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d) + mask) v``.

    Fused SDPA everywhere except under low-precision autocast on the CPU, where the
    flash kernel's bf16 backward is slow for CLIP's short sequences: there the scores
    are bf16 matrix products with the softmax in float32 (autocast's rule), fwd + bwd
    about 2.7x faster at 197 tokens.  fp32 runs keep SDPA, so fp32 results are unchanged.
    """
    if (
        q.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and k.shape[-2] <= MATH_ATTENTION_MAX_TOKENS
        and not torch.compiler.is_compiling()
    ):
        scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)
        if mask is not None:
            scores = scores + mask
        return scores.softmax(-1, dtype=torch.float32) @ v
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def neighbourhood_prior(h: int, w: int, std: float) -> torch.Tensor:
    """NACLIP's Omega: a Gaussian of patch distance, zero on the class token's row and column."""
    ii, jj = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    ii, jj = ii.reshape(-1), jj.reshape(-1)
    dist2 = (ii[:, None] - ii[None, :]) ** 2 + (jj[:, None] - jj[None, :]) ** 2
    omega = torch.zeros(h * w + 1, h * w + 1, dtype=torch.float64)
    omega[1:, 1:] = torch.exp(-dist2 / (2.0 * std * std))
    return omega.float()


class DenseCLIP(nn.Module):
    """Dense, multi-level features from an open_clip CLIP model's image tower."""

    def __init__(self, clip_model: nn.Module, attention: str = "naclip", features: str = "auto", gaussian_std: float = 5.0):
        super().__init__()
        self.clip = clip_model
        visual = clip_model.visual
        self._check(visual)
        self.visual = visual
        self.blocks = visual.transformer.resblocks
        self.attention = attention
        self.features = ("reduced" if attention == "naclip" else "vanilla") if features == "auto" else features
        self.gaussian_std = float(gaussian_std)
        self.patch_size = tuple(visual.patch_size)
        self.source_grid = tuple(visual.grid_size)
        self._omega: dict[tuple, torch.Tensor] = {}
        self._pos: dict[tuple, torch.Tensor] = {}
        self._cast: dict[int, tuple[tuple, torch.Tensor]] = {}
        mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    # ------------------------------------------------------------------ checks
    @staticmethod
    def _check(visual: nn.Module) -> None:
        needed = ("conv1", "class_embedding", "positional_embedding", "ln_pre", "transformer", "ln_post", "proj")
        missing = [n for n in needed if getattr(visual, n, None) is None]
        if missing:
            raise UnsupportedModelError(f"the image tower is not a CLIP ViT (missing {', '.join(missing)})")
        if getattr(visual, "attn_pool", None) is not None:
            raise UnsupportedModelError("image towers with attentional pooling are not supported")
        for blk in visual.transformer.resblocks:
            attn = getattr(blk, "attn", None)
            if not isinstance(attn, nn.MultiheadAttention) or attn.in_proj_weight is None:
                raise UnsupportedModelError("every block must use a packed nn.MultiheadAttention (plain CLIP ViT)")

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale.exp()

    def resolve_layers(self, layers: Sequence[int]) -> tuple[int, ...]:
        """Absolute, sorted, unique block indices; negative indices count from the end."""
        n = self.num_layers
        out = set()
        for idx in layers:
            if not -n <= idx < n:
                raise ValueError(f"layer {idx} is out of range for a model with {n} blocks (use -{n}..{n - 1})")
            out.add(idx % n)
        if not out:
            raise ValueError("at least one layer must be selected")
        return tuple(sorted(out))

    # ------------------------------------------------------------------ inputs
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or 0-255 float (N, 3, H, W) RGB -> the model's normalised float32 input."""
        return (images.float() - self.mean) / self.std

    def grid_of(self, height: int, width: int) -> tuple[int, int]:
        ph, pw = self.patch_size
        if height % ph or width % pw:
            raise ValueError(f"input {height}x{width} is not a multiple of the patch size {ph}x{pw}")
        return height // ph, width // pw

    def positional_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """The checkpoint's positional embedding, resized bicubically for ``grid``.

        The resize matches the reference: a scale factor of (grid + 0.1) / source grid
        with ``recompute_scale_factor=False``, so sampling positions are those of the
        reference, not of a plain ``size=`` resize.
        """
        pos = self.visual.positional_embedding
        if grid == self.source_grid:
            return pos
        # _version: torch's count of in-place changes (no public getter): an adapted or reloaded
        # embedding misses the cache
        key = (grid, pos.device, pos.dtype, pos._version, pos.data_ptr())
        cached = self._pos.get(key)
        if cached is not None:
            return cached
        gh0, gw0 = self.source_grid
        dim = pos.shape[-1]
        patch = pos[1:].detach().reshape(1, gh0, gw0, dim).permute(0, 3, 1, 2)
        patch = F.interpolate(
            patch,
            scale_factor=((grid[0] + 0.1) / gh0, (grid[1] + 0.1) / gw0),
            mode="bicubic",
            align_corners=False,
            recompute_scale_factor=False,
        )
        assert tuple(patch.shape[-2:]) == tuple(grid), (patch.shape, grid)
        resized = torch.cat([pos[:1].detach(), patch.permute(0, 2, 3, 1).reshape(-1, dim)], 0)
        self._pos = {key: resized}  # one grid at a time is the common case
        return resized

    def omega(self, grid: tuple[int, int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (grid, device, dtype, self.gaussian_std)
        cached = self._omega.get(key)
        if cached is None:
            cached = neighbourhood_prior(grid[0], grid[1], self.gaussian_std).to(device=device, dtype=dtype)
            self._omega[key] = cached
        return cached

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """``[cls ; conv1(x)] + pos`` before ``ln_pre``: independent of the LayerNorm weights.

        ``x`` is the normalised input (N, 3, H, W).
        """
        grid = self.grid_of(x.shape[-2], x.shape[-1])
        v = self.visual
        patches = v.conv1(x).flatten(2).transpose(1, 2)  # (N, h*w, D)
        cls = v.class_embedding.to(patches.dtype).expand(patches.shape[0], 1, -1)
        z = torch.cat([cls, patches], dim=1)
        return z + self.positional_embedding(grid).to(z.dtype), grid

    # ----------------------------------------------------------------- forward
    def _w(self, t: torch.Tensor | None) -> torch.Tensor | None:
        """A frozen weight in autocast's dtype, cast once and kept.

        Autocast casts a weight that does not require gradients on every use (its cache
        keeps only trainable leaves): with frozen encoder weights that was a full copy of
        every matrix per forward, a quarter of a bf16 CPU frame.  The cast is the same
        rounding autocast does, so results are unchanged.  Adapted (trainable) weights
        and fp32 runs pass through.
        """
        if t is None or t.requires_grad or not t.is_floating_point():
            return t
        dev = t.device.type
        if not torch.is_autocast_enabled(dev) or torch.compiler.is_compiling():
            return t
        dtype = torch.get_autocast_dtype(dev)
        if t.dtype == dtype:
            return t
        tag = (t._version, t.data_ptr(), dtype)  # a weight changed in place (load_state_dict) casts again
        hit = self._cast.get(id(t))
        if hit is not None and hit[0] == tag:
            return hit[1]
        cast = t.detach().to(dtype)
        self._cast[id(t)] = (tag, cast)
        return cast

    def _mlp(self, blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        mlp = blk.mlp
        fc, act, proj = (getattr(mlp, n, None) for n in ("c_fc", "gelu", "c_proj"))
        if not (isinstance(fc, nn.Linear) and isinstance(proj, nn.Linear) and act is not None):
            return mlp(x)
        return F.linear(act(F.linear(x, self._w(fc.weight), self._w(fc.bias))), self._w(proj.weight), self._w(proj.bias))

    def _split_heads(self, blk: nn.Module, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, length, dim = h.shape
        heads = blk.attn.num_heads
        qkv = F.linear(h, self._w(blk.attn.in_proj_weight), self._w(blk.attn.in_proj_bias))
        # unbind, not indexing: its backward stacks the three gradients instead of
        # zero-filling a full-size buffer per slice (about 6% of a CPU step)
        q, k, v = qkv.view(n, length, 3, heads, dim // heads).unbind(2)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # each (N, heads, L, d_head)

    def _merge_heads(self, blk: nn.Module, o: torch.Tensor) -> torch.Tensor:
        n, heads, length, dh = o.shape
        o = o.transpose(1, 2).reshape(n, length, heads * dh)
        return blk.ls_1(F.linear(o, self._w(blk.attn.out_proj.weight), self._w(blk.attn.out_proj.bias)))

    def _ovss_attention(self, q, k, v, grid) -> torch.Tensor:
        if self.attention == "naclip":
            omega = self.omega(grid, k.device, k.dtype)
            return attend(k, k, v, omega)
        if self.attention == "sclip":
            return attend(q, q, v) + attend(k, k, v)
        return attend(q, k, v)

    @staticmethod
    def _ln(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return norm(x.float())  # LayerNorm stays float32 under autocast

    def encode(self, z_pre: torch.Tensor, grid: tuple[int, int], layers: Sequence[int], vanilla_cls: bool = False) -> DenseFeatures:
        """Run the blocks up to the deepest selected layer; ``z_pre`` from :meth:`tokens`."""
        sel = tuple(layers)
        deepest = sel[-1]
        ln = self._ln
        z = ln(self.visual.ln_pre, z_pre)
        raw: list[torch.Tensor] = []
        cls_token = None
        for b in range(deepest + 1):
            blk = self.blocks[b]
            q, k, v = self._split_heads(blk, ln(blk.ln_1, z))
            if b < deepest:
                a = self._merge_heads(blk, attend(q, k, v))
                z_next = z + a
                z_next = z_next + blk.ls_2(self._mlp(blk, ln(blk.ln_2, z_next)))
                if b in sel:
                    raw.append(a if self.features == "reduced" else z_next)
                z = z_next
                continue
            a = self._merge_heads(blk, self._ovss_attention(q, k, v, grid))
            if self.features == "reduced":
                raw.append(a)
            else:
                zf = z + a
                raw.append(zf + blk.ls_2(self._mlp(blk, ln(blk.ln_2, zf))))
            if vanilla_cls:
                # Token 0 of the ordinary block: its query row of q.k attention over all tokens.
                a0 = self._merge_heads(blk, attend(q[:, :, :1], k, v))
                c = z[:, :1] + a0
                c = c + blk.ls_2(self._mlp(blk, ln(blk.ln_2, c)))
                cls_token = c[:, 0]
        return DenseFeatures(layers=sel, raw=raw, grid=grid, vanilla_cls=cls_token)

    def project(self, raw: torch.Tensor) -> torch.Tensor:
        """``normalise(ln_post(f) @ proj)`` per token, float32."""
        out = (self._ln(self.visual.ln_post, raw) @ self._w(self.visual.proj)).float()
        return out / out.norm(dim=-1, keepdim=True)

    def forward(self, x: torch.Tensor, layers: Sequence[int] = (-1,), vanilla_cls: bool = False) -> DenseFeatures:
        """Features of a normalised input batch (N, 3, H, W)."""
        z_pre, grid = self.tokens(x)
        return self.encode(z_pre, grid, self.resolve_layers(layers), vanilla_cls)


def patch_logits(embeddings: torch.Tensor, text: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``scale * <F, e>`` for patch embeddings (..., P, D) and text (Q, D) -> (..., P, Q)."""
    return scale * (embeddings @ text.t())


def to_grid(logits: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(N, P, Q) patch logits -> (N, Q, h, w)."""
    n, _, q = logits.shape
    return logits.transpose(1, 2).reshape(n, q, grid[0], grid[1])


__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "DenseCLIP",
    "DenseFeatures",
    "UnsupportedModelError",
    "entropy",
    "neighbourhood_prior",
    "patch_logits",
    "to_grid",
]
