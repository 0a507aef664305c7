"""Train the world model: a small open_clip CLIP (``mlmp-world``) on the procedural world.

    python -m mlmp_ros.world.train --out mlmp-world.safetensors --seed 0 --steps 2000 --batch 40

Training signal (the model card, mlmp_ros/world/MODEL_CARD.md, says why each part is there):

- images: 160x160 crops, a third of them one material, the rest crops of rendered scenes
  (outdoor, street, mosaic) at random scales, 85% of them under natural photometric
  variety (:mod:`.variety`: light, haze, weather, lens and sensor);
- text: every class name under a prompt template drawn per class and step (the
  project's templates among others);
- image loss: cross-entropy of the image embedding's scaled cosine similarities to the
  class prompts against the crop's class shares (the image-to-text half of CLIP's
  contrastive loss with the class prompts as the candidates);
- patch loss: for each block MLMP reads (the last ``--readout-share`` of them), its patch
  tokens read the way the segmenter reads them (:func:`readouts`) against each patch's
  class shares from the world's ground truth, weighted up with depth (:func:`depth_weights`);
- global loss: the last block's ordinary patch tokens pulled to the image's caption
  (``--global-weight``), as CLIP's last-block patch tokens are.

The data of step ``s`` is drawn from ``seed`` and ``s`` only, so a run is reproducible
from its seed (up to float summation order, which depends on the thread count) and can
resume from its checkpoint.  Scene seeds used in training are below
:data:`HELD_OUT_SEED`; evaluation and tests use seeds from there up.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..core.dense import CLIP_MEAN, CLIP_STD, attend, neighbourhood_prior  # the segmenter's normalisation and attention
from .scenes import class_fractions, render_scene
from .textures import CLASSES, texture
from .variety import vary

MODEL_NAME = "mlmp-world"
HELD_OUT_SEED = 1_000_000_000

TEMPLATES = (
    "a photo of a {}",
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of {}.",
    "itap of a {}",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
    "a close-up photo of {}.",
    "a picture of {}.",
    "{}",
    "a blurry photo of the {}.",
    "a dark photo of the {}.",
    "a bright photo of the {}.",
    "there is {} in the picture.",
)


def _patch_targets(labels: np.ndarray, k: int, patch: int) -> np.ndarray:
    """Per-patch class shares of (n, H, W) label maps: (n, H/patch * W/patch, k)."""
    n, h, w = labels.shape
    onehot = np.eye(k, dtype=np.float32)[labels]  # (n, h, w, k)
    grid = onehot.reshape(n, h // patch, patch, w // patch, patch, k).mean(axis=(2, 4))
    return grid.reshape(n, -1, k)


def sample_batch(seed: int, step: int, n: int, size: int = 160, texture_share: float = 0.33, variety: bool = True,
                 patch: int = 16):  # fmt: skip
    """One step's data: images uint8 (n, size, size, 3), image targets (n, classes), patch targets.

    Image targets are the crop's class shares; patch targets (n, (size/patch)^2, classes)
    each patch's.  With ``variety`` 85% of the images get one to three kinds
    of natural photometric variety (:mod:`.variety`).
    """
    rng = np.random.default_rng([seed, step])
    k = len(CLASSES)
    images = np.zeros((n, size, size, 3), np.uint8)
    labels = np.zeros((n, size, size), np.uint8)
    i = 0
    while i < n:
        if rng.random() < texture_share:
            c = int(rng.integers(k))
            tex = texture(rng, c, size, size, float(rng.uniform(0.25, 1.6)))
            images[i] = (tex * 255.0 + 0.5).astype(np.uint8)
            labels[i] = c
            i += 1
            continue
        width = int(rng.choice((320, 400, 480)))
        height = width * 3 // 4
        scene = render_scene(int(rng.integers(HELD_OUT_SEED)), height, width)
        for _ in range(min(4, n - i)):  # a few crops of each scene
            side = int(rng.uniform(0.3, 1.0) * height)
            y0 = int(rng.integers(0, height - side + 1))
            x0 = int(rng.integers(0, width - side + 1))
            crop = scene.image[y0 : y0 + side, x0 : x0 + side]
            lab = scene.labels[y0 : y0 + side, x0 : x0 + side]
            images[i] = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
            labels[i] = cv2.resize(lab, (size, size), interpolation=cv2.INTER_NEAREST)
            i += 1
    flip = rng.random(n) < 0.5
    images[flip] = images[flip, :, ::-1]
    labels[flip] = labels[flip, :, ::-1]
    if variety:
        vrng = np.random.default_rng([seed, step, 2])
        images = np.stack([vary(im, vrng) for im in images])
    else:
        gain = rng.uniform(0.85, 1.15, (n, 1, 1, 1)).astype(np.float32)
        images = np.clip(images.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    targets = np.stack([class_fractions(lab, k) for lab in labels])
    return images, targets, _patch_targets(labels, k, patch)


def build_model(seed: int):
    import open_clip

    from ..core.backbone import available_models

    available_models()  # registers the bundled configs
    torch.manual_seed(seed)
    model = open_clip.create_model(MODEL_NAME, pretrained=None, precision="fp32", device="cpu")
    tokenizer = open_clip.get_tokenizer(MODEL_NAME)
    return model, tokenizer


def _heads(blk, h: torch.Tensor):
    """q, k, v of a packed ``nn.MultiheadAttention``, each (N, heads, L, d_head)."""
    n, length, dim = h.shape
    heads = blk.attn.num_heads
    qkv = F.linear(h, blk.attn.in_proj_weight, blk.attn.in_proj_bias).view(n, length, 3, heads, dim // heads)
    q, k, v = qkv.unbind(2)
    return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)


def _merge(blk, o: torch.Tensor) -> torch.Tensor:
    n, heads, length, dh = o.shape
    return blk.ls_1(blk.attn.out_proj(o.transpose(1, 2).reshape(n, length, heads * dh)))


def readouts(model, images: torch.Tensor, layers: tuple[int, ...], gaussian_std: float = 5.0):
    """One forward pass with the segmenter's readouts (see :mod:`mlmp_ros.core.dense`).

    Returns ``(image, patches, last_vanilla)``: the ordinary image embedding (class token
    of the last block), for each block in ``layers`` its patch embeddings read the way
    the segmenter reads them (the attention branch; ordinary attention for every block
    but the last, NACLIP's key-key attention with the neighbourhood prior for the last),
    and the last block's ordinary full-output patch embeddings.  All (N, ..., D),
    projected through ``ln_post`` and ``proj`` and normalised.
    """
    v = model.visual
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    x = (images.permute(0, 3, 1, 2).float() - mean) / std
    x = v.conv1(x).flatten(2).transpose(1, 2)
    gh, gw = v.grid_size
    cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    z = v.ln_pre(torch.cat([cls, x], 1) + v.positional_embedding)
    blocks = v.transformer.resblocks
    last = len(blocks) - 1
    proj = lambda t: F.normalize(v.ln_post(t) @ v.proj, dim=-1)  # noqa: E731
    patches = []
    for b, blk in enumerate(blocks):
        q, k, val = _heads(blk, blk.ln_1(z))
        a = _merge(blk, attend(q, k, val))
        if b in layers and b != last:
            patches.append(proj(a[:, 1:]))
        if b == last and b in layers:
            omega = neighbourhood_prior(gh, gw, gaussian_std).to(k.dtype)
            patches.append(proj(_merge(blk, attend(k, k, val, omega))[:, 1:]))
        z = z + a
        z = z + blk.ls_2(blk.mlp(blk.ln_2(z)))
    out = proj(z)
    return out[:, 0], patches, out[:, 1:]


def text_features(model, tokenizer, rng: np.random.Generator) -> torch.Tensor:
    prompts = [TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(c) for c in CLASSES]
    return F.normalize(model.encode_text(tokenizer(prompts)), dim=-1)


def soft_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -(targets * logits.log_softmax(-1)).sum(-1).mean()


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * 0.5 * (1 + math.cos(math.pi * t))


def save_weights(model, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"model": MODEL_NAME, "format": "open_clip state dict, fp16"})


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m mlmp_ros.world.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output .safetensors (fp16)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=40)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--patch-weight", type=float, default=1.0,
                    help="weight of the patch-level loss through the segmenter's readouts (0: off)")
    ap.add_argument("--readout-share", type=float, default=0.75,
                    help="the patch-level loss reads the last this share of the blocks (MLMP's layers: 0.75)")
    ap.add_argument("--global-weight", type=float, default=0.25,
                    help="weight of the loss pulling the last block's ordinary patch tokens to the image's caption")
    ap.add_argument("--no-variety", dest="variety", action="store_false",
                    help="train on the world as rendered (no photometric variety)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: with --data-workers 1 the two cores of a small machine are used)")
    ap.add_argument("--data-workers", type=int, default=1, choices=(0, 1),
                    help="1 (default): the next step's batch is drawn in a second process while this step trains")
    ap.add_argument("--checkpoint", default="", help="checkpoint file for resuming (default: <out>.ckpt)")
    ap.add_argument("--checkpoint-every", type=int, default=25)
    ap.add_argument("--stop-after", type=int, default=0,
                    help="stop after this many steps (the learning rate still decays over --steps) "
                    "and export the weights")
    return ap.parse_args(argv)


def _optimizer(model, args: argparse.Namespace) -> torch.optim.Optimizer:
    """AdamW with weight decay on the matrices only (not norms, biases, embeddings or the logit scale)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "embedding" in name or "logit_scale" in name else decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr
    )


