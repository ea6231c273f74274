"""One connection to the MQTT broker that is never in the recorder's way.

``publish`` only queues (``Outbox``: bounded, drops what matters least); a thread of ours hands queued
messages to paho while connected, at most ``IN_FLIGHT`` unacknowledged at a time, so a stalled broker
fills our bounded queue and never paho's unbounded one. paho reconnects with backoff; the availability
topic's last will says "offline" when the process or the network dies.

Messages handed to paho just before a connection is lost are not ours to resend: with QoS 1 or 2 paho
keeps every unacknowledged message (clean session or not) and sends it again, marked duplicate, right
after the next CONNACK. New messages wait until those are acknowledged, so nothing overtakes them (an
event's end never arrives before its update). QoS 0 messages paho had not yet written when the
connection dropped are lost by paho: we put them back in the queue.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Callable, Optional, Union

import paho.mqtt.client as mqtt

from nvr_cli.config.schema import MqttSettings
from nvr_cli.core.errors import ConfigError
from nvr_cli.mqtt.outbox import KINDS, Message, Outbox

log = logging.getLogger(__name__)

IN_FLIGHT = 20  # unacknowledged messages handed to paho at once: ~paho's own default window
RECONNECT_MIN, RECONNECT_MAX = 1, 60  # seconds, doubling (paho's backoff)
STALE_PATIENCE = 30.0  # seconds connected before we stop waiting for paho's resends (see _may_hand)

LOGIN_REFUSED = (134, 135)  # CONNACK "Bad user name or password", "Not authorized" (paho's MQTT 5 codes)

Callback = Callable[[str, bytes, bool], None]


class MqttLink:
    """A camera's (or the service's) connection: queue with ``publish``, listen with ``subscribe``.

    ``on_connect`` is called (on paho's thread) after every (re)connect, once subscriptions are renewed:
    owners re-send what a restarted broker may have forgotten (Home Assistant discovery, states).
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str,
        availability_topic: str,
        name: str = "MQTT",
        on_connect: Optional[Callable[[], None]] = None,
    ):
        if not settings.MQTT_HOST:
            raise ValueError("MqttLink needs MQTT_HOST")
        self.settings = settings
        self.client_id = client_id
        self.availability_topic = availability_topic
        self.name = name
        self._on_connect_hook = on_connect
        self._qos = settings.MQTT_QOS
        self._where = f"{settings.MQTT_HOST}:{settings.MQTT_PORT}"
        self.outbox = Outbox(settings.MQTT_QUEUE_MAX)

        self._cv = threading.Condition()  # guards everything below; never held while calling paho
        self._connected = False
        self._connected_at = 0.0
        self._inflight: dict[int, Message] = {}  # mid -> message handed to paho, not yet acknowledged
        self._acked_early: set[int] = set()  # on_publish that came before publish() returned its mid
        self._stale: set[int] = set()  # mids paho resends after a reconnect: nothing new goes first
        self._available: Optional[bool] = None
        self._available_pending = False
        self._subscriptions: dict[str, Callback] = {}
        self._started = self._stopping = self._closed = False
        self._warned = False  # a WARNING was logged for the current outage
        self._down_since = time.monotonic()
        self._dropped_before = 0
        self._outages = 0
        self._ever_connected = False

        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        self._client.suppress_exceptions = True  # a bug in a callback must not end paho's thread
        # a little above ours: availability and close()'s "offline" bypass our window
        self._client.max_inflight_messages_set(IN_FLIGHT + 10)
        self._client.reconnect_delay_set(RECONNECT_MIN, RECONNECT_MAX)
        self._client.will_set(availability_topic, "offline", self._qos, retain=True)
        if settings.MQTT_USER is not None:
            self._client.username_pw_set(settings.MQTT_USER, settings.MQTT_PASSWORD)
        if settings.MQTT_TLS_CA:
            try:
                self._client.tls_set(ca_certs=settings.MQTT_TLS_CA)
            except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
                raise ConfigError(f"MQTT_TLS_CA {settings.MQTT_TLS_CA}: {e}") from None
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._publisher = threading.Thread(target=self._run, name=f"mqtt-publisher-{client_id}", daemon=True)

    # -- the owner's side ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    def stats(self) -> dict:
        """``queued``: waiting in the queue plus handed to paho and not yet acknowledged."""
        with self._cv:
            inflight = len(self._inflight)
            connected = self._connected
            outages = self._outages
        return {
            "connected": connected,
            "queued": len(self.outbox) + inflight,
            "dropped": self.outbox.dropped,
            "outages": outages,
        }

    def start(self) -> "MqttLink":
        """Connect in the background (a broker that is down is retried, never raised) and start publishing."""
        if self._started:
            raise RuntimeError("MqttLink.start() called twice")
        self._started = True
        self._down_since = time.monotonic()
        s = self.settings
        self._client.connect_async(s.MQTT_HOST, s.MQTT_PORT, keepalive=max(1, round(s.MQTT_KEEPALIVE_SECS)))
        self._client.loop_start()
        self._publisher.start()
        return self

    def set_available(self, on: bool) -> None:
        """Say "online" / "offline" (retained) on the availability topic; said again first on every
        reconnect, since the will may have said "offline" meanwhile."""
        with self._cv:
            self._available = bool(on)
            self._available_pending = True
            self._cv.notify_all()

    def publish(
        self, topic: str, payload: Union[bytes, str], *, retain: bool = False, kind: str = "state"
    ) -> None:
        """Queue a message (never blocks; see ``Outbox`` for what is dropped when the broker is away)."""
        if kind not in KINDS:
            raise ValueError(f"message kind {kind!r}: expected one of {', '.join(KINDS)}")
        if not topic or "+" in topic or "#" in topic:
            raise ValueError(f"{topic!r} is not a topic one can publish on")
        if not isinstance(payload, (bytes, bytearray, str)):
            raise TypeError(f"MQTT payload: expected bytes or str, got {type(payload).__name__}")
        if self._stopping:  # closed: nobody would send it (while close() flushes, it still goes)
            return
        self.outbox.put(Message(topic, payload, retain, kind))

    def subscribe(self, topic_filter: str, callback: Callback) -> None:
        """Call ``callback(topic, payload, retained)`` for each message matching ``topic_filter``; renewed
        on every connect. It runs on paho's thread: keep it short (an exception is logged, not raised)."""

        def deliver(client, userdata, msg):
            try:
                callback(msg.topic, msg.payload, bool(msg.retain))
            except Exception:  # noqa: BLE001 - paho's thread must survive any callback
                log.exception("%s: the handler of %s failed", self.name, msg.topic)

        # the handler first: a retained message may arrive as soon as the subscription is made
        self._client.message_callback_add(topic_filter, deliver)
        with self._cv:
            self._subscriptions[topic_filter] = callback
            connected = self._connected
        if connected:  # else on_connect subscribes
            self._client.subscribe(topic_filter, self._qos)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (waiting up to ``timeout`` s), say "offline", disconnect, and stop both
        threads."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout
        if self._started:
            with self._cv:
                # a broker that is away may come back within the timeout: wait for it too
                while time.monotonic() < deadline:
                    if not self._inflight and not len(self.outbox) and not self._available_pending:
                        break
                    self._cv.wait(0.05)  # outbox changes do not notify us: poll
                left = len(self.outbox) + len(self._inflight)
                connected = self._connected
                self._stopping = True
                self._cv.notify_all()
            self._publisher.join()
            if left:
                log.warning(
                    "%s: closing with %d message(s) not delivered to %s%s",
                    self.name,
                    left,
                    self._where,
                    "" if connected else " (not connected)",
                )
            if connected:
                try:
                    info = self._client.publish(self.availability_topic, "offline", self._qos, retain=True)
                    info.wait_for_publish(max(0.5, deadline - time.monotonic()))
                except (RuntimeError, ValueError) as e:  # the connection went meanwhile: the will says it
                    log.debug("%s: 'offline' not published: %s", self.name, e)
            self._client.disconnect()
            self._client.loop_stop()
        log.debug("%s: closed", self.name)

    # -- our publisher thread -----------------------------------------------------------------------

    def _may_hand(self) -> bool:
        """Connected, room in the window, and paho's resends done (called with ``_cv`` held)."""
        if not self._connected or len(self._inflight) >= IN_FLIGHT:
            return False
        if self._stale and time.monotonic() - self._connected_at > STALE_PATIENCE:
            # a resend never acknowledged (a broker that ignores it): do not hold everything for ever
            log.debug("%s: %d resent message(s) never acknowledged; going on", self.name, len(self._stale))
            self._stale.clear()
        return not self._stale

    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._stopping or self._may_hand(), timeout=1.0)
                if self._stopping:
                    return
                if not self._may_hand():
                    continue
                avail = None
                if self._available_pending:
                    avail, self._available_pending = self._available, False
            if avail is not None:
                self._hand(Message(self.availability_topic, "online" if avail else "offline", True))
                continue
            msg = self.outbox.get(timeout=0.25)
            if msg is not None and not self._hand(msg):
                self.outbox.put_back(msg)

    def _hand(self, msg: Message) -> bool:
        """Give ``msg`` to paho; False if paho did not take it (it goes back in the queue)."""
        try:
            info = self._client.publish(msg.topic, msg.payload, self._qos, retain=msg.retain)
        except Exception as e:  # noqa: BLE001 - e.g. a payload above MQTT's 256 MB: this one only
            log.error("%s: message on %s dropped: %s", self.name, msg.topic, e)
            return True
        # not connected after all: with QoS >= 1 paho keeps it and sends it on reconnect, QoS 0 is lost
        if info.rc == mqtt.MQTT_ERR_SUCCESS or (info.rc == mqtt.MQTT_ERR_NO_CONN and self._qos > 0):
            with self._cv:
                if info.mid in self._acked_early:
                    self._acked_early.discard(info.mid)
                else:
                    self._inflight[info.mid] = msg
                    if not self._connected and self._qos > 0:
                        # handed as the connection went (after _on_disconnect listed the resends): paho
                        # resends it too, and nothing new may overtake it
                        self._stale.add(info.mid)
            return True
        return False

    # -- paho's callbacks (paho's thread: they must never raise) -------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        try:
            if reason_code.is_failure:
                if reason_code.value in LOGIN_REFUSED:
                    user = self.settings.MQTT_USER
                    as_user = f" as user {user!r}" if user else " without a user name"
                    self._failed(f"{self._where} refused the login{as_user} ({reason_code})")
                else:
                    self._failed(f"{self._where} refused the connection ({reason_code})")
                return
            now = time.monotonic()
            with self._cv:
                self._connected = True
                self._connected_at = now
                avail = self._available
                self._available_pending = False
                filters = list(self._subscriptions)
                warned, self._warned = self._warned, False
                first = not self._ever_connected
                self._ever_connected = True
            # first on the wire, before paho's resends: the will may have said "offline" meanwhile
            if avail is not None:
                self._hand(Message(self.availability_topic, "online" if avail else "offline", True))
            if filters:
                client.subscribe([(f, self._qos) for f in filters])
            if warned:
                log.info(
                    "%s: back on %s after %.0f s (%d message(s) dropped meanwhile)",
                    self.name,
                    self._where,
                    now - self._down_since,
                    self.outbox.dropped - self._dropped_before,
                )
            elif first:
                log.info("%s: connected to %s as %s", self.name, self._where, self.client_id)
            with self._cv:
                self._cv.notify_all()
            if self._on_connect_hook is not None:
                self._on_connect_hook()
        except Exception:  # noqa: BLE001
            log.exception("%s: error after connecting", self.name)

    def _on_connect_fail(self, client, userdata) -> None:
        try:
            # paho calls this from its `except OSError:` around the connect: the error is still current
            err = sys.exc_info()[1]
            self._failed(f"cannot connect to {self._where}" + (f" ({err})" if err else ""))
        except Exception:  # noqa: BLE001
            log.exception("%s: error after a failed connect", self.name)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        try:
            lost: list[Message] = []
            with self._cv:
                was_connected, self._connected = self._connected, False
                if was_connected:
                    if self._qos == 0:  # what paho had not written yet is lost with the connection
                        lost = list(self._inflight.values())
                        self._inflight.clear()
                    # QoS >= 1: paho resends these after the next CONNACK; nothing new may go before them
                    self._stale = set(self._inflight)
                closing = self._stopping or self._closed
                self._cv.notify_all()
            for msg in reversed(lost):
                self.outbox.put_back(msg)
            if was_connected and not closing:  # else a failed attempt (a refused login): already said
                why = "connection lost" if str(reason_code) == "Unspecified error" else str(reason_code)
                self._failed(f"lost the connection to {self._where} ({why})")
        except Exception:  # noqa: BLE001
            log.exception("%s: error after a disconnect", self.name)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        try:
            with self._cv:
                if self._inflight.pop(mid, None) is None:
                    self._acked_early.add(mid)
                self._stale.discard(mid)
                self._cv.notify_all()
        except Exception:  # noqa: BLE001
            log.exception("%s: error after a publish", self.name)

    def _failed(self, what: str) -> None:
        """A lost connection or a failed attempt: one WARNING per outage, DEBUG for the retries."""
        if self._closed:
            return
        with self._cv:
            first, self._warned = not self._warned, True
            if first:
                self._outages += 1
                self._down_since = time.monotonic()
                self._dropped_before = self.outbox.dropped
        if first:
            log.warning(
                "%s: %s; messages wait (up to %d) and it retries every %d-%d s",
                self.name,
                what,
                self.settings.MQTT_QUEUE_MAX,
                RECONNECT_MIN,
                RECONNECT_MAX,
            )
        else:
            log.debug("%s: %s", self.name, what)
