"""Home Assistant discovery configs: every key one Home Assistant documents, every required one
there, and all of them retained on a real Mosquitto broker.

Where the key tables below come from (home-assistant.io, read as stored in the
home-assistant/home-assistant.io repository's source/_integrations/):

- /integrations/mqtt/ (mqtt.markdown), "MQTT Discovery": the topic
  ``<discovery_prefix>/<component>/[<node_id>/]<object_id>/config``, node and object ids of
  ``[a-zA-Z0-9_-]``; the payload checked like configuration.yaml, required keys present; an empty
  payload deletes; ``origin`` (``name`` required, ``sw_version``, ``support_url``); abbreviations
  optional (we write keys in full);
- /integrations/binary_sensor.mqtt/, /integrations/image.mqtt/, /integrations/sensor.mqtt/,
  /integrations/switch.mqtt/: each platform's configuration variables (the tables below), the
  ``device`` and ``availability`` sub-keys;
- ``platform`` is listed as required on those pages, but "only allowed and required in MQTT auto
  discovery device messages" (device-based discovery): we send one config per entity, so it must
  be absent;
- ``object_id`` is deprecated since Home Assistant 2025.10 in favour of ``default_entity_id``
  (home-assistant/core#151775; newer platform pages list ``default_entity_id``) and ignored since
  2026.4: allowed here is ``default_entity_id``, never ``object_id``;
- ``state_class`` values: developers.home-assistant.io "sensor" entity (measurement, total,
  total_increasing: a decrease starts a new cycle, which is what a daily count does at midnight).
"""

import json
import re

import paho.mqtt.client as mqtt
import pytest
from support.mqtt_watch import Watch

from nvr_cli.mqtt.discovery import (
    DISCOVERY_COMPONENTS,
    camera_configs,
    config_filter,
    node_id,
    owner_of,
)
from nvr_cli.mqtt.topics import Topics

try:
    import jinja2
except ImportError:  # not a dependency: the template's shape is checked instead (see _render)
    jinja2 = None

PREFIX = "home/Cams-1"  # not the default, with a level and characters a slug drops
HA = "ha-disc"  # Home Assistant's discovery prefix, not the default either
CAMERA = "Front Door+1"  # spaces, capitals, and '+' which no topic may carry
LABELS = ["person", "car"]
VERSION = "0.1.0"

# Keys every MQTT entity platform page lists (entity-wide options).
_ENTITY = {
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "default_entity_id",
    "device",
    "enabled_by_default",
    "encoding",
    "entity_category",
    "entity_picture",
    "icon",
    "json_attributes_template",
    "json_attributes_topic",
    "name",
    "unique_id",
}
# Discovery-wide keys from the MQTT page (not on the platform pages).
_DISCOVERY = {"origin"}

# component -> (keys it requires, keys it allows), from each platform's page.
KEYS = {
    "binary_sensor": (
        {"state_topic"},
        _ENTITY
        | _DISCOVERY
        | {
            "device_class",
            "expire_after",
            "force_update",
            "off_delay",
            "payload_available",
            "payload_not_available",
            "payload_off",
            "payload_on",
            "qos",
            "state_topic",
            "value_template",
        },
    ),
    "image": (
        set(),  # image_topic or url_topic, exactly one: checked on its own below
        _ENTITY | _DISCOVERY | {"content_type", "image_encoding", "image_topic", "url_template", "url_topic"},
    ),
    "sensor": (
        {"state_topic"},
        _ENTITY
        | _DISCOVERY
        | {
            "device_class",
            "expire_after",
            "force_update",
            "last_reset_value_template",
            "options",
            "payload_available",
            "payload_not_available",
            "qos",
            "state_class",
            "state_topic",
            "suggested_display_precision",
            "unit_of_measurement",
            "value_template",
        },
    ),
    "switch": (
        {"command_topic"},
        _ENTITY
        | _DISCOVERY
        | {
            "command_template",
            "command_topic",
            "device_class",
            "optimistic",
            "payload_available",
            "payload_not_available",
            "payload_off",
            "payload_on",
            "qos",
            "retain",
            "state_off",
            "state_on",
            "state_topic",
            "value_template",
        },
    ),
}
DEVICE_KEYS = {
    "configuration_url",
    "connections",
    "hw_version",
    "identifiers",
    "manufacturer",
    "model",
    "model_id",
    "name",
    "serial_number",
    "suggested_area",
    "sw_version",
    "via_device",
}
ORIGIN_KEYS = ({"name"}, {"name", "sw_version", "support_url"})
AVAILABILITY_KEYS = ({"topic"}, {"topic", "payload_available", "payload_not_available", "value_template"})
STATE_CLASSES = {"measurement", "total", "total_increasing"}

