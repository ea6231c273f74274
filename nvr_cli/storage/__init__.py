"""Files on disk: date folders and names (paths), continuous segments and their index, lossless
export of a range, and the reaper (retention).
"""
