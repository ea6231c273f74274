"""The bounded queue of messages waiting for the broker: a broker that is down or stalled fills it, and
when it is full what matters least goes first, so the recorder never waits and never grows without bound.

Three kinds of message, in the order they are given up:

- ``state`` (motion ON/OFF, counts, availability, snapshots): only the latest value matters, so a queued
  retained state of a topic is replaced by a newer one, and the oldest states are dropped first;
- ``event`` (an event's "new" and "update"): dropped once no state is left to drop;
- ``end`` (an event's "end"): never dropped to make room for others, only beyond their own (large) cap.

Whatever is kept leaves in the order it was put (one FIFO across kinds: a subscriber sees an event's
end after its start).
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass
from typing import Optional, Union

log = logging.getLogger(__name__)

KINDS = ("state", "event", "end")


@dataclass
class Message:
    """One message for the broker; ``kind``: "state", "event" or "end" (how it is dropped, above)."""

    topic: str
    payload: Union[bytes, str]
    retain: bool = False
    kind: str = "state"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"message kind {self.kind!r}: expected one of {', '.join(KINDS)}")


class Outbox:
    """A thread-safe FIFO of ``Message``: ``put`` never blocks (it drops instead), ``get`` waits.

    At most ``max_messages`` messages, except "end" ones, which are kept beyond it up to ``max_ends``;
    ``dropped`` counts what was given up (a retained state replaced by a newer one is not counted: its
    topic still gets the latest value).
    """

    def __init__(self, max_messages: int = 1000, max_ends: int = 10000):
        if max_messages < 1 or max_ends < 1:
            raise ValueError("an outbox holds at least one message")
        self.max_messages, self.max_ends = max_messages, max_ends
        self.dropped = 0
        self.ends_dropped = 0
        self._cv = threading.Condition()
        # seq -> message, in queue order; put_back uses ever smaller seqs, so order == seq order
        self._items: "collections.OrderedDict[int, Message]" = collections.OrderedDict()
        # per kind, its seqs in order, to find the oldest of a kind in O(1); an entry whose message was
        # replaced stays behind (lazy deletion: removing from the middle of a deque is O(n))
        self._order = {k: collections.deque() for k in KINDS}
        self._count = dict.fromkeys(KINDS, 0)
        self._retained: dict[str, int] = {}  # topic -> seq of its queued retained state
        self._next = 0
        self._first = 0

    def __len__(self) -> int:
        with self._cv:
            return len(self._items)

    def put(self, msg: Message) -> None:
        """Queue ``msg`` (last); when full, drop the oldest state, else the oldest event."""
        with self._cv:
            if msg.kind == "state" and msg.retain:
                old = self._retained.pop(msg.topic, None)
                if old is not None:
                    del self._items[old]
                    self._count["state"] -= 1
            seq = self._next
            self._next += 1
            self._add(seq, msg)
            self._order[msg.kind].append(seq)
            while len(self._items) > self.max_messages and (self._count["state"] or self._count["event"]):
                self._drop_oldest("state" if self._count["state"] else "event")
            while self._count["end"] > self.max_ends:
                self._drop_oldest("end")
                self.ends_dropped += 1
                # past max_ends the broker has been away for hours: say so now and then, not per message
                if self.ends_dropped == 1 or self.ends_dropped % 1000 == 0:
                    log.warning(
                        "MQTT: more than %d event ends wait for the broker: %d oldest dropped so far",
                        self.max_ends,
                        self.ends_dropped,
                    )
            self._compact()
            self._cv.notify()

    def put_back(self, msg: Message) -> None:
        """Return a message taken by ``get`` but not delivered: first in line again, nothing dropped for
        it (a retained state whose topic has a newer value queued is stale: that one goes instead)."""
        with self._cv:
            if msg.kind == "state" and msg.retain and msg.topic in self._retained:
                return
            self._first -= 1
            seq = self._first
            self._add(seq, msg)
            self._items.move_to_end(seq, last=False)
            self._order[msg.kind].appendleft(seq)
            self._cv.notify()

    def get(self, timeout: Optional[float] = None) -> Optional[Message]:
        """The oldest message, waiting up to ``timeout`` seconds (None: for ever); None if there is none."""
        with self._cv:
            if not self._items and not self._cv.wait_for(lambda: self._items, timeout):
                return None
            seq, msg = self._items.popitem(last=False)
            order = self._order[msg.kind]
            while order[0] != seq:  # entries before it were replaced: it is the oldest still queued
                order.popleft()
            order.popleft()
            self._forget(seq, msg)
            return msg

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until a message is queued (at once if one is), up to ``timeout`` seconds (None: for ever);
        False if none came. Nothing is taken: a consumer that must count what it takes under a lock of
        its own waits here, then takes with ``get(timeout=0)`` under that lock."""
        with self._cv:
            return bool(self._cv.wait_for(lambda: self._items, timeout))

    def _add(self, seq: int, msg: Message) -> None:
        self._items[seq] = msg
        self._count[msg.kind] += 1
        if msg.kind == "state" and msg.retain:
            self._retained[msg.topic] = seq

    def _forget(self, seq: int, msg: Message) -> None:
        self._count[msg.kind] -= 1
        if msg.kind == "state" and msg.retain and self._retained.get(msg.topic) == seq:
            del self._retained[msg.topic]

    def _drop_oldest(self, kind: str) -> None:
        order = self._order[kind]
        while True:
            seq = order.popleft()
            msg = self._items.pop(seq, None)
            if msg is not None:
                break
        self._forget(seq, msg)
        self.dropped += 1

    def _compact(self) -> None:
        # replacements leave entries behind in the per-kind deques: rebuild them before they outgrow
        # the queue itself (a topic updated a million times while the broker is away)
        if sum(map(len, self._order.values())) > 2 * len(self._items) + 1024:
            for order in self._order.values():
                order.clear()
            for seq, msg in self._items.items():
                self._order[msg.kind].append(seq)
