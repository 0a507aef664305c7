"""The ``mlmp_segment`` node: camera images in, labels, confidence and diagnostics out, for one
camera or several, through one pipeline.

- one :class:`~mlmp_ros.ros.pipeline.CameraPipeline` per camera (``cameras: []``: one, on the
  node's own topics ``image`` -> ``segmentation/...``; ``cameras: [front, rear]``: one per name,
  ``front/image`` -> ``front/segmentation/...``): subscription, publishers, checks, counters;
- one :class:`~mlmp_ros.ros.worker.Worker` thread that owns the model and serves every camera's
  newest frame (ros/inbox.py), each under its own adaptation state or a shared one
  (``adaptation.share``, :class:`~mlmp_ros.core.multicamera.MultiCameraSegmenter`);
- the executor's threads run the callbacks (images, parameters, services, timers) and never wait
  for the model.

The node's steps are those of a managed node (ros/lifecycle.py drives them for a lifecycle
manager; the plain node runs :meth:`start` = :meth:`load` + :meth:`open`): ``load`` the model;
``open`` topics, services, timers and the worker; ``close`` them; ``free`` the model.
Parameters are checked when they are set, in any state, and take effect on the worker between
frames (or at the next ``open``).  Counters live as long as the node.

Run: ``mlmp-segment --ros-args -r image:=/camera/image_raw`` (see ``mlmp-segment --help``).
"""

from __future__ import annotations

import ctypes
import gc
import threading
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import InvalidParameterValueException, ParameterException
from rclpy.node import Node
from rclpy.task import Future

from ..constants import NODE_NAME
from ..core import ConfigError, Segmenter
from ..core.methods.guards import AdaptationCancelled
from ..core.multicamera import MultiCameraSegmenter
from ..core.schedule import SCHEDULE_SETTINGS
from ..core.segmenter import RUNTIME_SETTINGS
from ..core.text import ClassList
from ..core.threads import in_passing_thread
from .cli import parameter_kind
from .counters import Counters
from .gate import LabelGate
from .inbox import STOP_TIMEOUT, Inbox
from .interface import NodeInterface
from .params import NODE_DEFAULTS, NodeSettings, core_config, parameter_specs, plain
from .pipeline import CameraPipeline
from .worker import Worker

__all__ = ["STOP_TIMEOUT", "SegmentNode"]


