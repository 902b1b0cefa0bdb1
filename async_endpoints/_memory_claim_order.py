"""The in-memory store's ``Queued`` listing in claim order (`queued`): within each queue,
its claimable jobs in the tenants' turns (`TenantTurns`, read in place), then the jobs
waiting behind their partition key by when each was queued; and how a page resumes there
while claims move the jobs up (`Resume`, `followed`). See `_memory_listing` for the
orders of the other statuses and what a page costs."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any, NamedTuple

from ._job import JobStatus
from ._memory_index import queued_entry_of, queued_parts
from ._memory_live import QUEUED
from ._memory_positions import Walk, is_integer, job_key
from ._memory_ready import TenantTurns

if TYPE_CHECKING:
    from ._memory_listing import MemoryInspection


def queued(
    store: MemoryInspection,
    queue: str | None,
    tenant: str | None,
    position: list[Any] | None,
    queues: Sequence[str],
) -> Walk:
    """Queue after queue in priority order, each in its claim order: its claimable jobs in
    the tenants' turns, then its jobs waiting behind their partition key, by when each was
    queued (see `Resume` for the positions)."""
    if queue is not None:
        names = [queue]
    else:
        names = list(dict.fromkeys(queues))
        names += sorted(set(store._live.queued) - set(names))
    start, resume = 0, None
    if position is not None:
        if not position or position[0] not in names:
            raise ValueError("invalid cursor")
        start, resume = names.index(position[0]), Resume.of(position)
    for index in range(start, len(names)):
        name = names[index]
        here = resume if index == start else None
        if here is None or here.behind is None:
            yield from _in_turns(store, name, tenant, here)
        yield from _behind_keys(store, name, None if here is None else here.behind)


class Resume(NamedTuple):
    """Where a Queued page resumes its queue, read from a position:

    - ``[queue, 0, round, place, id, µs, seq]``: after that job of the turns (its id and
      the moment and number it was queued at: a job retried or requeued since is another);
    - ``[queue, 0, round, place, id, µs, seq, next round, next place]``: at the job of the
      turns that came next (its id, queued moment and number, round and place); a page
      that ended before a job of the same turns holds it rather than its last job's, so
      that claims between two pages skip nothing (see `_start`);
    - ``[queue, 1, µs, seq, id]``: after that index entry among the jobs waiting behind
      their partition key (``behind``).
    """

    round: int = 0
    place: int = 0
    key: int = 0
    entry: int = 0
    next: tuple[int, int] | None = None  # the round and place of the job that came next
    behind: int | None = None

    @classmethod
    def of(cls, position: list[Any]) -> Resume:
        """The position's fields, checked (`ValueError` otherwise)."""
        section = position[1] if len(position) > 1 else None
        if len(position) in (7, 9) and is_integer(section) and section == 0:
            round_, place, text, at, seq, *following = position[2:]
            counts = (round_, place, at, seq, *following)
            if all(is_integer(value) and value >= 0 for value in counts):
                key = job_key(text)
                next_at = (following[0], following[1]) if following else None
                return cls(round_, place, key, queued_entry_of(at, seq, key), next_at)
        elif len(position) == 5 and is_integer(section) and section == 1:
            _, _, at, seq, text = position
            if is_integer(at) and is_integer(seq):
                return cls(behind=queued_entry_of(at, seq, job_key(text)))
        raise ValueError("invalid cursor")


def followed(last: list[Any], following: list[Any]) -> list[Any]:
    """The position a page that ended with ``last``, before ``following``, resumes at: the
    job that came next when both are of the same queue's turns (see `Resume`)."""
    if last[:2] == [following[0], 0] and following[1] == 0 and len(following) == 7:
        return [*last[:4], *following[4:7], following[2], following[3]]
    return last


