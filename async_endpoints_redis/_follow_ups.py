"""`RedisFollowUps`: the `FollowUpStore` part of `RedisJobStore`.

The work is done by the scripts (``lua/_follow_up.lua``): a job's follow-up waits in its
hash (field ``follow``) and is stored by the script that makes the job terminal; a
delivery job (field ``for``) updates its target's ``webhook`` field in the script of each
of its transitions. Here only the follow-up still to come is read back.
"""

from __future__ import annotations

import logging
import uuid

from async_endpoints._job import NewJob
from async_endpoints._logs import job_id_extra

from ._base import StoreBase
from ._codec import decode_follow_up

logger = logging.getLogger("async_endpoints_redis")


class RedisFollowUps(StoreBase):
    """Follow-ups and webhook deliveries; see `async_endpoints.FollowUpStore`."""

    async def follow_up_of(self, job_id: uuid.UUID) -> NewJob | None:
        """The follow-up the job stores when it ends, or None (none, stored already, or no
        such job; a corrupt one is logged and None). One round trip."""
        follow = await self._run("get", lambda s: s.follow_up(job_id))
        if not follow:
            return None
        try:
            return decode_follow_up(follow)
        except ValueError as exc:
            logger.warning("job %s: %s", job_id, exc, extra=job_id_extra(job_id))
            return None
