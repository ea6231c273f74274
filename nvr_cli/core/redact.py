"""Keep camera passwords out of every line we print or write."""

from __future__ import annotations

import logging
import re

_SCHEME = r"[A-Za-z][A-Za-z0-9+.-]*://"
# scheme://user:password@host -- the password runs (lazily, never across a line end) to the first
# "@" after which the rest of the URL (up to whitespace or the end) holds no further "@": so a raw
# "@", "/", "?" or a space in the password is masked too (rtsp://admin:p@ss/w@host: all of
# "p@ss/w"), and a later "@" (an e-mail address after the URL) is not taken. A raw "@" in the
# path or query masks up to it: too much, never too little.
_USERINFO = re.compile(
    rf"(?<![A-Za-z0-9+.-])(?P<head>{_SCHEME}[^:/?#\s]*:)(?P<pw>[^\n\r]*?)@(?=[^\s@]*(?:\s|$))"
)
# a second URL inside what looked like a password: "rtsp://host:554/a rtsp://u:pw@host/b"
_INNER_URL = re.compile(rf"\s({_SCHEME})")
# credentials in a query string (or anywhere as key=value): the key is kept, the value masked up
# to "&", "#", whitespace or the end, or a double quote that closes a JSON string ('"' is no URL
# character; an escaped \" is part of the value).
_KEYS = (
    "password",
    "passwd",
    "pwd",
    "pass",
    "access_token",
    "token",
    "auth",
    "apikey",
    "api_key",
    "key",
    "secret",
    "signature",
    "sig",
)
_QUERY = re.compile(
    rf"(?i)(?<![A-Za-z0-9_.-])(?P<key>(?:[A-Za-z0-9]+[_.-])*(?:{'|'.join(_KEYS)})=)"
    r"(?:[^&#\s\"\\]|\\\S?|\"(?![\s,:;)\]}]|$))+"
)


def _mask_userinfo(text: str) -> str:
    out, pos = [], 0
    while True:
        m = _USERINFO.search(text, pos)
        if not m:
            break
        inner = _INNER_URL.search(m["pw"])
        if inner:
            at = m.start("pw") + inner.start(1)
            if _USERINFO.match(text, at):  # the first URL had no password; the second one has
                out.append(text[pos:at])
                pos = at
                continue
        out.append(text[pos : m.start("pw")] + "***@")
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


# a value masked already, and the punctuation after it ("...?password=***: unknown host")
_MASKED = re.compile(r"\*\*\*[:,;.)\]'\"]?")


def _mask_query(m) -> str:
    if _MASKED.fullmatch(m.group(0), len(m["key"])):  # redacting twice changes nothing
        return m.group(0)
    return m["key"] + "***"


def redact(text: object) -> str:
    """``rtsp://user:secret@host`` -> ``rtsp://user:***@host`` and ``?password=secret`` ->
    ``?password=***``, for every URL in ``text``."""
    return _QUERY.sub(_mask_query, _mask_userinfo(str(text)))


class RedactingFormatter(logging.Formatter):
    """A formatter whose output never contains a URL password, whatever was logged.

    The whole formatted record is redacted (message, traceback and stack); the traceback and
    stack texts are also redacted where they are made, since ``exc_text`` is cached on the record.
    """

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))

    def formatException(self, ei: tuple) -> str:
        return redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return redact(super().formatStack(stack_info))
