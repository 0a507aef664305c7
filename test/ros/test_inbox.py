"""The worker's inbox (one newest-frame slot per camera, round robin, changes first) and the
per-camera frame accounting; no ROS graph needed."""

from __future__ import annotations

import threading

from sensor_msgs.msg import Image

from mlmp_ros.ros.counters import DROP_REASONS, Counters, SequenceGaps
from mlmp_ros.ros.inbox import Inbox, ReceivedFrame


def test_the_newest_frame_replaces_the_waiting_one_and_says_why():
    inbox = Inbox([""])
    frames = [ReceivedFrame(Image(), float(i)) for i in range(3)]
    assert [inbox.put_frame("", f) for f in frames] == [None, "replaced", "replaced"]
    assert inbox.get().frames == [("", frames[2])]
    inbox.holding = True  # the worker waits for input.max_rate_hz
    assert inbox.put_frame("", frames[0]) is None and inbox.put_frame("", frames[1]) == "rate_cap"


def test_changes_merge_and_come_before_the_frames():
    inbox = Inbox(["a", "b"])
    inbox.put_frame("a", ReceivedFrame(Image(), 0.0))
    inbox.put_changes({"adaptation.steps": 2})
    inbox.put_changes({"adaptation.steps": 3, "adaptation.lr": 0.1})
    request = inbox.put_reset("b")
    work = inbox.get()
    assert work.frames == [] and work.changes == {"adaptation.steps": 3, "adaptation.lr": 0.1}
    assert work.resets == [request] and request.camera == "b"
    assert inbox.get().frames[0][0] == "a"


def test_the_round_robin_serves_every_camera_before_any_twice():
    inbox = Inbox(["a", "b", "c"])
    for _ in range(3):  # a publishes far faster than the others: its slot keeps only the newest
        inbox.put_frame("a", ReceivedFrame("a", 0.0))
    inbox.put_frame("b", ReceivedFrame("b", 0.0))
    inbox.put_frame("c", ReceivedFrame("c", 0.0))
    served = [inbox.get(1).frames[0][0]]
    inbox.put_frame("a", ReceivedFrame("a", 1.0))
    served += [inbox.get(1).frames[0][0] for _ in range(3)]
    assert served == ["a", "b", "c", "a"]
    inbox.put_frame("b", ReceivedFrame("b", 2.0))
    inbox.put_frame("a", ReceivedFrame("a", 2.0))
    assert [name for name, _ in inbox.get(3).frames] == ["b", "a"]  # b is next after a


def test_closing_wakes_the_worker_answers_resets_and_hands_back_waiting_frames():
    inbox = Inbox(["a", "b"])
    got = []
    worker = threading.Thread(target=lambda: got.append(inbox.get()))
    worker.start()
    request = inbox.put_reset()
    worker.join(5)
    pending = inbox.put_reset()
    inbox.put_frame("b", ReceivedFrame(Image(), 0.0))
    assert inbox.close() == {"a": 0, "b": 1}
    assert got and got[0].resets == [request]
    assert pending.done.is_set() and not pending.ok and "shutting down" in pending.message
    assert inbox.get() is None
    assert inbox.put_frame("a", ReceivedFrame(Image(), 1.0)) == "inactive"  # arrives after the close: dropped
    late = inbox.put_reset()
    assert late.done.is_set() and not late.ok


def test_every_received_frame_is_processed_or_dropped_under_one_reason():
    c = Counters()
    c.frame_in(None)  # 1st waits
    c.frame_in("replaced")  # 2nd replaces the 1st
    c.frame_in("rate_cap")  # 3rd replaces the 2nd while the rate cap holds the worker
    c.drop("class_change")  # the 3rd is computed under a class list that was replaced
    for _ in range(3):
        c.frame_in(None)
    c.bad_frame("too big", "input.max_pixels")
    c.frame_error("boom")
    c.frame_done(latency=0.1, stamp_age=None, model=0.05, overhead={"total": 0.0}, took=0.1,
                 adaptation=(0, None, "ok"))
    snap = c.take_period()
    assert snap["received"] == 6 and snap["dropped"] == 5 and snap["processed"] == 1
    assert set(snap["drops"]) == set(DROP_REASONS)
    assert sum(snap["drops"].values()) == snap["dropped"]


def test_sequence_gaps_count_frames_lost_before_the_node_per_publisher():
    gaps = SequenceGaps()
    a, b = {"data": [1] * 16}, {"data": [2] * 16}
    seen = [gaps.gap({"publication_sequence_number": n, "publisher_gid": a}) for n in (1, 2, 5, 6)]
    assert seen == [0, 0, 2, 0] and gaps.available
    assert gaps.gap({"publication_sequence_number": 7, "publisher_gid": b}) == 0  # another publisher's first
    assert gaps.gap({"publication_sequence_number": 10, "publisher_gid": b}) == 2
    assert gaps.gap({"publication_sequence_number": 9, "publisher_gid": a}) == 2
    gaps.restart()  # subscribed anew: frames sent while the node did not listen are not lost
    assert gaps.gap({"publication_sequence_number": 20, "publisher_gid": a}) == 0
    assert gaps.gap({"publication_sequence_number": 22, "publisher_gid": a}) == 1
    none = SequenceGaps()
    assert none.gap({"publication_sequence_number": None}) == 0 and not none.available
