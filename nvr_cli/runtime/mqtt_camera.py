"""One camera on MQTT: what the recorder sees, as the topics of README "MQTT and Home Assistant" say.

The recorder calls in from three threads: the analysis thread (motion, objects, QR: only quick work
there, never a wait on the broker), the clip finisher (event news, in order, and the JPEGs), and the
status writer's tick (counters). Everything leaves through one MqttLink, whose bounded queue is
what a broker that is away or slow costs.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import nvr_cli
import nvr_cli.storage.paths as storage
from nvr_cli.config import MqttSettings, Settings
from nvr_cli.core.errors import StorageError
from nvr_cli.events.controller import Event
from nvr_cli.mqtt.discovery import camera_configs, node_id
from nvr_cli.mqtt.link import MqttLink
from nvr_cli.mqtt.topics import Topics
from nvr_cli.runtime.status import CameraStatus, status_dir

log = logging.getLogger(__name__)

# a detector misses a frame now and then: a count falls to 0 only after this long without a sighting,
# so an occupancy sensor does not flap
COUNT_HOLD_SECS = 5.0


def client_id(m: MqttSettings, camera: Optional[str] = None) -> str:
    """The MQTT client id: the service's (`run`), or one camera's (its recorder)."""
    base = m.MQTT_CLIENT_ID or f"nvr-cli-{socket.gethostname()}"
    return f"{base}-{camera}" if camera else base


def detect_state_path(s: Settings) -> Path:
    """Where a camera remembers that it was disarmed (MQTT detect/set), across restarts."""
    return status_dir(s) / f"{s.CAMERA_NAME}.detect.json"


def load_detecting(s: Settings) -> bool:
    try:
        return bool(json.loads(detect_state_path(s).read_text()).get("detect", True))
    except (OSError, ValueError, AttributeError):
        return True


def wanted_labels(s: Settings) -> tuple:
    """The labels a camera reports counts of: its wanted objects, when it has a detector."""
    if s.OBJECT_MODEL and s.OBJECT_CONFIRM != "off":
        return tuple(s.OBJECT_LABELS_OF_INTEREST)
    return ()


class CameraMqtt:
    """A camera's MQTT news; ``set_detecting`` arms (True) or disarms (False) its motion events."""

    def __init__(self, s: Settings, status: CameraStatus, set_detecting: Callable[[bool], None]):
        m = self.m = s.mqtt
        self.s = s
        self.status = status
        self.set_detecting = set_detecting
        self.topics = Topics(m.MQTT_TOPIC_PREFIX, s.CAMERA_NAME)
        self.labels = wanted_labels(s)
        # continuous-only recording analyses nothing: only its availability is published
        self.analysing = s.MOTION_DETECTION
        self.detecting = load_detecting(s)
        self._lock = threading.Lock()
        self._motion = False
        self._counts: dict = {label: 0 for label in self.labels}
        self._seen: dict = {}  # label -> monotonic time of its last sighting
        self._views: dict = {}  # event number -> (image, boxes) seen as it triggered, until it is told
        self._snapshot: Optional[bytes] = None
        self._today: Optional[int] = None
        self._news_key: tuple = (None, None)  # (event number, what an update was last sent for)
        self.link = MqttLink(
            m,
            client_id=client_id(m, s.CAMERA_NAME),
            availability_topic=self.topics.available,
            name=f"MQTT of {s.CAMERA_NAME}",
            on_connect=self._connected,
        )

    # -- the connection ----------------------------------------------------------------------------
    def start(self) -> "CameraMqtt":
        if not self.analysing:  # continuous only: no events to tell of, nothing to arm
            self.link.start()
            return self
        self.set_detecting(self.detecting)
        self.link.subscribe(self.topics.detect_set, self._detect_command)
        if self.m.MQTT_HA_DISCOVERY:
            ha = self.m.MQTT_HA_PREFIX
            self.link.subscribe(f"{ha}/status", self._ha_status)
            # this camera's configs on the broker: any not announced now (a label no longer wanted) is cleared
            self.link.subscribe(
                f"{ha}/+/{node_id(self.m.MQTT_TOPIC_PREFIX, self.s.CAMERA_NAME)}/+/config", self._config_seen
            )
        self.link.start()
        if self.detecting is False:
            log.warning("motion events of %s are disarmed (MQTT detect/set OFF earlier)", self.s.CAMERA_NAME)
        return self

    def close(self, timeout: float = 5.0) -> None:
        self.link.close(timeout)

    def _configs(self) -> dict:
        return camera_configs(
            self.topics, labels=self.labels, ha_prefix=self.m.MQTT_HA_PREFIX, version=nvr_cli.__version__
        )

    def _connected(self) -> None:
        """Every (re)connect: the broker may have restarted without its retained messages. Under the
        lock, as every state publish: a value read here never overtakes a newer one queued meanwhile."""
        if not self.analysing:
            return
        if self.m.MQTT_HA_DISCOVERY:
            self._announce()
        pub = self.link.publish
        with self._lock:
            pub(self.topics.detect_state, "ON" if self.detecting else "OFF", retain=True)
            pub(self.topics.motion, "ON" if self._motion else "OFF", retain=True)
            for label, n in self._counts.items():
                pub(self.topics.label(label), str(n), retain=True)
            if self._today is not None:
                pub(self.topics.events_today, str(self._today), retain=True)
            if self._snapshot is not None:
                pub(self.topics.snapshot, self._snapshot, retain=True)

    def _announce(self) -> None:
        for topic, config in self._configs().items():
            self.link.publish(topic, json.dumps(config), retain=True)

    def _ha_status(self, topic: str, payload: bytes, retained: bool) -> None:
        if payload.strip().lower() == b"online":  # Home Assistant (re)started: it wants the configs again
            self._announce()

    def _config_seen(self, topic: str, payload: bytes, retained: bool) -> None:
        if payload and topic not in self._configs():
            log.info("clearing a Home Assistant config no longer announced: %s", topic)
            self.link.publish(topic, b"", retain=True)

    def _detect_command(self, topic: str, payload: bytes, retained: bool) -> None:
        word = payload.decode(errors="replace").strip().upper()
        if word not in ("ON", "OFF"):
            log.warning("MQTT %s: expected ON or OFF, got %r", topic, word[:40])
            return
        on = word == "ON"
        if on != self.detecting:
            with self._lock:
                self.detecting = on
            self.set_detecting(on)
            try:
                storage.write_json(detect_state_path(self.s), {"detect": on, "since": time.time()})
            except StorageError as e:
                log.error("%s: the camera goes back to %s after a restart", e, "armed" if on else "disarmed")
            log.warning(
                "motion events of %s %s over MQTT%s",
                self.s.CAMERA_NAME,
                "armed" if on else "disarmed",
                "" if on else " (continuous recording goes on)",
            )
        with self._lock:
            self.link.publish(self.topics.detect_state, "ON" if self.detecting else "OFF", retain=True)

    # -- the camera --------------------------------------------------------------------------------
    def camera_up(self) -> None:
        self.link.set_available(True)

    def camera_down(self) -> None:
        self.link.set_available(False)
        if self.analysing:
            self.motion(None, False)

    def motion(self, event: Optional[Event], on: bool) -> None:
        """An event opens (its trigger view kept for the snapshot) or its last clip closes: the
        analysis thread, so only a reference is kept here."""
        if on and event is not None:
            self._news_key = (event.number, self._news_of(event))  # what its "new" tells
            frame = event.peak_frame
            if frame is not None and frame.image is not None:
                with self._lock:
                    self._views[event.number] = (frame.image, list(event.peak_boxes), [])
        with self._lock:
            if on != self._motion:
                self._motion = on
                self.link.publish(self.topics.motion, "ON" if on else "OFF", retain=True)

    def objects(self, detections: list) -> None:
        """A detector's look (analysis thread): counts rise at once and fall after COUNT_HOLD_SECS."""
        now = time.monotonic()
        counts: dict = {}
        for d in detections:
            counts[d.label] = counts.get(d.label, 0) + 1
        with self._lock:  # the analysis thread and the status tick both come here
            for label in counts:
                self._seen[label] = now
            for label in set(self._counts) | set(counts):
                n = counts.get(label, 0)
                if n == 0 and now - self._seen.get(label, float("-inf")) < COUNT_HOLD_SECS:
                    continue  # missed once, perhaps
                if self._counts.get(label) != n:
                    self._counts[label] = n
                    self.link.publish(self.topics.label(label), str(n), retain=True)

    def qr(self, payload: str) -> None:
        self.link.publish(self.topics.qr, payload, kind="event")

    def news_due(self, event: Event) -> bool:
        """True when an open event has something new to tell (a label or a QR code), once each."""
        key = self._news_of(event)
        number, last = self._news_key
        if number == event.number and key == last:
            return False
        self._news_key = (event.number, key)
        return number == event.number

    @staticmethod
    def _news_of(event: Event) -> tuple:
        return frozenset(event.objects), len(event.qr)

    def tick(self) -> None:
        """Every status interval: events today, and counts of what has not been seen for a while."""
        if not self.analysing:
            return
        self.objects([])
        with self._lock:
            today = self.status.events_today
            if today != self._today:
                self._today = today
                self.link.publish(self.topics.events_today, str(today), retain=True)

    # -- event news (the finisher thread, in order) ------------------------------------------------
    def _event(self, kind: str, info: dict) -> None:
        body = {"type": kind, "camera": self.s.CAMERA_NAME, **info}
        self.link.publish(
            self.topics.events, json.dumps(body, default=str), kind="end" if kind == "end" else "event"
        )

    def _send_snapshot(self, jpeg: Optional[bytes]) -> None:
        if jpeg:
            with self._lock:
                self._snapshot = jpeg
                self.link.publish(self.topics.snapshot, jpeg, retain=True)

    def event_started(self, info: dict) -> None:
        self._event("new", info)
        with self._lock:
            view = self._views.pop(info["event"], None)
            for number in [n for n in self._views if n < info["event"]]:
                del self._views[number]  # never told (not kept as a clip): its view is of no use now
        if view is not None:
            self._send_snapshot(storage.thumbnail_jpeg(*view))

    def event_update(self, info: dict, view: Optional[tuple]) -> None:
        """``view``: (image, boxes, labels) of the best wanted object so far, for the snapshot."""
        self._event("update", info)
        if view is not None:
            self._send_snapshot(storage.thumbnail_jpeg(*view))

    def event_ended(self, info: dict, final: bool) -> None:
        """A clip is finished: the last one of the event (``final``) ends it, an earlier part is news."""
        thumb = info.get("thumbnail")
        if thumb:
            try:
                self._send_snapshot(Path(thumb).read_bytes())
            except OSError:
                pass
        self._event("end" if final else "update", info)
