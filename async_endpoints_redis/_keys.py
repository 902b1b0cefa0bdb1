"""Every Redis key and channel name of a store, built here and nowhere else.

All names of one store share one hash tag, ``{<prefix>}``, so that in a Redis Cluster they
live in one slot and every script runs on one node::

    {prefix}:job:<uuid>    HASH   one job (fields in `_codec`); expires once terminal
    {prefix}:queue         LIST   ids of Queued jobs, oldest at the head
    {prefix}:clock         STRING the elapsed-time clock (ms) that leases and delays use
                                  (see `_elapsed`); job timestamps use the server's clock
    {prefix}:scheduled     ZSET   ids of Scheduled jobs, scored by due time (ms, elapsed clock)
    {prefix}:active        ZSET   ids of InProgress jobs, scored by lease deadline (ms, same)
    {prefix}:expiring      LIST   "<due ms> <id>" of terminal jobs, in settlement order: each is
                                  deleted once its retention has passed (elapsed clock)
    {prefix}:claim:<base>  LIST   ids one claim call took (expires with the lease), so that
                                  a resent claim returns them instead of stranding them
    {prefix}:offers        HASH   idle workers' offers: inbox -> "<token base> <slots left>
                                  <lease ms> <expires at ms>" (see lua/offer.lua)
    {prefix}:idle          LIST   inboxes with an offer, in turn order
    {prefix}:given:<base>  LIST   ids handed to one offer (expires a lease after the offer)
    {prefix}:wake          channel  a job became claimable (the payload is not used)
    {prefix}:done          channel  a job became terminal (its id, then its hash as JSON)
    {prefix}:inbox:<name>  channel  jobs handed to one idle worker (id, then hash as JSON)

The ready queue is a LIST rather than a ZSET: pushing and popping are O(1) whatever the
backlog, and an entry costs a few bytes in a listpack instead of a skiplist node and a
dict entry. Priorities, when they come, fit as one list per priority level, popped highest
first, which keeps a claim O(1) per job.
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
        if not self.prefix or "{" in self.prefix or "}" in self.prefix:
            raise ConfigurationError(f"invalid Redis key prefix {self.prefix!r}")

    @property
    def tag(self) -> str:
        """The hash tag shared by every key: ``{prefix}``."""
        return "{" + self.prefix + "}"

    @property
    def job_prefix(self) -> str:
        """What a job's key starts with; scripts append the id to reach popped jobs."""
        return f"{self.tag}:job:"

    def job(self, job_id: uuid.UUID) -> str:
        """The key of the job hash with this id."""
        return f"{self.job_prefix}{job_id}"

    @property
    def queue(self) -> str:
        """The LIST of Queued job ids."""
        return f"{self.tag}:queue"

    @property
    def clock(self) -> str:
        """The STRING holding the elapsed-time clock."""
        return f"{self.tag}:clock"

    @property
    def expiring(self) -> str:
        """The LIST of terminal jobs by the time their retention ends."""
        return f"{self.tag}:expiring"

    @property
    def scheduled(self) -> str:
        """The ZSET of Scheduled job ids by due time."""
        return f"{self.tag}:scheduled"

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
    def done_channel(self) -> str:
        """The channel announcing terminal jobs."""
        return f"{self.tag}:done"
