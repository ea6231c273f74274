"""Object tracks: detections followed from look to look; more than one frame confirms an event, a
stationary object never does. Synthetic detections here; the real model on real footage in
test_objects.py."""

import numpy as np

from nvr_cli.analysis.motion import MotionResult
from nvr_cli.analysis.object_tracks import PATH_POINTS, ObjectTracker
from nvr_cli.analysis.objects import Detection
from nvr_cli.config import Settings
from nvr_cli.core.frames import Frame
from nvr_cli.events.controller import EventController

LOOK = 0.25  # OBJECT_MAX_RATE = 4: a look every quarter second at most


def follow(looks, **settings):
    """``looks``: [(ts, [Detection, ...]), ...] -> the tracker and each look's sightings."""
    tracker = ObjectTracker(Settings(**settings).objects)
    return tracker, [tracker.update(ts, dets) for ts, dets in looks]


def walker(scores, x0=100, step=12, label="person", t0=0.0, y=50):
    """A person walking right, one detection per look with these scores."""
    return [(t0 + i * LOOK, [Detection(label, s, (x0 + i * step, y, 60, 150))]) for i, s in enumerate(scores)]


def test_the_median_of_at_least_three_detections_confirms():
    _, seen = follow(walker([0.51, 0.4, 0.45]))
    assert len({s.track.id for look in seen for s in look}) == 1  # one track, never confirmed
    assert not any(s.confirmed for look in seen for s in look)
    _, seen = follow(walker([0.9, 0.6, 0.8]))
    assert [look[0].confirmed for look in seen] == [False, False, True]  # median 0.8, on the third
    assert seen[-1][0].counts and seen[-1][0].track.median_score == 0.8
    _, seen = follow(walker([0.95, 0.99]))
    assert not any(s.confirmed for look in seen for s in look)  # two are never enough
    # a lone 0.51 among high scores: the median decides, not the best or the worst
    _, seen = follow(walker([0.51, 0.9, 0.85, 0.52, 0.8]))
    assert seen[-1][0].confirmed and seen[2][0].confirmed
    # confirmed, it stays so and its median_score says why: the highest median once it had three
    _, seen = follow(walker([0.9, 0.8, 0.85] + [0.5] * 12))
    assert seen[-1][0].confirmed and seen[-1][0].track.median_score == 0.85
    assert seen[-1][0].track.scores == [0.5] * 10
    # the settings and a label's own confirm_score
    _, seen = follow(walker([0.9, 0.6, 0.8]), OBJECT_CONFIRM_DETECTIONS=4)
    assert not seen[-1][0].confirmed
    _, seen = follow(walker([0.9, 0.6, 0.8]), OBJECT_LABEL_OVERRIDES={"person": {"confirm_score": 0.85}})
    assert not seen[-1][0].confirmed
    _, seen = follow(
        walker([0.9, 0.6, 0.8], label="car"), OBJECT_LABEL_OVERRIDES={"person": {"confirm_score": 0.85}}
    )
    assert seen[-1][0].confirmed


def test_two_people_far_apart_are_two_tracks_and_labels_never_mix():
    a = walker([0.9, 0.8, 0.85, 0.9], x0=50)
    b = walker([0.6, 0.65, 0.6, 0.62], x0=500)
    car = walker([0.9, 0.9, 0.9, 0.9], x0=50, label="car")  # where person a walks
    looks = [(ta, da + db + dc) for (ta, da), (_, db), (_, dc) in zip(a, b, car)]
    tracker, seen = follow(looks)
    assert len(tracker.tracks) == 3
    by_x = {}
    for look in seen:
        for s in look:
            by_x.setdefault((s.track.label, s.detection.box[0] < 300), set()).add(s.track.id)
    assert all(len(ids) == 1 for ids in by_x.values()) and len(by_x) == 3
    person_a, person_b = (next(s.track for s in seen[-1] if s.detection is d) for d in looks[-1][1][:2])
    assert person_a.confirmed and not person_b.confirmed  # each track has its own scores
    assert person_a.detections == person_b.detections == 4


def test_a_gap_ends_a_track_and_a_slow_look_keeps_it():
    looks = walker([0.9, 0.9]) + walker([0.9], x0=124, t0=0.25 + 6.0)  # 6 s later, where it was
    tracker, seen = follow(looks)
    assert seen[0][0].track is not seen[2][0].track  # OBJECT_TRACK_MAX_GAP_SECONDS = 5
    # a look every 4 s (DETECT_EVERY_SECONDS): the gap is at least two of them
    tracker, seen = follow(looks, DETECT_EVERY_SECONDS=4)
    assert seen[0][0].track is seen[2][0].track and seen[2][0].confirmed