DISCOVERY_TOPIC = re.compile(
    r"^(?P<prefix>.+)/(?P<component>\w+)/(?P<node>[a-zA-Z0-9_-]+)/(?P<object>[a-zA-Z0-9_-]+)/config$"
)


def _configs(prefix=PREFIX, camera=CAMERA, labels=LABELS):
    return camera_configs(Topics(prefix, camera), labels=labels, ha_prefix=HA, version=VERSION)


def _published_valid(topic):
    # MQTT 3.1.1 section 4.7: a published topic has no wildcard, is not empty and has no NUL
    return bool(topic) and not set("+#\0") & set(topic) and len(topic.encode()) < 65536


def _render(template, value):
    """The value template's result for a payload, as Home Assistant's Jinja would give it."""
    if jinja2 is not None:
        return jinja2.Environment().from_string(template).render(value=value).strip()
    # no jinja2 installed: the template must be exactly the shape we evaluate here
    shape = r"\{\{ 'ON' if \(value \| int\(0\)\) > 0 else 'OFF' \}\}"
    assert re.fullmatch(shape, template), template
    try:
        count = int(value)
    except ValueError:
        count = 0
    return "ON" if count > 0 else "OFF"


def test_every_config_has_the_keys_home_assistant_requires_and_no_other():
    configs = _configs()
    topics = Topics(PREFIX, CAMERA)
    node = node_id(PREFIX, CAMERA)
    assert node.startswith("home_cams_1_front_door_1_") and len(node) == len("home_cams_1_front_door_1_") + 6
    # names that slug alike are still two devices
    assert len({node_id(PREFIX, c) for c in ("Gate", "gate", "前门", "后门", "a b", "a_b")}) == 6
    assert node_id(PREFIX, "gate") == "home_cams_1_gate"  # a name that is its own slug stays as it is
    components = {}
    for topic, config in configs.items():
        m = DISCOVERY_TOPIC.match(topic)
        assert m, topic
        assert m["prefix"] == HA and m["node"] == node
        component = m["component"]
        assert component in DISCOVERY_COMPONENTS
        components.setdefault(component, []).append(m["object"])
        required, allowed = KEYS[component]
        assert required <= config.keys(), (topic, required - config.keys())
        assert config.keys() <= allowed, (topic, config.keys() - allowed)
        assert "object_id" not in config and "platform" not in config
        # what discovery needs to tie an entity to a device, and what we promise
        assert {"name", "unique_id", "device", "availability", "origin"} <= config.keys()
        assert "availability_topic" not in config  # never both forms
        assert config["device"].keys() <= DEVICE_KEYS
        assert config["device"]["identifiers"] == [node]
        assert config["device"]["name"] == CAMERA
        assert config["device"]["sw_version"] == VERSION
        assert ORIGIN_KEYS[0] <= config["origin"].keys() <= ORIGIN_KEYS[1]
        assert config["availability"] == [
            {"topic": topics.available, "payload_available": "online", "payload_not_available": "offline"}
        ]
        for entry in config["availability"]:
            assert AVAILABILITY_KEYS[0] <= entry.keys() <= AVAILABILITY_KEYS[1]
        for key, value in config.items():
            if key.endswith("_topic"):
                assert _published_valid(value), (key, value)
                assert value.startswith(f"{PREFIX}/"), (key, value)
        # Home Assistant names an entity "<device> <entity>": the entity's own name must not repeat it
        assert not config["name"].lower().startswith(CAMERA.lower())
        assert mqtt.topic_matches_sub(config_filter(HA), topic)
        json.dumps(config)  # what is published
    assert sorted(components) == sorted(DISCOVERY_COMPONENTS)
    assert sorted(components["binary_sensor"]) == ["car", "motion", "person"]
    unique_ids = [c["unique_id"] for c in configs.values()]
    assert len(set(unique_ids)) == len(unique_ids) == len(configs) == 6
    for uid in unique_ids:
        assert re.fullmatch(r"[a-z0-9_]+", uid) and uid.startswith(f"{node}_"), uid
    assert configs == _configs()  # stable: the same configs on every (re)send


