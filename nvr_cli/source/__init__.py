"""Where the pictures come from: what a source string names and how ffmpeg opens it (spec), OpenCV
capture on a reader thread (capture), and the camera's own packets as the pre-alarm (packets).
"""
