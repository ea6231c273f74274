"""An HTTP MJPEG camera for the tests: serves a video file's frames as multipart/x-mixed-replace
JPEGs, in a loop, at the file's frame rate. Prints "READY http://127.0.0.1:PORT/stream.mjpg".

Usage: python mjpeg_server.py --file clip.mp4 --port PORT
"""

import argparse
import http.server
import socketserver
import time

import cv2

BOUNDARY = "nvrframe"


def load(path):
    cap = cv2.VideoCapture(path)
    fps = cap.get(cv2.CAP_PROP_FPS) or 15.0
    jpegs = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        jpegs.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return jpegs, fps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    jpegs, fps = load(args.file)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def do_GET(self):
            if self.path != "/stream.mjpg":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.end_headers()
            start, i = time.monotonic(), 0
            try:
                while True:
                    data = jpegs[i % len(jpegs)]
                    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                    self.wfile.write(head.encode())
                    self.wfile.write(data + b"\r\n")
                    i += 1
                    delay = start + i / fps - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
            except (BrokenPipeError, ConnectionResetError):
                pass

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", args.port), Handler)
    print(f"READY http://127.0.0.1:{args.port}/stream.mjpg", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
