"""The node's /diagnostics status: health (level and message) and the key-values, from one
period's counters (:meth:`~mlmp_ros.ros.worker.Stats.take_period`) and the segmenter's state.

Every key is documented in docs/node/diagnostics.md; tests read the values, not the log.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.time import Time
from std_msgs.msg import Header

from . import rss_bytes

INPUT_RECENT = 2.0  # input counts as arriving if a frame came within max(this, 2 diagnostics periods)
WALL_CLOCK_SLACK = 24 * 3600 * 10**9  # a stamp this close to the system clock is taken as wall-clock time


@dataclass(frozen=True)
class NodeView:
    """What the node adds to the counters: its input, state and settings."""

    input_topic: str
    input_reliability: str  # as configured now (reliability_name)
    enabled: bool
    diagnostics_period: float
    stall_warn_factor: float
    stall_error_factor: float
    unknown_parameters: tuple[str, ...] = ()
    sequence_numbers: bool = False  # lost frames are counted from the publishers' sequence numbers


def stamp_age(header: Header) -> float | None:
    """Seconds since the stamp (``stamp_age_ms``), only when the stamps are wall-clock time (not a
    bag's or a simulator's).

    Latency itself is measured from reception to publishing on this process's steady clock.
    """
    stamp_ns = Time.from_msg(header.stamp).nanoseconds
    wall_ns = time.time_ns()
    return (wall_ns - stamp_ns) * 1e-9 if abs(wall_ns - stamp_ns) < WALL_CLOCK_SLACK else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1e3:.2f}"


def _blank(value: Any) -> Any:
    return "" if value is None else value


def progress(s: dict[str, Any]) -> tuple[float, float]:
    """(seconds the frame in progress has taken, seconds since the last output or the start)."""
    now = s["now"]
    in_progress = now - s["busy_since"] if s["busy_since"] is not None else 0.0
    since_output = now - (s["last_frame_at"] if s["last_frame_at"] is not None else s["started_at"])
    return in_progress, since_output


def _stall(s: dict[str, Any], view: NodeView) -> tuple[int, str]:
    """A stuck worker: input arrives, but the frame in progress has taken far longer than usual."""
    in_progress, since_output = progress(s)
    input_recent = max(INPUT_RECENT, 2 * view.diagnostics_period)
    input_arriving = s["last_input_at"] is not None and s["now"] - s["last_input_at"] <= input_recent
    expected = s["expected"]
    if not (input_arriving and expected is not None and in_progress > 0):
        return DiagnosticStatus.OK, ""
    factor = in_progress / max(expected, 1e-3)
    stalled = (f"no frame finished for {since_output:.1f} s: the current frame has taken {in_progress:.1f} s, "
               f"{factor:.0f}x the usual {expected:.2f} s")
    if factor > view.stall_error_factor:
        return DiagnosticStatus.ERROR, stalled
    if factor > view.stall_warn_factor:
        return DiagnosticStatus.WARN, stalled
    return DiagnosticStatus.OK, ""


def health(s: dict[str, Any], view: NodeView, *, random_weights: bool, last_failure: str) -> tuple[int, str]:
    """The status level (OK, WARN, ERROR) and its message: the problems of the period, or what the node waits for."""
    problems = []
    level = DiagnosticStatus.OK
    if random_weights:
        problems.append("running on RANDOM weights (tests only)")
    if s["p_bad"]:
        problems.append(f"{s['p_bad']} bad frames (last: {s['last_bad']})")
    if s["p_failures"]:
        problems.append(f"adaptation failed on {s['p_failures']} frames ({last_failure}); weights restored")
    if s["p_incompatible"]:
        hint = ("set input.reliability to auto or best_effort" if s["last_qos_policy"] == "RELIABILITY"
                else "compare the publisher's QoS with this subscription's")
        problems.append(f"incompatible QoS on {view.input_topic} (policy {s['last_qos_policy']}): {hint}")
    if problems:
        level = DiagnosticStatus.WARN
    if s["p_errors"]:
        level = DiagnosticStatus.ERROR
        problems.insert(0, f"{s['p_errors']} frames failed (last: {s['last_error']})")
    stall_level, stalled = _stall(s, view)
    if stalled:
        level = max(level, stall_level)
        problems.insert(0, stalled)
    if not view.enabled:
        problems.append("disabled through ~/enable")
    if problems:
        return level, "; ".join(problems)
    if s["last_frame_at"] is None:
        return level, f"waiting for images on {view.input_topic}"
    return level, "ok"


def _frame_values(s: dict[str, Any], view: NodeView) -> dict[str, Any]:
    """Input, output, bad frames and timings of the period."""
    elapsed = s["elapsed"]
    in_progress, since_output = progress(s)
    overhead = s["p_overhead"]
    return {
        "enabled": view.enabled,
        "input_topic": view.input_topic,
        "input_reliability": view.input_reliability,
        "input_rate_hz": f"{s['p_received'] / elapsed:.2f}",
        "output_rate_hz": f"{s['p_processed'] / elapsed:.2f}",
        "frames_received": s["received"],
        "frames_processed": s["processed"],
        "frames_dropped": s["dropped"],  # every received frame that got no output, = the reasons below
        "frames_dropped_replaced": s["drops"]["replaced"],
        "frames_skipped_by_rate_cap": s["drops"]["rate_cap"],
        "frames_dropped_by_class_change": s["drops"]["class_change"],
        "frames_dropped_disabled": s["drops"]["disabled"],
        "frames_dropped_inactive": s["drops"]["inactive"],
        "frames_waiting": s["received"] - s["processed"] - s["dropped"],
        "frames_lost_in_dds": s["lost"] if view.sequence_numbers else s["lost_events"],
        "frames_lost_counted_by": "sequence numbers" if view.sequence_numbers else "lost-sample events",
        "bad_frames": s["drops"]["bad"],
        "last_bad_frame": s["last_bad"],
        "last_bad_frame_limit": s["last_bad_limit"],
        "frame_errors": s["drops"]["error"],
        "last_frame_error": s["last_error"],
        "latency_ms": _ms(_mean(s["p_latency"])),
        "latency_max_ms": _ms(max(s["p_latency"], default=None)),
        "stamp_age_ms": _ms(_mean(s["p_stamp_age"])),
        "time_since_last_output_s": f"{since_output:.2f}",
        "frame_in_progress_s": f"{in_progress:.2f}",
        "expected_frame_ms": _ms(s["expected"]),
        "model_ms": _ms(_mean(s["p_model"])),
        "overhead_ms": _ms(_mean([o["total"] for o in overhead])),
        "overhead_max_ms": _ms(max((o["total"] for o in overhead), default=None)),
        "overhead_schedule_ms": _ms(_mean([o["wake"] for o in overhead])),  # the key predates the name "wake"
        "overhead_convert_ms": _ms(_mean([o["convert"] for o in overhead])),
        "overhead_publish_ms": _ms(_mean([o["publish"] for o in overhead])),
    }


def _adaptation_values(s: dict[str, Any], seg: Any, schedule_stats: dict[str, Any],
                       steps_per_s: float) -> dict[str, Any]:
    """The method, its schedule, budgets, losses, failures and resets.  Steps, loss and status are the
    adaptation side's own (under async: the adaptation thread's last job, not the predicted frame's)."""
    adaptation = seg.config.adaptation
    steps = schedule_stats.get("adapt_last_steps", s["steps"])
    loss = schedule_stats.get("adapt_last_loss", s["last_loss"])
    status = schedule_stats.get("adapt_last_status", s["last_status"])
    return {
        "adaptation_method": adaptation.method,
        "adaptation_mode": adaptation.mode,
        "adaptation_steps": steps,
        "adaptation_schedule": schedule_stats["schedule"],
        "adaptation_steps_total": schedule_stats["steps"],
        "adaptation_steps_per_s": f"{steps_per_s:.2f}",
        "adaptation_steps_per_frame": _blank_float(schedule_stats.get("steps_per_frame")),
        "adaptation_wait_s": _blank_float(schedule_stats.get("adapt_wait_s")),
        "adaptation_step_ms": _ms(None if schedule_stats["step_ms"] is None else schedule_stats["step_ms"] / 1000.0),
        "adaptation_lag_frames": _blank(schedule_stats["lag_frames"]),
        "adaptation_lag_frames_median": _blank(schedule_stats["lag_frames_median"]),
        "adaptation_budget_stops": schedule_stats["stops"]["budget"],
        "adaptation_plateau_stops": schedule_stats["stops"]["plateau"],
        "resets_by_reason": ", ".join(f"{k}={v}" for k, v in sorted(schedule_stats["resets"].items())),
        "last_loss": "" if loss is None else f"{loss:.6g}",
        "adaptation_status": status,
        "last_frame_status": s["last_status"],  # the last published frame's (e.g. "batched x2", "restored ...")
        "adaptation_failures": schedule_stats["failures"],
        "last_adaptation_failure": schedule_stats["last_failure"],
        "resets": schedule_stats["resets_total"],
    }


