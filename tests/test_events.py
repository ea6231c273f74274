"""Pre-alarm buffer and event logic: frames in, clip calls out (a list stands in for the writer)."""

import numpy as np
import pytest

from nvr_cli.analysis.motion import MotionResult
from nvr_cli.config import Settings
from nvr_cli.core.frames import Frame
from nvr_cli.events.controller import EventController
from nvr_cli.events.prealarm import PreAlarmBuffer

FPS = 10


class ListSink:
    def __init__(self):
        self.clips = []  # each: {"frames": [index...], "keep": bool, "reason": str, "trigger": ts}

    def open(self, event, frames):
        self.clips.append({"frames": [f.index for f in frames], "keep": None, "trigger": event.trigger_ts})

    def write(self, frame):
        self.clips[-1]["frames"].append(frame.index)

    def close(self, event, keep, reason):
        self.clips[-1].update(keep=keep, reason=reason)


def drive(settings, motion_at, seconds, sink=None):
    """motion_at(t) -> bool; one tiny frame every 1/FPS s."""
    sink = sink or ListSink()
    ctl = EventController(settings.events, sink)
    ctl.connected(0.0)
    img = np.zeros((4, 4, 3), np.uint8)
    for i in range(int(seconds * FPS)):
        t = i / FPS
        m = motion_at(t)
        ctl.step(
            Frame(img, t, i),
            MotionResult(score=0.1 if m else 0.0, boxes=[(0, 0, 2, 2)] if m else [], motion=m),
        )
    ctl.finish("end")
    return sink, ctl


BASE = dict(
    INITIAL_WAIT_INTERVAL_BEFORE_MOTION_DETECTION_SECS=0,
    PRE_ALARM_RECORDING_SECONDS=2,
    MINIMAL_MOTION_DURATION=1,
    POST_CAPTURE_SECONDS=1,
    MOTION_TRIGGER_FRAMES=3,
)


def test_pre_alarm_prolongation_and_post_capture():
    s = Settings(**BASE)
    sink, _ = drive(s, lambda t: 5.0 <= t < 6.0 or 6.5 <= t < 7.0, 15)
    assert len(sink.clips) == 1
    clip = sink.clips[0]
    assert clip["keep"] and clip["reason"] == "motion ended"
    trigger_index = round(clip["trigger"] * FPS)
    assert trigger_index == 52  # third consecutive motion frame
    assert clip["frames"][0] <= trigger_index - 2 * FPS  # at least the pre-alarm seconds
    assert clip["frames"][0] >= trigger_index - 2 * FPS - 1
    # the motion at 6.5-6.9 prolonged it: last motion 6.9 + 1 + 1 = 8.9
    assert clip["frames"][-1] == 89
    assert clip["frames"] == list(range(clip["frames"][0], 90))  # no frame lost or repeated


def test_two_separate_events_and_single_frame_noise_ignored():
    s = Settings(**BASE)
    noise = {20, 40, 41}  # never three in a row
    sink, _ = drive(s, lambda t: round(t * FPS) in noise or 6 <= t < 7 or 12 <= t < 13, 20)
    assert len(sink.clips) == 2
    assert sink.clips[0]["frames"][-1] < sink.clips[1]["frames"][0]


def test_initial_wait_ignores_motion():
    s = Settings(**{**BASE, "INITIAL_WAIT_INTERVAL_BEFORE_MOTION_DETECTION_SECS": 3})
    sink, _ = drive(s, lambda t: t < 2.5, 6)
    assert sink.clips == []


def test_short_events_are_dropped_and_counted():
    s = Settings(**{**BASE, "MIN_EVENT_SECONDS": 1.0})
    sink, ctl = drive(s, lambda t: 5.0 <= t < 5.5 or 10 <= t < 12, 16)
    assert [c["keep"] for c in sink.clips] == [False, True]
    assert ctl.dropped_events == 1


def test_long_event_splits_without_losing_or_repeating_frames():
    s = Settings(**{**BASE, "MAX_CLIP_SECONDS": 3})
    sink, _ = drive(s, lambda t: 3 <= t < 12, 16)
    assert len(sink.clips) >= 3
    joined = [i for c in sink.clips for i in c["frames"]]
    assert joined == list(range(joined[0], joined[-1] + 1))
    assert all(c["keep"] for c in sink.clips)
    assert [c["reason"] for c in sink.clips][:-1] == ["maximum clip length"] * (len(sink.clips) - 1)


def test_finish_closes_the_open_clip():
    s = Settings(**BASE)
    sink, _ = drive(s, lambda t: t >= 3, 6)
    assert sink.clips[-1]["reason"] == "end" and sink.clips[-1]["keep"]


def frame(ts, nbytes=100):
    return Frame(np.zeros(nbytes, np.uint8), ts, int(ts * FPS))


def test_buffer_bounded_by_time_spans_at_least_the_setting():
    b = PreAlarmBuffer(2.0, 100)
    for i in range(100):
        b.push(frame(i / FPS))
    assert b.span >= 2.0 and b.span < 2.0 + 1.5 / FPS


def test_buffer_bounded_by_memory(caplog):
    b = PreAlarmBuffer(10.0, 1)  # 1 MB
    for i in range(100):
        b.push(frame(i / FPS, nbytes=100_000))
    assert b.nbytes <= 1024 * 1024 and len(b) == 10
    assert "bounded by memory" in caplog.text


def test_zero_pre_alarm_keeps_nothing():
    b = PreAlarmBuffer(0, 10)
    b.push(frame(0))
    assert len(b) == 0


@pytest.mark.parametrize("secs", [0.5, 1, 3])
def test_pre_alarm_seconds_setting(secs):
    s = Settings(**{**BASE, "PRE_ALARM_RECORDING_SECONDS": secs})
    sink, _ = drive(s, lambda t: 6 <= t < 7, 10)
    first, trig = sink.clips[0]["frames"][0], round(sink.clips[0]["trigger"] * FPS)
    assert trig - first >= secs * FPS


def test_a_burst_after_connecting_does_not_speed_up_the_clip():
    """Frames read in a burst right after a connect look like a faster camera; a camera that truly
    sends fewer frames than it claims is believed."""
    from nvr_cli.output.sinks import ClipSink, SourceInfo

    sink = ClipSink.for_camera(Settings(), ffmpeg=None)
    sink.set_source(SourceInfo("cam", (64, 48), 25.0, True))
    burst = [Frame(None, 1000 + i / 35, i) for i in range(40)]
    slow = [Frame(None, 1000 + i / 10, i) for i in range(40)]
    assert sink._clip_fps(burst) == 25.0
    assert sink._clip_fps(slow) == pytest.approx(10.0)
