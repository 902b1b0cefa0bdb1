"""Every Redis key and channel name of a store, built here and in the Lua includes.

All names of one store share one hash tag, ``{<prefix>}``, so that in a Redis Cluster they
live in one slot and every script runs on one node. A sharded store (``shards=N``) is N
such layouts, each under its own tag (shard 0 under ``{<prefix>}``, the others under
``{<prefix>#<k>}``: `_shard_layout`), plus a few keys of its routing: ``{s}:at`` and
``{s}:at-check`` (pointers to jobs and batches stored in another shard than their id's,
`_shard_pointers`), ``{s}:idem-at:<key>`` and ``{s}:idem-end:<key>`` (the shard of an
idempotency key's job, and when that record ends) and, in
shard 0, ``{p}:shards`` (the shard counts in use, `_shard_reshard`). Scripts get the key
prefix ``{p}:`` and build the names below from it (``lua/_lib.lua`` and the includes)::

    {p}:job:<uuid>       HASH   one job (fields in `_codec`); expires once terminal
    {p}:queue:<name>     LIST   ids of the ready (claimable Queued) jobs without a tenant
                                of one queue, oldest at the head (``lua/_ready.lua``)
    {p}:turns:<name>     LIST   the tenant turns of a queue (``lua/_ready.lua``): per tenant
                                with ready jobs "<its oldest ready id> <tenant>", and ''
                                for the jobs without a tenant; only while some tenant has one
    {p}:tenants:<name>   HASH   tenant -> how many ready jobs it has in that queue
    {p}:tq:<#q>:<q>:<t>  LIST   the other ready jobs of tenant <t> of queue <q>, oldest first
                                (<#q>: the length of <q>, so no two names collide)
    {p}:lanes            HASH   partition key -> how many of its jobs are not terminal (its
                                lane); the first of them holds the key (``lua/_lifecycle.lua``)
    {p}:lane:<key>       LIST   ids of the jobs of one key waiting behind its first, in
                                submission order; only while there are any
    {p}:held             ZSET   ids of cancelled running jobs whose attempt still holds
                                its key's lane, by lease deadline (ms, elapsed clock)
    {p}:held_by          HASH   id -> "<claim token> <partition key>" of those attempts
    {p}:qseq             STRING "<ms> <n>": the latest moment a job entered Queued at and
                                its number in that millisecond (a job's field q;
                                ``lua/_bookkeeping.lua``): the Queued listings' order
                                within a millisecond
    {p}:queues           SET    every queue name that ever held a job (counts over all)
    {p}:paused           SET    the paused queue names
    {p}:clock            STRING the elapsed-time clock (ms) that leases and delays use
                                (see `_elapsed`); job timestamps use the server's clock
    {p}:clock:at         STRING "<clock> <server wall clock>" when the clock was last set
                                (a starting process catches up a clock nobody advanced)
    {p}:clock:anchor     STRING "<clock> <server wall clock>": the clock's anchor, kept
                                through a Redis stall's burst (lua/_lib.lua, LEASE_FROM)
    {p}:clock:stall      STRING "<from> <to> <server wall clock>": the last Redis stall
                                seen; leases running when it began get its length on top
    {p}:clock:quiet      STRING "<from> <to>": the last quiet spell (a second or more
                                with no call; elapsed clock); a recovery after trouble
                                leaves the leases whose deadline fell in it two seconds
    {p}:clock:real       STRING "<clock> <server wall clock>": where the first call after a
                                stall put the clock had it moved through (expires in 2 s;
                                refuses submissions held in the stall, lua/_lib.lua)
    {p}:scheduled        ZSET   ids of Scheduled jobs (all queues), by due time (ms, elapsed
                                clock); a due job is promoted into its own queue
    {p}:active           ZSET   ids of InProgress jobs, by lease deadline (ms, same clock)
    {p}:running          ZSET   "<started_at ms>:<id>" of InProgress jobs (scores 0: text
                                order), for listing them by started_at
    {p}:counts           HASH   "<queue>:<status>" -> jobs of that queue with that status
                                (terminal ones while retained); changed by the script of
                                every transition; ":Deliveries" -> the webhook deliveries
                                Queued or Scheduled (left out of the waiting count)
    {p}:ix:<index>...    ZSETs  listing indexes in chunks (see ``lua/_index.lua``):
                                "created" (every job, by created_at), "Q:<#q>:<q>" (the
                                Queued jobs of queue <q>, by when each became due there:
                                queued_at, else created_at; then by q), "Scheduled" (by
                                run_at), "Completed", "Failed", "Canceled" (by completed_at)
    {p}:expiring         LIST   "<due ms> <id> <completed_at ms>" of terminal jobs, in
                                settlement order: each is deleted (with its counts and index
                                entries) once its retention has passed (elapsed clock)
    {p}:claim:<base>     LIST   ids one claim call took (expires with the lease), so that
                                a resent claim returns them instead of stranding them
    {p}:offers           HASH   idle workers' offers: inbox -> "<token base> <slots left>
                                <lease ms> <expires at ms> <queues JSON>" (lua/_offers.lua)
    {p}:idle             LIST   inboxes with an offer, in turn order
    {p}:given:<base>     LIST   ids handed to one offer (expires a lease after the offer)
    {p}:ended:<inbox>    STRING the number of the newest offer an inbox's calls ended
                                (offers are numbered in the order a worker sends them; none
                                numbered lower is made after; expires an hour after it rose)
    {p}:steered:<nonce>  STRING the status a job had before one cancel or requeue call
                                changed it, or "1" for one append to a batch (expires in a
                                minute), so that the call resent after its reply was lost
                                answers as the first send did and changes nothing more
    {p}:batch:<id>       HASH   one batch: status, times, counts per status, continuations
                                to store (``lua/_batch.lua``); {p}:batch:<id>:jobs LIST its
                                job ids in the order stored, then its continuations'
    {p}:batches          ZSET   "<created_at ms>:<id>" of every batch (scores 0: text
                                order), listed newest first; {p}:batches:t:<tenant> the
                                same per tenant; {p}:batch-expiring LIST ended batches in
                                retention order; {p}:batch:<id>:staged:<nonce> HASH the
                                chunks of a large batch until its last call stores them
    {p}:reserved         HASH   continuation id -> its batch's id, until the continuation
                                is stored (lua/_batch.lua): no submission takes the id;
                                {p}:reserving STRING how far lua/migrate.lua reserved the
                                continuations of batches an older version stored ('done')
    {p}:idem:<key>       HASH   an idempotency key's job: id, fp (its fingerprint) and until
                                (the elapsed-clock ms its ttl ends; Redis expires the
                                record an hour after, lua/enqueue_many.lua)
    {p}:hooked           STRING how many unfinished jobs hold a follow-up or deliver a
                                webhook (``lua/_follow_up.lua``); deleted at 0
    {p}:layout           STRING "3" once the store was migrated from older layouts (the
                                one-queue layout's ready LIST was ``{p}:queue``; layout 2
                                counted Queued jobs by their LIST's length; lua/migrate.lua)
    {p}:migrating        HASH   queue -> ids of its LIST indexed so far, while migrating
    {p}:wake             channel  a job became claimable (the payload is not used)
    {p}:done             channel  a job became terminal (its id, then its hash as JSON)
    {p}:cancel           channel  a running job was cancelled (its id)
    {p}:watched          ZSET   ids of jobs some process streams events of, by when the
                                watch lapses (ms, server clock; lua/watch.lua)
    {p}:events           channel  a watched job's status ('s', id, its hash as JSON) or
                                progress ('p', id, the value as JSON) changed
    {p}:inbox:<name>     channel  jobs handed to one idle worker (id, then hash as JSON)
    {p}:clock-probe      channel  a starting process asks the live ones to call with their
                                clock readings (lua/clock.lua; the payload is not used);
                                ``{p}:clock-probe:db<n>`` for a store in database n > 0

A ready queue is a LIST rather than a ZSET: pushing and popping are O(1) whatever the
backlog, and an entry costs a few bytes in a listpack instead of a skiplist node and a
dict entry. Strict priority is one list per queue (per tenant of it), popped in the
claimer's order, which keeps a claim O(1) per job plus O(number of queues). Partition
keys and tenants add keys only while they have jobs: a lane's LIST goes with its last
job, a tenant's LIST and the turns with their last ready job.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from async_endpoints._errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class Keys:
    """The key and channel names of one store.

    Attributes:
        prefix: The namespace, placed inside the hash tag; it must not contain braces.
    """

    prefix: str

    def __post_init__(self) -> None:
        if not isinstance(self.prefix, str):
            raise ConfigurationError(f"prefix must be a string, not {type(self.prefix).__name__}")
        if not self.prefix or "{" in self.prefix or "}" in self.prefix:
            raise ConfigurationError(f"invalid Redis key prefix {self.prefix!r}")

    @property
    def tag(self) -> str:
        """The hash tag shared by every key: ``{prefix}``."""
        return "{" + self.prefix + "}"

    @property
    def key_prefix(self) -> str:
        """What every key and channel name starts with: ``{prefix}:``."""
        return f"{self.tag}:"

    @property
    def job_prefix(self) -> str:
        """What a job's key starts with; scripts append the id to reach popped jobs."""
        return f"{self.tag}:job:"

    def job(self, job_id: uuid.UUID) -> str:
        """The key of the job hash with this id."""
        return f"{self.job_prefix}{job_id}"

    def ready(self, queue: str) -> str:
        """The LIST of the Queued job ids of ``queue``."""
        return f"{self.tag}:queue:{queue}"

    @property
    def queue(self) -> str:
        """The LIST of the default queue's Queued job ids."""
        return self.ready("default")

    @property
    def legacy_queue(self) -> str:
        """The one ready LIST of the older layout, migrated into the default queue."""
        return f"{self.tag}:queue"

    @property
    def paused(self) -> str:
        """The SET of paused queue names."""
        return f"{self.tag}:paused"

    @property
    def counts(self) -> str:
        """The HASH of per-queue, per-status counts."""
        return f"{self.tag}:counts"

    @property
    def running(self) -> str:
        """The ZSET of InProgress jobs by started_at (text order)."""
        return f"{self.tag}:running"

    @property
    def clock(self) -> str:
        """The STRING holding the elapsed-time clock."""
        return f"{self.tag}:clock"

    @property
    def clock_set_at(self) -> str:
        """The STRING recording when the clock was last set (``lua/clock.lua``)."""
        return f"{self.tag}:clock:at"

    @property
    def expiring(self) -> str:
        """The LIST of terminal jobs by the time their retention ends."""
        return f"{self.tag}:expiring"

    @property
    def scheduled(self) -> str:
        """The ZSET of Scheduled job ids by due time."""
        return f"{self.tag}:scheduled"

    def idempotency(self, key: str) -> str:
        """The record of idempotency key ``key`` (its job's id, fingerprint and end)."""
        return f"{self.tag}:idem:{key}"

    def claim_memo(self, token_base: str) -> str:
        """The LIST of ids one claim call took, kept for a lease so a resend finds them."""
        return f"{self.tag}:claim:{token_base}"

    @property
    def active(self) -> str:
        """The ZSET of claimed job ids by lease deadline."""
        return f"{self.tag}:active"

    @property
    def offers(self) -> str:
        """The HASH of idle workers' offers, by inbox."""
        return f"{self.tag}:offers"

    @property
    def idle(self) -> str:
        """The LIST of inboxes with an open offer, in turn order."""
        return f"{self.tag}:idle"

    @property
    def given_prefix(self) -> str:
        """What the key of an offer's given-list starts with (its token base follows)."""
        return f"{self.tag}:given:"

    @property
    def inbox_prefix(self) -> str:
        """What an inbox channel's name starts with (the inbox name follows)."""
        return f"{self.tag}:inbox:"

    def inbox_channel(self, inbox: str) -> str:
        """The channel on which jobs are handed to the worker with this inbox."""
        return f"{self.inbox_prefix}{inbox}"

    @property
    def wake_channel(self) -> str:
        """The channel announcing claimable work."""
        return f"{self.tag}:wake"

    @property
    def cancel_channel(self) -> str:
        """The channel announcing cancelled running jobs."""
        return f"{self.tag}:cancel"

    @property
    def done_channel(self) -> str:
        """The channel announcing terminal jobs."""
        return f"{self.tag}:done"

    def clock_probe_channel(self, database: int = 0) -> str:
        """The channel asking the live processes for their clock readings.

        Pub/sub ignores a server's numbered databases, while each holds its own clock: a
        store in database n > 0 asks on a channel of its own, so that a probe reaches
        the stores that can answer it alone.
        """
        channel = f"{self.tag}:clock-probe"
        return f"{channel}:db{database}" if database else channel

    @property
    def events_channel(self) -> str:
        """The channel announcing the status changes and progress of watched jobs."""
        return f"{self.tag}:events"