def _blank_float(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


def diagnostic_values(s: dict[str, Any], view: NodeView, *, seg: Any, weights: str, schedule_stats: dict[str, Any],
                      steps_per_s: float) -> dict[str, Any]:
    """Every key-value of the status, in the order they are published."""
    rss = rss_bytes()
    values = _frame_values(s, view)
    values.update(_adaptation_values(s, seg, schedule_stats, steps_per_s))
    values.update({
        "incompatible_qos_events": s["incompatible_qos"],
        "last_incompatible_qos_policy": s["last_qos_policy"],
        "unknown_parameters": ", ".join(view.unknown_parameters),
        "classes": len(seg.class_names),
        "model": seg.config.model,
        "weights": weights,
        "random_weights": seg.random_weights,
        "device": str(seg.device),
        "rss_mb": "" if rss is None else f"{rss / 2**20:.1f}",
    })
    values.update(cuda_memory(seg.device))
    return values


def adaptation_summary(adaptation: Any, adapts: bool = True) -> str:
    """How the node adapts, as its log says it: ``mlmp (continual, 10 steps, async)``, or that it does not
    (``noadapt: no adaptation``; mode off or 0 steps say so rather than a step count that is not run)."""
    if not adapts:
        return f"{adaptation.method}: no adaptation"
    if adaptation.mode == "off" or adaptation.steps == 0:
        why = "adaptation.mode off" if adaptation.mode == "off" else "adaptation.steps 0"
        return f"{adaptation.method}: no adaptation ({why})"
    return f"{adaptation.method} ({adaptation.mode}, {adaptation.steps} steps, {adaptation.schedule})"


def status_name(node_fqn: str, camera: str = "") -> str:
    """The status name: the fully qualified node name (two namespaced nodes stay apart), and the camera."""
    return f"{node_fqn}: {camera}/segmentation" if camera else f"{node_fqn}: segmentation"


def hardware_id(device: Any) -> str:
    """The machine and the accelerator the model runs on, e.g. ``robot1-pc/cuda:0 (NVIDIA RTX A2000)``."""
    host = socket.gethostname() or "localhost"
    text = f"{host}/{device}"
    if getattr(device, "type", "") == "cuda":
        import torch

        text += f" ({torch.cuda.get_device_name(device)})"
    return text


def diagnostic_array(name: str, level: int, message: str, values: dict[str, Any], hardware: str,
                     header: Header) -> DiagnosticArray:
    """One status named ``name`` (see :func:`status_name`)."""
    status = DiagnosticStatus(
        level=level,
        name=name,
        message=message,
        hardware_id=hardware,
        values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
    )
    return DiagnosticArray(header=header, status=[status])


def cuda_memory(device: Any) -> dict[str, str]:
    if getattr(device, "type", "") != "cuda":
        return {}
    import torch

    return {
        "cuda_allocated_mb": f"{torch.cuda.memory_allocated(device) / 2**20:.1f}",
        "cuda_max_allocated_mb": f"{torch.cuda.max_memory_allocated(device) / 2**20:.1f}",
    }


def camera_status(pipe: Any, multicamera: Any, view: NodeView, node_fqn: str, *, cameras: bool) -> DiagnosticStatus:
    """One camera's status (the pipeline's counters over the period, its adaptation state's counters).

    ``pipe``: a CameraPipeline; ``multicamera``: the node's MultiCameraSegmenter; ``cameras``: the node was given
    camera names (the status is then ``<node>: <camera>/segmentation`` and says which camera)."""
    s = pipe.counters.take_period()
    seg = multicamera.view(pipe.name)
    schedule_stats = multicamera.scheduled(pipe.name).stats()
    now = time.monotonic()
    mark, pipe.steps_mark = pipe.steps_mark, (now, schedule_stats["steps"])
    if mark:
        steps_per_s = (schedule_stats["steps"] - mark[1]) / max(now - mark[0], 1e-9)
    else:
        steps_per_s = schedule_stats["steps_per_s"]
    status = seg.status()
    level, message = health(s, view, random_weights=seg.random_weights, last_failure=schedule_stats["last_failure"])
    values = {"camera": pipe.name} if cameras else {}
    values.update(diagnostic_values(s, view, seg=seg, weights=status.weights, schedule_stats=schedule_stats,
                                    steps_per_s=steps_per_s))
    if cameras:
        values["adaptation_shared"] = multicamera.shared
        values["adaptation_weight_shift"] = f"{multicamera.weight_shift(pipe.name):.6g}"
    array = diagnostic_array(status_name(node_fqn, pipe.name), level, message, values, hardware_id(seg.device),
                             Header())
    return array.status[0]
