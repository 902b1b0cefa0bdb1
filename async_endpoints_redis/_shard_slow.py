"""`SlowShards`: the shards a sharded store's claims pass over, and when they are asked again.

A claim waits `ANSWER_WITHIN` seconds at most for a shard's answer (a few milliseconds
normally): a master frozen (SIGSTOP, a stalled host) takes connections and answers
nothing until the socket timeout, and a claim waiting that long for it would hold up the
jobs of every other shard. A shard's claim not answered by then is left running, and the
claim moves on to the other shards. A shard is passed over while its claim is left
running, and from when it failed or answered late until a probe of it (a read of a key
that does not exist, every `PROBE_EVERY` seconds, one at a time) answers: a frozen
master is asked nothing more by the claims while it is frozen, however long.

What the late answer claimed is never lost or taken twice: a claim left running that
answers with jobs (or that fails: its script may have run) leaves its token base to be
sent again by the shard's next claim (`RedisJobStore.claim`), whose script returns the
jobs the first send claimed, their leases renewed (the claim script's memo, as for a
reply lost to the socket timeout). Strict priority within the shard holds: those jobs
are the head of its queues that the first send took. That next claim is sent only with
room for as many jobs as the first send may have taken (`owed`), since the memo returns
them all whatever its limit: a worker is never handed more jobs than it asked for.

A claim that no shard answered, every shard being passed over (the whole store stalls:
there is no other shard to hold up), waits for the first of the calls it left running
to answer, as a claim on one shard waits for it (`first_answer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import Awaitable, Sequence

from async_endpoints._errors import StoreUnavailableError
from async_endpoints._store import Claim

from ._store import RedisJobStore

#: Seconds a claim waits for one shard's answer before it moves on to the others (that
#: shard's call is left running; see the module docstring).
ANSWER_WITHIN = 0.25
#: Seconds between the probes of a shard that failed or answered late.
PROBE_EVERY = 0.5
#: The job read by a probe: none has this id (job ids are uuid4), so the read is one
#: small command in the shard's slot, on its master.
_PROBE_ID = uuid.UUID(int=0)


class SlowShards:
    """The shards whose claims are left running, or that are probed before being asked
    again, and what their next claim may return on top of new jobs."""

    def __init__(self) -> None:
        self._left: dict[RedisJobStore, asyncio.Task[list[Claim]]] = {}
        self._limits: dict[asyncio.Task[list[Claim]], int] = {}  # each left claim's limit
        self._awaited: set[asyncio.Task[list[Claim]]] = set()  # by `first_answer`
        self._probes: dict[RedisJobStore, asyncio.Task[None]] = {}
        self._owed: dict[RedisJobStore, int] = {}  # claims its next claim sends again, at most

    def passed_over(self, shard: RedisJobStore) -> bool:
        """Whether claims pass ``shard`` over (its claim left running, or not answered
        since it failed or answered late)."""
        return shard in self._left or shard in self._probes

    def left_running(self, shard: RedisJobStore) -> bool:
        """Whether a claim of ``shard`` is still under way, left by its caller."""
        return shard in self._left

    def owed(self, shard: RedisJobStore) -> int:
        """How many claims an earlier claim of ``shard`` that nobody returned may have
        taken: its next claim returns them again (the memo), whatever its limit, so it
        is sent only with room for them (a worker never runs more than it asked for)."""
        return self._owed.get(shard, 0) if shard._unanswered_claim else 0

    def claims_left(self) -> list[asyncio.Task[list[Claim]]]:
        """The claims left running (a wait for work ends when one does)."""
        return list(self._left.values())

    async def answer(
        self,
        shard: RedisJobStore,
        call: Awaitable[list[Claim]],
        within: float | None,
        limit: int,
    ) -> list[Claim]:
        """``call`` (a claim of up to ``limit`` jobs)'s answer, its error raised, if it
        comes within ``within`` seconds (None: however long it takes).

        Raises:
            StoreUnavailableError: The shard did not answer in time: its call is left
                running.
        """
        self._owed.pop(shard, None)  # the call sends them again
        task = asyncio.ensure_future(call)
        try:
            await asyncio.wait({task}, timeout=within)
        except BaseException:
            task.cancel()  # the shard's claim leaves its token base to be sent again
            self._leave(shard, task, limit)
            raise
        if task.done():
            try:
                return task.result()
            except Exception:
                self._owed[shard] = limit
                self.probe(shard)
                raise
        self._leave(shard, task, limit)
        raise StoreUnavailableError(f"a shard did not answer a claim within {within} s")

    async def first_answer(self, shards: Sequence[RedisJobStore]) -> list[Claim]:
        """What the first of the claims left running by ``shards`` to answer returns,
        waited for as long as it takes (when no other shard answered: there is none to
        hold up); the others are left running still. Raises the error of the last one
        to fail when every one fails."""
        tasks = {self._left[shard]: shard for shard in shards if shard in self._left}
        pending = set(tasks)
        self._awaited |= pending
        failure: BaseException = StoreUnavailableError("no shard answered a claim")
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                self._awaited -= done
                first = next((task for task in done if _answered(task)), None)
                for task in done - {first}:
                    self._settle(tasks[task], task)
                    if not task.cancelled():
                        failure = task.exception() or failure
                if first is not None:
                    self._limits.pop(first, None)
                    return first.result()
        finally:  # (cancelled) the others end as any claim left running
            for task in pending:
                self._awaited.discard(task)
                if task.done() and self._left.get(tasks[task]) is not task:
                    self._settle(tasks[task], task)  # it ended leaving it to this call
        raise failure

    def probe(self, shard: RedisJobStore) -> None:
        """Pass ``shard`` over until a probe of it answers."""
        if shard not in self._probes:
            probing = asyncio.get_running_loop().create_task(self._probe(shard))
            self._probes[shard] = probing
            probing.add_done_callback(lambda _: self._probes.pop(shard, None))

    async def aclose(self) -> None:
        """Cancel the probes and the claims left running (which leave their token base to
        be sent again, as a claim cancelled does)."""
        tasks = [*self._left.values(), *self._probes.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _leave(self, shard: RedisJobStore, task: asyncio.Task[list[Claim]], limit: int) -> None:
        self._left[shard] = task
        self._limits[task] = limit
        task.add_done_callback(functools.partial(self._ended, shard))

    def _ended(self, shard: RedisJobStore, task: asyncio.Task[list[Claim]]) -> None:
        del self._left[shard]
        if task not in self._awaited:  # else `first_answer` takes care of it
            self._settle(shard, task)

    def _settle(self, shard: RedisJobStore, task: asyncio.Task[list[Claim]]) -> None:
        """A claim left running ended and nobody returns what it claimed: the shard's
        next claim sends its token base again (a failure or cancellation left it
        already), once there is room for them; the shard is probed meanwhile."""
        limit = self._limits.pop(task, 0)
        if _answered(task):
            claims = task.result()
            if claims:
                shard._unanswered_claim = claims[0].token.rpartition(".")[0]
                self._owed[shard] = len(claims)
        else:
            self._owed[shard] = limit
        with contextlib.suppress(RuntimeError):  # the loop is closing
            self.probe(shard)

    @staticmethod
    async def _probe(shard: RedisJobStore) -> None:
        while True:
            await asyncio.sleep(PROBE_EVERY)
            with contextlib.suppress(Exception):
                await shard.get(_PROBE_ID)
                return


def _answered(task: asyncio.Task[list[Claim]]) -> bool:
    return not task.cancelled() and task.exception() is None
