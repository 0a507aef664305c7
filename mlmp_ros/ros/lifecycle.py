"""The managed node: :class:`SegmentNode` on ``rclpy.lifecycle``, for a lifecycle manager
(Nav2's ``lifecycle_manager``, ``ros2 lifecycle set``).

- configure: load the model and the text bank (a start-up problem fails the transition, with its
  reason logged);
- activate: publishers, services, the camera subscriptions, diagnostics and the worker;
- deactivate: all of those stopped and destroyed; the model stays loaded;
- cleanup: the model freed (and the accelerator's cached memory);
- shutdown: from any state, whatever is running stops.

``autostart: true`` (the default) configures and activates at start-up, as the node always did;
``false`` waits for ``~/change_state``.  ``~/enable`` stays the lighter switch (subscription only).
Needs ``lifecycle_msgs`` (``pip install ros-lifecycle-msgs``; part of every ROS 2 install).
"""

from __future__ import annotations

import gc
from typing import Any

from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn

from ..core import Segmenter
from ..core.schedule import STREAM_SETTINGS
from ..core.segmenter import RUNTIME_SETTINGS
from ..core.threads import in_passing_thread
from .cli import STARTUP_ERRORS
from .node import SegmentNode
from .worker import WorkQueue

_RUNTIME = (*RUNTIME_SETTINGS, *STREAM_SETTINGS)


class ManagedSegmentNode(LifecycleNodeMixin, SegmentNode):
    """See the module docs.  The entities :meth:`SegmentNode.start` creates are found by
    difference (what the node has after it, less what it had before), so the single- and
    multi-camera nodes need no bookkeeping of their own for deactivation."""

    MANAGED = True

    def __init__(self, **kwargs: Any) -> None:
        SegmentNode.__init__(self, **kwargs)
        LifecycleNodeMixin.__init__(self, enable_communication_interface=True)
        self.loaded: Segmenter | None = None  # the model between configure and cleanup
        self.failure: BaseException | None = None  # why the last transition failed
        self._baseline: dict[str, set] | None = None

    # ------------------------------------------------------------ start-up
    def start(self, segmenter: Segmenter | None = None) -> None:
        """``autostart``: configure and activate now (a failure raises its reason, as the plain node does)."""
        if segmenter is not None:
            self.loaded = segmenter
        if not self.settings.autostart:
            self.get_logger().info("autostart is false: waiting for a lifecycle manager (~/change_state)")
            return
        for trigger in (self.trigger_configure, self.trigger_activate):
            if trigger() != TransitionCallbackReturn.SUCCESS:
                raise self.failure or RuntimeError(f"{trigger.__name__} failed")

    def _entities(self) -> dict[str, set]:
        return {"publishers": set(self.publishers), "subscriptions": set(self.subscriptions),
                "services": set(self.services), "timers": set(self.timers), "clients": set(self.clients)}

    # ---------------------------------------------------------- transitions
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.loaded is None:
            cfg = self.accepted
            self.get_logger().info(f"configuring: loading {cfg.model} (weights: {cfg.weights}, device: {cfg.device})")
            try:
                self.loaded = in_passing_thread(Segmenter, cfg)  # the executor thread keeps no torch pool
            except STARTUP_ERRORS as exc:
                self.failure = exc
                self.get_logger().error(f"configure failed: {' '.join(str(exc).split())}")
                return TransitionCallbackReturn.FAILURE
        self.failure = None
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._activate()
        except Exception as exc:  # noqa: BLE001 - rclpy would swallow it silently: say why, fail the transition
            self.failure = exc
            self.get_logger().error(f"activate failed: {type(exc).__name__}: {exc}")
            self._close()
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def _activate(self) -> None:
        if self.loaded is None:
            raise RuntimeError("not configured")
        try:
            self.remove_on_set_parameters_callback(self._on_set_parameters)  # start() adds it again
        except ValueError:
            pass
        self._work = WorkQueue()
        self._stopping.clear()
        self._baseline = self._entities()
        SegmentNode.start(self, self.loaded)
        self._catch_up()

    def _catch_up(self) -> None:
        """Run-time parameters changed while inactive reach the worker now."""
        current = self.loaded.config.flat()
        changes = {k: v for k, v in self.accepted.flat().items() if k in _RUNTIME and current.get(k) != v}
        if changes:
            self._work.put_changes(changes)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._close()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._free()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._close()
        self._free()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._close()
        self._free()
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured

    # -------------------------------------------------------------- helpers
    def _close(self) -> None:
        """Stop the worker and destroy what activation created (the parameter callback stays:
        changes made while inactive are validated and applied on the next activation)."""
        if self._baseline is None:
            return
        if not SegmentNode.stop(self):
            self.get_logger().warning("the frame in progress did not stop in time; deactivating anyway")
        now, before = self._entities(), self._baseline
        for entity in now["subscriptions"] - before["subscriptions"]:
            self.destroy_subscription(entity)
        for entity in now["timers"] - before["timers"]:
            self.destroy_timer(entity)
        for entity in now["services"] - before["services"]:
            self.destroy_service(entity)
        for entity in now["clients"] - before["clients"]:
            self.destroy_client(entity)
        for entity in now["publishers"] - before["publishers"]:
            self.destroy_publisher(entity)
        self._subscription = None
        self._hub = None
        self._baseline = None
        self.get_logger().info("deactivated: no subscriptions, no worker; the model stays loaded")

    def _free(self) -> None:
        """Drop every reference to the model; on CUDA give the cached memory back."""
        if self.loaded is None:
            return
        device = self.loaded.device
        self.loaded = self.segmenter = self.stream = None
        self._colours = None
        gc.collect()
        if getattr(device, "type", "") == "cuda":
            import torch

            torch.cuda.empty_cache()
        self.get_logger().info("cleaned up: the model is freed")

    def stop(self, timeout: float | None = None) -> bool:
        """The command line's stop (a signal): whatever is running stops, in any state."""
        return SegmentNode.stop(self) if timeout is None else SegmentNode.stop(self, timeout)
