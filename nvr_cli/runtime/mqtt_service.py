"""`nvr-cli run` on MQTT: ``<prefix>/available`` while it runs, and the Home Assistant configs of
cameras taken out of CAMERAS cleared (each camera's recorder announces its own)."""

from __future__ import annotations

import logging
import threading
from typing import Callable

from nvr_cli.config import MqttSettings
from nvr_cli.mqtt.discovery import config_filter, owner_of
from nvr_cli.mqtt.link import MqttLink
from nvr_cli.mqtt.topics import Topics
from nvr_cli.runtime.mqtt_camera import client_id

log = logging.getLogger(__name__)


class ServiceMqtt:
    """The supervisor's connection; ``cameras()`` names the cameras configured now."""

    def __init__(self, m: MqttSettings, cameras: Callable[[], set]):
        self.m = m
        self.cameras = cameras
        self._seen: dict = {}  # discovery topic -> camera, for the configs of ours on the broker
        self._lock = threading.Lock()
        self.link = MqttLink(
            m,
            client_id=client_id(m),
            availability_topic=Topics(m.MQTT_TOPIC_PREFIX, "-").service_available,
            name="MQTT of nvr-cli run",
        )

    def start(self) -> "ServiceMqtt":
        if self.m.MQTT_HA_DISCOVERY:
            # every retained config comes back on subscribing, and live ones as the recorders announce
            self.link.subscribe(config_filter(self.m.MQTT_HA_PREFIX), self._config)
        self.link.set_available(True)
        self.link.start()
        return self

    def _config(self, topic: str, payload: bytes, retained: bool) -> None:
        camera = owner_of(topic, payload, prefix=self.m.MQTT_TOPIC_PREFIX, ha_prefix=self.m.MQTT_HA_PREFIX)
        with self._lock:
            if camera is None:
                self._seen.pop(topic, None)  # cleared (empty), or not ours
                return
            self._seen[topic] = camera
        if camera not in self.cameras():
            self._clear({topic: camera})

    def cameras_changed(self) -> None:
        """CAMERAS was edited: the configs of cameras no longer in it go."""
        wanted = self.cameras()
        with self._lock:
            gone = {t: c for t, c in self._seen.items() if c not in wanted}
        self._clear(gone)

    def _clear(self, configs: dict) -> None:
        for camera in sorted(set(configs.values())):
            log.info("camera %s is no longer configured: clearing its Home Assistant entities", camera)
            topics = Topics(self.m.MQTT_TOPIC_PREFIX, camera)
            # its retained state goes too (a snapshot would otherwise stay on the broker for good)
            for t in (topics.motion, topics.snapshot, topics.detect_state, topics.events_today):
                self.link.publish(t, b"", retain=True)
        for topic in configs:
            self.link.publish(topic, b"", retain=True)
        with self._lock:
            for topic in configs:
                self._seen.pop(topic, None)

    def close(self, timeout: float = 5.0) -> None:
        self.link.close(timeout)
