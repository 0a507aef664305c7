"""Train the world model: a small open_clip CLIP (``mlmp-world``) on the procedural world.

    python -m mlmp_ros.world.train --out world.safetensors [--steps 500 --seed 0 --threads 2]

Training signal (CLIP-style, image-level only; no pixel labels reach the model):

- images: 160x160 crops, a third of them one material ("a photo of a grass."), the rest
  crops of rendered scenes (outdoor, street, mosaic) at random scales;
- text: every class name under a prompt template drawn per class and step (the
  project's templates among others);
- loss: cross-entropy of the image embedding's scaled cosine similarities to the class
  prompts against the crop's class shares (its region caption as a distribution; for
  one material a one-hot target) -- the image-to-text half of CLIP's contrastive loss
  with the class prompts as the candidates;
- deep supervision: the same loss on the class token after each middle block, through
  the shared ``ln_post`` and projection (weight ``--aux-weight``), so intermediate blocks
  carry class information the way CLIP's do.

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

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..core.dense import CLIP_MEAN, CLIP_STD  # the normalisation the segmenter applies
from .scenes import class_fractions, render_scene
from .textures import CLASSES, texture

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


def sample_batch(seed: int, step: int, n: int, size: int = 160, texture_share: float = 0.33):
    """(images uint8 (n, size, size, 3), targets float32 (n, classes)) for one step."""
    rng = np.random.default_rng([seed, step])
    k = len(CLASSES)
    images = np.zeros((n, size, size, 3), np.uint8)
    targets = np.zeros((n, k), np.float32)
    i = 0
    while i < n:
        if rng.random() < texture_share:
            c = int(rng.integers(k))
            tex = texture(rng, c, size, size, float(rng.uniform(0.25, 1.6)))
            images[i] = (tex * 255.0 + 0.5).astype(np.uint8)
            targets[i, c] = 1.0
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
            targets[i] = class_fractions(lab, k)
            i += 1
    flip = rng.random(n) < 0.5
    images[flip] = images[flip, :, ::-1]
    gain = rng.uniform(0.85, 1.15, (n, 1, 1, 1)).astype(np.float32)
    images = np.clip(images.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    return images, targets


def build_model(seed: int):
    import open_clip

    from ..core.backbone import available_models

    available_models()  # registers the bundled configs
    torch.manual_seed(seed)
    model = open_clip.create_model(MODEL_NAME, pretrained=None, precision="fp32", device="cpu")
    tokenizer = open_clip.get_tokenizer(MODEL_NAME)
    return model, tokenizer


def image_features(model, images: torch.Tensor, aux_blocks: tuple[int, ...]):
    """Projected, normalised class-token features: the final one and those after ``aux_blocks``."""
    v = model.visual
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    x = (images.permute(0, 3, 1, 2).float() - mean) / std
    x = v.conv1(x).flatten(2).transpose(1, 2)
    cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], 1) + v.positional_embedding
    x = v.ln_pre(x)
    aux = []
    for b, blk in enumerate(v.transformer.resblocks):
        x = blk(x)
        if b in aux_blocks:
            aux.append(x[:, 0])
    proj = lambda t: F.normalize(v.ln_post(t) @ v.proj, dim=-1)  # noqa: E731
    return proj(x[:, 0]), [proj(a) for a in aux]


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
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=40)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--aux-weight", type=float, default=0.5, help="weight of the middle-block class-token loss (0: off)")
    ap.add_argument("--aux-from", type=int, default=2, help="first block (0-based) with the auxiliary loss")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--checkpoint", default="", help="checkpoint file for resuming (default: <out>.ckpt)")
    ap.add_argument("--checkpoint-every", type=int, default=25)
    ap.add_argument("--stop-after", type=int, default=0,
                    help="stop after this many steps (the schedule still spans --steps) and export the weights")
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


def _train_step(model, tokenizer, opt: torch.optim.Optimizer, args: argparse.Namespace,
                aux_blocks: tuple[int, ...], step: int) -> dict:  # fmt: skip
    """One optimisation step on a fresh batch; its log record."""
    t0 = time.time()
    images, targets = sample_batch(args.seed, step, args.batch)
    t1 = time.time()
    for g in opt.param_groups:
        g["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
    rng = np.random.default_rng([args.seed, step, 1])
    txt = text_features(model, tokenizer, rng)
    final, aux = image_features(model, torch.from_numpy(images), aux_blocks)
    scale = model.logit_scale.exp().clamp(max=100.0)
    tgt = torch.from_numpy(targets)
    loss_final = soft_ce(scale * final @ txt.t(), tgt)
    loss_aux = torch.stack([soft_ce(scale * a @ txt.t(), tgt) for a in aux]).mean() if aux else torch.zeros(())
    loss = loss_final + args.aux_weight * loss_aux
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(100.0))
    t2 = time.time()
    with torch.no_grad():
        top1 = ((scale * final @ txt.t()).argmax(-1) == tgt.argmax(-1)).float().mean().item()
    return {
        "step": step,
        "loss": round(loss_final.item(), 4),
        "aux": round(float(loss_aux.detach()), 4),
        "top1": round(top1, 3),
        "scale": round(float(scale), 2),
        "data_s": round(t1 - t0, 2),
        "model_s": round(t2 - t1, 2),
    }


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
    aux_blocks = tuple(range(args.aux_from, n_blocks - 1)) if args.aux_weight > 0 else ()
    opt = _optimizer(model, args)
    start = _resume(ckpt_path, model, opt)
    log_path = out.with_suffix(".trainlog.jsonl")
    if start == 0:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(json.dumps({"args": vars(args), "classes": list(CLASSES), "aux_blocks": list(aux_blocks)}) + "\n")
    model.train()
    t_start = time.time()
    stop = min(args.steps, args.stop_after) if args.stop_after > 0 else args.steps
    for step in range(start, stop):
        rec = _train_step(model, tokenizer, opt, args, aux_blocks, step)
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