def _resume(ckpt_path: Path, model, opt: torch.optim.Optimizer) -> int:
    """Load the checkpoint if there is one; the step to start from."""
    if not ckpt_path.is_file():
        return 0
    ck = torch.load(str(ckpt_path), map_location="cpu", weights_only=True)
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["opt"])
    start = int(ck["step"])
    print(f"resumed from {ckpt_path} at step {start}", flush=True)
    return start


def depth_weights(n: int, shallowest: float = 0.4) -> torch.Tensor:
    """Weights of the per-block patch losses, rising linearly from ``shallowest`` to 1 with depth, summing to 1.

    CLIP's deeper blocks carry more dense meaning than its shallower ones; the shallow
    readouts are supervised too (MLMP reads them), but less.
    """
    w = torch.linspace(shallowest, 1.0, n) if n > 1 else torch.ones(1)
    return w / w.sum()


def _patch_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Soft cross-entropy over (N, P, K) patch logits, patches weighted equally."""
    return soft_ce(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1, targets.shape[-1]))


def _train_step(model, tokenizer, opt: torch.optim.Optimizer, args: argparse.Namespace,
                layers: tuple[int, ...], step: int, batch) -> dict:  # fmt: skip
    """One optimisation step on the step's batch (``sample_batch``'s output); its log record."""
    t0 = time.time()
    images, targets, patch_targets = batch
    t1 = time.time()
    for g in opt.param_groups:
        g["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
    rng = np.random.default_rng([args.seed, step, 1])
    txt = text_features(model, tokenizer, rng)
    final, patches, last_vanilla = readouts(model, torch.from_numpy(images), layers)
    scale = model.logit_scale.exp().clamp(max=100.0)
    tgt, ptgt = torch.from_numpy(targets), torch.from_numpy(patch_targets)
    loss_final = soft_ce(scale * final @ txt.t(), tgt)
    per_block = [_patch_ce(scale * p @ txt.t(), ptgt) for p in patches]
    loss_patch = (torch.stack(per_block) * depth_weights(len(per_block))).sum() if per_block else torch.zeros(())
    # CLIP's last-block patch tokens carry the image's meaning more than their own: the
    # property that makes plain attention poor for dense prediction and NACLIP worth it.
    glob = tgt[:, None, :].expand(-1, last_vanilla.shape[1], -1)
    loss_global = _patch_ce(scale * last_vanilla @ txt.t(), glob)
    loss = loss_final + args.patch_weight * loss_patch + args.global_weight * loss_global
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(100.0))
    t2 = time.time()
    with torch.no_grad():
        top1 = ((scale * final @ txt.t()).argmax(-1) == tgt.argmax(-1)).float().mean().item()
        pacc = [round(((scale * p @ txt.t()).argmax(-1) == ptgt.argmax(-1)).float().mean().item(), 3) for p in patches]
    return {
        "step": step,
        "loss": round(loss_final.item(), 4),
        "patch": round(float(loss_patch.detach()), 4),
        "global": round(float(loss_global.detach()), 4),
        "top1": round(top1, 3),
        "patch_acc": pacc,
        "scale": round(float(scale.detach()), 2),
        "data_s": round(t1 - t0, 2),
        "model_s": round(t2 - t1, 2),
    }


class _Batches:
    """Each step's batch, drawn one step ahead in a worker process (or inline with no worker).

    A batch depends only on (seed, step), so where it is drawn changes nothing.
    """

    def __init__(self, args: argparse.Namespace, start: int, stop: int):
        self.args, self.stop = args, stop
        self.pool = None
        self.pending: dict[int, Any] = {}
        if args.data_workers and start < stop:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(1, mp_context=mp.get_context("fork"))
            self._submit(start)

    def _submit(self, step: int) -> None:
        if step < self.stop:
            self.pending[step] = self.pool.submit(sample_batch, self.args.seed, step, self.args.batch, variety=self.args.variety)

    def get(self, step: int):
        if self.pool is None:
            return sample_batch(self.args.seed, step, self.args.batch, variety=self.args.variety)
        batch = self.pending.pop(step).result()
        self._submit(step + 1)
        if step + 1 >= self.stop:
            self.pool.shutdown()
        return batch


def _save_checkpoint(ckpt_path: Path, model, opt: torch.optim.Optimizer, step: int) -> None:
    """Model, optimiser and the next step, written atomically."""
    tmp = ckpt_path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step + 1}, str(tmp))
    os.replace(tmp, ckpt_path)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    out = Path(args.out)
    ckpt_path = Path(args.checkpoint or str(out) + ".ckpt")
    model, tokenizer = build_model(args.seed)
    n_blocks = len(model.visual.transformer.resblocks)
    first = n_blocks - max(1, round(args.readout_share * n_blocks))
    layers = tuple(range(first, n_blocks)) if args.patch_weight > 0 else ()
    opt = _optimizer(model, args)
    start = _resume(ckpt_path, model, opt)
    log_path = out.with_suffix(".trainlog.jsonl")
    if start == 0:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(json.dumps({"args": vars(args), "classes": list(CLASSES), "readout_blocks": list(layers)}) + "\n")
    model.train()
    t_start = time.time()
    stop = min(args.steps, args.stop_after) if args.stop_after > 0 else args.steps
    batches = _Batches(args, start, stop)
    for step in range(start, stop):
        rec = _train_step(model, tokenizer, opt, args, layers, step, batches.get(step))
        with log_path.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        if step % 5 == 0 or step == args.steps - 1:
            print(json.dumps(rec), flush=True)
        if (step + 1) % args.checkpoint_every == 0 or step == stop - 1:
            _save_checkpoint(ckpt_path, model, opt, step)
    model.eval()
    save_weights(model, out)
    with log_path.open("a") as fh:
        fh.write(json.dumps({"done": stop, "of": args.steps, "seconds_this_run": round(time.time() - t_start, 1)}) + "\n")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
