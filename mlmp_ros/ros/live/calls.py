"""Calls to the node's services and parameters (a part of :class:`~mlmp_ros.ros.live.LiveSession`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import SetParametersResult
from rcl_interfaces.srv import GetParameters, SetParameters
from std_srvs.srv import Trigger

from .parameters import parameter_value, python_value


class SessionTimeout(TimeoutError):
    """Something the session waited for did not happen in time."""


class NodeCalls:
    """Service and parameter calls; mixed into LiveSession (uses its rclpy node, node process and name)."""

    def _call(self, srv_type: type, name: str, request: Any, timeout: float) -> Any:
        client = self.ros.create_client(srv_type, name)
        try:
            deadline = time.monotonic() + timeout
            while not client.wait_for_service(timeout_sec=0.2):
                if self.node is not None:
                    self.node.check()
                if time.monotonic() > deadline:
                    raise SessionTimeout(f"service {name} is not available")
            future = client.call_async(request)
            done = threading.Event()
            future.add_done_callback(lambda _: done.set())
            while not done.wait(0.2):
                if self.node is not None:
                    self.node.check()
                if time.monotonic() > deadline:
                    raise SessionTimeout(f"service {name} did not answer within {timeout:.0f} s")
            return future.result()
        finally:
            self.ros.destroy_client(client)

    def set_parameters(self, values: Mapping[str, Any], timeout: float = 30.0) -> list[SetParametersResult]:
        """Set the node's parameters through its parameter service; one result per parameter."""
        request = SetParameters.Request(parameters=[ParameterMsg(name=k, value=parameter_value(v)) for k, v in values.items()])
        return list(self._call(SetParameters, f"{self.node_fqn}/set_parameters", request, timeout).results)

    def get_parameters(self, names: Sequence[str], timeout: float = 30.0) -> dict[str, Any]:
        """The node's current values of ``names`` (plain Python values)."""
        request = GetParameters.Request(names=list(names))
        response = self._call(GetParameters, f"{self.node_fqn}/get_parameters", request, timeout)
        return {name: python_value(value) for name, value in zip(names, response.values)}

    def reset(self, timeout: float = 120.0) -> Trigger.Response:
        """Call the node's ``~/reset``: adapted weights back to the source weights."""
        return self._call(Trigger, f"{self.node_fqn}/reset", Trigger.Request(), timeout)
