"""`RedisSchedules`: the `ScheduleStore` part of `RedisJobStore`: cron schedules shared
by every process on the store.

Keys (in the store's hash slot, like every other, so a Redis Cluster serves them)::

    {p}:cron             ZSET   schedule ids by next due time (ms, the Redis server's wall
                                clock: cron is wall-clock time)
    {p}:cron:<id>        HASH   one schedule: id, name, cron, timezone, unique ('1'/'0'),
                                next_run_at (ms), and when set last_job_id, body, queue,
                                tenant, fired_at (ms: the due time of the last cycle fired)
    {p}:cron_epoch       STRING a random token, new whenever the keys were lost
                                (`schedule_epoch`)

Each operation is one script (``lua/schedule_*.lua``). `fire_schedule` is a compare-and-set
on ``next_run_at`` that enqueues the cycle's job through the enqueue transition of
``lua/_lifecycle.lua`` in the same script, so a cycle is fired once however many processes
see it due, and a crash cannot separate the move of the due time from the job. Due-ness is
read by the server's clock (TIME), the one clock every process shares.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from async_endpoints._cron import cron_rule
from async_endpoints._errors import JobStoreError
from async_endpoints._job import Job, NewJob
from async_endpoints._schedule import Schedule

from ._base import StoreBase
from ._codec import Reply, encode_request, from_ms, queued_job, text

#: Script calls an upsert makes at most while cycles keep firing under it (two suffice).
_UPSERT_TRIES = 10


class RedisSchedules(StoreBase):
    """Cron schedules in Redis; see `async_endpoints.ScheduleStore`."""

    async def upsert_schedule(self, schedule: Schedule) -> Schedule:
        """Store ``schedule`` in one script; an existing one keeps its last job, and its
        due time when the expression and time zone are the same. A new timing's due time
        comes after the cycle the schedule last fired (``fired_at``), so no cycle fires
        twice: one computed from a clock read before that cycle fired is refused by the
        script and computed again from that cycle.

        Raises:
            ValueError: ``schedule.next_run_at`` is None.
        """
        if schedule.next_run_at is None:
            raise ValueError("a stored schedule needs its next_run_at")
        args: list[str | int] = [schedule.id, schedule.cron, schedule.timezone]
        args += [_ms(schedule.next_run_at), "name", schedule.name]
        args += ["unique", "1" if schedule.unique else "0"]
        optional = {
            "last_job_id": None if schedule.last_job_id is None else str(schedule.last_job_id),
            "body": schedule.body,
            "queue": schedule.queue,
            "tenant": schedule.tenant,
        }
        for field, value in optional.items():
            if value is not None:
                args += [field, value]
        for _ in range(_UPSERT_TRIES):
            reply = await self._run("upsert_schedule", lambda s: s.call("schedule_upsert", args))
            if not isinstance(reply, list):
                return _schedule(reply)
            # Refused: the new timing's due time is not after the cycle last fired (its
            # clock was read before that cycle fired); the one after that cycle, then.
            fired = datetime.fromtimestamp(int(text(reply[1])) / 1000, UTC)
            args[3] = _ms(cron_rule(schedule.cron, schedule.timezone).next_after(fired))
        raise JobStoreError(f"schedule {schedule.id!r} kept firing while it was being changed")

    async def remove_schedule(self, schedule_id: str) -> bool:
        """Delete the schedule; False when there was none."""
        removed = await self._run(
            "remove_schedule", lambda s: s.call("schedule_remove", [schedule_id])
        )
        return bool(removed)

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule, by id (one script; O(number of schedules))."""
        replies = await self._run("list_schedules", lambda s: s.call("schedule_list", []))
        return sorted((_schedule(reply) for reply in replies), key=lambda s: s.id)

    async def schedule_time(self) -> datetime:
        """The Redis server's wall clock now."""
        now_ms = await self._run("schedule_time", lambda s: s.call("schedule_time", []))
        return datetime.fromtimestamp(int(now_ms) / 1000, UTC)

    async def schedule_epoch(self) -> str:
        """The token of this lifetime of the schedules' keys (one script: read, or
        stored when Redis has none, as after a restart without persistence)."""
        token = uuid.uuid4().hex
        reply = await self._run("schedule_epoch", lambda s: s.call("schedule_epoch", [token]))
        return text(reply)

    async def due_schedules(self, limit: int) -> list[Schedule]:
        """Up to ``limit`` schedules due by the server's clock, soonest first; one script,
        O(log n + limit)."""
        replies = await self._run("due_schedules", lambda s: s.call("schedule_due", [limit]))
        return [_schedule(reply) for reply in replies]

    async def fire_schedule(
        self, schedule: Schedule, next_run_at: datetime, new_job: NewJob
    ) -> Job | None:
        """Fire the cycle due at ``schedule.next_run_at`` in one script; see
        `ScheduleStore.fire_schedule`."""
        if schedule.next_run_at is None:
            return None
        args: list[str | int] = [schedule.id, _ms(schedule.next_run_at), _ms(next_run_at)]
        args += [str(new_job.id), new_job.name, new_job.max_retries]
        args += [encode_request(new_job.request), new_job.queue]
        args += [new_job.partition_key or "", new_job.tenant or ""]
        created_ms = await self._run("fire_schedule", lambda s: s.call("schedule_fire", args))
        if not created_ms:
            return None
        self._notifications.wake()  # this process's own workers, before pub/sub does
        return queued_job(new_job, int(created_ms), 0)

    async def move_schedule(self, schedule: Schedule, next_run_at: datetime) -> bool:
        """Move the schedule's due time in one script, no cycle fired; see
        `ScheduleStore.move_schedule`."""
        if schedule.next_run_at is None:
            return False
        args: list[str | int] = [schedule.id, _ms(schedule.next_run_at), _ms(next_run_at)]
        moved = await self._run("move_schedule", lambda s: s.call("schedule_move", args))
        return bool(moved)


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _schedule(reply: Reply) -> Schedule:
    """The schedule in a script's reply: its hash as a JSON array {field, value, ...}."""
    flat: list[Any] = json.loads(text(reply))
    fields = {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}
    last = fields.get("last_job_id")
    return Schedule(
        fields["id"],
        fields["name"],
        fields["cron"],
        fields["timezone"],
        fields["unique"] == "1",
        next_run_at=from_ms(fields["next_run_at"]),
        last_job_id=None if last is None else uuid.UUID(last),
        body=fields.get("body"),
        queue=fields.get("queue"),
        tenant=fields.get("tenant"),
    )
