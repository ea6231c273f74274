"""MqttLink against a real Mosquitto broker: retain and QoS, the will, a broker that stops, stalls or
refuses the login, TLS, subscriptions, and closing cleanly. No mocks: every message crosses the broker."""

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from support.mosquitto import Mosquitto
from support.mqtt_watch import Watch

from nvr_cli.config.schema import MqttSettings
from nvr_cli.core.errors import ConfigError
from nvr_cli.mqtt.link import MqttLink

ROOT = Path(__file__).resolve().parent.parent
AVAILABLE = "nvr-cli/cam/available"
EVENTS = "nvr-cli/cam/events"
MOTION = "nvr-cli/cam/motion"


def settings(broker, **kw) -> MqttSettings:
    return MqttSettings(MQTT_HOST=broker.host, MQTT_PORT=broker.port, **{"MQTT_KEEPALIVE_SECS": 5, **kw})


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return value


@pytest.fixture
def links():
    """A factory of started links, all closed at teardown."""
    made = []

    def make(broker, client_id="test-link", on_connect=None, **kw):
        link = MqttLink(
            settings(broker, **kw), client_id=client_id, availability_topic=AVAILABLE, on_connect=on_connect
        ).start()
        made.append(link)
        return link

    yield make
    for link in made:
        link.close(timeout=1)


@pytest.fixture
def watches():
    made = []

    def make(broker, *filters, **kw):
        w = Watch(broker, *(filters or ("nvr-cli/#",)), **kw)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


class Sub:
    """A subscriber that records QoS and can keep a session on a persistent broker (Watch does neither):
    with a session, it misses nothing while the broker restarts, however fast the link reconnects."""

    def __init__(self, broker, topic_filter="nvr-cli/#", *, qos=2, persistent=False):
        self.got: list = []  # (topic, payload, retain, qos)
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{id(self)}", clean_session=not persistent
        )
        self.client.reconnect_delay_set(1, 2)

        def on_connect(client, userdata, flags, reason_code, properties):
            if not flags.session_present:  # a kept session has its subscription (and what it missed)
                client.subscribe(topic_filter, qos)
            else:
                self._subscribed.set()

        def on_message(client, userdata, msg):
            with self._lock:
                self.got.append((msg.topic, msg.payload.decode(), bool(msg.retain), msg.qos))

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the test subscriber could not subscribe"

    def payloads(self, topic):
        with self._lock:
            return [p for t, p, _, _ in self.got if t == topic]

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def outage(broker, link):
    broker.stop()
    wait_for(lambda: not link.connected, what="the link to see the broker gone")


def refusals(broker):
    """The broker's log lines of refused logins, as their times (1 s resolution)."""
    return re.findall(r"^(\d+): Client \S+ disconnected, not authorised", broker.log.read_text(), re.M)


def warnings_said(caplog):
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("nvr_cli") and r.levelno >= logging.WARNING
    ]


def assert_never_logged(caplog, *secrets):
    for r in caplog.records:
        text = r.getMessage() + (logging.Formatter().formatException(r.exc_info) if r.exc_info else "")
        assert not any(s in text for s in secrets), r.getMessage()


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_messages_arrive_with_their_retain_flag_and_qos(mqtt_broker, links, qos):
    broker = mqtt_broker()
    sub = Sub(broker, qos=2)
    link = links(broker, MQTT_QOS=qos)
    link.publish(MOTION, "ON", retain=True)
    link.publish(EVENTS, '{"type": "new"}', kind="event")
    link.publish(EVENTS, b'{"type": "end"}', kind="end")
    wait_for(lambda: len(sub.got) == 3, what="3 messages")
    assert [(t, p, q) for t, p, _, q in sub.got] == [
        (MOTION, "ON", qos),
        (EVENTS, '{"type": "new"}', qos),
        (EVENTS, '{"type": "end"}', qos),
    ]
    late = Sub(broker)  # a new subscriber gets the retained state, flagged so, and not the events
    wait_for(lambda: late.got, what="the retained message")
    assert late.got == [(MOTION, "ON", True, qos)]
    sub.close()
    late.close()