def test_each_entity_points_at_its_topics():
    t = Topics(PREFIX, CAMERA)
    by_id = {c["unique_id"].removeprefix(node_id(PREFIX, CAMERA) + "_"): c for c in _configs().values()}
    assert by_id["motion"]["state_topic"] == t.motion == "home/Cams-1/Front Door_1/motion"
    assert by_id["motion"]["device_class"] == "motion"
    assert (by_id["motion"]["payload_on"], by_id["motion"]["payload_off"]) == ("ON", "OFF")
    for label in LABELS:
        assert by_id[label]["state_topic"] == t.label(label)
        assert by_id[label]["device_class"] == "occupancy"
    assert by_id["person"]["name"] == "Person"
    snapshot = by_id["snapshot"]
    assert snapshot["image_topic"] == t.snapshot and "url_topic" not in snapshot  # exactly one of them
    assert snapshot["content_type"] == "image/jpeg"
    assert by_id["events_today"]["state_topic"] == t.events_today
    assert by_id["events_today"]["state_class"] in STATE_CLASSES
    assert by_id["events_today"]["state_class"] == "total_increasing"
    detect = by_id["detect"]
    assert (detect["command_topic"], detect["state_topic"]) == (t.detect_set, t.detect_state)
    assert (detect["payload_on"], detect["payload_off"]) == ("ON", "OFF")
    names = sorted(c["name"] for c in by_id.values())
    assert names == ["Car", "Detect", "Events today", "Motion", "Person", "Snapshot"]


def test_occupancy_template_turns_the_count_into_on_and_off():
    configs = [c for c in _configs().values() if c.get("device_class") == "occupancy"]
    assert len(configs) == 2
    for config in configs:
        template = config["value_template"]
        assert _render(template, "2") == "ON"
        assert _render(template, "1") == "ON"
        assert _render(template, "0") == "OFF"
        assert _render(template, "") == "OFF"  # not a number: none in view


def test_labels_twice_or_alike_are_one_entity_and_never_replace_a_fixed_one():
    configs = _configs(labels=["person", "Person", "person", "motion", "traffic light"])
    ids = sorted(c["unique_id"].removeprefix(node_id(PREFIX, CAMERA) + "_") for c in configs.values())
    assert ids == sorted(
        ["motion", "person", "motion_objects", "traffic_light", "snapshot", "events_today", "detect"]
    )
    by_id = {c["unique_id"]: c for c in configs.values()}
    assert by_id[f"{node_id(PREFIX, CAMERA)}_motion"]["device_class"] == "motion"
    assert by_id[f"{node_id(PREFIX, CAMERA)}_traffic_light"]["name"] == "Traffic light"


