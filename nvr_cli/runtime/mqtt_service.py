"""`nvr-cli run` on MQTT: ``<prefix>/available`` while it runs, and what a camera taken out of
CAMERAS leaves on the broker (its retained state, its Home Assistant configs) cleared once its
recorder has stopped. Each camera's recorder publishes its own news.

Only cameras this `run` has recorded are ever cleared (listed in ``mqtt-cameras.json`` beside the
status files, so a camera removed while `run` was down is cleared at its next start): another
`run` or a lone `record` on the same broker and prefix keeps its own.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Callable

import nvr_cli.storage.paths as storage
from nvr_cli.config import MqttSettings, Settings
from nvr_cli.core.errors import StorageError
from nvr_cli.mqtt.discovery import config_filter, owner_of
from nvr_cli.mqtt.link import MqttLink
from nvr_cli.mqtt.topics import Topics
from nvr_cli.runtime.mqtt_camera import client_id, wanted_labels

log = logging.getLogger(__name__)


class ServiceMqtt:
    """The supervisor's connection; ``cameras()``: the cameras configured now, name -> Settings."""

    def __init__(self, m: MqttSettings, folder: Path, cameras: Callable[[], dict]):
        self.m = m
        self.cameras = cameras
        self.file = Path(folder) / "mqtt-cameras.json"
        self._lock = threading.Lock()
        self._configs: dict = {}  # discovery topic -> camera, for the configs of ours on the broker
        self._ours = self._read() | set(cameras())  # cameras whose news this run may have left behind
        self._gone = self._ours - set(cameras())  # removed while we were away: cleared as found
        self.link = MqttLink(
            m,
            client_id=client_id(m),
            availability_topic=Topics(m.MQTT_TOPIC_PREFIX, "-").service_available,
            name="MQTT of nvr-cli run",
        )

    def _read(self) -> set:
        try:
            data = json.loads(self.file.read_text())
        except (OSError, ValueError):
            return set()
        if not isinstance(data, dict) or data.get("prefix") != self.m.MQTT_TOPIC_PREFIX:
            return set()  # another prefix: those topics are not where we publish now
        return {c for c in data.get("cameras", []) if isinstance(c, str)}

    def _write(self) -> None:
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            storage.write_json(self.file, {"prefix": self.m.MQTT_TOPIC_PREFIX, "cameras": sorted(self._ours)})
        except (OSError, StorageError) as e:
            log.warning(
                "%s not written (%s): a camera removed later may leave its news on the broker", self.file, e
            )

    def start(self) -> "ServiceMqtt":
        if self.m.MQTT_HA_DISCOVERY:
            # every retained config comes back on subscribing, and live ones as the recorders announce
            self.link.subscribe(config_filter(self.m.MQTT_HA_PREFIX), self._config)
        self.link.set_available(True)
        self.link.start()
        with self._lock:
            gone = sorted(self._gone)
        for camera in gone:
            self._clear_state(camera, ())
        self._write()
        return self

    def _config(self, topic: str, payload: bytes, retained: bool) -> None:
        camera = owner_of(topic, payload, prefix=self.m.MQTT_TOPIC_PREFIX, ha_prefix=self.m.MQTT_HA_PREFIX)
        with self._lock:
            if camera is None:
                self._configs.pop(topic, None)  # cleared (empty), or not ours
                return
            self._configs[topic] = camera
            clear = camera in self._gone
        if clear:
            self.link.publish(topic, b"", retain=True)

    def camera_added(self, camera: str) -> None:
        with self._lock:
            self._gone.discard(camera)
            self._ours.add(camera)
        self._write()

    def camera_gone(self, camera: str, settings: Settings) -> None:
        """``camera`` was taken out of CAMERAS and its recorder has stopped (nothing it sends can
        follow): its configs and retained state go."""
        with self._lock:
            self._gone.add(camera)
            configs = [t for t, c in self._configs.items() if c == camera]
        log.info("camera %s is no longer configured: clearing what it left on the MQTT broker", camera)
        for topic in configs:
            self.link.publish(topic, b"", retain=True)
        self._clear_state(camera, wanted_labels(settings))

    def _clear_state(self, camera: str, labels) -> None:
        t = Topics(self.m.MQTT_TOPIC_PREFIX, camera)
        for topic in (
            t.available,
            t.motion,
            t.snapshot,
            t.detect_state,
            t.events_today,
            *map(t.label, labels),
        ):
            self.link.publish(topic, b"", retain=True)

    def close(self, timeout: float = 5.0) -> None:
        self.link.close(timeout)
