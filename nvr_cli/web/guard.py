"""The review page's guard: the one ASGI middleware in front of every endpoint. It asks for the
login, refuses cross-site writes and foreign Host names, and adds the security headers."""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from starlette.requests import cookie_parser
from starlette.responses import JSONResponse, Response

from nvr_cli.web.auth import COOKIE, Sessions, is_loopback
from nvr_cli.web.config import WebConfig

log = logging.getLogger(__name__)

OPEN_API = ("/api/me", "/api/login", "/api/logout")  # answered without a session
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", CSP.encode()),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class Guard:
    """Login, CSRF and the host check before any endpoint; security headers on every answer.

    Without a login (a loopback server) the Host header must name the loopback too: a web site
    whose name an attacker points at 127.0.0.1 (DNS rebinding) is refused instead of read."""

    def __init__(self, app: Any, config: WebConfig, sessions: Sessions):
        self.app, self.config, self.sessions = app, config, sessions

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if scope["type"] == "websocket":
            refused = self._ws_refusal(scope, headers)
            if refused:
                log.info("WebSocket %s refused: %s", scope.get("path", ""), refused)
                await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
                return
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        api = path.startswith("/api/")

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [h for h in SECURITY_HEADERS if h[0] not in have]
                if api and b"cache-control" not in have:
                    kind = dict(message.get("headers", [])).get(b"content-type", b"")
                    extra.append(
                        (
                            b"cache-control",
                            b"no-store" if kind.startswith(b"application/json") else b"private",
                        )
                    )
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        refusal = self._refusal(scope, path, headers, api)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _user(self, scope: dict, headers: dict) -> Optional[str]:
        """The session's user (None: none), put in the scope's state with the session's token."""
        # Starlette's lenient parser: another local app's odd cookie must not hide ours
        token = cookie_parser(headers.get("cookie", "")).get(COOKIE)
        user = self.sessions.user(token) if self.config.login_required else None
        scope.setdefault("state", {})
        scope["state"]["user"], scope["state"]["token"] = user, token
        return user

    def _foreign_host(self, headers: dict) -> Optional[str]:
        """Why a server without login refuses this Host (DNS rebinding), or None."""
        host = headers.get("host", "")
        name = urlsplit(f"//{host}").hostname or ""
        if not self.config.login_required and host and not is_loopback(name):
            return f"this server answers only as localhost (Host: {host!r}); see WEB_HOST"
        return None

    def _ws_refusal(self, scope: dict, headers: dict) -> Optional[str]:
        """Why a WebSocket is refused, or None. Browsers let any site open a WebSocket to any server,
        cookies included (no CORS): the Origin must be the server's own (cross-site hijacking)."""
        user = self._user(scope, headers)
        foreign = self._foreign_host(headers)
        if foreign:
            return foreign
        origin = headers.get("origin")
        if origin is None or urlsplit(origin).netloc != headers.get("host"):
            return f"Origin {origin!r} is not this server"
        if self.config.login_required and user is None:
            return "no session"
        return None

    def _refusal(self, scope: dict, path: str, headers: dict, api: bool) -> Optional[Response]:
        user = self._user(scope, headers)
        foreign = self._foreign_host(headers)
        if foreign:
            return error_response(403, foreign)
        if api and scope["method"] not in ("GET", "HEAD"):
            kind = headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                return error_response(403, "a write must be sent as application/json")
            origin = headers.get("origin")
            if origin is not None and urlsplit(origin).netloc != headers.get("host"):
                return error_response(403, "a write from another site is refused")
            if headers.get("sec-fetch-site") == "cross-site":
                return error_response(403, "a write from another site is refused")
        if api and self.config.login_required and user is None and path not in OPEN_API:
            return error_response(401, "log in first")
        return None


def error_response(status: int, message: str, headers: Optional[dict] = None) -> JSONResponse:
    """The API's one-line error."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)
