"""The report's figures: mIoU per condition, loss per step, MLMP's layer weights, examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .tables import DATASET_LABELS, Table


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path, plots: list[Path], bottom: float = 0.0) -> None:
    """Lay out (leaving ``bottom`` of the height free, for a figure legend), write, list."""
    fig.tight_layout(rect=(0.0, bottom, 1.0, 1.0))
    fig.savefig(path)
    plots.append(path)


def plot_miou(table: Table, path: Path, plots: list[Path]) -> None:
    """mIoU per condition, one bar per method, with the trial std as error bars."""
    rows = list(table.rows.items())
    fig = _figure(max(6.0, 0.6 * len(rows) * max(1, len(table.methods)) / 2), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(table.methods))
    x = np.arange(len(rows))
    for i, method in enumerate(table.methods):
        stats = [table.cells.get((*key, method)) for key, _ in rows]
        pairs = [c.mean_std() if c is not None and c.records else None for c in stats]
        means = [p[0] if p else np.nan for p in pairs]
        stds = [p[1] if p else 0.0 for p in pairs]
        ax.bar(x + (i - (len(table.methods) - 1) / 2) * width, means, width, yerr=stds, capsize=2,
               label=table.label_of(method))  # fmt: skip
    ax.set_xticks(x)
    ax.set_xticklabels([label for _, label in rows], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("mIoU (%)")
    ax.set_title(table.title.replace(" — ", "\n"), fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path, plots)


def plot_losses(table: Table, path: Path, plots: list[Path]) -> bool:
    """Mean loss at each adaptation step, one line per method."""
    curves = {}
    for method in table.methods:
        runs = [r.loss_per_step or [] for r in table.records_of(method)]
        length = max((len(c) for c in runs), default=0)
        if not length:
            continue
        curve = []
        for step in range(length):
            vals = [c[step] for c in runs if step < len(c) and c[step] is not None]
            curve.append(float(np.mean(vals)) if vals else np.nan)
        curves[method] = curve
    if not curves:
        return False
    fig = _figure(6.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for method, curve in curves.items():
        ax.plot(np.arange(1, len(curve) + 1), curve, marker="o", markersize=3, label=table.label_of(method))
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("adaptation step")
    ax.set_ylabel("loss (mean over batches, conditions, trials)")
    ax.set_title(table.title.replace(" — ", "\n"), fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path, plots)
    return True


def plot_layer_weights(table: Table, path: Path, plots: list[Path]) -> bool:
    """MLMP's entropy-based layer weights: mean and std per layer."""
    column = next((c for c in table.methods if table.method_of(c) == "mlmp"), None)  # the first MLMP column
    recs = [r for r in table.records_of(column) if r.layer_weights] if column is not None else []
    if not recs:
        return False
    layers = recs[0].layer_weights["layers"]
    recs = [r for r in recs if r.layer_weights["layers"] == layers]
    means = np.array([r.layer_weights["mean"] for r in recs])
    stds = np.array([r.layer_weights["std"] for r in recs])
    mean = means.mean(0)
    std = np.sqrt(np.maximum((stds**2 + means**2).mean(0) - mean**2, 0.0))  # pooled over runs
    fig = _figure(6.0, 3.5)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(np.arange(len(layers)), mean, yerr=std, capsize=3, color="tab:green")
    ax.axhline(1.0 / len(layers), color="grey", linestyle="--", linewidth=1, label="uniform")
    ax.set_xticks(np.arange(len(layers)))
    ax.set_xticklabels([str(v) for v in layers])
    ax.set_xlabel("block")
    ax.set_ylabel("entropy weight")
    ax.set_title(f"MLMP layer weights\n{table.title}", fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path, plots)
    return True


def label_colours(count: int) -> np.ndarray:
    """(count + 1, 3) float colours; the last one (ignore) is black."""
    from matplotlib import colormaps

    base = [colormaps[name](np.arange(20) / 20.0)[:, :3] for name in ("tab20", "tab20b", "tab20c")]
    colours = np.concatenate(base, 0)
    if count > len(colours):
        extra = np.random.default_rng(0).uniform(0.15, 1.0, (count - len(colours), 3))
        colours = np.concatenate([colours, extra], 0)
    return np.concatenate([colours[:count], np.zeros((1, 3))], 0)


def _colour(labels: np.ndarray, colours: np.ndarray) -> np.ndarray:
    idx = np.where(labels < len(colours) - 1, labels, len(colours) - 1)
    return colours[idx]


def plot_examples(table: Table, folder: Path, path: Path, plots: list[Path]) -> bool:
    """Image, ground truth and each method's prediction (blended over the image) on the same frames."""
    for (dataset, corruption), label in table.rows.items():  # noqa: B007 - label titles the figure
        found = {}
        for method in table.methods:
            cell = table.cells.get((dataset, corruption, method))
            rel = next((r.examples for r in (cell.records if cell else []) if r.examples), None)
            if rel and (folder / rel).is_file():
                found[method] = dict(np.load(folder / rel))
        if found:
            break
    else:
        return False
    first = next(iter(found.values()))
    count = len([k for k in first if k.startswith("image_")])
    names = max((r.class_names or [] for r in table.done()), key=len)
    colours = label_colours(len(names) or 256)
    cols = 2 + len(found)
    fig = _figure(2.2 * cols, 2.2 * count + 1.0)
    for row in range(count):
        image = first[f"image_{row}"].astype(np.float64) / 255.0
        panels = [("image", image), ("ground truth", _colour(first[f"labels_{row}"], colours))]
        for method, arrays in found.items():
            pred = _colour(arrays[f"prediction_{row}"], colours)
            panels.append((table.label_of(method), 0.5 * image + 0.5 * pred))
        for col, (name, picture) in enumerate(panels):
            ax = fig.add_subplot(count, cols, row * cols + col + 1)
            ax.imshow(np.clip(picture, 0, 1), interpolation="nearest")
            ax.set_axis_off()
            if row == 0:
                ax.set_title(name, fontsize=8)
    fig.suptitle(f"{DATASET_LABELS.get(table.family, table.family)} {label} — first frames of the split", fontsize=9)
    _class_legend(fig, [first[f"labels_{r}"] for r in range(count)]
                  + [a[f"prediction_{r}"] for a in found.values() for r in range(count)], names, colours)  # fmt: skip
    _save(fig, path, plots, bottom=0.6 / (2.2 * count + 1.0))
    return True


def _class_legend(fig: Any, maps: list[np.ndarray], names: list[str], colours: np.ndarray) -> None:
    """A legend below the panels: the colour of every class that appears in a ground truth or prediction."""
    from matplotlib.patches import Patch

    present = sorted({int(v) for m in maps for v in np.unique(m) if int(v) < len(colours) - 1})
    if not present:
        return
    handles = [Patch(color=colours[c], label=names[c].split(",")[0] if c < len(names) else f"class {c}") for c in present]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=7, frameon=False,
               title="classes", title_fontsize=7)  # fmt: skip
