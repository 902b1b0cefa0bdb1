"""The ordered structures of `InMemoryJobStore`'s listings: an ordered set of integers for
each live status, and every job in the order it was created.

`OrderedInts` keeps the Queued jobs of a queue (by when each became due there, then in
the order they were queued), the Scheduled jobs (by
due time) and the running jobs (by ``started_at``), each entry one integer made of the
time and the job id (`queued_entry`, `due_entry`, `entry`), so the order is total (ties
broken by id) and
an entry costs no tuple. A page finds its place by bisection, in O(log n), and reads on
from there; adding and removing an entry cost O(log n) plus a move of at most
``2 * CHUNK`` references.

`CreationLog` is a list read from a ``head`` index and compacted once half of it has been
read (jobs mostly leave in the order they were created).
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

#: Entries read before a list is compacted (once they are half of it too).
COMPACT_AFTER = 1024
#: The usual length of a chunk of `OrderedInts` (a chunk holds up to twice this).
CHUNK = 512

_ID_BITS = 128
_SEQ_BITS = 48  # a Queued entry's sequence number: 2**48 jobs queued per process
_SEQ_MASK = (1 << _SEQ_BITS) - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_DOUBLE = struct.Struct("<d")
_MAGNITUDE = (1 << 63) - 1


def micros(moment: datetime) -> int:
    """``moment`` in whole microseconds since the epoch (exact)."""
    return (moment - _EPOCH) // _MICROSECOND


def entry(moment: datetime, key: int) -> int:
    """The `OrderedInts` entry of the job ``key`` (its id as an integer) at ``moment``:
    ordered by ``moment``, then by id."""
    return (micros(moment) << _ID_BITS) + key


def queued_entry(moment: datetime, seq: int, key: int) -> int:
    """The `OrderedInts` entry of the Queued job ``key`` that became due at ``moment``, as
    the store's ``seq``-th job to enter Queued: ordered by ``moment``, then by ``seq``
    (jobs queued at one moment, a batch's say, in the order workers take them), then by
    id (`queued_parts` reads them back)."""
    return queued_entry_of(micros(moment), seq, key)


def queued_entry_of(at_micros: int, seq: int, key: int) -> int:
    """The Queued entry of ``key`` at ``at_micros`` with ``seq`` (a cursor's position)."""
    return (((at_micros << _SEQ_BITS) + (seq & _SEQ_MASK)) << _ID_BITS) + key


def queued_parts(value: int) -> tuple[int, int, int]:
    """(microseconds, sequence number, key) of a Queued entry."""
    at, key = parts(value)
    return at >> _SEQ_BITS, at & _SEQ_MASK, key


def due_entry(due: float, key: int) -> int:
    """The `OrderedInts` entry of the job ``key`` due at ``due`` (a finite float, seconds
    on the store's monotonic clock): ordered by ``due``, then by id."""
    bits = int.from_bytes(_DOUBLE.pack(due), "little", signed=True)
    # The bits of a float are in its order for positive floats, and reversed for negative ones.
    order = bits if bits >= 0 else -(bits & _MAGNITUDE) - 1
    return (order << _ID_BITS) + key


def entry_of(at_micros: int, key: int) -> int:
    """The entry of ``key`` at ``at_micros`` (a position decoded from a cursor)."""
    return (at_micros << _ID_BITS) + key


def parts(value: int) -> tuple[int, int]:
    """(microseconds, key) of an entry."""
    return value >> _ID_BITS, value & ((1 << _ID_BITS) - 1)


class OrderedInts:
    """A sorted set of integers, in chunks of ``CHUNK`` to ``2 * CHUNK`` entries (the last
    ones may be shorter) with the greatest entry of each chunk beside them."""

    __slots__ = ("chunks", "maxes", "size")

    def __init__(self) -> None:
        self.chunks: list[list[int]] = []
        self.maxes: list[int] = []
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, value: int) -> None:
        """Insert ``value`` (not in the set)."""
        chunks, maxes = self.chunks, self.maxes
        self.size += 1
        index = bisect_left(maxes, value)
        if index == len(maxes):  # above every entry: the common case (the newest time)
            if not chunks:
                chunks.append([value])
                maxes.append(value)
                return
            index -= 1
            chunk = chunks[index]
            chunk.append(value)
            maxes[index] = value
        else:
            chunk = chunks[index]
            insort(chunk, value)
        if len(chunk) > 2 * CHUNK:
            chunks[index : index + 1] = [chunk[:CHUNK], chunk[CHUNK:]]
            maxes.insert(index, chunk[CHUNK - 1])

    def remove(self, value: int) -> None:
        """Take ``value`` out of the set (it is in it)."""
        chunks, maxes = self.chunks, self.maxes
        index = bisect_left(maxes, value)
        chunk = chunks[index]
        position = bisect_left(chunk, value)
        if position == len(chunk) or chunk[position] != value:
            raise KeyError(value)
        del chunk[position]
        self.size -= 1
        if not chunk:
            del chunks[index], maxes[index]
            return
        if position == len(chunk):
            maxes[index] = chunk[-1]
        if len(chunk) < CHUNK // 4 and index + 1 < len(chunks):  # merge with the next one
            chunk += chunks[index + 1]
            del chunks[index + 1], maxes[index]
            if len(chunk) > 2 * CHUNK:
                chunks[index : index + 1] = [chunk[:CHUNK], chunk[CHUNK:]]
                maxes.insert(index, chunk[CHUNK - 1])

    def after(self, value: int | None) -> Iterator[int]:
        """The entries above ``value`` (None: all of them), in order."""
        chunks = self.chunks
        index = 0 if value is None else bisect_right(self.maxes, value)
        start = 0 if value is None or index == len(chunks) else bisect_right(chunks[index], value)
        while index < len(chunks):
            chunk = chunks[index]
            yield from chunk[start:] if start else chunk
            index, start = index + 1, 0


class CreationLog:
    """Every stored job's id (as an integer), queue and tenant, in the order the jobs were
    created,
    read from ``head``: what listing without a status pages through, newest first.

    Jobs mostly leave (their retention ends) in about the order they were created, so the
    store moves ``head`` past the leading entries of jobs gone, in O(1) per job; `keep`
    filters the whole log for the rare job that outlives thousands of younger ones."""

    __slots__ = ("head", "keys", "queues", "seqs", "tenants")

    def __init__(self) -> None:
        self.keys: list[int] = []
        self.seqs = array("q")  # machine integers: no int object per entry
        self.queues: list[str] = []
        self.tenants: list[str | None] = []
        self.head = 0

    def __len__(self) -> int:
        return len(self.keys) - self.head

    def add(self, key: int, seq: int, queue: str, tenant: str | None) -> None:
        """Log the job ``key`` of ``queue`` and ``tenant``, created as number ``seq``."""
        self.keys.append(key)
        self.seqs.append(seq)
        self.queues.append(queue)
        self.tenants.append(None if tenant is None else sys.intern(str(tenant)))

    def trim(self, exists: Callable[[int], bool], kept: int) -> None:
        """Forget the jobs gone (``exists(key)`` false): the leading ones in O(1) each,
        all of them once the log is more than twice the ``kept`` jobs."""
        keys, head = self.keys, self.head
        while head < len(keys) and not exists(keys[head]):
            keys[head] = -1  # frees the key now, not in a burst at the next compaction
            self.tenants[head] = None
            head += 1
        self.head = head
        self.compact()
        if len(self) > 2 * kept + COMPACT_AFTER:
            self.keep(exists)

    def compact(self) -> None:
        """Forget the entries before ``head``, once they are half of the log."""
        head = self.head
        if head >= COMPACT_AFTER and 2 * head >= len(self.keys):
            del self.keys[:head], self.seqs[:head], self.queues[:head], self.tenants[:head]
            self.head = 0

    def keep(self, exists: Callable[[int], bool]) -> None:
        """Drop the entries of jobs for which ``exists(key)`` is false (O(n): call it once
        as many jobs have gone as are left, which makes it O(1) per job)."""
        keys = self.keys
        kept = [index for index in range(self.head, len(keys)) if exists(keys[index])]
        self.keys = [keys[index] for index in kept]
        self.seqs = array("q", [self.seqs[index] for index in kept])
        self.queues = [self.queues[index] for index in kept]
        self.tenants = [self.tenants[index] for index in kept]
        self.head = 0

    def newest_first(self, before: int | None) -> Iterator[tuple[int, int, str, str | None]]:
        """(seq, key, queue, tenant) from the newest entry, or from the one before seq
        ``before``."""
        seqs, keys, queues, tenants, head = (
            self.seqs,
            self.keys,
            self.queues,
            self.tenants,
            self.head,
        )
        end = len(seqs) if before is None else bisect_right(seqs, before - 1, lo=head)
        for index in range(end - 1, head - 1, -1):
            yield seqs[index], keys[index], queues[index], tenants[index]
