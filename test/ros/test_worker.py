"""The node's worker in-process: an exception in one frame does not end it."""

from __future__ import annotations

import time

import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter

from mlmp_ros.core import Segmenter
from mlmp_ros.ros.conversions import array_to_image
from mlmp_ros.ros.inbox import ReceivedFrame
from mlmp_ros.ros.node import SegmentNode

from .ros_helpers import CLASSES, TINY, make_image, paper_parameters


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def node():
    context = rclpy.Context()
    rclpy.init(args=[], context=context)
    overrides = [Parameter(k, value=v) for k, v in {**paper_parameters(), **TINY, "classes": CLASSES,
                                                          "adaptation.steps": 1}.items()]
    node = SegmentNode(context=context, parameter_overrides=overrides)
    try:
        yield node
    finally:
        node.stop()
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def test_an_exception_in_a_frame_is_counted_and_the_next_frame_served(node):
    segmenter = Segmenter(node.accepted)
    real_segment = segmenter.segment
    calls = []

    def failing_once(images, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated failure inside the model")
        return real_segment(images, **kwargs)

    segmenter.segment = failing_once
    node.start(segmenter=segmenter)
    msg = array_to_image(make_image(64, 80), "rgb8")
    counters = node.pipelines[""].counters
    node.inbox.put_frame("", ReceivedFrame(msg, time.perf_counter()))
    wait_for(lambda: counters.drops["error"] == 1)
    assert "simulated failure" in counters.last_error
    node.inbox.put_frame("", ReceivedFrame(msg, time.perf_counter()))
    wait_for(lambda: counters.processed == 1)
    assert node.worker.thread.is_alive() and len(calls) == 2
    assert np.isfinite(counters.last_loss)