def test_the_will_says_offline_when_the_process_is_killed(mqtt_broker, watches):
    broker = mqtt_broker()
    watch = watches(broker)
    code = (
        "import sys, time\n"
        "from nvr_cli.config.schema import MqttSettings\n"
        "from nvr_cli.mqtt.link import MqttLink\n"
        "s = MqttSettings(MQTT_HOST=sys.argv[1], MQTT_PORT=int(sys.argv[2]), MQTT_KEEPALIVE_SECS=5)\n"
        f"link = MqttLink(s, client_id='test-worker', availability_topic={AVAILABLE!r})\n"
        "link.start().set_available(True)\n"
        "time.sleep(600)\n"
    )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    child = subprocess.Popen([sys.executable, "-c", code, broker.host, str(broker.port)], env=env)
    try:
        wait_for(lambda: watch.payloads(AVAILABLE) == ["online"], what="online")
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        # the broker sees the socket close at once; the keepalive (5 s) would catch a lost network
        wait_for(lambda: watch.payloads(AVAILABLE) == ["online", "offline"], what="the will's offline")
    finally:
        child.kill()
        child.wait()
    late = watches(broker, AVAILABLE)
    wait_for(lambda: late.messages(), what="the retained offline")
    assert late.messages() == [(AVAILABLE, b"offline", True)]


def test_availability_is_said_again_after_a_broker_restart(mqtt_broker, links, watches):
    broker = mqtt_broker()  # no persistence: a restarted broker has forgotten the retained "online"
    link = links(broker)
    link.set_available(True)
    wait_for(lambda: link.connected and link.stats()["queued"] == 0, what="online delivered")
    outage(broker, link)
    broker.start()
    wait_for(lambda: link.connected, what="reconnected")
    watch = watches(broker, AVAILABLE)
    wait_for(lambda: watch.payloads(AVAILABLE) == ["online"], what="online again")
    late = watches(broker, AVAILABLE)  # subscribed after it was said: it is retained
    wait_for(lambda: late.messages(), what="the retained online")
    assert late.messages() == [(AVAILABLE, b"online", True)]


def test_a_broker_down_at_start_is_no_error_and_messages_wait_for_it(mqtt_broker, links, caplog):
    caplog.set_level(logging.DEBUG, logger="nvr_cli.mqtt")
    broker = mqtt_broker()
    broker.stop()
    link = links(broker)  # start() returns: paho connects in the background
    link.publish(EVENTS, "end-0", kind="end")
    wait_for(lambda: any(r.levelno == logging.WARNING for r in caplog.records), what="a warning")
    assert not link.connected and link.stats()["queued"] == 1
    broker.start()
    wait_for(lambda: link.connected and link.stats()["queued"] == 0, what="the queue delivered")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and f"cannot connect to 127.0.0.1:{broker.port}" in warnings[0]


def test_a_broker_restart_loses_no_end_and_coalesces_states(mqtt_broker, links):
    broker = mqtt_broker(persistent=True)
    sub = Sub(broker, qos=1, persistent=True)
    link = links(broker)
    link.publish(EVENTS, "new", kind="event")
    # its acknowledgement may reach the link after the subscriber has it: else "new" is still queued
    wait_for(lambda: sub.payloads(EVENTS) == ["new"] and link.stats()["queued"] == 0, what="the first event")
    outage(broker, link)
    for i in range(60):
        link.publish(MOTION, f"m{i}", retain=True)
        link.publish("nvr-cli/cam/person", str(i % 3), retain=True)
        if i % 2:
            link.publish(EVENTS, f"end-{i // 2}", kind="end")
    # they wait, each retained state coalesced to its latest value
    assert link.stats() == {"connected": False, "queued": 32, "dropped": 0, "outages": 1}
    broker.start()
    wait_for(lambda: len(sub.payloads(EVENTS)) == 31, timeout=60, what="30 ends after the restart")
    assert sub.payloads(EVENTS) == ["new"] + [f"end-{i}" for i in range(30)]
    wait_for(lambda: link.stats()["queued"] == 0, what="the queue delivered")
    # acknowledged to the link does not mean delivered to the subscriber yet
    wait_for(lambda: sub.payloads(MOTION) and sub.payloads("nvr-cli/cam/person"), what="the states")
    assert sub.payloads(MOTION) == ["m59"] and sub.payloads("nvr-cli/cam/person") == ["2"]
    sub.close()


