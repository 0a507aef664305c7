"""How long the report's bootstrap intervals take: the vectorised statistic of
mlmp_ros/bench/scoring/intervals.py (resample counts times areas, a matrix product) against the
per-resample Python statistic it replaced, on the same areas, interleaved; both must give the same
interval.  Prints JSON (and writes it with --out).

    python benchmarks/report_intervals.py --out benchmarks/results/report_intervals.json

Sizes: a world suite cell (40 scenes x 9 classes), Cityscapes val (500 x 19), Pascal VOC val (1449 x 21).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from mlmp_ros.bench.scoring.intervals import bootstrap, paired_pooled_difference, pooled_miou, pooled_miou_interval

SIZES = ((40, 9), (500, 19), (1449, 21))


def areas(n: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    union = rng.integers(0, 2, (n, c)) * rng.integers(100, 10_000, (n, c))
    return np.floor(union * rng.uniform(0.2, 0.9, (n, c))), union.astype(float)


def per_resample(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]):
    """The previous path: the statistic called once per resample."""
    miou = bootstrap(lambda idx: pooled_miou(a[0][idx], a[1][idx]), len(a[0]))
    diff = bootstrap(lambda idx: pooled_miou(a[0][idx], a[1][idx]) - pooled_miou(b[0][idx], b[1][idx]), len(a[0]))
    return miou, diff


def vectorised(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]):
    return pooled_miou_interval(*a), paired_pooled_difference(a, b)


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((x for x in text.splitlines() if x.startswith("flags")), "")
    return sorted(f for f in line.split() if f.startswith(("avx", "amx", "fma")))


def measure(n: int, c: int, repeats: int) -> dict:
    a, b = areas(n, c, 1), areas(n, c, 2)
    times: dict[str, list[float]] = {"per_resample": [], "vectorised": []}
    results = {}
    for _ in range(repeats):  # interleaved: both see the same load
        for name, fn in (("per_resample", per_resample), ("vectorised", vectorised)):
            t0 = time.perf_counter()
            results[name] = fn(a, b)
            times[name].append(time.perf_counter() - t0)
    same = all(np.allclose([x.value, x.low, x.high], [y.value, y.low, y.high])
               for x, y in zip(results["per_resample"], results["vectorised"]))  # fmt: skip
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"units": n, "classes": c, "median_s_per_cell": {k: round(v, 4) for k, v in med.items()},
            "speedup": round(med["per_resample"] / med["vectorised"], 1), "same_intervals": same,
            "interval": results["vectorised"][0].as_dict()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats per size (default: 3)")
    parser.add_argument("--out", type=Path, help="also write the JSON here (default: print only)")
    args = parser.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]
    rows = [measure(n, c, args.repeats) for n, c in SIZES]
    report = {"what": "one cell's pooled-mIoU interval plus its paired difference (BCa, 9999 resamples)",
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "cpu_flags": cpu_flags()},
              "load_average_before": load_before, "load_average_after": [round(x, 2) for x in os.getloadavg()],
              "sizes": rows}  # fmt: skip
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
