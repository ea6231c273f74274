"""nvr-cli: a motion-triggered event recorder for RTSP, USB and file sources."""

import os

# FFmpeg inside OpenCV prints to stderr on its own (connection errors, sometimes URLs);
# keep it quiet so only our redacted log lines reach the user. Must precede the cv2 import.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

__version__ = "0.1.0"