def test_messages_in_flight_when_the_broker_dies_are_sent_again_in_order(mqtt_broker, links):
    broker = mqtt_broker(persistent=True)
    sub = Sub(broker, qos=1, persistent=True)
    t_sub = time.time()  # subscribed (acknowledged): a save begun a second later has the session
    # an owner's slow on_connect (paho calls it before it resends what was in flight): new messages
    # must still wait for the resends
    link = links(broker, on_connect=lambda: time.sleep(0.5))
    wait_for(lambda: link.connected, what="connected")
    # the subscriber's session must be on disk before the broker is killed (autosave: every second)
    db = broker.db
    wait_for(lambda: db.exists() and db.stat().st_mtime > t_sub + 1, what="the session saved")
    broker.pause()  # the broker acknowledges nothing: what we publish now stays in flight
    for i in range(5):
        link.publish(EVENTS, f"end-{i}", kind="end")
    wait_for(lambda: len(link.outbox) == 0 and link.stats()["queued"] == 5, what="5 in flight")
    broker.kill()  # no acknowledgement will ever come for them
    for i in range(5, 8):
        link.publish(EVENTS, f"end-{i}", kind="end")
    wait_for(lambda: not link.connected, what="the link to see the broker gone")
    broker.start()
    wait_for(lambda: len(set(sub.payloads(EVENTS))) == 8, timeout=60, what="all 8 ends")
    got = sub.payloads(EVENTS)
    firsts = [p for i, p in enumerate(got) if p not in got[:i]]  # QoS 1: a resend may come twice
    assert firsts == [f"end-{i}" for i in range(8)]
    sub.close()


def test_a_stalled_broker_never_blocks_publish_and_the_queue_stays_bounded(mqtt_broker, links, watches):
    broker = mqtt_broker()
    link = links(broker, MQTT_QUEUE_MAX=100)
    wait_for(lambda: link.connected, what="connected")
    broker.pause()

    def burst():
        for i in range(5000):
            link.publish(f"nvr-cli/cam/n{i}", str(i))

    burster = threading.Thread(target=burst)
    burster.start()
    # publish only queues: the burst ends while the broker is still paused (were publish to wait for the
    # broker, it never would); the bound only keeps such a failure from hanging the suite
    burster.join(120)
    assert not burster.is_alive(), "publish waited for a stalled broker"
    stats = link.stats()
    assert len(link.outbox) <= 100 and stats["queued"] <= 100 + 20
    assert stats["dropped"] >= 5000 - 120
    broker.resume()
    link.publish("nvr-cli/cam/marker", "after", retain=True, kind="end")
    wait_for(lambda: link.stats()["queued"] == 0, timeout=60, what="the queue delivered after resume")
    late = watches(broker, "nvr-cli/cam/marker")
    wait_for(lambda: late.messages(), what="the marker")
    assert late.messages() == [("nvr-cli/cam/marker", b"after", True)]


