"""A real RTSP server for the tests, built on GStreamer's gst-rtsp-server.

Runs under Debian's /usr/bin/python3 (the only interpreter that has the GObject
bindings), as its own process. It loads an H.264 (or H.265) MP4 into memory once and serves
it in a loop at real-time pace, so a test controls exactly what the "camera"
shows. SIGUSR1 toggles a stall (the session stays up, no frames are sent);
SIGTERM/SIGINT stops the server.

Usage: rtsp_server.py --file clip.mp4 --port 8554 [--path /cam] [--user U --password P] [--protocols tcp|udp]
                      [--log-times FILE]
(--protocols: the only lower transport it accepts, as some cameras do; both by default;
--log-times: a line "<unit index in the file> <epoch seconds>" for each access unit as it is handed
to the RTSP pipeline, for latency measurements)
Prints "READY rtsp://127.0.0.1:PORT/PATH" on stdout once it accepts clients.
"""

import argparse
import signal
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstRtsp", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

CODECS = ("h264", "h265")


def load_access_units(path):
    """Demux the file into (bytes, pts_seconds) access units in decode order, their caps and codec."""
    for codec in CODECS:
        units, caps = _access_units(path, codec)
        if units:
            return units, caps, codec
    raise SystemExit(f"rtsp_server: no H.264 or H.265 video in {path}")


def _access_units(path, codec):
    pipe = Gst.parse_launch(
        f'filesrc location="{path}" ! qtdemux ! {codec}parse config-interval=-1 ! '
        f"video/x-{codec},stream-format=byte-stream,alignment=au ! "
        "appsink name=sink sync=false emit-signals=false"
    )
    sink = pipe.get_by_name("sink")
    bus = pipe.get_bus()
    pipe.set_state(Gst.State.PLAYING)
    units, caps = [], None
    while True:
        sample = sink.emit("try-pull-sample", Gst.SECOND // 5)
        if sample is None:
            # the end, or an error (the other codec: the parser does not link), or not yet
            if sink.get_property("eos") or bus.pop_filtered(Gst.MessageType.ERROR) is not None:
                break
            continue
        caps = caps or sample.get_caps().to_string()
        buf = sample.get_buffer()
        ok, info = buf.map(Gst.MapFlags.READ)
        units.append((bytes(info.data), buf.pts / Gst.SECOND if buf.pts != Gst.CLOCK_TIME_NONE else None))
        buf.unmap(info)
    pipe.set_state(Gst.State.NULL)
    return units, caps


class LoopingFactory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, units, caps, fps, log_times=None, codec="h264"):
        super().__init__()
        self.units, self.caps, self.fps = units, caps, fps
        self.log_times = log_times  # an open, line-buffered file, or None
        self.stalled = threading.Event()
        self.set_shared(True)
        self.set_launch(
            "( appsrc name=src is-live=true format=time do-timestamp=true "
            f"! {codec}parse ! rtp{codec}pay name=pay0 pt=96 config-interval=1 )"
        )

    def do_media_configure(self, media):
        src = media.get_element().get_child_by_name("src")
        src.set_property("caps", Gst.Caps.from_string(self.caps))
        stop = threading.Event()
        media.connect("unprepared", lambda *_: stop.set())
        threading.Thread(target=self._feed, args=(src, stop), daemon=True).start()

    def _feed(self, src, stop):
        period = 1.0 / self.fps
        next_t = time.monotonic()
        i = 0
        while not stop.is_set():
            if self.stalled.is_set():
                time.sleep(0.05)
                next_t = time.monotonic()
                continue
            data, _ = self.units[i % len(self.units)]
            sent = time.time()
            if src.emit("push-buffer", Gst.Buffer.new_wrapped(data)) != Gst.FlowReturn.OK:
                # FLUSHING while the shared media changes state (a client coming as another goes): a camera
                # goes on sending, and a feeder that ended here left the media serving no frame to anyone
                if stop.wait(period):
                    return
                next_t = time.monotonic()
                i += 1
                continue
            if self.log_times:
                self.log_times.write(f"{i % len(self.units)} {sent:.6f}\n")
            i += 1
            next_t += period
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/cam")
    ap.add_argument("--fps", type=float, default=0, help="pace; default from the file's timestamps")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--protocols", choices=("tcp", "udp"))
    ap.add_argument("--log-times")
    args = ap.parse_args()

    Gst.init(None)
    units, caps, codec = load_access_units(args.file)
    fps = args.fps
    if not fps:
        pts = sorted(p for _, p in units if p is not None)
        fps = (len(pts) - 1) / (pts[-1] - pts[0]) if len(pts) > 1 and pts[-1] > pts[0] else 15.0

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    log_times = open(args.log_times, "a", buffering=1) if args.log_times else None
    factory = LoopingFactory(units, caps, fps, log_times, codec)
    if args.protocols == "tcp":
        factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
    elif args.protocols == "udp":
        factory.set_protocols(GstRtsp.RTSPLowerTrans.UDP)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", args.user)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_permission_for_role(args.user, "media.factory.access", True)
        perms.add_permission_for_role(args.user, "media.factory.construct", True)
        factory.set_permissions(perms)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        raise SystemExit(f"rtsp_server: cannot listen on port {args.port}")

    loop = GLib.MainLoop()

    def toggle_stall(*_):
        if factory.stalled.is_set():
            factory.stalled.clear()
        else:
            factory.stalled.set()
        return True

    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGUSR1, toggle_stall)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, lambda *_: loop.quit())
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, lambda *_: loop.quit())
    print(f"READY rtsp://127.0.0.1:{args.port}{args.path} fps={fps:.3f} units={len(units)}", flush=True)
    loop.run()


if __name__ == "__main__":
    sys.exit(main())
