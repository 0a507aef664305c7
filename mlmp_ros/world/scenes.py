"""Seeded procedural scenes with per-pixel ground truth.

Layouts:

- ``outdoor``: sky above a horizon, a far band (tree line or mountains), the ground in
  perspective (a top-down plan of materials, a road with lane marks, ponds, warped by a
  homography so the road converges), and objects standing on the ground (brick walls,
  wooden fences and crates, bushes, trees, boulders), painted far to near.
- ``street``: a brick wall close up with wooden doors, a road or gravel in front, sky
  or foliage above.
- ``mosaic``: 2-5 materials in smooth random regions (the training-style layout).

``render_scene(seed, height, width)`` returns ``(image uint8 RGB, labels uint8)``; the
same seed and size give the same scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .textures import CLASS_INDEX, CLASSES, fbm, noise, texture

LAYOUTS = ("outdoor", "street", "mosaic")


@dataclass
class Scene:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    labels: np.ndarray  # (H, W) uint8 class indices into CLASSES
    layout: str
    seed: int


# Texture scale per pixel: patterns are sized for a 640-pixel-wide frame and scaled with
# the frame, so a scene looks the same at any resolution (set by render_scene).
_UNIT = [1.0]


def _paint(img, lab, mask, cls: str, rng, scale: float, box=None) -> None:
    """Fill ``mask`` (bool, full frame) with a texture of ``cls``; textures only the mask's box."""
    if box is None:
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            return
        box = (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)
    y0, y1, x0, x1 = (int(v) for v in box)
    if y1 <= y0 or x1 <= x0:
        return
    sub = mask[y0:y1, x0:x1]
    if not sub.any():
        return
    tex = texture(rng, cls, y1 - y0, x1 - x0, scale * _UNIT[0])
    np.copyto(img[y0:y1, x0:x1], tex, where=sub[..., None])
    np.copyto(lab[y0:y1, x0:x1], np.uint8(CLASS_INDEX[cls]), where=sub)


def _edge(rng, n: int, base: float, amp: float, cell: float) -> np.ndarray:
    """A wavy 1-D profile of ``n`` values around ``base``."""
    row = noise(rng, 1, n, cell)[0] if n > 0 else np.zeros(0, np.float32)
    return base + amp * (row - 0.5) * 2.0


