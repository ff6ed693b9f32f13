"""Build a store from its URL."""

from __future__ import annotations

from stream.stores.base import Store
from stream.stores.memory import MemoryStore
from stream.stores.redis import RedisStore, StoreConfigError


def make_store(url: str, prefix: str = "rmm:") -> Store:
    if url == "memory":
        return MemoryStore()
    if url.startswith(("redis://", "rediss://")):
        return RedisStore(url, prefix)
    raise StoreConfigError(
        f"unknown store {url!r}: use memory, redis://HOST:PORT/DB or rediss://HOST:PORT/DB"
    )
