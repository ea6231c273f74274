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

``close`` never waits much past its timeout, whatever the broker does: paho's thread ends once its
DISCONNECT is written, which a stalled broker with a full socket buffer never lets happen (paho would wait
for its keepalive check). Past the deadline the socket is shut down under paho: what the broker has not
acknowledged is given up (and said so), nothing it acknowledged is touched, and the will says "offline".
"""

from __future__ import annotations

import logging
import socket
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

OFFLINE_WAIT = 0.5  # seconds close() gives "offline" at least, even past its deadline
DISCONNECT_GRACE = 0.5  # seconds it gives paho to write DISCONNECT, even past its deadline
CUT_GRACE = 1.0  # seconds it waits for paho's thread once the socket is shut down under it

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
        self._handing = 0  # messages out of the queue, being given to paho (not yet in _inflight)
        self._acked_early: set[int] = set()  # on_publish that came before publish() returned its mid
        self._stale: set[int] = set()  # mids paho resends after a reconnect: nothing new goes first
        self._available: Optional[bool] = None
        self._available_pending = False
        self._subscriptions: dict[str, Callback] = {}
        self._started = self._stopping = self._closed = False
        self._warned = False  # a WARNING was logged for the current outage
        self._warned_login = False  # ... and one for a refused login (said even if the outage was not)
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
        """``queued``: waiting in the queue, being handed to paho, or handed and not yet acknowledged
        (one consistent snapshot: a message moving from one to the next is counted once)."""
        with self._cv:
            return {
                "connected": self._connected,
                "queued": self._queued(),
                "dropped": self.outbox.dropped,
                "outages": self._outages,
            }

    def _queued(self) -> int:
        """(``_cv`` held) Messages not yet acknowledged: queued, being handed, in flight. A message moves
        from one to the next (or back in the queue) under ``_cv``: none is missed or counted twice."""
        return len(self.outbox) + self._handing + len(self._inflight)

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
        """Say "online" / "offline" (retained) on the availability topic, when it changes (calling it with
        the same value again sends nothing); said again first on every reconnect, since the will may have
        said "offline" meanwhile."""
        with self._cv:
            if self._available == bool(on):
                return
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
        threads; returns within about ``timeout`` + 2 s whatever the broker does (see the module's doc)."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout
        if self._started:
            with self._cv:
                # a broker that is away may come back within the timeout: wait for it too
                while time.monotonic() < deadline:
                    if not self._queued() and not self._available_pending:
                        break
                    self._cv.wait(0.05)  # outbox changes do not notify us: poll
                left = self._queued()
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
                    info.wait_for_publish(max(OFFLINE_WAIT, deadline - time.monotonic()))
                except (RuntimeError, ValueError) as e:  # the connection went meanwhile: the will says it
                    log.debug("%s: 'offline' not published: %s", self.name, e)
            self._client.disconnect()
            self._stop_paho(max(deadline, time.monotonic() + DISCONNECT_GRACE))
        log.debug("%s: closed", self.name)

    def _stop_paho(self, until: float) -> None:
        """``loop_stop()``, but past ``until`` the socket is shut down under paho's thread (blocked behind
        data a stalled broker does not read, it would wait for its keepalive check), and past ``until`` +
        ``CUT_GRACE`` it is left to end by itself (a daemon thread: e.g. in a TLS handshake with a stalled
        broker, bounded by paho's connect timeout)."""
        stopper = threading.Thread(target=self._loop_stop, name=f"mqtt-stop-{self.client_id}", daemon=True)
        stopper.start()
        stopper.join(max(0.0, until - time.monotonic()))
        if not stopper.is_alive():
            return
        log.debug("%s: %s takes nothing: connection cut", self.name, self._where)
        give_up = time.monotonic() + CUT_GRACE
        while stopper.is_alive() and time.monotonic() < give_up:
            sock = self._client.socket()  # paho may be between two sockets: cut each one it has
            if sock is not None:
                try:
                    # the TCP socket's own shutdown (under TLS too): the SSL object is paho's to drop
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except (OSError, TypeError):  # closed meanwhile; not a plain socket (websockets)
                    pass
            stopper.join(0.1)
        if stopper.is_alive():
            log.debug("%s: paho's thread is still busy; left to end by itself", self.name)

    def _loop_stop(self) -> None:
        try:
            self._client.loop_stop()
        except AttributeError:  # paho's thread ended by itself between loop_stop's two looks at it
            pass

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

    def _availability(self) -> Message:
        return Message(self.availability_topic, "online" if self._available else "offline", True)

    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._stopping or self._may_hand(), timeout=1.0)
                if self._stopping:
                    return
                if not self._may_hand():
                    continue
                queued = not self._available_pending
                if queued:  # taken and counted as handing at once: stats() never misses it
                    msg = self.outbox.get(timeout=0)
                else:
                    msg, self._available_pending = self._availability(), False
                if msg is not None:
                    self._handing += 1
            if msg is None:
                self.outbox.wait(0.25)  # the queue is empty: wait for a message
            else:
                self._hand(msg, queued)

    def _hand(self, msg: Message, queued: bool) -> None:
        """Give ``msg`` (counted in ``_handing``) to paho; if paho does not take it (QoS 0 and not
        connected), a ``queued`` message goes back first in the queue."""
        try:
            info = self._client.publish(msg.topic, msg.payload, self._qos, retain=msg.retain)
        except Exception as e:  # noqa: BLE001 - e.g. a payload above MQTT's 256 MB: this one only
            log.error("%s: message on %s dropped: %s", self.name, msg.topic, e)
            info = None
        with self._cv:  # out of _handing and into _inflight (or back in the queue) at once
            self._handing -= 1
            if info is None:
                pass
            # not connected after all: with QoS >= 1 paho keeps it and sends it on reconnect, QoS 0 is lost
            elif info.rc == mqtt.MQTT_ERR_SUCCESS or (info.rc == mqtt.MQTT_ERR_NO_CONN and self._qos > 0):
                if info.mid in self._acked_early:
                    self._acked_early.discard(info.mid)
                else:
                    self._inflight[info.mid] = msg
                    if not self._connected and self._qos > 0:
                        # handed as the connection went (after _on_disconnect listed the resends): paho
                        # resends it too, and nothing new may overtake it
                        self._stale.add(info.mid)
            elif queued:
                self.outbox.put_back(msg)
            self._cv.notify_all()

    # -- paho's callbacks (paho's thread: they must never raise) -------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        try:
            if reason_code.is_failure:
                if reason_code.value in LOGIN_REFUSED:
                    user = self.settings.MQTT_USER
                    as_user = f" as user {user!r}" if user else " without a user name"
                    self._failed(f"{self._where} refused the login{as_user} ({reason_code})", login=True)
                else:
                    self._failed(f"{self._where} refused the connection ({reason_code})")
                return
            now = time.monotonic()
            with self._cv:
                self._connected = True
                self._connected_at = now
                # not while closing: close() says "offline" if it saw the link connected, else the will
                say = self._available is not None and not self._stopping
                if say:
                    avail = self._availability()
                    self._available_pending = False
                    self._handing += 1
                filters = list(self._subscriptions)
                warned, self._warned, self._warned_login = self._warned, False, False
                first = not self._ever_connected
                self._ever_connected = True
            # first on the wire, before paho's resends: the will may have said "offline" meanwhile
            if say:
                self._hand(avail, False)
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
            with self._cv:
                was_connected, self._connected = self._connected, False
                if was_connected:
                    if self._qos == 0:  # what paho had not written yet is lost with the connection
                        for msg in reversed(list(self._inflight.values())):
                            self.outbox.put_back(msg)
                        self._inflight.clear()
                    # QoS >= 1: paho resends these after the next CONNACK; nothing new may go before them
                    self._stale = set(self._inflight)
                # else a failed attempt (a refused login): already said
                lost = was_connected and not (self._stopping or self._closed)
                # counted with the flag: whoever sees the link disconnected sees the outage counted
                warn = self._count_failure(login=False) if lost else False
                self._cv.notify_all()
            if lost:
                why = "connection lost" if str(reason_code) == "Unspecified error" else str(reason_code)
                self._log_failure(f"lost the connection to {self._where} ({why})", warn)
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

    def _failed(self, what: str, *, login: bool = False) -> None:
        """A failed attempt (``login``: the broker refused the user or password)."""
        if self._closed:
            return
        with self._cv:
            warn = self._count_failure(login=login)
        self._log_failure(what, warn)

    def _count_failure(self, *, login: bool) -> bool:
        """(``_cv`` held) Count an outage at its first failure; True if this failure deserves a WARNING:
        the outage's first, or its first refused login (the broker was unreachable, now it is there and
        refuses the password: that needs the user), not the retries."""
        warn = not self._warned or (login and not self._warned_login)
        if not self._warned:
            self._outages += 1
            self._down_since = time.monotonic()
            self._dropped_before = self.outbox.dropped
        self._warned = True
        self._warned_login = self._warned_login or login
        return warn

    def _log_failure(self, what: str, warn: bool) -> None:
        """One WARNING per outage and cause, DEBUG for the retries."""
        if warn:
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