def _ground_plan(rng, ph: int, pw: int) -> tuple[np.ndarray, np.ndarray]:
    """A top-down plan (row 0 far, last row near): float texture and labels."""
    img = np.zeros((ph, pw, 3), np.float32)
    lab = np.zeros((ph, pw), np.uint8)
    full = np.ones((ph, pw), bool)
    base = str(rng.choice(("grass", "grass", "sand", "snow", "gravel")))
    _paint(img, lab, full, base, rng, 0.6, (0, ph, 0, pw))
    # depth bands: e.g. a lake or a beach far away, with a wavy boundary
    if rng.random() < 0.55:
        other = str(rng.choice(("water", "sand", "grass", "snow", "gravel", "rock")))
        if other != base:
            edge = _edge(rng, pw, rng.uniform(0.15, 0.5) * ph, 0.12 * ph, pw / 4)
            yy = np.arange(ph, dtype=np.float32)[:, None]
            _paint(img, lab, yy < edge[None, :], other, rng, 0.6)
    # patches of a second material
    if rng.random() < 0.5:
        other = str(rng.choice(("grass", "sand", "gravel", "snow", "rock")))
        if other != base:
            blob = fbm(rng, ph, pw, pw / 5, 2)
            _paint(img, lab, blob > rng.uniform(0.6, 0.7), other, rng, 0.6)
    # a pond
    if rng.random() < 0.35:
        mask = np.zeros((ph, pw), np.uint8)
        c = (int(rng.uniform(0.2, 0.8) * pw), int(rng.uniform(0.2, 0.7) * ph))
        axes = (int(rng.uniform(0.08, 0.25) * pw), int(rng.uniform(0.06, 0.18) * ph))
        cv2.ellipse(mask, c, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        _paint(img, lab, mask.astype(bool), "water", rng, 0.6)
    # a road from near to far, possibly curving
    if rng.random() < 0.7:
        yy = np.arange(ph, dtype=np.float32)
        t = 1.0 - yy / ph  # 0 near, 1 far
        centre = pw * (0.5 + rng.uniform(-0.2, 0.2)) + rng.uniform(-0.25, 0.25) * pw * t**2
        half = rng.uniform(0.07, 0.14) * pw
        xx = np.arange(pw, dtype=np.float32)[None, :]
        mask = np.abs(xx - centre[:, None]) < half
        _paint(img, lab, mask, "road", rng, 0.6)
        if rng.random() < 0.7:  # lane marks (still "road")
            dash = ((yy // max(4, int(0.04 * ph))) % 2 == 0)[:, None]
            mark = (np.abs(xx - centre[:, None]) < max(1.5, 0.006 * pw)) & dash
            colour = np.array((0.9, 0.85, 0.3) if rng.random() < 0.4 else (0.92, 0.92, 0.92), np.float32)
            img[mark] = colour
    return img, lab


def _warp_ground(rng, img, lab, horizon: int) -> None:
    h, w = lab.shape
    ph, pw = h, int(w * 1.6)
    plan, plan_lab = _ground_plan(rng, ph, pw)
    cx = w * rng.uniform(0.35, 0.65)
    far_half = w * rng.uniform(0.7, 1.0)
    near_half = far_half * rng.uniform(2.0, 3.5)
    src = np.float32([[0, 0], [pw, 0], [pw, ph], [0, ph]])
    dst = np.float32([[cx - far_half, horizon], [cx + far_half, horizon], [cx + near_half, h], [cx - near_half, h]])
    m = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(plan, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    wlab = cv2.warpPerspective(plan_lab, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT)
    below = slice(horizon, h)
    img[below] = warped[below]
    lab[below] = wlab[below]


def _far_band(rng, img, lab, horizon: int) -> None:
    h, w = lab.shape
    if rng.random() < 0.2:
        return
    cls = str(rng.choice(("foliage", "rock", "foliage", "rock", "snow")))
    height = rng.uniform(0.04, 0.25) * h
    top = _edge(rng, w, horizon - height, height * 0.6, w / rng.uniform(3, 12))
    yy = np.arange(h, dtype=np.float32)[:, None]
    mask = (yy >= top[None, :]) & (yy < horizon + 1)
    _paint(img, lab, mask, cls, rng, 0.4)


def _blob_mask(rng, h, w, cx, cy, rx, ry, rough=0.25) -> np.ndarray:
    """An irregular ellipse (a bush, a boulder, a canopy) as a bool mask."""
    k = rng.integers(3, 7)
    phase = rng.uniform(0, 2 * np.pi, 3)
    mask = np.zeros((h, w), bool)
    # Only the box the shape can reach is computed (the wobble is at most 1 + 0.8 * rough).
    reach = 1 + 0.8 * abs(rough) + 1e-3
    y0, y1 = max(0, int(np.floor(cy - reach * max(ry, 1))) - 1), min(h, int(np.ceil(cy + reach * max(ry, 1))) + 2)
    x0, x1 = max(0, int(np.floor(cx - reach * max(rx, 1))) - 1), min(w, int(np.ceil(cx + reach * max(rx, 1))) + 2)
    if y1 <= y0 or x1 <= x0:
        return mask
    yy, xx = np.ogrid[y0:y1, x0:x1]
    ang = np.arctan2((yy - cy) / max(ry, 1), (xx - cx) / max(rx, 1))
    wobble = 1 + rough * (np.sin(k * ang + phase[0]) * 0.5 + np.sin((k + 2) * ang + phase[1]) * 0.3)
    d = ((xx - cx) / max(rx, 1)) ** 2 + ((yy - cy) / max(ry, 1)) ** 2
    mask[y0:y1, x0:x1] = d < wobble**2
    return mask


def _objects(rng, img, lab, horizon: int) -> None:
    h, w_frame = lab.shape
    w = min(w_frame, h * 4 / 3)  # object sizes follow a 4:3 view, also in wide panoramas
    n = int(rng.integers(0, 5))
    feet = np.sort(rng.uniform(horizon + 0.08 * (h - horizon), h * 1.1, n))  # far to near
    for yb in feet:
        s = (yb - horizon) / max(h - horizon, 1)  # apparent size ~ nearness
        kind = str(rng.choice(("wall", "fence", "crate", "bush", "tree", "boulder")))
        cx = rng.uniform(0.05, 0.95) * w_frame
        if kind in ("wall", "fence", "crate"):
            ow = s * w * (rng.uniform(0.3, 0.9) if kind != "crate" else rng.uniform(0.1, 0.2))
            oh = s * h * {"wall": rng.uniform(0.35, 0.8), "fence": rng.uniform(0.15, 0.3), "crate": rng.uniform(0.12, 0.22)}[kind]
            x0, x1 = int(max(0, cx - ow / 2)), int(min(w_frame, cx + ow / 2))
            y0, y1 = int(max(0, yb - oh)), int(min(h, yb))
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            mask = np.zeros((h, w_frame), bool)
            mask[y0:y1, x0:x1] = True
            if kind == "fence":  # posts and rails with gaps
                xx = np.arange(x1 - x0)
                post = max(2, int(ow / rng.integers(5, 10)))
                keep = (xx % post) < max(1, post // 3)
                rails = np.zeros(y1 - y0, bool)
                rails[int(0.15 * (y1 - y0)) : int(0.3 * (y1 - y0)) + 1] = True
                rails[int(0.6 * (y1 - y0)) : int(0.75 * (y1 - y0)) + 1] = True
                mask[y0:y1, x0:x1] = keep[None, :] | rails[:, None]
            cls = "brick wall" if kind == "wall" else "wood"
            _paint(img, lab, mask, cls, rng, max(0.15, s), (y0, y1, x0, x1))
        elif kind == "tree":
            tw = max(2, s * w * rng.uniform(0.02, 0.05))
            th = s * h * rng.uniform(0.4, 0.9)
            mask = np.zeros((h, w_frame), bool)
            y0 = int(max(0, yb - th))
            mask[y0 : int(min(h, yb)), int(max(0, cx - tw / 2)) : int(min(w_frame, cx + tw / 2))] = True
            _paint(img, lab, mask, "wood", rng, max(0.15, s * 0.5))
            r = s * w * rng.uniform(0.08, 0.2)
            canopy = _blob_mask(rng, h, w_frame, cx, yb - th, r, r * rng.uniform(0.8, 1.3), 0.3)
            _paint(img, lab, canopy, "foliage", rng, max(0.15, s))
        else:
            r = s * w * (rng.uniform(0.06, 0.18) if kind == "bush" else rng.uniform(0.04, 0.12))
            ry = r * rng.uniform(0.5, 0.9)
            mask = _blob_mask(rng, h, w_frame, cx, yb - ry * 0.8, r, ry, 0.25 if kind == "bush" else 0.12)
            _paint(img, lab, mask, "foliage" if kind == "bush" else "rock", rng, max(0.15, s))


def _outdoor(rng, h, w):
    img = np.zeros((h, w, 3), np.float32)
    lab = np.zeros((h, w), np.uint8)
    horizon = int(h * rng.uniform(0.25, 0.6))
    sky_mask = np.zeros((h, w), bool)
    sky_mask[: horizon + 1] = True
    _paint(img, lab, sky_mask, "sky", rng, 1.0, (0, horizon + 1, 0, w))
    _warp_ground(rng, img, lab, horizon)
    _far_band(rng, img, lab, horizon)
    _objects(rng, img, lab, horizon)
    return img, lab


def _street(rng, h, w):
    img = np.zeros((h, w, 3), np.float32)
    lab = np.zeros((h, w), np.uint8)
    top = int(h * rng.uniform(0.0, 0.3))
    bottom = int(h * rng.uniform(0.7, 0.95))
    above = str(rng.choice(("sky", "sky", "foliage")))
    wall_edge = _edge(rng, w, top, 0.0 if rng.random() < 0.6 else 0.05 * h, w / 3)
    yy = np.arange(h, dtype=np.float32)[:, None]
    _paint(img, lab, yy < wall_edge[None, :], above, rng, 1.0)
    m = (yy >= wall_edge[None, :]) & (yy < bottom)
    _paint(img, lab, m, "brick wall", rng, rng.uniform(0.7, 1.3))
    for _ in range(int(rng.integers(0, 3))):  # doors / shutters
        dw, dh = rng.uniform(0.1, 0.25) * w, rng.uniform(0.3, 0.6) * (bottom - top)
        x0 = int(rng.uniform(0, w - dw))
        m = np.zeros((h, w), bool)
        m[int(bottom - dh) : bottom, x0 : int(x0 + dw)] = True
        _paint(img, lab, m, "wood", rng, 1.0)
    m = np.zeros((h, w), bool)
    m[bottom:] = True
    _paint(img, lab, m, str(rng.choice(("road", "gravel", "road", "snow", "sand"))), rng, 1.0)
    for _ in range(int(rng.integers(0, 3))):  # a bush or a boulder by the wall
        r = rng.uniform(0.06, 0.15) * w
        cx, cy = rng.uniform(0, w), bottom - r * 0.2
        _paint(img, lab, _blob_mask(rng, h, w, cx, cy, r, r * 0.7), str(rng.choice(("foliage", "rock"))), rng, 1.0)
    return img, lab


def _mosaic(rng, h, w):
    k = int(rng.integers(2, 6))
    pool = np.array(CLASSES)
    chosen = rng.choice(pool, size=min(k, len(pool)), replace=False)
    fields = np.stack([fbm(rng, h, w, max(h, w) / rng.uniform(1.5, 4), 2) for _ in chosen])
    owner = fields.argmax(0)
    img = np.zeros((h, w, 3), np.float32)
    lab = np.zeros((h, w), np.uint8)
    for i, cls in enumerate(chosen):
        _paint(img, lab, owner == i, str(cls), rng, rng.uniform(0.5, 1.3))
    return img, lab


_LAYOUT_FN = {"outdoor": _outdoor, "street": _street, "mosaic": _mosaic}


def render_scene(seed: int, height: int = 480, width: int = 640, layout: str | None = None) -> Scene:
    """A scene of the given size: ``layout`` one of LAYOUTS, or drawn from the seed."""
    if height < 16 or width < 16:
        raise ValueError(f"scene size {width}x{height} is too small (at least 16x16)")
    rng = np.random.default_rng(seed)
    if layout is None:
        layout = str(rng.choice(LAYOUTS, p=(0.6, 0.2, 0.2)))
    if layout not in _LAYOUT_FN:
        raise ValueError(f"unknown layout '{layout}' (known: {', '.join(LAYOUTS)})")
    _UNIT[0] = height * 4 / 3 / 640.0  # a 4:3 frame of this height; wider frames see more, not bigger
    img, lab = _LAYOUT_FN[layout](rng, height, width)
    grain = rng.integers(-3, 4, img.shape, dtype=np.int16)  # sensor grain, +-3 levels
    out = np.clip((img * 255.0 + 0.5).astype(np.int16) + grain, 0, 255).astype(np.uint8)
    return Scene(out, lab, layout, int(seed))


def class_fractions(labels: np.ndarray, n: int = len(CLASSES)) -> np.ndarray:
    """Share of each class in a label map (sums to 1)."""
    counts = np.bincount(labels.reshape(-1), minlength=n)[:n].astype(np.float32)
    return counts / max(counts.sum(), 1.0)
