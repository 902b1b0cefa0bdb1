"""The state machine: every transition a store drives, from every status, against
`async_endpoints._lifecycle.SOURCES` and `TARGETS`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from .._job import Job, JobStatus
from .._lifecycle import SOURCES, TARGETS, InvalidTransitionError, Transition
from .._store import Claim, ControlStore
from ._contract_support import BOOM, FAR, control, forged, new_job, read
from ._kit import StoreKit


@dataclass(frozen=True, slots=True)
class Specimen:
    """A job brought into one status, in a queue of its own so that it is claimed alone.

    Attributes:
        job: The job as it was made.
        claim: Its claim while it runs or its last one; a forged one if it never ran.
    """

    job: Job
    claim: Claim


async def _specimen(kit: StoreKit, status: JobStatus, *, delay: float) -> Specimen:
    queue = f"lifecycle-{status.value}"
    job = await kit.store.enqueue(
        new_job(queue=queue, delay=delay if status is JobStatus.SCHEDULED else 0.0)
    )
    if status in (JobStatus.QUEUED, JobStatus.SCHEDULED):
        return Specimen(job, forged(job))
    if status is JobStatus.CANCELED:
        canceled = await control(kit).cancel(job.id)
        assert canceled is not None
        return Specimen(canceled, forged(job))
    (claim,) = await kit.store.claim(1, queues=(queue,), lease=kit.lease)
    settled: Job | None = claim.job
    if status is JobStatus.COMPLETED:
        settled = await kit.store.complete(claim, "done")
    elif status is JobStatus.FAILED:
        settled = await kit.store.fail(claim, BOOM, retry_in=None)
    assert settled is not None and settled.status is status
    return Specimen(settled, claim)


async def specimens(
    kit: StoreKit, *, first: JobStatus | None = None, wait: float = 0.0, delay: float = FAR
) -> list[Specimen]:
    """One job in each status (Canceled only on a `ControlStore`): ``first`` is made
    first, then ``wait`` seconds pass, then the others are made."""
    statuses = [s for s in JobStatus if s is not JobStatus.CANCELED or _can_cancel(kit)]
    if first is not None:
        statuses.remove(first)
        statuses.insert(0, first)
    made = []
    for status in statuses:
        made.append(await _specimen(kit, status, delay=delay))
        if status is first:
            await kit.advance(wait)
    return made


def _can_cancel(kit: StoreKit) -> bool:
    return isinstance(kit.store, ControlStore)


def check_invariants(job: Job) -> None:
    """What holds in every status: completed_at set exactly when terminal, run_at exactly
    while Scheduled."""
    assert (job.completed_at is not None) == job.status.is_terminal, job
    assert (job.run_at is not None) == (job.status is JobStatus.SCHEDULED), job


Apply = Callable[[StoreKit, Specimen], Awaitable[object]]


def _claim(kit: StoreKit, specimen: Specimen) -> Awaitable[object]:
    return kit.store.claim(1, queues=(specimen.job.queue,), lease=kit.lease)


def _complete(kit: StoreKit, specimen: Specimen) -> Awaitable[object]:
    return kit.store.complete(specimen.claim, "result")


def _retry_at_once(kit: StoreKit, specimen: Specimen) -> Awaitable[object]:
    return kit.store.fail(specimen.claim, BOOM, retry_in=0)


def _retry_later(kit: StoreKit, specimen: Specimen) -> Awaitable[object]:
    return kit.store.fail(specimen.claim, BOOM, retry_in=FAR)


def _dead(kit: StoreKit, specimen: Specimen) -> Awaitable[object]:
    return kit.store.fail(specimen.claim, BOOM, retry_in=None)


def _recover(kit: StoreKit, specimen: Specimen) -> Awaitable[object]:
    return kit.store.recover()


def _cancel(kit: StoreKit, specimen: Specimen) -> Awaitable[object]:
    return control(kit).cancel(specimen.job.id)


def _requeue(kit: StoreKit, specimen: Specimen) -> Awaitable[object]:
    return control(kit).requeue(specimen.job.id)


#: How the suite drives each transition of an existing job through a store's methods.
DRIVEN: dict[str, tuple[Transition, Apply]] = {
    "claim": (Transition.CLAIM, _claim),
    "complete": (Transition.COMPLETE, _complete),
    "retry-at-once": (Transition.RETRY, _retry_at_once),
    "retry-later": (Transition.RETRY, _retry_later),
    "dead": (Transition.DEAD, _dead),
    "recover": (Transition.RECOVER, _recover),
    "cancel": (Transition.CANCEL, _cancel),
    "requeue": (Transition.REQUEUE, _requeue),
}


class LifecycleContract:
    """The store follows the state machine: a transition moves a job from one of its
    sources to one of its targets, and leaves a job in any other status unchanged."""

    async def test_the_suite_drives_every_transition(self) -> None:
        """Every transition of the state machine is checked by a test below."""
        checked = {transition for transition, _ in DRIVEN.values()}
        checked |= {Transition.ENQUEUE, Transition.SCHEDULE, Transition.PROMOTE}
        assert checked == set(Transition)

    async def test_enqueue_and_schedule_follow_the_state_machine(self, kit: StoreKit) -> None:
        """A new job is stored in a target of enqueue, or of schedule when delayed."""
        queued = await kit.store.enqueue(new_job())
        scheduled = await kit.store.enqueue(new_job(delay=FAR))
        assert queued.status in TARGETS[Transition.ENQUEUE]
        assert scheduled.status in TARGETS[Transition.SCHEDULE]
        for job in (queued, scheduled):
            check_invariants(await read(kit.store, job.id))

    async def test_promote_follows_the_state_machine(self, kit: StoreKit) -> None:
        """Once due, a Scheduled job is taken by a claim, which takes only Queued jobs (as
        the claim case below checks): it was promoted to Queued."""
        assert SOURCES[Transition.PROMOTE] == {JobStatus.SCHEDULED}
        assert TARGETS[Transition.PROMOTE] == SOURCES[Transition.CLAIM]
        (specimen,) = [
            s
            for s in await specimens(
                kit, first=JobStatus.SCHEDULED, wait=kit.lease * 0.3, delay=kit.lease * 0.2
            )
            if s.job.status is JobStatus.SCHEDULED
        ]
        (claim,) = await kit.store.claim(1, queues=(specimen.job.queue,), lease=kit.lease)
        assert claim.job.id == specimen.job.id
        check_invariants(await read(kit.store, specimen.job.id))

    @pytest.mark.parametrize("driven", list(DRIVEN))
    async def test_each_transition_goes_from_its_sources_to_its_targets(
        self, kit: StoreKit, driven: str
    ) -> None:
        """Applied to a job in each status: a source status ends in a target status (with
        completed_at, run_at and retry_count as the transition says, and the job returned
        as stored); any other is left unchanged, and requeue says so with
        InvalidTransitionError."""
        transition, apply = DRIVEN[driven]
        if transition in (Transition.CANCEL, Transition.REQUEUE):
            control(kit)
        expired = transition is Transition.RECOVER
        made = await specimens(
            kit,
            first=JobStatus.IN_PROGRESS if expired else None,
            wait=kit.lease + 0.2 if expired else 0.0,
        )
        for specimen in made:
            before = await read(kit.store, specimen.job.id)
            allowed = before.status in SOURCES[transition]
            result: object = None
            if transition is Transition.REQUEUE and not allowed:
                with pytest.raises(InvalidTransitionError):
                    await apply(kit, specimen)
            else:
                result = await apply(kit, specimen)
            after = await read(kit.store, specimen.job.id)
            if allowed:
                assert after.status in TARGETS[transition], (before.status, after)
                check_invariants(after)
                assert after.retry_count == _retry_count(transition, before), after
                assert _answer(result, after) == after, (before.status, result)
            else:
                assert after == before, (before.status, after)
                assert _answer(result, after) in (None, before), (before.status, result)


def _retry_count(transition: Transition, before: Job) -> int:
    if transition in (Transition.RETRY, Transition.RECOVER):
        return before.retry_count + 1
    return 0 if transition is Transition.REQUEUE else before.retry_count


def _answer(result: object, job: Job) -> Job | None:
    """What a store method answered about ``job``: the job it returned, the job of the
    claim it made, ``job`` itself when recover named it; None when it answered nothing
    about it."""
    if isinstance(result, Job):
        return result
    if isinstance(result, list):
        for item in result:
            if isinstance(item, Claim) and item.job.id == job.id:
                return item.job
            if item == job.id:
                return job
    return None
