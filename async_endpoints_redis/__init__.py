"""Redis (and Redis Cluster, Valkey) storage for async-endpoints: `RedisJobStore`.

Install with ``pip install "async-endpoints[redis]"``.
"""

from ._store import RedisJobStore as RedisJobStore

__all__ = ["RedisJobStore"]
