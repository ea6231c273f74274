"""What an event becomes: the sinks (clips with sidecars and thumbnails, or scan's list), one clip
writer class per mode, the H.264 encoders, packet clips, lossless cuts and the debug video.
"""