def test_login_with_a_password_file_and_never_logging_the_password(mqtt_broker, links, watches, caplog):
    caplog.set_level(logging.DEBUG)
    password = "hunter2-Zq9"
    broker = mqtt_broker(users={"nvr": password})
    watch = watches(broker, user="nvr", password=password)
    good = links(broker, client_id="good", MQTT_USER="nvr", MQTT_PASSWORD=password)
    good.publish(MOTION, "ON", retain=True)
    wait_for(lambda: watch.payloads(MOTION) == ["ON"], what="a message from a logged-in link")

    bad = links(broker, client_id="bad", MQTT_USER="nvr", MQTT_PASSWORD="wrong-" + password)
    wait_for(lambda: len(refusals(broker)) >= 3, timeout=60, what="three refused attempts")
    times = [int(t) for t in refusals(broker)[:3]]
    assert times[2] - times[0] >= 2  # backoff: 1 s then 2 s, not a tight loop (broker log: 1 s resolution)
    assert not bad.connected and bad.stats()["outages"] == 1
    said = warnings_said(caplog)
    assert len(said) == 1, said
    assert "refused the login as user 'nvr'" in said[0]
    assert good.connected
    assert_never_logged(caplog, password)


def test_a_broker_that_comes_back_refusing_the_login_is_warned_about_again(mqtt_broker, links, caplog):
    """The recorder started before the broker: "cannot connect" was said; the broker then comes up and
    refuses the password. That is a new cause, and one the user must act on: said too (once)."""
    caplog.set_level(logging.DEBUG)
    password = "hunter2-Zq9"
    broker = mqtt_broker(users={"nvr": password})
    broker.stop()
    link = links(broker, MQTT_USER="nvr", MQTT_PASSWORD="wrong-" + password)
    wait_for(lambda: warnings_said(caplog), what="the first warning")
    broker.start()

    def refused():
        return [r for r in caplog.records if "refused the login" in r.getMessage()]

    wait_for(lambda: len(refused()) >= 2, timeout=60, what="two refused attempts seen by the link")
    said = warnings_said(caplog)
    assert len(said) == 2, said
    assert f"cannot connect to 127.0.0.1:{broker.port}" in said[0]
    assert "refused the login as user 'nvr'" in said[1]
    assert [r.levelno for r in refused()[:2]] == [logging.WARNING, logging.DEBUG]  # not one per retry
    assert not link.connected and link.stats()["outages"] == 1  # still the same outage
    assert_never_logged(caplog, password)


def test_tls_with_the_brokers_ca(mqtt_broker, links, watches, caplog):
    caplog.set_level(logging.DEBUG, logger="nvr_cli.mqtt")
    broker = mqtt_broker(tls=True)
    watch = watches(broker)
    link = links(broker, MQTT_TLS_CA=broker.ca)
    link.publish(MOTION, "ON", retain=True)
    wait_for(lambda: watch.payloads(MOTION) == ["ON"], what="a message over TLS")

    other = Mosquitto(tls=True)  # another CA: the broker's certificate must not be accepted
    try:
        stranger = links(broker, client_id="stranger", MQTT_TLS_CA=other.ca)
        wait_for(lambda: "certificate verify failed" in caplog.text, what="the TLS refusal")
        assert not stranger.connected
    finally:
        other.cleanup()


def test_an_unreadable_ca_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="MQTT_TLS_CA"):  # refused with the settings ...
        MqttSettings(MQTT_HOST="127.0.0.1", MQTT_TLS_CA=str(tmp_path / "missing.crt"))
    from support.mosquitto import Mosquitto

    certs = Mosquitto(tls=True)  # (not started: only its CA is wanted)
    try:
        ca = tmp_path / "ca.crt"
        ca.write_bytes(Path(certs.ca).read_bytes())
        s = MqttSettings(MQTT_HOST="127.0.0.1", MQTT_TLS_CA=str(ca))
        ca.unlink()  # ... and one gone since the settings were read is said the same way
        with pytest.raises(ConfigError, match="MQTT_TLS_CA"):
            MqttLink(s, client_id="x", availability_topic=AVAILABLE)
    finally:
        certs.cleanup()


