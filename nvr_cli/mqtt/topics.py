"""The topics a camera publishes on and listens to (README: "MQTT"), under MQTT_TOPIC_PREFIX."""

from __future__ import annotations

import re
from dataclasses import dataclass


def topic_safe(name: str) -> str:
    """A name as one topic level: MQTT's wildcards ('+', '#') cannot appear in a published topic."""
    return name.replace("+", "_").replace("#", "_")


def slug(name: str) -> str:
    """A name as an identifier Home Assistant accepts (node and object ids): [a-z0-9_]."""
    return re.sub(r"[^a-z0-9_]", "_", name.lower())


@dataclass(frozen=True)
class Topics:
    """One camera's topics."""

    prefix: str
    camera: str

    @property
    def _cam(self) -> str:
        return f"{self.prefix}/{topic_safe(self.camera)}"

    @property
    def service_available(self) -> str:
        return f"{self.prefix}/available"

    @property
    def available(self) -> str:
        return f"{self._cam}/available"

    @property
    def motion(self) -> str:
        return f"{self._cam}/motion"

    @property
    def events(self) -> str:
        return f"{self._cam}/events"

    def label(self, label: str) -> str:
        """How many ``label`` objects are in view now."""
        return f"{self._cam}/{topic_safe(label).replace('/', '_')}"

    @property
    def snapshot(self) -> str:
        return f"{self._cam}/snapshot"

    @property
    def qr(self) -> str:
        return f"{self._cam}/qr"

    @property
    def detect_set(self) -> str:
        return f"{self._cam}/detect/set"

    @property
    def detect_state(self) -> str:
        return f"{self._cam}/detect/state"

    @property
    def events_today(self) -> str:
        return f"{self._cam}/events_today"
