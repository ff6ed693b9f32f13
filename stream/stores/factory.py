"""Build a store from its URL."""

from __future__ import annotations

from stream.stores.base import Store, StoreConfigError
from stream.stores.memory import MemoryStore

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def make_store(url: str, prefix: str = "rmm:") -> Store:
    if url == "memory":
        return MemoryStore()
    if url.startswith(("redis://", "rediss://")):
        from stream.stores.redis import RedisStore  # redis-py loads only when used

        return RedisStore(url, prefix)
    if url.startswith(tuple(s + "://" for s in CLUSTER_SCHEMES)):
        from stream.stores.redis import RedisClusterStore

        return RedisClusterStore(url, prefix)
    raise StoreConfigError(
        f"unknown store {url!r}: use memory, redis://HOST:PORT/DB, rediss://HOST:PORT/DB or "
        "redis+cluster://HOST:PORT[,HOST:PORT...]"
    )