def test_subscriptions_are_renewed_after_a_broker_restart(mqtt_broker, caplog, watches):
    caplog.set_level(logging.DEBUG, logger="nvr_cli.mqtt")
    broker = mqtt_broker()
    got, connects = [], []
    link = MqttLink(
        settings(broker),
        client_id="test-sub-link",
        availability_topic=AVAILABLE,
        on_connect=lambda: connects.append(1),
    ).start()
    try:
        link.subscribe("nvr-cli/cam/detect/set", lambda *m: got.append(m))
        link.subscribe("nvr-cli/cam/broken", lambda *m: 1 / 0)  # a failing handler is logged, no more
        wait_for(lambda: link.connected and connects, what="connected")
        watch = watches(broker)
        watch.publish("nvr-cli/cam/broken", "x")
        watch.publish("nvr-cli/cam/detect/set", "OFF")
        wait_for(lambda: got == [("nvr-cli/cam/detect/set", b"OFF", False)], what="OFF")
        assert "the handler of nvr-cli/cam/broken failed" in caplog.text
        watch.close()
        outage(broker, link)
        broker.start()
        wait_for(lambda: link.connected and len(connects) == 2, what="reconnected")
        # retained: delivered whether the subscription is renewed before or after it is published
        watches(broker).publish("nvr-cli/cam/detect/set", "ON", retain=True)
        wait_for(lambda: len(got) == 2, what="ON after the restart")
        assert got[1][:2] == ("nvr-cli/cam/detect/set", b"ON")
    finally:
        link.close()


def test_close_flushes_says_offline_and_leaves_no_thread(mqtt_broker, watches):
    broker = mqtt_broker()
    watch = watches(broker)
    before = set(threading.enumerate())
    link = MqttLink(settings(broker), client_id="test-close", availability_topic=AVAILABLE).start()
    link.set_available(True)
    # the subscriber may have "online" before the link has its acknowledgement
    wait_for(lambda: watch.payloads(AVAILABLE) == ["online"] and link.stats()["queued"] == 0, what="online")
    broker.pause()
    for i in range(100):
        link.publish(EVENTS, f"end-{i}", kind="end")
    wait_for(lambda: link.stats()["queued"] == 100, what="100 queued or in flight")
    resume = threading.Timer(0.5, broker.resume)  # close() starts while all 100 still wait
    resume.start()
    link.close(timeout=30)
    resume.join()
    assert link.stats()["queued"] == 0  # all acknowledged: the broker has them
    # ... which it delivers to the subscriber in its own time
    wait_for(lambda: len(watch.payloads(EVENTS)) >= 100, what="all 100 at the subscriber")
    assert watch.payloads(EVENTS) == [f"end-{i}" for i in range(100)]
    wait_for(lambda: watch.payloads(AVAILABLE) == ["online", "offline"], what="offline")
    assert set(threading.enumerate()) - before == set()
    late = watches(broker, AVAILABLE)
    wait_for(lambda: late.messages(), what="the retained offline")
    assert late.messages() == [(AVAILABLE, b"offline", True)]


def test_close_returns_soon_when_the_broker_stalls_with_data_in_flight(mqtt_broker, watches, caplog):
    """A SIGTERM while the broker is stopped (SIGSTOP) with large messages in flight: paho's DISCONNECT
    waits behind data the broker does not read, and its thread would only end on its keepalive check."""
    caplog.set_level(logging.DEBUG, logger="nvr_cli.mqtt")
    broker = mqtt_broker()
    watch = watches(broker, AVAILABLE)
    before = set(threading.enumerate())
    # a keepalive well past the bound below: paho's keepalive check must not be what ends close()
    s = settings(broker, MQTT_KEEPALIVE_SECS=60)
    link = MqttLink(s, client_id="test-stalled-close", availability_topic=AVAILABLE).start()
    link.set_available(True)
    wait_for(lambda: watch.payloads(AVAILABLE) == ["online"] and link.stats()["queued"] == 0, what="online")
    broker.pause()
    for i in range(20):  # 8 MB: far more than the socket buffers hold
        link.publish(EVENTS, b"x" * 400_000, kind="end")
    wait_for(lambda: len(link.outbox) == 0, what="all 20 handed to paho")
    t0 = time.monotonic()
    link.close(timeout=2)
    took = time.monotonic() - t0
    assert took < 15, f"close(timeout=2) took {took:.1f} s"  # a sanity bound: about 3 s, not a minute
    assert "closing with 20 message(s) not delivered" in caplog.text
    wait_for(lambda: not set(threading.enumerate()) - before, timeout=10, what="no thread of the link left")
    broker.resume()
    # the connection was cut, not closed: the broker says the will's "offline", retained
    wait_for(lambda: watch.payloads(AVAILABLE) == ["online", "offline"], what="the will's offline")
    late = watches(broker, AVAILABLE)
    wait_for(lambda: late.messages(), what="the retained offline")
    assert late.messages() == [(AVAILABLE, b"offline", True)]


