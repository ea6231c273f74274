"""The wait before the next retry: doubling from a first delay up to a longest one.

Reconnects (the decoder's, the packet buffer's, continuous recording's), crashed components and
dead workers all wait this way, so that a camera that is gone for hours is asked every few
seconds (not hammered, not forgotten), and one that was back for a while starts afresh.
"""

from __future__ import annotations


class Backoff:
    """``next()`` is the delay to wait now: ``first``, then twice the last, never above ``maximum``;
    ``reset()`` after a success makes the next one ``first`` again."""

    def __init__(self, first: float, maximum: float, factor: float = 2.0):
        self.first, self.maximum, self.factor = first, maximum, factor
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(delay * self.factor, self.maximum)
        return delay

    def peek(self) -> float:
        """What ``next()`` would return, without advancing."""
        return self._next

    def reset(self) -> None:
        self._next = self.first
