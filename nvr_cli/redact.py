"""Keep camera passwords out of every line we print or write."""
import logging
import re

_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]*)@")


def redact(text) -> str:
    """``rtsp://user:secret@host`` -> ``rtsp://user:***@host`` anywhere in ``text``."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", str(text))


class RedactingFormatter(logging.Formatter):
    """A formatter whose output never contains a URL password, whatever was logged."""

    def format(self, record):
        return redact(super().format(record))