def test_availability_is_sent_when_it_changes_not_on_every_call(mqtt_broker, links, watches):
    broker = mqtt_broker()
    watch = watches(broker)
    link = links(broker)
    link.set_available(True)
    wait_for(lambda: watch.payloads(AVAILABLE) == ["online"], what="online")
    for i in range(5):  # an owner that says it on every status tick
        link.set_available(True)
        link.publish(MOTION, f"tick-{i}")
        wait_for(lambda: watch.payloads(MOTION)[-1:] == [f"tick-{i}"], what=f"tick {i}")
    link.set_available(False)
    wait_for(lambda: watch.payloads(AVAILABLE)[-1:] == ["offline"], what="offline")
    link.set_available(True)
    wait_for(lambda: watch.payloads(AVAILABLE)[-1:] == ["online"], what="online again")
    link.close()  # after everything queued (a re-sent "online" too): its own "offline"
    wait_for(lambda: len(watch.payloads(AVAILABLE)) >= 4, what="close's offline")
    assert watch.payloads(AVAILABLE) == ["online", "offline", "online", "offline"]


def test_stats_counts_a_message_while_it_is_handed_to_paho(mqtt_broker, links):
    """``queued`` is one snapshot: a message taken from the queue and not yet in flight is counted too
    (a spy around paho's real publish looks at it right then, on the link's publisher thread)."""
    broker = mqtt_broker()
    link = links(broker)
    wait_for(lambda: link.connected, what="connected")
    broker.pause()  # nothing is acknowledged: every message published stays counted
    lock = threading.Lock()
    published, seen = 0, []
    paho_publish = link._client.publish

    def look_then_publish(*args, **kwargs):
        with lock:
            seen.append((link.stats()["queued"], published))
        return paho_publish(*args, **kwargs)

    link._client.publish = look_then_publish
    for i in range(10):
        with lock:
            link.publish(EVENTS, f"end-{i}", kind="end")
            published += 1
    wait_for(lambda: len(seen) == 10, what="10 messages handed to paho")
    assert [queued for queued, _ in seen] == [n for _, n in seen], seen
    broker.resume()
    wait_for(lambda: link.stats()["queued"] == 0, what="all acknowledged")


def test_one_warning_per_outage_and_one_info_when_back(mqtt_broker, links, caplog):
    caplog.set_level(logging.DEBUG, logger="nvr_cli.mqtt")
    broker = mqtt_broker()
    link = links(broker)
    wait_for(lambda: link.connected, what="connected")
    for cycle in (1, 2):
        start, len_text = len(caplog.records), len(caplog.text)
        outage(broker, link)

        def retries():
            return [r for r in caplog.records[start:] if "cannot connect" in r.getMessage()]

        wait_for(lambda: len(retries()) >= 2, what="two failed retries")
        broker.start()
        # the INFO is said just after the link counts as connected: wait for the line itself
        wait_for(lambda: "back on" in caplog.text[len_text:], what="back")
        mine = [r for r in caplog.records[start:] if r.name == "nvr_cli.mqtt.link"]
        warnings = [r.getMessage() for r in mine if r.levelno == logging.WARNING]
        infos = [r.getMessage() for r in mine if r.levelno == logging.INFO]
        assert len(warnings) == 1 and "lost the connection" in warnings[0], warnings
        assert len(infos) == 1 and "back on" in infos[0], infos
        assert all(r.levelno == logging.DEBUG for r in retries())
    assert link.stats()["outages"] == 2