def _in_turns(store: MemoryInspection, name: str, tenant: str | None, here: Resume | None) -> Walk:
    """The claimable jobs of queue ``name`` in the order claims take them: the first job
    of every tenant in turn order, then the second of those that have two, and so on (of
    ``tenant`` alone when given); from where ``here`` says (`_start`). The rest of the
    first round is read in place; a page going on into the next rounds goes through the
    turns once."""
    turns = store._ready.queues.get(name)
    if turns is None:
        return
    jobs, entries = store._jobs, store._live.queued_entries
    first_round, last_place = (-1, -1) if here is None else _start(store, name, turns, here)
    round_ = max(first_round, 0)
    start = last_place + 1 if round_ == first_round else 0
    for place, owner in enumerate(islice(turns.turns, start, None), start):
        waiting = turns.claimable(owner, jobs)
        if (tenant is None or owner == tenant) and len(waiting) > round_:
            job = waiting[round_]
            at, seq, _ = queued_parts(entries[job.id.int])
            yield [name, 0, round_, place, job.id.hex, at, seq], job
    left = [
        (place, waiting)
        for place, owner in enumerate(turns.turns)
        if (tenant is None or owner == tenant)
        and len(waiting := turns.claimable(owner, jobs)) > round_ + 1
    ]
    while left:
        round_ += 1
        for place, waiting in left:
            job = waiting[round_]
            at, seq, _ = queued_parts(entries[job.id.int])
            yield [name, 0, round_, place, job.id.hex, at, seq], job
        left = [group for group in left if len(group[1]) > round_ + 1]


def _start(store: MemoryInspection, name: str, turns: TenantTurns, here: Resume) -> tuple[int, int]:
    """The round and place in ``turns`` (of queue ``name``) to list on after. With the job
    that came next: at it, where it is now (claims move the jobs up); if it was
    cancelled, at its old place (the jobs behind it moved up into it); if it was claimed
    (or is another job now), from the start, since claims take the jobs before it first.
    With the last job looked at alone (a page cut short by a filter, or one that ended
    with the turns): after it, where it is now, else the same way."""
    if here.next is None:
        now = _now_at(store, name, turns, here.key, here.entry, here.round)
        if now is not None:
            return now
        at = here.round, here.place
    else:
        now = _now_at(store, name, turns, here.key, here.entry, here.next[0])
        if now is not None:
            return now[0], now[1] - 1
        at = here.next
    ended = store._finished.get_key(here.key)
    if ended is not None and ended.status is JobStatus.CANCELED:
        return at[0], at[1] - 1
    return -1, -1


def _now_at(
    store: MemoryInspection, name: str, turns: TenantTurns, key: int, entry: int, was: int
) -> tuple[int, int] | None:
    """The round and place in ``turns`` (of queue ``name``) of the job ``key`` queued as
    ``entry`` (which was at round ``was``), or None when it is not claimable there now,
    or was queued again since. Claims only move a tenant's jobs up: O(its tenant's place)
    when it has not moved, else O(its round) more."""
    job = store._jobs.get(key)
    if job is None or job.queue != name or store._live.queued_entries.get(key) != entry:
        return None
    for place, owner in enumerate(turns.turns):
        if owner == job.tenant:
            waiting = turns.claimable(owner, store._jobs)
            if was < len(waiting) and waiting[was] is job:
                return was, place
            for round_, queued in enumerate(waiting):
                if queued is job:
                    return round_, place
            return None
    return None


def _behind_keys(store: MemoryInspection, name: str, after: int | None) -> Walk:
    """The Queued jobs of queue ``name`` waiting behind their partition key, by when each
    was queued, from after the index entry ``after``: its index with the claimable jobs
    skipped (none is read when no job of the queue waits behind a key)."""
    index = store._live.queued.get(name)
    if index is None:
        return
    turns = store._ready.queues.get(name)
    if store._live.counts[name][QUEUED] <= (0 if turns is None else len(turns)):
        return
    jobs, ready = store._jobs, store._ready
    for value in index.after(after):
        at, seq, key = queued_parts(value)
        job = jobs[key]
        yield [name, 1, at, seq, job.id.hex], None if ready.is_claimable(job) else job
