"""Episode and alert rules, hand-derived, for both stores (store API driven with explicit clocks).

Seed rule: lookback 5d, skew 10m, update interval 15m."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from stream.alerts.decision import alert_id
from stream.stores.base import GroupUpdate, Store
from stream.stores.memory import MemoryStore
from stream.stores.redis import RedisStore
from stream.window.model import bucket_of, encode_member, group_key
from tests.gen import AS_OF, DAY, MINUTE
from tests.harness import drop_prefix, seed_rules

RULE = seed_rules()[0]
KEY = ("dev1", "host1", "relay.splashtop.com")
GK = group_key(KEY)
WALL = 1_800_000_000_000  # ms
UPD_MS = 15 * 60 * 1000


def upd(*offsets: int, rid: int = 1) -> GroupUpdate:
    members: dict = {}
    future: dict = {}
    for i, off in enumerate(offsets):
        t = AS_OF + off
        m = encode_member(t, rid + i, None)
        (members if off <= 10 * MINUTE else future)[m] = None
    return GroupUpdate(RULE, GK, KEY, bucket_of(GK, RULE.buckets), members, future, b"{}", 0)


@pytest.fixture(params=["memory", "redis"])
def store(request) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    url = request.getfixturevalue("redis_url")
    prefix = f"e{uuid.uuid4().hex[:10]}:"
    s = RedisStore(url, prefix)
    asyncio.run(s.open([RULE]))
    yield s
    asyncio.run(drop_prefix(url, prefix))


def run(coro):
    return asyncio.run(coro)


async def _reopen(store: Store) -> Store:
    # redis.asyncio clients bind to one event loop: give each asyncio.run its own client.
    if isinstance(store, RedisStore):
        fresh = RedisStore(store.url, store.prefix)
        await fresh.open([RULE])
        return fresh
    return store


def call(store: Store, name: str, *args):
    async def go():
        s = await _reopen(store)
        try:
            return await getattr(s, name)(*args)
        finally:
            if s is not store:
                await s.close()

    return asyncio.run(go())


def test_first_event_fires_new_then_changes_are_pending(store: Store) -> None:
    d = call(store, "apply", [upd(-DAY)], AS_OF, WALL)
    assert [x.kind for x in d] == ["new"]
    assert d[0].alert_id == alert_id(RULE.id, GK, AS_OF - DAY)
    assert d[0].seq == 0 and d[0].start == AS_OF - DAY
    # a second event of the same episode: nothing now
    assert call(store, "apply", [upd(-DAY + 5, rid=50)], AS_OF, WALL + 1000) == []
    # not yet due: the pending change is younger than the update interval
    assert call(store, "tick", [RULE], AS_OF, WALL + 1000 + UPD_MS - 1) == []
    u = call(store, "tick", [RULE], AS_OF, WALL + 1000 + UPD_MS)
    assert [(x.kind, x.seq, x.alert_id) for x in u] == [("update", 1, d[0].alert_id)]
    # reported once
    assert call(store, "tick", [RULE], AS_OF, WALL + 10 * UPD_MS) == []


def test_redelivery_changes_nothing(store: Store) -> None:
    assert len(call(store, "apply", [upd(-DAY)], AS_OF, WALL)) == 1
    assert call(store, "apply", [upd(-DAY)], AS_OF, WALL + 1) == []
    assert call(store, "tick", [RULE], AS_OF, WALL + 10 * UPD_MS) == []
    rows = call(store, "table", RULE, AS_OF)
    assert [r.row["Count"] for r in rows] == [1]


def test_expiry_fires_nothing_and_a_later_event_opens_a_new_episode(store: Store) -> None:
    first = call(store, "apply", [upd(-DAY)], AS_OF, WALL)[0]
    later = AS_OF + 4 * DAY + 1  # the event at AS_OF - 1d left the window
    assert call(store, "tick", [RULE], later, WALL + 10 * UPD_MS) == []
    assert call(store, "table", RULE, later) == []
    d = call(store, "apply", [upd(4 * DAY, rid=7)], later, WALL + 11 * UPD_MS)
    assert [x.kind for x in d] == ["new"]
    assert d[0].alert_id != first.alert_id
    assert d[0].start == AS_OF + 4 * DAY


def test_the_episode_continues_while_any_event_is_in_the_window(store: Store) -> None:
    call(store, "apply", [upd(-DAY)], AS_OF, WALL)
    # 3 days later the first event is still in the 5-day window: same episode, no new alert
    t = AS_OF + 3 * DAY
    assert call(store, "apply", [upd(3 * DAY, rid=9)], t, WALL + 1) == []


def test_future_event_inside_skew_opens_at_once_outside_skew_later(store: Store) -> None:
    d = call(store, "apply", [upd(10 * MINUTE)], AS_OF, WALL)  # exactly as_of + skew
    assert [x.kind for x in d] == ["new"]
    key2 = ("dev2", "host2", "relay.splashtop.com")
    gk2 = group_key(key2)
    far = AS_OF + 10 * MINUTE + 1
    u = GroupUpdate(
        RULE,
        gk2,
        key2,
        bucket_of(gk2, RULE.buckets),
        {},
        {encode_member(far, 3, None): None},
        b"{}",
        0,
    )
    assert call(store, "apply", [u], AS_OF, WALL) == []
    assert call(store, "tick", [RULE], AS_OF, WALL + 1) == []
    # once as_of + skew reaches the event, the timer opens the episode
    d2 = call(store, "tick", [RULE], AS_OF + 1, WALL + 2)
    assert [(x.kind, x.gk) for x in d2] == [("new", gk2)]


def test_outbox_holds_decisions_until_acked(store: Store) -> None:
    d = call(store, "apply", [upd(-DAY)], AS_OF, WALL)
    pending = call(store, "outbox", [RULE])
    assert [(p.alert_id, p.seq, p.kind) for p in pending] == [(d[0].alert_id, 0, "new")]
    call(store, "ack", [RULE], pending)
    assert call(store, "outbox", [RULE]) == []


def test_window_edges_are_inclusive_to_the_tick(store: Store) -> None:
    # -5d - 1 tick is dropped by the pipeline before the store; here the store itself must
    # keep -5d exactly and trim anything older once as_of moves.
    call(store, "apply", [upd(-5 * DAY, 0)], AS_OF, WALL)
    rows = call(store, "table", RULE, AS_OF)
    assert rows[0].row["Count"] == 2
    assert rows[0].row["FirstSeen"] == "2026-11-25T12:00:00.0000000Z"
    assert rows[0].row["LastSeen"] == "2026-11-30T12:00:00.0000000Z"
    rows = call(store, "table", RULE, AS_OF + 1)  # the -5d event is now 1 tick too old
    assert rows[0].row["Count"] == 1
    assert rows[0].row["FirstSeen"] == "2026-11-30T12:00:00.0000000Z"


def test_event_after_as_of_counts_once_as_of_passes_it(store: Store) -> None:
    call(store, "apply", [upd(-DAY, 5 * MINUTE)], AS_OF, WALL)
    assert call(store, "table", RULE, AS_OF)[0].row["Count"] == 1
    assert call(store, "table", RULE, AS_OF + 5 * MINUTE - 1)[0].row["Count"] == 1
    assert call(store, "table", RULE, AS_OF + 5 * MINUTE)[0].row["Count"] == 2
