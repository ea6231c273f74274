"""The ffmpeg layer: which ffmpeg to run, the one way an ffmpeg child is started and read (own session,
tied to its parent, a bounded stderr tail, why it failed), and the MPEG-TS parser for what it sends.
"""