class SegmentNode(Node):
    """See the module docs."""

    MANAGED = False  # the lifecycle node (ros/lifecycle.py) is True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        values = self._declare_parameters()
        self._warn_unknown_overrides()
        self.settings = NodeSettings.from_values(values)
        # The configuration accepted so far (the worker's segmenter catches up between frames).
        self.accepted = core_config(values)
        ClassList.resolve(self.accepted.classes)  # a typo in the class list fails before the model loads
        self.gate = LabelGate(self.accepted.flat())
        names = list(self.settings.cameras) or [""]
        self.pipelines = {name: CameraPipeline(self, name, Counters()) for name in names}
        self.segmenter: Segmenter | None = None  # loaded: between load and free
        self.multicamera: MultiCameraSegmenter | None = None  # open: between open and close
        self.inbox: Inbox | None = None
        self.worker: Worker | None = None
        self.interface = NodeInterface(self)  # services, timers, diagnostics
        self.enabled = True
        self.stopping = threading.Event()
        # Held while open() / close() create or destroy entities, and by callbacks that use them (a
        # diagnostics timer or ~/enable running while a deactivate destroys the publishers).
        self.entities_lock = threading.RLock()
        self.finished = Future()  # done when the process should end (a lifecycle shutdown)
        self._opened: dict[str, set] | None = None  # the entities open() created
        self.add_on_set_parameters_callback(self._on_set_parameters)  # checks parameters in every state

    @property
    def named_cameras(self) -> bool:
        """Whether the node was given camera names (``cameras: [...]``)."""
        return bool(self.settings.cameras)

    # ------------------------------------------------------------ parameters
    def _declare_parameters(self) -> dict[str, Any]:
        problems = []
        values = {}
        for spec in parameter_specs():
            try:
                values[spec.name] = self.declare_parameter(spec.name, spec.default, spec.descriptor).value
            except InvalidParameterValueException as exc:  # outside the declared range
                problems.append(f"parameter '{spec.name}' {spec.descriptor.additional_constraints} ({exc})")
            except ParameterException as exc:
                problems.append(f"parameter '{spec.name}' must be {parameter_kind(spec.default)} ({exc})")
        if problems:
            raise ConfigError(problems)
        return values

    def _warn_unknown_overrides(self) -> None:
        """Overrides of parameters this node does not have (typos?): warned once, kept for /diagnostics."""
        overrides = getattr(self, "_parameter_overrides", {}) or {}
        self.unknown_parameters = tuple(sorted(name for name in overrides if not self.has_parameter(name)))
        if self.unknown_parameters:
            self.get_logger().warning(f"ignoring unknown parameters (typos?): {', '.join(self.unknown_parameters)}")

    def _on_set_parameters(self, params: list) -> SetParametersResult:
        """Check changes now, in any state; the worker applies them between frames (or at the next open)."""
        core_changes, node_changes = {}, {}
        for p in params:
            if p.name in RUNTIME_SETTINGS or p.name in SCHEDULE_SETTINGS:
                core_changes[p.name] = plain(p.value)
            elif p.name in NODE_DEFAULTS:
                node_changes[p.name] = plain(p.value)
        try:
            config = self.accepted.replace(**core_changes) if core_changes else self.accepted
            if "classes" in core_changes:
                ClassList.resolve(config.classes)
            settings = self.settings.replace(node_changes) if node_changes else self.settings
        except (ValueError, OSError) as exc:  # ConfigError is a ValueError
            return SetParametersResult(successful=False, reason=str(exc))
        flat = config.flat()  # the validated values, e.g. "auto" already resolved
        changes = {k: flat[k] for k in core_changes}

        def commit() -> None:  # under the gate's lock: no output of an old class list after this returns
            self.accepted, self.settings = config, settings
            if changes and self.inbox is not None:
                self.inbox.put_changes(changes)

        self.gate.accept(changes, commit)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------- the steps
    def start(self, segmenter: Segmenter | None = None) -> None:
        """The plain node's start: load the model (unless given), then open."""
        if not (self.settings.autostart or self.MANAGED):
            raise ConfigError("autostart: false needs the managed node, which needs lifecycle_msgs "
                              "(pip install ros-lifecycle-msgs, or ros-jazzy-lifecycle-msgs)")
        self.load(segmenter)
        self.open()

    def load(self, segmenter: Segmenter | None = None) -> None:
        """The model, from the accepted configuration (on a thread that ends: core/threads.py)."""
        if segmenter is None:
            cfg = self.accepted
            self.get_logger().info(f"loading {cfg.model} (weights: {cfg.weights}, device: {cfg.device})")
            segmenter = in_passing_thread(Segmenter, cfg)
        self.segmenter = segmenter
        self.gate.model_loaded(segmenter.config.flat())

    def open(self) -> None:
        """Every camera's topics, the services and timers, the adaptation states and the worker."""
        if self.segmenter is None:
            raise RuntimeError("not configured: no model loaded")
        seg = self.segmenter
        seg.max_windows = self.settings.max_windows
        seg.method.step_hook = self._before_step
        self.stopping.clear()
        with self.entities_lock:
            self._open(seg)
        self.worker.start()
        self.interface.log_ready()

    def _open(self, seg: Segmenter) -> None:
        before = self._entities()
        names = list(self.pipelines)
        share = len(names) == 1 or self.accepted.adaptation.share == "cameras"
        self.multicamera = in_passing_thread(MultiCameraSegmenter, seg, names, share=share)
        self.inbox = Inbox(names)
        for pipe in self.pipelines.values():
            pipe.open(self.inbox, len(seg.class_names), self.multicamera.priority)
        self.interface.open()
        self.worker = Worker(self.multicamera, self.inbox, self.pipelines, self.gate, settings=lambda: self.settings,
                             logger=self.get_logger(), stopping=self.stopping)
        self._catch_up()
        if self.enabled:
            for pipe in self.pipelines.values():
                pipe.subscribe()
        self.inbox.put_call(self.worker.publish_label_info)  # after the catch-up: the class map in effect
        self._opened = {k: v - before[k] for k, v in self._entities().items()}

    def _catch_up(self) -> None:
        """Run-time settings changed since the model was loaded (or last ran) reach the worker first."""
        runtime = (*RUNTIME_SETTINGS, *SCHEDULE_SETTINGS)
        current = self.segmenter.config.flat()
        changes = {k: v for k, v in self.accepted.flat().items() if k in runtime and current.get(k) != v}
        if changes:
            self.inbox.put_changes(changes)

    def close(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Stop the worker (the frame in flight ends between adaptation steps) and the adaptation
        threads, destroy what :meth:`open` created; False if the worker did not end in time."""
        self.stopping.set()
        if self.inbox is not None:
            for name, waiting in self.inbox.close().items():
                if waiting:
                    self.pipelines[name].counters.drop("inactive")
                    if self.multicamera is not None:
                        self.multicamera.priority.frame_left(name)
        if self.worker is not None and not self.worker.join(timeout):
            return False
        if self.multicamera is not None:
            self.multicamera.close()  # the adaptation threads (async) stop at their next step
        with self.entities_lock:
            self._destroy_opened()
            self.multicamera = self.inbox = self.worker = None
        return True

    def _entities(self) -> dict[str, set]:
        return {"publishers": set(self.publishers), "subscriptions": set(self.subscriptions),
                "services": set(self.services), "timers": set(self.timers)}

    def _destroy_opened(self) -> None:
        for pipe in self.pipelines.values():
            pipe.unsubscribe()
            pipe.close()
        opened, self._opened = self._opened, None
        if opened is None:
            return
        destroy = {"subscriptions": self.destroy_subscription, "timers": self.destroy_timer,
                   "services": self.destroy_service, "publishers": self.destroy_publisher}
        for kind, entities in opened.items():
            for entity in entities:
                destroy[kind](entity)

    def free(self) -> None:
        """Drop every reference to the model and give its memory back (CUDA cache, malloc arenas)."""
        if self.segmenter is None:
            return
        device = self.segmenter.device
        self.segmenter = None
        gc.collect()
        if getattr(device, "type", "") == "cuda":
            import torch

            torch.cuda.empty_cache()
        release_heap()
        self.get_logger().info("cleaned up: the model is freed")

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """The command line's stop (a signal or a shutdown): whatever runs stops; False if the frame in
        progress did not stop in time."""
        return self.close(timeout)

    def _before_step(self) -> None:
        """The segmenter calls this before every adaptation step: stop here when the node stops."""
        delay = self.settings.step_delay  # tests only (dev.step_delay): a slow frame on any machine
        if delay > 0:
            self.stopping.wait(delay)
        if self.stopping.is_set():
            raise AdaptationCancelled("the node is stopping")

    def release_memory(self) -> None:
        """On the worker (~/enable false): drop cached tensors so the accelerator's working memory goes back."""
        gc.collect()
        device = self.segmenter.device if self.segmenter is not None else None
        if getattr(device, "type", "") == "cuda":
            import torch

            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()


def release_heap() -> None:
    """Give freed heap memory back to the system (glibc's malloc_trim; a no-op elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass

