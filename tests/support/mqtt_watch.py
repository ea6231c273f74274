"""A real MQTT subscriber (paho) that records what the tests' broker delivers."""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional

import paho.mqtt.client as mqtt


class Watch:
    """Subscribes to ``filters`` on ``broker``, keeping each message: (monotonic, topic, payload, retain)."""

    def __init__(self, broker, *filters: str, user: Optional[str] = None, password: Optional[str] = None):
        self.got: list = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-watch-{id(self)}")
        if user:
            self.client.username_pw_set(user, password)
        if broker.ca:
            self.client.tls_set(ca_certs=broker.ca)
        self.filters = filters or ("#",)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("the test subscriber could not subscribe")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.subscribe([(f, 1) for f in self.filters])

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.got.append((time.monotonic(), msg.topic, msg.payload, bool(msg.retain)))

    def messages(self, topic: Optional[str] = None) -> list:
        """(topic, payload, retain) in arrival order; ``topic``: only that one."""
        with self._lock:
            return [(t, p, r) for _, t, p, r in self.got if topic is None or t == topic]

    def payloads(self, topic: str) -> list:
        return [p.decode(errors="replace") for _, p, _ in self.messages(topic)]

    def wait_for(self, predicate: Callable[[], object], timeout: float = 30.0) -> object:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.05)

    def publish(self, topic: str, payload, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
