"""The unit that flows through the pipeline."""

from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class Frame:
    image: np.ndarray  # BGR, as decoded
    ts: float  # seconds: presentation time for files, the monotonic clock for live sources
    index: int  # 0-based count of frames delivered since the source was opened
