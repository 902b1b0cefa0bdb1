"""`RedisRecovery`: stale-claim recovery and the purge of finished jobs whose retention
passed, a batch per script call; a part of `RedisJobStore`."""

from __future__ import annotations

import logging
import uuid

from async_endpoints._errors import JobStoreError
from async_endpoints._store import CLAIM_EXPIRED, CLAIM_EXPIRED_MESSAGE

from ._base import StoreBase
from ._codec import dump_json, text

logger = logging.getLogger("async_endpoints_redis")

_RECOVER_BATCH = 500  # expired claims recovered, and finished jobs purged, per script call
#: Script calls one recovery pass makes at most (a backlog beyond goes on at the next).
RECOVER_CALLS = 200
_CLAIM_EXPIRED = {"message": CLAIM_EXPIRED_MESSAGE, "type": CLAIM_EXPIRED}


class RedisRecovery(StoreBase):
    """Recovery of expired claims; see `async_endpoints.JobStore.recover`."""

    async def recover(self) -> list[uuid.UUID]:
        """Re-queue (or fail, without retries left) every job whose lease expired, and
        delete the finished jobs and batches whose retention passed, in batches of one
        script call each (as many as there are, up to `RECOVER_CALLS` calls a pass: up
        to 100,000 deletions a pass); return the recovered ids. A batch that fails after
        others were recovered ends the pass (logged; the rest wait for the next one) and
        the ids recovered so far are returned: they are recovered in Redis either way."""
        recovered, _ = await self._recover(RECOVER_CALLS)
        return recovered

    async def _recover(self, calls: int) -> tuple[list[uuid.UUID], bool]:
        """`recover` in up to ``calls`` script calls: the recovered ids, and whether more
        may be waiting (the last call took a whole batch of something)."""
        error_json = dump_json(_CLAIM_EXPIRED)
        recovered: list[uuid.UUID] = []
        seen = _RECOVER_BATCH
        gentle = self._connection.trouble.recent  # a stall lived through, maybe
        for _ in range(calls):
            try:
                ids, seen = await self._run(
                    "recover", lambda s: s.recover(_RECOVER_BATCH, error_json, gentle)
                )
            except JobStoreError as exc:
                if not recovered:
                    raise
                logger.warning("recovery stopped after %d job(s): %s", len(recovered), exc)
                break
            recovered += [uuid.UUID(text(raw_id)) for raw_id in ids]
            if seen < _RECOVER_BATCH:
                break
        if recovered:
            self._notifications.wake()
        return recovered, seen >= _RECOVER_BATCH
