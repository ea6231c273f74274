"""The MQTT outbox: bounded, never blocking, dropping states first, then events, keeping event ends."""

import logging
import threading
import time

import pytest

from nvr_cli.mqtt.outbox import Message, Outbox


def drain(box):
    out = []
    while (m := box.get(timeout=0)) is not None:
        out.append(m.payload)
    return out


def test_full_drops_oldest_states_first_then_events_and_keeps_ends():
    box = Outbox(max_messages=4)
    box.put(Message("t/s1", "s1"))
    box.put(Message("t/e1", "e1", kind="event"))
    box.put(Message("t/end1", "end1", kind="end"))
    box.put(Message("t/s2", "s2"))
    assert box.dropped == 0
    box.put(Message("t/e2", "e2", kind="event"))  # s1 goes
    box.put(Message("t/e3", "e3", kind="event"))  # s2 goes
    assert box.dropped == 2
    box.put(Message("t/e4", "e4", kind="event"))  # no state left: the oldest event, e1
    assert box.dropped == 3
    box.put(Message("t/s3", "s3"))  # the newest state is the only state: it goes itself
    assert box.dropped == 4 and len(box) == 4
    assert drain(box) == ["end1", "e2", "e3", "e4"]


def test_ends_are_kept_beyond_the_queue_up_to_their_own_cap(caplog):
    box = Outbox(max_messages=3, max_ends=5)
    for i in range(5):
        box.put(Message("t/events", f"end{i}", kind="end"))
    box.put(Message("t/motion", "ON", retain=True))
    box.put(Message("t/events", "new", kind="event"))
    assert len(box) == 5 and box.dropped == 2  # ends fill the queue: the state and the event go
    with caplog.at_level(logging.WARNING, logger="nvr_cli.mqtt"):
        box.put(Message("t/events", "end5", kind="end"))
        box.put(Message("t/events", "end6", kind="end"))
    assert box.dropped == 4 and box.ends_dropped == 2
    assert drain(box) == [f"end{i}" for i in range(2, 7)]  # the oldest ends went
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "event ends" in warnings[0].getMessage()  # not one line per end


def test_a_retained_state_replaces_the_queued_one_of_its_topic():
    box = Outbox(max_messages=10)
    box.put(Message("t/motion", "ON", retain=True))
    box.put(Message("t/events", "new", kind="event"))
    box.put(Message("t/count", "1", retain=True))
    box.put(Message("t/motion", "OFF", retain=True))  # replaces ON: removed, appended
    box.put(Message("t/qr", "a"))  # not retained: every one is kept
    box.put(Message("t/qr", "b"))
    assert box.dropped == 0  # replaced is not lost: the topic gets its latest value
    assert drain(box) == ["new", "1", "OFF", "a", "b"]


def test_put_never_blocks_and_the_queue_stays_bounded():
    box = Outbox(max_messages=100)
    t0 = time.monotonic()
    for i in range(50000):
        box.put(Message(f"t/{i}", b"x", kind="event" if i % 2 else "state"))
    assert time.monotonic() - t0 < 10  # O(1) a put (a loose sanity bound, not a benchmark)
    assert len(box) == 100 and box.dropped == 50000 - 100


def test_many_replacements_do_not_grow_memory():
    box = Outbox(max_messages=100)
    for i in range(100000):
        box.put(Message("t/count", str(i), retain=True))
    assert len(box) == 1
    assert sum(len(d) for d in box._order.values()) < 3000  # the replaced ones' entries are compacted
    assert drain(box) == ["99999"]


def test_put_back_goes_first_and_drops_nothing():
    box = Outbox(max_messages=3)
    for p in ("a", "b", "c"):
        box.put(Message("t/events", p, kind="event"))
    first, second = box.get(timeout=0), box.get(timeout=0)
    box.put(Message("t/events", "d", kind="event"))
    box.put(Message("t/events", "e", kind="event"))
    box.put_back(second)  # in reverse: the original order is back
    box.put_back(first)
    assert box.dropped == 0 and len(box) == 5
    assert drain(box) == ["a", "b", "c", "d", "e"]


def test_put_back_of_a_superseded_retained_state_is_discarded():
    box = Outbox()
    box.put(Message("t/motion", "ON", retain=True))
    taken = box.get(timeout=0)
    box.put(Message("t/motion", "OFF", retain=True))
    box.put_back(taken)  # not delivered, but OFF is newer: ON must not reach the broker after it
    assert box.dropped == 0 and drain(box) == ["OFF"]


def test_get_waits_for_a_put_and_times_out_empty():
    box = Outbox()
    t0 = time.monotonic()
    assert box.get(timeout=0.1) is None
    assert time.monotonic() - t0 >= 0.09
    threading.Timer(0.2, box.put, [Message("t/x", "late")]).start()
    assert box.get(timeout=30).payload == "late"


def test_wait_waits_for_a_message_and_takes_none():
    box = Outbox()
    assert box.wait(timeout=0.05) is False
    threading.Timer(0.2, box.put, [Message("t/x", "late")]).start()
    assert box.wait(timeout=30) is True
    assert box.wait(timeout=0) is True and len(box) == 1  # still there: wait takes nothing
    assert box.get(timeout=0).payload == "late"


def test_message_kind_is_checked():
    with pytest.raises(ValueError):
        Message("t/x", "y", kind="urgent")


def test_concurrent_producers_and_a_consumer_lose_nothing_unaccounted():
    box = Outbox(max_messages=200)
    producers, each = 4, 5000
    got: list = []
    done = threading.Event()

    def produce(n):
        for i in range(each):
            box.put(Message("t/events", (n, i), kind="event"))

    def consume():
        while not done.is_set() or len(box):
            m = box.get(timeout=0.01)
            if m is not None:
                got.append(m.payload)

    consumer = threading.Thread(target=consume)
    consumer.start()
    threads = [threading.Thread(target=produce, args=(n,)) for n in range(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    consumer.join(60)
    assert len(got) + box.dropped == producers * each and len(box) == 0
    for n in range(producers):  # each producer's messages come out in its order
        mine = [i for p, i in got if p == n]
        assert mine == sorted(mine)
