"""The node's services and parameter checks, in the test process (no subprocess: these are
callbacks and their replies; start-up, signals and exit codes are tested on real processes)."""

from __future__ import annotations

import os

import pytest
from std_srvs.srv import SetBool, Trigger

from .ros_helpers import in_process_node


@pytest.fixture(scope="module")
def inproc():
    with in_process_node(f"/inproc_{os.getpid()}", {"adaptaton.lr": 0.1}) as running:
        yield running


def test_bad_run_time_parameters_are_refused_with_the_setting_named(inproc):
    before = inproc.node.get_parameter("adaptation.steps").value
    steps, mode, model = inproc.set_parameters({"adaptation.steps": -1, "adaptation.mode": "sometimes",
                                                "model": "ViT-B-32"})  # fmt: skip
    # the parameter service sets each one on its own: each is refused with its own reason
    assert not steps.successful and "adaptation.steps" in steps.reason
    assert not mode.successful and "adaptation.mode" in mode.reason
    assert not model.successful
    assert inproc.node.get_parameter("adaptation.steps").value == before
    assert inproc.node.accepted.adaptation.steps == before
    assert inproc.node.get_parameter("model").value == "mlmp-tiny-test"


def test_reset_service_resets_on_the_worker(inproc):
    before = inproc.node.segmenter.status().resets
    reply = inproc.call(Trigger, "~/reset", Trigger.Request())
    assert reply.success, reply.message
    assert inproc.node.segmenter.status().resets == before + 1


def test_enable_service_unsubscribes_and_subscribes_again(inproc):
    try:
        off = inproc.call(SetBool, "~/enable", SetBool.Request(data=False))
        pipe = inproc.node.pipelines[""]
        assert off.success and not inproc.node.enabled and pipe.subscription is None
        again = inproc.call(SetBool, "~/enable", SetBool.Request(data=False))
        assert again.success and not inproc.node.enabled  # idempotent
    finally:
        on = inproc.call(SetBool, "~/enable", SetBool.Request(data=True))
    assert on.success and inproc.node.enabled and inproc.node.pipelines[""].subscription is not None


def test_unknown_overrides_are_kept_as_data(inproc):
    assert inproc.node.unknown_parameters == ("adaptaton.lr",)
