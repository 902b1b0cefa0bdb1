"""`Batcher`: a lone item goes at once; items of one busy turn share one flush."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from async_endpoints._errors import JobStoreError
from async_endpoints_redis._batch import Batcher, Turn


class Recorder:
    """A flush that records its batches and answers each item with its double."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def flush(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        await self.gate.wait()
        return [item * 2 for item in items]


async def test_a_lone_item_is_sent_in_the_callers_task_without_waiting_for_the_turn() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.flush)
    submitted = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0)  # one step of the submitter: the flush has begun already
    assert recorder.batches == [[1]]
    assert await submitted == 2


async def test_items_submitted_while_a_flush_is_under_way_share_the_next_flush() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    batcher = Batcher(recorder.flush)
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(batcher.submit(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0.01)
    recorder.gate.set()
    assert await asyncio.gather(first, *rest) == [2, 4, 6, 8]
    assert recorder.batches == [[1], [2, 3, 4]]


async def test_every_caller_of_a_failed_flush_gets_the_error() -> None:
    async def broken(items: Sequence[int]) -> list[int]:
        await asyncio.sleep(0)
        raise JobStoreError("down")

    batcher = Batcher(broken)
    calls = [asyncio.ensure_future(batcher.submit(n)) for n in range(3)]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(outcome, JobStoreError) for outcome in outcomes)


async def test_a_flush_answering_the_wrong_number_of_replies_is_an_error() -> None:
    async def short(items: Sequence[int]) -> list[int]:
        return []

    with pytest.raises(JobStoreError, match="0 replies for a batch of 1"):
        await Batcher(short).submit(1)


async def test_batchers_sharing_a_turn_flush_once_each_and_answer_apart() -> None:
    """Two batchers (two shards) sharing a turn: with a flush under way in one, the other's
    first item waits for the turn too; the turn ends with one flush per batcher, and each
    caller is answered when its own batcher's flush returns, not the slowest one's."""
    fast, slow = Recorder(), Recorder()
    turn: Turn[int, int] = Turn()
    one, other = Batcher(fast.flush, turn=turn), Batcher(slow.flush, turn=turn)
    slow.gate.clear()
    lone = asyncio.ensure_future(other.submit(1))
    await asyncio.sleep(0)  # sent alone: nothing was under way
    ours = [asyncio.ensure_future(one.submit(n)) for n in (2, 3)]
    theirs = [asyncio.ensure_future(other.submit(n)) for n in (4, 5)]
    assert await asyncio.gather(*ours) == [4, 6]  # while the slow flushes still wait
    assert fast.batches == [[2, 3]] and slow.batches == [[1], [4, 5]]
    assert not lone.done() and not any(call.done() for call in theirs)
    slow.gate.set()
    assert await asyncio.gather(lone, *theirs) == [2, 8, 10]


async def test_with_one_call_each_a_batchers_items_wait_for_its_call_under_way() -> None:
    """``one_call_each``: while a batcher's call is under way, its items of later turns
    wait for it and then go as one call (another batcher's go at the end of their turn);
    without it, each turn sends its own call."""
    for one_call_each, expected in ((True, [[1], [2, 3, 4]]), (False, [[1], [2], [3, 4]])):
        held, other = Recorder(), Recorder()
        held.gate.clear()
        turn: Turn[int, int] = Turn(one_call_each=one_call_each)
        busy, free = Batcher(held.flush, turn=turn), Batcher(other.flush, turn=turn)
        calls = [asyncio.ensure_future(busy.submit(1))]
        await asyncio.sleep(0)  # sent alone: under way until the gate opens
        calls.append(asyncio.ensure_future(busy.submit(2)))
        await asyncio.sleep(0.01)  # a turn ends
        calls += [asyncio.ensure_future(busy.submit(n)) for n in (3, 4)]
        assert await free.submit(5) == 10  # its own flush at the end of this turn
        await asyncio.sleep(0.01)
        held.gate.set()
        assert await asyncio.gather(*calls) == [2, 4, 6, 8]
        assert held.batches == expected and other.batches == [[5]]


async def test_with_one_call_each_held_items_go_with_the_next_items_of_the_answered() -> None:
    """``one_call_each``: the items held for a call go with what its answered callers
    submit next in the same turn, in one call (not one call each)."""
    recorder = Recorder()
    recorder.gate.clear()
    batcher = Batcher(recorder.flush, turn=Turn(one_call_each=True))

    async def submit_then_next() -> list[int]:
        return [await batcher.submit(1), await batcher.submit(3)]

    first = asyncio.ensure_future(submit_then_next())
    await asyncio.sleep(0)  # 1 is sent alone
    held = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0.01)  # a turn ends: 2 is held for the call under way
    recorder.gate.set()
    assert await asyncio.gather(first, held) == [[2, 6], 4]
    assert recorder.batches == [[1], [2, 3]]


async def test_with_one_call_each_held_items_go_on_their_own_once_hold_for_passed() -> None:
    """``one_call_each``: items wait for a call under way ``hold_for`` seconds at most; a
    call that does not answer (a frozen server) does not hold them up longer."""
    hung = asyncio.Event()
    batches: list[list[int]] = []

    async def flush(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        if items[0] == 1:
            await hung.wait()  # the first call hangs until the end of the test
        return [item * 2 for item in items]

    batcher = Batcher(flush, turn=Turn(one_call_each=True, hold_for=0.05))
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0)  # 1 is sent alone, and hangs
    held = [asyncio.ensure_future(batcher.submit(n)) for n in (2, 3)]
    async with asyncio.timeout(5):  # far longer than hold_for, shorter than for ever
        assert await asyncio.gather(*held) == [4, 6]
    assert batches == [[1], [2, 3]] and not first.done()
    hung.set()
    assert await first == 2
