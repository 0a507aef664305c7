"""precision: auto, compile: auto | on | off, and the bf16 weight cast cache."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mlmp_ros.core import Config, ConfigError, Segmenter
from mlmp_ros.core.dense import DenseCLIP
from mlmp_ros.core.methods import precision
from mlmp_ros.core.methods.compiler import Compiler, resolve_compile
from mlmp_ros.core.methods.precision import Precision

from ..conftest import tiny_clip, tiny_config, torch_threads

REPO = Path(__file__).resolve().parents[2]


def _img(seed=0, h=224, w=224):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


def test_precision_auto_follows_the_hardware(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert Precision("auto", cpu).name == "bf16" and Precision("auto", cpu).setting == "auto"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert Precision("auto", cpu).name == "fp32" and Precision("auto", cpu).dtype is None
    assert Precision("fp32", cpu).name == "fp32"  # an explicit choice is kept
    assert Config().precision == "fp32"  # the Python API and the benchmark keep the paper's fp32


def test_precision_auto_runs_a_frame(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    seg = Segmenter(tiny_config(precision="auto", adaptation__steps=1), loaded=tiny_clip(1))
    assert seg.precision.name == "fp32"
    assert seg.segment([_img()]).frames[0].labels.shape == (224, 224)


def test_compile_setting_is_validated_and_read_from_yaml(tmp_path):
    with pytest.raises(ConfigError, match="compile must be one of auto, on, off"):
        Config(compile="fast").validate()
    path = tmp_path / "c.yaml"
    path.write_text("compile: on\nprecision: auto\n")  # YAML 1.1 reads a bare on as true
    cfg = Config.from_yaml(path)
    assert cfg.compile == "on" and cfg.precision == "auto"
    assert Config.from_mapping({"compile": False}).compile == "off"
    assert resolve_compile("auto", torch.device("cpu")) is False
    assert resolve_compile("auto", torch.device("cuda")) is True
    assert resolve_compile("on", torch.device("cpu")) is True


def test_bf16_weight_cache_gives_autocasts_exact_result(monkeypatch):
    """Frozen weights cast once give bit-identical results to autocast casting them each call."""
    cfg = tiny_config(precision="bf16", adaptation__method="mlmp", adaptation__steps=2)
    cached = Segmenter(cfg, loaded=tiny_clip(2))
    a = cached.segment([_img(3)], probabilities=True)
    assert cached.encoder._cast, "no weight was cached under bf16 autocast"
    assert all(c.dtype == torch.bfloat16 for _, c in cached.encoder._cast.values())
    monkeypatch.setattr(DenseCLIP, "_w", lambda self, t: t)
    plain = Segmenter(cfg, loaded=tiny_clip(2))
    b = plain.segment([_img(3)], probabilities=True)
    assert a.losses == b.losses
    assert np.array_equal(a.frames[0].probabilities, b.frames[0].probabilities)
    fp32 = Segmenter(tiny_config(adaptation__steps=1), loaded=tiny_clip(2))
    fp32.segment([_img(3)])
    assert not fp32.encoder._cast  # fp32 runs pass weights through


def _compile_parity(backend: str, monkeypatch) -> None:
    monkeypatch.setattr(Compiler, "backend", backend)
    out = {}
    for comp in ("off", "on"):
        seg = Segmenter(tiny_config(compile=comp, adaptation__method="mlmp", adaptation__steps=2), loaded=tiny_clip(4))
        first = seg.segment([_img(5)], probabilities=True)
        again = seg.segment([_img(6)], probabilities=True)
        out[comp] = (first, again, seg.method.compiler.info())
    info = out["on"][2]
    assert info["enabled"] and not info["failed"] and info["compilations"] == 2 and info["seconds"] > 0
    assert out["off"][2]["compilations"] == 0
    for i in (0, 1):
        eager, compiled = out["off"][i], out["on"][i]
        assert np.array_equal(eager.frames[0].labels, compiled.frames[0].labels)
        assert np.abs(eager.frames[0].probabilities - compiled.frames[0].probabilities).max() < 1e-4
        assert np.allclose(eager.losses, compiled.losses, rtol=1e-5)


def test_compile_on_gives_the_eager_labels(monkeypatch):
    """Graph capture and autograd of the compiled step and prediction (aot_eager backend: fast)."""
    _compile_parity("aot_eager", monkeypatch)


@pytest.mark.skipif(os.environ.get("MLMP_TEST_INDUCTOR") != "1", reason="inductor C++ compilation takes minutes on a small CPU; set MLMP_TEST_INDUCTOR=1")
def test_compile_on_with_inductor_gives_the_eager_labels(monkeypatch):
    _compile_parity("inductor", monkeypatch)


def test_a_failing_compiler_falls_back_to_eager_with_a_warning(monkeypatch, caplog):
    def broken(gm, example_inputs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(Compiler, "backend", staticmethod(broken))
    eager = Segmenter(tiny_config(adaptation__steps=2), loaded=tiny_clip(6)).segment([_img(7)])
    seg = Segmenter(tiny_config(compile="on", adaptation__steps=2), loaded=tiny_clip(6))
    with caplog.at_level(logging.WARNING, logger="mlmp_ros.methods"):
        result = seg.segment([_img(7)])
    assert "no compiler here" in seg.method.compiler.failed
    assert any("running eager" in r.getMessage() for r in caplog.records)
    assert result.status == "ok" and np.array_equal(result.frames[0].labels, eager.frames[0].labels)
    assert np.allclose(result.losses, eager.losses)


def test_latency_benchmark_cpu_path(tmp_path):
    """benchmarks/latency.py end to end on the tiny model: one run, every configuration, JSON out."""
    out = tmp_path / "latency.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "latency.py"), "--models", "mlmp-tiny-test", "--frames", "2",
           "--steps", "1", "--configs", "fp32", "bf16", "--threads", "1", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert "ms median" in proc.stderr and "flags:" in proc.stderr  # the printed table, with the CPU's capabilities
    assert report["machine"]["cpu_flags"] is not None and report["device"] == "cpu"
    (entry,) = report["models"]
    rows = {(r["method"], r["config"]): r for r in entry["results"]}
    for method in ("noadapt", "tent", "mlmp"):
        base_row = rows[(method, "fp32")]
        assert base_row["frames"] == 2 and base_row["ms_median"] > 0 and base_row["speedup_vs_fp32_eager"] == 1.0
        assert base_row["fraction_of_floor"] > 0 and entry["flops"][method]["total"] > 0
        bf16 = rows[(method, "bf16")]
        assert bf16["precision"] == "bf16" and 0 <= bf16["label_agreement_vs_fp32"] <= 1
    assert entry["flops"]["mlmp"]["total"] > entry["flops"]["tent"]["total"] > entry["flops"]["noadapt"]["total"]
    assert entry["gemm"]["fp32/model"]["gflops_best"] > 0
