"""Home Assistant MQTT discovery: the retained configs that announce a camera (README: "MQTT and
Home Assistant").

One config per entity ("single component discovery"), each on
``<ha_prefix>/<component>/<node_id>/<object_id>/config``. The node level is optional for Home
Assistant, which ignores it; we set it to the camera's node id because it is the only part of the
topic that says whose config it is, which is how a removed camera's configs are found and cleared
(:func:`owner_of`). Keys are written out in full (Home Assistant also takes abbreviations) so a
config reads as the README describes it.

No ``object_id`` in the payload: Home Assistant deprecated it in 2025.10 and ignores it since
2026.4. No ``default_entity_id`` either: without it the entity id comes from the device and entity
names (``binary_sensor.front_motion``), as Home Assistant's naming guidance intends, and a user's
rename of an entity id is never overridden.
"""

from __future__ import annotations

import hashlib
import json
from typing import Sequence

from nvr_cli.mqtt.topics import Topics, slug

#: Every component a camera's configs use (``config_filter`` finds them all, and any other).
DISCOVERY_COMPONENTS = ("binary_sensor", "image", "sensor", "switch")

MANUFACTURER = "nvr-cli"
MODEL = "camera recorder"

# object ids of the fixed entities; a label that slugs to one of these gets a suffix instead
_FIXED = ("motion", "snapshot", "events_today", "detect")

# the occupancy sensors' state topic carries how many are in view: "0", "2" ... -> OFF / ON.
# int(0): a payload that is not a number counts as none rather than raising in Home Assistant.
OCCUPANCY_TEMPLATE = "{{ 'ON' if (value | int(0)) > 0 else 'OFF' }}"


def node_id(prefix: str, camera: str) -> str:
    """The camera's id in Home Assistant's discovery topics and identifiers: [a-z0-9_]. A name that
    does not slug to itself gets a short hash of itself: "Gate" and "gate", or two names in another
    script ("前门", "后门"), would otherwise be one device."""
    name = slug(camera)
    if name != camera:
        name += "_" + hashlib.sha1(camera.encode()).hexdigest()[:6]
    return f"{slug(prefix)}_{name}"


def config_filter(ha_prefix: str) -> str:
    """The subscription that gets back every retained config with a node level, ours among them."""
    return f"{ha_prefix}/+/+/+/config"


def _label_name(label: str) -> str:
    # Home Assistant names are sentence case: "traffic_light" -> "Traffic light"
    text = label.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def camera_configs(topics: Topics, *, labels: Sequence[str], ha_prefix: str, version: str) -> dict[str, dict]:
    """Discovery topic -> config for one camera's device and entities: motion, one occupancy sensor
    per wanted label (count > 0), the snapshot image, events today and the detect switch."""
    node = node_id(topics.prefix, topics.camera)
    device = {
        "identifiers": [node],
        "name": topics.camera,
        "manufacturer": MANUFACTURER,
        "model": MODEL,
        "sw_version": version,
    }
    shared = {
        # the camera's own availability: its worker's will turns every entity unavailable when it dies
        "availability": [
            {"topic": topics.available, "payload_available": "online", "payload_not_available": "offline"}
        ],
        "device": device,
        "origin": {"name": MANUFACTURER, "sw_version": version},
    }
    configs: dict[str, dict] = {}

    def add(component: str, what: str, name: str, keys: dict) -> None:
        topic = f"{ha_prefix}/{component}/{node}/{what}/config"
        configs[topic] = {"name": name, "unique_id": f"{node}_{what}", **keys, **shared}

    add(
        "binary_sensor",
        "motion",
        "Motion",
        {
            "state_topic": topics.motion,
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "motion",
        },
    )
    seen = set(_FIXED)
    for label in labels:
        what = slug(label)
        if what in _FIXED:
            what = f"{what}_objects"
        if what in seen:  # the same label twice, or two that slug alike: one entity
            continue
        seen.add(what)
        add(
            "binary_sensor",
            what,
            _label_name(label),
            {
                "state_topic": topics.label(label),
                "value_template": OCCUPANCY_TEMPLATE,
                "payload_on": "ON",
                "payload_off": "OFF",
                "device_class": "occupancy",
            },
        )
    add(
        "image",
        "snapshot",
        "Snapshot",
        # the JPEG itself on a retained topic (image_topic), not a URL Home Assistant would fetch
        {"image_topic": topics.snapshot, "content_type": "image/jpeg"},
    )
    add(
        "sensor",
        "events_today",
        "Events today",
        {
            "state_topic": topics.events_today,
            # a count that drops to 0 at midnight: total_increasing reads the drop as a new cycle
            "state_class": "total_increasing",
            "unit_of_measurement": "events",
            "icon": "mdi:counter",
        },
    )
    add(
        "switch",
        "detect",
        "Detect",
        {
            "command_topic": topics.detect_set,
            "state_topic": topics.detect_state,
            "payload_on": "ON",
            "payload_off": "OFF",
            "icon": "mdi:motion-sensor",
        },
    )
    return configs


def owner_of(topic: str, payload: bytes, *, prefix: str, ha_prefix: str) -> str | None:
    """The camera a retained discovery config belongs to, if :func:`camera_configs` wrote it for
    this ``prefix``; None for anything else, and for an empty (already cleared) config.

    Both the node id and the topics inside must be ours: two prefixes can slug alike ("nvr-cli",
    "nvr_cli"), and other programs announce under the same discovery prefix.
    """
    head = f"{ha_prefix}/"
    if not topic.startswith(head):
        return None
    levels = topic[len(head) :].split("/")
    if len(levels) != 4 or levels[3] != "config" or not levels[1].startswith(f"{slug(prefix)}_"):
        return None
    if not payload:
        return None
    try:
        config = json.loads(payload)
    except ValueError:  # UnicodeDecodeError too
        return None
    if not isinstance(config, dict) or not isinstance(config.get("device"), dict):
        return None
    camera = config["device"].get("name")
    if not isinstance(camera, str) or node_id(prefix, camera) != levels[1]:
        return None
    availability = config.get("availability")
    if not isinstance(availability, list) or not availability:
        return None
    used = [a.get("topic") if isinstance(a, dict) else None for a in availability]
    used += [value for key, value in config.items() if key.endswith("_topic")]
    if not all(isinstance(t, str) and t.startswith(f"{prefix}/") for t in used):
        return None
    return camera
