# Copy to machine_specific_configuration.py (beside config.py) and keep only what this machine
# changes. Any name from config.py may appear here; an unknown name is an error (with a
# did-you-mean), so typos never pass silently. Helper functions and imports are allowed.

cam = "rtsp://admin:password@192.168.1.64:554/Streaming/Channels/101"
CAMERA_NAME = "front-door"
PATH_FOR_VIDEO = "/srv/nvr"

PRE_ALARM_RECORDING_SECONDS = 5
MINIMAL_MOTION_DURATION = 10
MASKS = ["0,0 400,0 400,40 0,40"]  # the camera's clock overlay

LOG_FILE_PATH = "/var/log/nvr-cli/front-door.log"
APP_LOG_LEVEL = "INFO"


def subFolderNameGeneratorFunc(dts):
    """One folder per day, e.g. 2026-11-21 (dts is UTC)."""
    return "{:04}-{:02}-{:02}".format(dts.year, dts.month, dts.day)
