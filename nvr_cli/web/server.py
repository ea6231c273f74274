"""`nvr-cli serve`: check where it may listen, bring the index up to date, follow the storage, and
run the application on uvicorn until SIGTERM/SIGINT."""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Optional

from nvr_cli.config import LoadedSettings
from nvr_cli.core.errors import ConfigError, NvrError
from nvr_cli.storage.catalog import catalog_for, index_file
from nvr_cli.web.auth import is_loopback
from nvr_cli.web.exports import FOLDER_NAME, ExportJobs

log = logging.getLogger(__name__)


def check_host(host: str, users: Any) -> None:
    """ConfigError unless ``host`` is the loopback or there are users to log in."""
    if not is_loopback(host) and not users:
        raise ConfigError(
            f"refusing to serve on {host}, which is not the loopback, without a login: add WEB_USERS "
            "(hashes from `nvr-cli web passwd USER`), or serve on 127.0.0.1"
        )


def bind(host: str, port: int) -> socket.socket:
    """The listening socket's address bound now, so that a port in use is a one-line error before
    anything else starts (ConfigError)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"WEB_HOST {host!r}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is in use: choose another with --port or WEB_PORT"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _uvicorn_logging() -> None:
    """uvicorn's own lines through nvr-cli's handlers (redacting, the log file); warnings only, and no
    access log: query strings are nobody's business."""
    ours = logging.getLogger("nvr_cli")
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers = list(ours.handlers)
        lg.setLevel(logging.WARNING)
        lg.propagate = False
    access = logging.getLogger("uvicorn.access")
    access.handlers, access.propagate, access.disabled = [], False, True


def _watch_parent(server: Any, parent: int, stop: threading.Event) -> None:
    """Under `nvr-cli run`: stop when the run that started this worker is gone (killed)."""
    while not stop.wait(2.0):
        if os.getppid() != parent:
            log.warning("the `nvr-cli run` that started this page is gone: stopping")
            server.should_exit = True
            return


def serve(loaded: LoadedSettings, host: str, port: int, *, static_dir: Optional[Path] = None) -> int:
    """Serve the review page of ``loaded``'s cameras on ``host``:``port`` until SIGTERM/SIGINT; 0."""
    import uvicorn

    from nvr_cli.ffmpeg.binary import find_ffmpeg
    from nvr_cli.runtime.fleet import ENV_PARENT
    from nvr_cli.runtime.worker import supervisor_pid
    from nvr_cli.web.app import STATIC_DIR, create_app
    from nvr_cli.web.config import WebConfig

    # under `run`: its pid now, before a long first build (a `run` killed meanwhile must not leave
    # this server holding the port that the next `run`'s page worker needs)
    parent = supervisor_pid()
    if parent is None and os.environ.get(ENV_PARENT):
        raise NvrError("the `nvr-cli run` that started this review page is gone")
    s = loaded.settings
    check_host(host, s.WEB_USERS)
    sock = bind(host, port)
    port = sock.getsockname()[1]
    try:
        catalog = catalog_for(loaded)
    except (sqlite3.Error, OSError) as e:
        sock.close()
        raise NvrError(f"index {index_file(s)}: {e} (WEB_INDEX_FILE)") from None
    watcher = None
    exports = None
    try:
        log.info("index %s: bringing it up to date", catalog.db_path)
        said_at = [time.monotonic()]

        def progress(read: int) -> None:
            if time.monotonic() - said_at[0] >= 5:  # a first build of a big storage: a line every 5 s
                said_at[0] = time.monotonic()
                log.info("index: %d file(s) read", read)

        done = catalog.build(progress)
        log.info(
            "index: %d event(s), %d segment(s); %d file(s) read in %.1f s",
            done["events"],
            done["segments"],
            done["read"],
            done["seconds"],
        )
        try:
            watcher = catalog.watch()
        except (ImportError, OSError) as e:
            log.warning("the index cannot follow the storage (%s): restart to see new recordings", e)
        config = WebConfig.from_settings(loaded)
        exports = ExportJobs(
            index_file(s).parent / FOLDER_NAME,
            config.output_of,
            lambda: find_ffmpeg(s.FFMPEG_PATH),
            s.WEB_EXPORT_KEEP_HOURS,
        )
        exports.start()
        app = create_app(
            catalog,
            config,
            exports=exports,
            static_dir=static_dir or STATIC_DIR,
            watching=lambda: bool(watcher and watcher.alive),
        )
        _uvicorn_logging()
        shown = f"[{host}]" if ":" in host else host

        class Server(uvicorn.Server):
            async def startup(self, sockets: Optional[list] = None) -> None:
                await super().startup(sockets)
                if not self.should_exit:
                    log.info("serving the review page at http://%s:%d/", shown, port)

            async def shutdown(self, sockets: Optional[list] = None) -> None:
                # the relays first: their viewers' sockets then close, and no ffmpeg is left behind
                await app.state.live.close()
                await super().shutdown(sockets)

        server = Server(
            uvicorn.Config(
                app,
                log_config=None,
                access_log=False,
                proxy_headers=False,  # X-Forwarded-For from a local client would pick its own address
                server_header=False,
                lifespan="off",
                # the live view's WebSockets (uvicorn's "websockets" is deprecated: the same package)
                ws="websockets-sansio",
                ws_per_message_deflate=False,  # compressing video costs CPU per viewer and saves nothing
                timeout_graceful_shutdown=5,
            )
        )

        def asked_to_stop(signum: int, _frame: Any) -> None:
            # uvicorn has its own handlers while it runs and calls this one again once it stopped
            if not getattr(asked_to_stop, "said", False):
                asked_to_stop.said = True  # type: ignore[attr-defined]
                log.info("%s received: stopping the review page", signal.Signals(signum).name)

        signal.signal(signal.SIGTERM, asked_to_stop)
        signal.signal(signal.SIGINT, asked_to_stop)
        parent_gone = threading.Event()
        if parent:
            threading.Thread(
                target=_watch_parent, args=(server, parent, parent_gone), name="nvr-web-parent", daemon=True
            ).start()
        try:
            server.run(sockets=[sock])
        finally:
            parent_gone.set()
        if not server.started:
            raise NvrError(f"the review page could not start on {host}:{port} (see the log)")
        log.info("review page stopped")
        return 0
    finally:
        sock.close()
        if exports is not None:
            exports.stop()
        if watcher is not None:
            watcher.stop()
        catalog.close()