def test_owner_of_recognises_only_our_configs():
    configs = _configs()
    for topic, config in configs.items():
        assert owner_of(topic, json.dumps(config).encode(), prefix=PREFIX, ha_prefix=HA) == CAMERA
    topic, config = next(iter(configs.items()))
    payload = json.dumps(config).encode()
    # a cleared config, garbage, the wrong depth or discovery prefix, another nvr-cli prefix
    assert owner_of(topic, b"", prefix=PREFIX, ha_prefix=HA) is None
    assert owner_of(topic, b"\xff{", prefix=PREFIX, ha_prefix=HA) is None
    assert owner_of(topic, b"[1, 2]", prefix=PREFIX, ha_prefix=HA) is None
    assert owner_of(topic.replace("/config", "/x/config"), payload, prefix=PREFIX, ha_prefix=HA) is None
    assert owner_of(topic, payload, prefix=PREFIX, ha_prefix="homeassistant") is None
    assert owner_of(topic, payload, prefix="nvr-cli", ha_prefix=HA) is None
    # same node id (the prefixes slug alike) but its topics are under another prefix: not ours
    sibling = camera_configs(Topics("home_cams_1", CAMERA), labels=LABELS, ha_prefix=HA, version=VERSION)
    assert set(sibling) == set(configs)
    for t, c in sibling.items():
        assert owner_of(t, json.dumps(c).encode(), prefix=PREFIX, ha_prefix=HA) is None
        assert owner_of(t, json.dumps(c).encode(), prefix="home_cams_1", ha_prefix=HA) == CAMERA


# A made-up Zigbee2MQTT motion sensor, announced under the same discovery prefix.
FOREIGN_TOPIC = f"{HA}/binary_sensor/0x00158d0001a2b3c4/occupancy/config"
FOREIGN = {
    "name": "Occupancy",
    "unique_id": "0x00158d0001a2b3c4_occupancy_zigbee2mqtt",
    "state_topic": "zigbee2mqtt/hall_sensor",
    "value_template": "{{ value_json.occupancy }}",
    "payload_on": True,
    "payload_off": False,
    "device_class": "occupancy",
    "availability": [{"topic": "zigbee2mqtt/bridge/state"}],
    "device": {"identifiers": ["zigbee2mqtt_0x00158d0001a2b3c4"], "name": "hall_sensor"},
    "origin": {"name": "Zigbee2MQTT"},
}


def test_configs_retained_on_a_real_broker_and_recognised(mqtt_broker):
    broker = mqtt_broker()
    configs = _configs()
    gone = camera_configs(Topics(PREFIX, "Old cam"), labels=["person"], ha_prefix=HA, version=VERSION)
    publisher = Watch(broker, "unused/#")
    try:
        for topic, config in {**configs, **gone, FOREIGN_TOPIC: FOREIGN}.items():
            publisher.publish(topic, json.dumps(config), retain=True)
        for topic in gone:  # a removed camera's configs cleared: the broker forgets them
            publisher.publish(topic, b"", retain=True)
    finally:
        publisher.close()

    expected = set(configs) | {FOREIGN_TOPIC}
    fresh = Watch(broker, f"{HA}/#")  # subscribes after it all: only retained messages come back
    try:
        fresh.wait_for(lambda: {t for t, _, _ in fresh.messages()} >= expected, timeout=10)
        got = fresh.messages()
    finally:
        fresh.close()
    assert {t for t, _, _ in got} == expected  # nothing of "Old cam" is left
    owners = {}
    for topic, payload, retained in got:
        assert retained, topic
        assert json.loads(payload) == (FOREIGN if topic == FOREIGN_TOPIC else configs[topic])
        assert mqtt.topic_matches_sub(config_filter(HA), topic)
        owners[topic] = owner_of(topic, payload, prefix=PREFIX, ha_prefix=HA)
    assert owners.pop(FOREIGN_TOPIC) is None
    assert set(owners.values()) == {CAMERA}
    for topic in gone:
        assert owner_of(topic, b"", prefix=PREFIX, ha_prefix=HA) is None


@pytest.mark.parametrize("camera", ["front", "Garage #2", "Über Hof"])
def test_any_camera_name_gives_valid_discovery_topics(camera):
    for topic, config in camera_configs(
        Topics("nvr-cli", camera), labels=LABELS, ha_prefix="homeassistant", version=VERSION
    ).items():
        assert DISCOVERY_TOPIC.match(topic) and topic.startswith("homeassistant/"), topic
        assert all(_published_valid(v) for k, v in config.items() if k.endswith("_topic"))
        assert (
            owner_of(topic, json.dumps(config).encode(), prefix="nvr-cli", ha_prefix="homeassistant")
            == camera
        )
