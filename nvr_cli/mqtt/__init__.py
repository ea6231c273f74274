"""MQTT: a camera's events, motion, objects and availability on a broker, and Home Assistant discovery."""
