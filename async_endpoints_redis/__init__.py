"""Redis (and Redis Cluster, Valkey) storage for async-endpoints: `RedisJobStore`.

Install with ``pip install "async-endpoints[redis]"``.
"""

try:
    import redis as _redis  # noqa: F401  (the extra's dependency, named when it is missing)
except ModuleNotFoundError as exc:  # pragma: no cover - depends on what is installed
    raise ModuleNotFoundError(
        'async_endpoints_redis needs redis-py: pip install "async-endpoints[redis]"',
        name=exc.name,
    ) from exc

from ._store import RedisJobStore as RedisJobStore

__all__ = ["RedisJobStore"]
