#!/usr/bin/env bash
# Installs everything the tests need on a Debian machine (as root, or with sudo), then runs them.
# Usage: bash scripts/install_and_test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: ffmpeg/ffprobe, the zbar library, and GStreamer's RTSP server, which the tests
# start on 127.0.0.1 as a real camera (it runs under Debian's /usr/bin/python3), and faketime
# (libfaketime), which the clock tests preload to cross a DST change and to step the clock; chromium,
# the real browser the web page's tests drive (through Playwright's Python package), with a font;
# mosquitto, the real MQTT broker the MQTT tests start on 127.0.0.1 (mosquitto-clients: its tools).
DEBS="ffmpeg libzbar0 mosquitto mosquitto-clients python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools gstreamer1.0-plugins-base
      gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly faketime
      chromium fonts-dejavu-core"
missing=""
for p in $DEBS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing Debian packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

PY=${PYTHON:-python3}
$PY -m pip install -q --disable-pip-version-check -e '.[test]'
# The RTSP cases must run wherever this script runs: a missing server is a failure, not a skip.
export NVR_CLI_REQUIRE_RTSP=1
exec $PY -m pytest "$@"
