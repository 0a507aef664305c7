"""The managed node: :class:`SegmentNode` on ``rclpy.lifecycle``, for a lifecycle manager
(Nav2's ``lifecycle_manager``, ``ros2 lifecycle set``), with one camera or several alike.

- configure: load the model and the text bank from the parameters in effect (a start-up problem
  fails the transition, with its reason logged);
- activate: every camera's topics, the services, diagnostics and the worker; run-time parameters
  set while inactive take effect first (a class change included: its labels follow);
- deactivate: all of those stopped and destroyed (frames waiting are counted as dropped); the model
  stays loaded; counters carry on at the next activation;
- cleanup: the model freed (its memory given back);
- shutdown, from any state: whatever runs stops, and the process ends (exit 0).

Parameters are checked when they are set, in every state (the node's parameter callback is there
from the start); ``get_parameters`` reports what runs, or what the next configure / activate uses.
A transition that does not exist from the current state is refused, and the log says why.

``autostart: true`` (the default) configures and activates at start-up; ``false`` waits for
``~/change_state``.  ``~/enable`` stays the lighter switch (subscriptions only).
Needs ``lifecycle_msgs`` (``pip install ros-lifecycle-msgs``; part of every ROS 2 install).
"""

from __future__ import annotations

import threading
from typing import Any

from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn

from ..core import Segmenter
from .cli import STARTUP_ERRORS
from .node import SegmentNode

SHUTDOWN_GRACE = 0.5  # seconds between a shutdown transition and the end of the process (its reply goes out)


class ManagedSegmentNode(LifecycleNodeMixin, SegmentNode):
    """See the module docs."""

    MANAGED = True

    def __init__(self, **kwargs: Any) -> None:
        SegmentNode.__init__(self, **kwargs)
        LifecycleNodeMixin.__init__(self, enable_communication_interface=True)
        self.failure: BaseException | None = None  # why the last transition failed
        self._given_segmenter: Segmenter | None = None  # handed to start() (tests): configure uses it

    # ------------------------------------------------------------ start-up
    def start(self, segmenter: Segmenter | None = None) -> None:
        """``autostart``: configure and activate now (a failure raises its reason, as the plain node does)."""
        self._given_segmenter = segmenter
        if not self.settings.autostart:
            self.get_logger().info("autostart is false: waiting for a lifecycle manager (~/change_state)")
            return
        for trigger in (self.trigger_configure, self.trigger_activate):
            if trigger() != TransitionCallbackReturn.SUCCESS:
                raise self.failure or RuntimeError(f"{trigger.__name__} failed")

    # ---------------------------------------------------------- transitions
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.segmenter is None:
            self.get_logger().info("configuring")
            try:
                self.load(self._given_segmenter)
            except STARTUP_ERRORS as exc:
                self.failure = exc
                self.get_logger().error(f"configure failed: {' '.join(str(exc).split())}")
                return TransitionCallbackReturn.FAILURE
            self._given_segmenter = None
        self.failure = None
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.open()
        except Exception as exc:  # noqa: BLE001 - rclpy would swallow it silently: say why, fail the transition
            self.failure = exc
            self.get_logger().error(f"activate failed: {type(exc).__name__}: {exc}")
            self.close()
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._close_or_warn()
        self.get_logger().info("deactivated: no subscriptions, no worker; the model stays loaded")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.free()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._close_or_warn()
        self.free()
        self.get_logger().info("shut down: the process ends")
        # The process ends once the transition's reply has gone out (cli.run waits for `finished`).
        threading.Timer(SHUTDOWN_GRACE, self._finish).start()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._close_or_warn()
        self.free()
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured

    def _finish(self) -> None:
        if not self.finished.done():
            self.finished.set_result(True)

    def _close_or_warn(self) -> None:
        if not self.close():
            self.get_logger().warning("the frame in progress did not stop in time; going on without it")

    # ---------------------------------------------- refused transitions
    def _LifecycleNodeMixin__on_change_state(self, request: Any, response: Any) -> Any:
        """rclpy's change_state handler, with a reason logged when the transition does not exist from the
        current state (the reply itself can only say ``success: false``)."""
        label = request.transition.label
        available = [t.transition.label for t in self._available_transitions()]
        if label and label not in available:
            state = self._state_machine.current_state[1]
            self.get_logger().warning(f"refused transition '{label}': the node is {state}; from there: "
                                      f"{', '.join(available) or 'none'}")
        return LifecycleNodeMixin._LifecycleNodeMixin__on_change_state(self, request, response)

    def _available_transitions(self) -> list:
        try:
            from lifecycle_msgs.srv import GetAvailableTransitions

            return self._LifecycleNodeMixin__on_get_available_transitions(
                GetAvailableTransitions.Request(), GetAvailableTransitions.Response()).available_transitions
        except Exception:  # noqa: BLE001 - an rclpy without it: no reason, the reply still says false
            return []