def test_a_box_that_stays_in_place_becomes_stationary_and_confirms_nothing():
    # a parked car seen every second for 30 s, high scores, its box jittering by a few pixels
    rng = np.random.default_rng(1)
    looks = [
        (float(t), [Detection("car", 0.9, (400 + int(rng.integers(-4, 5)), 200, 160, 90))]) for t in range(31)
    ]
    tracker, seen = follow(looks, DETECT_EVERY_SECONDS=1)
    flags = [(look[0].confirmed, look[0].stationary) for look in seen]
    assert len({look[0].track.id for look in seen}) == 1
    assert flags[2] == (True, False)  # confirmed before it has stood still for 10 s
    assert all(f == (True, True) for f in flags[10:]) and not any(f[1] for f in flags[:10])
    assert not any(look[0].counts for look in seen[10:])
    track = seen[-1][0].track
    assert len(track.path) == 2 and track.path[0][0] == 0.0 and track.path[-1][0] == 30.0  # first, newest
    # it drives off: moving again, it counts
    off = [(31 + i * LOOK, [Detection("car", 0.9, (400 + 60 * (i + 1), 200, 160, 90))]) for i in range(3)]
    after = [tracker.update(ts, dets)[0] for ts, dets in off]
    assert after[0].track is track and all(s.counts for s in after)
    # OBJECT_STATIONARY_SECONDS = 0: nothing is stationary
    _, seen = follow(looks, DETECT_EVERY_SECONDS=1, OBJECT_STATIONARY_SECONDS=0)
    assert not any(look[0].stationary for look in seen)


def test_the_path_is_thinned_and_bounded():
    tracker, seen = follow(walker([0.8] * 1000, step=1))  # a slow walker: a pixel a look
    track = seen[-1][0].track
    assert track.detections == 1000 and len(track.scores) == 10
    assert 2 < len(track.path) <= PATH_POINTS
    assert track.path[0][:2] == [0.0, 100] and track.path[-1][:2] == [999 * LOOK, 1099]
    assert [p[0] for p in track.path] == sorted(p[0] for p in track.path)


# --- the event controller with tracks -------------------------------------------------------------

FPS = 8


def run_events(looks_at, seconds, motion=(2, 8), **settings):
    """Motion from ``motion[0]`` to ``motion[1]`` s; ``looks_at(ts) -> [Detection]`` at 4 looks a second.
    The events closed: [(event, keep)]."""
    s = Settings(
        INITIAL_WAIT_INTERVAL_BEFORE_MOTION_DETECTION_SECS=0,
        PRE_ALARM_RECORDING_SECONDS=2,
        MINIMAL_MOTION_DURATION=1,
        POST_CAPTURE_SECONDS=0,
        MOTION_TRIGGER_FRAMES=2,
        **settings,
    )
    closed = []

    class Sink:
        def open(self, event, frames):
            pass

        def write(self, frame):
            pass

        def close(self, event, keep, reason):
            closed.append((event, keep))

    ctl = EventController(s.events, Sink(), require_object=True)
    tracker = ObjectTracker(s.objects)
    ctl.connected(0.0)
    img = np.zeros((4, 4, 3), np.uint8)
    for i in range(int(seconds * FPS)):
        t = i / FPS
        m = motion[0] <= t < motion[1]
        result = MotionResult(score=0.1 if m else 0, boxes=[(0, 0, 2, 2)] if m else [], motion=m)
        ctl.step(Frame(img, t, i), result, tracker.update(t, looks_at(t)) if i % 2 == 0 else None)
    ctl.finish("end")
    return closed


def test_require_keeps_only_events_a_moving_confirmed_track_confirmed():
    def once(t):  # the tree trunk: one 0.51 "person", then nothing
        return [Detection("person", 0.51, (10, 10, 50, 150))] if t == 4.0 else []

    ((ev, keep),) = run_events(once, 12)
    assert not keep and ev.objects == {} and len(ev.tracks) == 1 and ev.best_object is None

    def person(t):  # someone walks through from 3 s to 6 s
        return [Detection("person", 0.8, (int(100 + 40 * t), 50, 60, 150))] if 3 <= t < 6 else []

    ((ev, keep),) = run_events(lambda t: person(t) + once(t), 12)
    assert keep and list(ev.objects) == ["person"] and ev.objects["person"].first_seen == 3.0
    summaries = [t.summary() for t in ev.tracks.values()]
    assert len(summaries) == 2
    walked = next(x for x in summaries if x.confirmed)
    assert walked.detections == 12 and not walked.stationary and walked.path
    _, dets = ev.best_object
    assert [d.score for d in dets] == [0.8]  # the thumbnail shows the confirmed person, not the trunk
    assert [t.view is not None for t in ev.tracks.values()].count(
        True
    ) == 1  # one frame held, not one a track


def test_a_stationary_object_is_listed_but_confirms_nothing():
    def parked(t):  # a car in place from the start, looked at all along
        return [Detection("car", 0.9, (300, 100, 160, 90))]

    cars = dict(OBJECT_LABELS_OF_INTEREST=["car"])
    ((ev, keep),) = run_events(parked, 24, motion=(14, 18), **cars)  # a moth at 14 s
    (summary,) = [t.summary() for t in ev.tracks.values()]
    assert not keep and summary.confirmed and summary.stationary and list(ev.objects) == ["car"]

    def leaving(t):  # the same car drives off at 15 s
        x = 300 if t < 15 else int(300 + 80 * (t - 14))
        return [Detection("car", 0.9, (x, 100, 160, 90))]

    ((ev, keep),) = run_events(leaving, 24, motion=(14, 18), **cars)
    (summary,) = [t.summary() for t in ev.tracks.values()]
    assert keep and summary.confirmed and not summary.stationary and summary.first_seen == 0.0


def test_a_track_seen_in_the_pre_alarm_confirms_the_event():
    def early(t):  # seen 0.5-1.5 s, before the motion that starts the event at 2 s
        return [Detection("person", 0.8, (int(100 + 40 * t), 50, 60, 150))] if 0.5 <= t < 1.5 else []

    ((ev, keep),) = run_events(early, 12)
    assert keep and ev.objects["person"].first_seen == 0.5
