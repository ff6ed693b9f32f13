"""The Redis store: state shared by every replica, surviving restarts.

Key layout (docs/architecture.md): `<prefix>{<bucket>}:<rule id>:<rule version>:<kind>[:<group>]`.
The hash tag is the bucket (crc32 of the group key mod B), so one batch costs at most B script
calls, each touching one Redis Cluster slot, and all rules' keys of a bucket share that slot.
Kinds: `e:<gk>` the members (ZSET), `s:<gk>` the episode (HASH), `p:<gk>` payloads (HASH, only
for aggregates over columns the member lacks), `due` pending updates, `fut` future timers, `ob`
the outbox.
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from stream.alerts.decision import Decision
from stream.rules.compiled import CompiledRule
from stream.stores.base import GroupUpdate, Store, StoreConfigError, sort_rows
from stream.stores.factory import CLUSTER_SCHEMES
from stream.timeutil import TICK_WIDTH, TICKS_PER_MS, TICKS_PER_SECOND
from stream.window.model import Bounds, RowResult, compute_row

log = logging.getLogger(__name__)

_PREFIX_OK = re.compile(r"[A-Za-z0-9:._/-]*\Z")
DEFAULT_MARGIN_MS = 3_600_000  # keys outlive their last event's window by an hour
MAX_DUE = 2**53 - 1
SOCKET_TIMEOUT = 10.0  # seconds


def _pad(t: int) -> str:
    return f"{t:0{TICK_WIDTH}d}"


def _script(name: str) -> str:
    base = resources.files("stream.stores") / "lua"
    return (base / "common.lua").read_text() + "\n" + (base / name).read_text()


def validate_prefix(prefix: str) -> str:
    if not _PREFIX_OK.match(prefix):
        raise StoreConfigError(
            f"redis prefix {prefix!r} may use only letters, digits and : . _ / - "
            "(braces would break the cluster hash tag)"
        )
    return prefix


class RedisStore(Store):
    name = "redis"

    def __init__(
        self,
        url: str,
        prefix: str = "rmm:",
        *,
        password: str | None = None,
        margin_ms: int = DEFAULT_MARGIN_MS,
        client: Any = None,
    ) -> None:
        self.url = url
        self.prefix = validate_prefix(prefix)
        self.margin_ms = margin_ms
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise StoreConfigError(f"store URL {url!r}: use redis://HOST:PORT/DB or rediss://...")
        pw = password if password is not None else os.environ.get("RMM_STREAM_REDIS_PASSWORD")
        if client is not None:
            self.r = client
        else:
            kwargs: dict[str, Any] = {}
            if pw and not parts.password:
                kwargs["password"] = pw
            # A stalled Redis (paused, failing over) must raise, not block forever, so the
            # pipeline's retries and metrics see it; `?socket_timeout=` in the URL overrides.
            if "socket_timeout" not in parts.query:
                kwargs["socket_timeout"] = SOCKET_TIMEOUT
            if "socket_connect_timeout" not in parts.query:
                kwargs["socket_connect_timeout"] = SOCKET_TIMEOUT
            self.r = aioredis.Redis.from_url(url, decode_responses=False, **kwargs)
        self._apply_src = _script("apply.lua")
        self._tick_src = _script("tick.lua")
        self._apply_sha = ""
        self._tick_sha = ""

    # -- keys ------------------------------------------------------------------------------
    def kp(self, rule: CompiledRule, bucket: int) -> str:
        return f"{self.prefix}{{{bucket:03d}}}:{rule.id}:{rule.version}:"

    def _rule_args(self, rule: CompiledRule, bucket: int, as_of: int) -> dict[str, Any]:
        b = Bounds.at(rule, as_of)
        return {
            "rid": rule.id,
            "kp": self.kp(rule, bucket),
            "lo": _pad(b.lo),
            "hi": _pad(b.alert_hi),
            "skew_s": rule.skew / TICKS_PER_SECOND,
            "upd_ms": rule.update_interval // TICKS_PER_MS,
            "L_ms": rule.lookback // TICKS_PER_MS,
            "margin_ms": self.margin_ms,
            "now_s": as_of / TICKS_PER_SECOND,
        }

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self, rules: list[CompiledRule]) -> list[str]:
        await self.r.ping()
        await self._load_scripts()
        warnings = []
        try:
            cfg = await self.r.config_get("maxmemory-policy")
            policy = _s(next(iter(cfg.values()), b""))
            if policy and policy != "noeviction" and not policy.startswith("volatile"):
                warnings.append(
                    f"Redis maxmemory-policy is {policy}: Redis may evict window keys and "
                    "silently lose events; set maxmemory-policy noeviction"
                )
            elif policy.startswith("volatile"):
                warnings.append(
                    f"Redis maxmemory-policy is {policy}: window keys carry TTLs and may be "
                    "evicted early under memory pressure; set maxmemory-policy noeviction"
                )
        except ResponseError:
            pass  # managed Redis often disables CONFIG
        return warnings

    async def close(self) -> None:
        await self.r.aclose()

    async def _load_scripts(self) -> None:
        self._apply_sha = _s(await self.r.script_load(self._apply_src))
        self._tick_sha = _s(await self.r.script_load(self._tick_src))

    async def _eval_many(self, sha_attr: str, calls: list[tuple[list[str], bytes]]) -> list[Any]:
        """Run one script per (keys, arg) in one pipelined round trip; reload on NOSCRIPT."""
        if not calls:
            return []
        for attempt in range(2):
            sha = getattr(self, sha_attr)
            pipe = self.r.pipeline(transaction=False)
            for keys, arg in calls:
                pipe.evalsha(sha, len(keys), *keys, arg)
            results = await pipe.execute(raise_on_error=False)
            errors = [r for r in results if isinstance(r, Exception)]
            if not errors:
                return results
            if attempt == 0 and all(isinstance(e, NoScriptError) for e in errors):
                await self._load_scripts()  # Redis restarted or SCRIPT FLUSH: load and redo
                continue
            raise errors[0]
        raise RuntimeError("unreachable")

    # -- writes ----------------------------------------------------------------------------
    async def apply(self, updates: list[GroupUpdate], as_of: int, wall_ms: int) -> list[Decision]:
        by_bucket: dict[int, dict[str, tuple[CompiledRule, list[dict[str, Any]]]]] = defaultdict(
            dict
        )
        for u in updates:
            slot = by_bucket[u.bucket].setdefault(u.rule.id, (u.rule, []))
            members = list(u.members)
            future = list(u.future)
            payload = None
            if u.rule.payload_columns:
                payload = [
                    orjson.dumps(p).decode() for p in (*u.members.values(), *u.future.values())
                ]
            slot[1].append(
                {
                    "gk": u.gk,
                    "m": members,
                    "f": future,
                    "p": payload,
                    "ev": u.evidence.decode() if u.evidence else None,
                    "evt": _pad(u.evidence_ticks),
                }
            )
        calls = []
        for bucket, per_rule in by_bucket.items():
            rules_arg = []
            keys: list[str] = []
            for rule, groups in per_rule.values():
                ra = self._rule_args(rule, bucket, as_of)
                kp = ra["kp"]
                ra["groups"] = groups
                rules_arg.append(ra)
                keys += [kp + "due", kp + "fut", kp + "ob"]
                for g in groups:
                    keys += [kp + "e:" + g["gk"], kp + "s:" + g["gk"], kp + "p:" + g["gk"]]
            calls.append(
                (keys, orjson.dumps({"as_of": _pad(as_of), "wall": wall_ms, "rules": rules_arg}))
            )
        results = await self._eval_many("_apply_sha", calls)
        return [Decision.from_json(d) for res in results for d in res]

    async def tick(self, rules: list[CompiledRule], as_of: int, wall_ms: int) -> list[Decision]:
        return await self._tick(rules, as_of, wall_ms, wall_ms)

    async def flush(self, rules: list[CompiledRule], as_of: int, wall_ms: int) -> list[Decision]:
        """Fire every pending update now (replay's end of input)."""
        return await self._tick(rules, as_of, wall_ms, MAX_DUE)

    async def _tick(
        self, rules: list[CompiledRule], as_of: int, wall_ms: int, due_ms: int
    ) -> list[Decision]:
        if not rules:
            return []
        buckets = max(r.buckets for r in rules)
        calls = []
        for bucket in range(buckets):
            rules_arg = [self._rule_args(r, bucket, as_of) for r in rules if bucket < r.buckets]
            keys = [ra["kp"] + k for ra in rules_arg for k in ("due", "fut", "ob")]
            arg = {"as_of": _pad(as_of), "wall": wall_ms, "due": due_ms, "rules": rules_arg}
            calls.append((keys, orjson.dumps(arg)))
        results = await self._eval_many("_tick_sha", calls)
        return [Decision.from_json(d) for res in results for d in res]

    async def ack(self, rules: list[CompiledRule], decisions: list[Decision]) -> None:
        if not decisions:
            return
        by_rule = {r.id: r for r in rules}
        pipe = self.r.pipeline(transaction=False)
        for d in decisions:
            rule = by_rule[d.rule_id]
            from stream.window.model import bucket_of

            pipe.hdel(self.kp(rule, bucket_of(d.gk, rule.buckets)) + "ob", d.field)
        await pipe.execute()

    # -- reads -----------------------------------------------------------------------------
    async def outbox(self, rules: list[CompiledRule]) -> list[Decision]:
        pipe = self.r.pipeline(transaction=False)
        for rule in rules:
            for b in range(rule.buckets):
                pipe.hgetall(self.kp(rule, b) + "ob")
        out = []
        for h in await pipe.execute():
            out += [Decision.from_json(v) for v in h.values()]
        return sorted(out, key=lambda d: (d.decided_ms, d.alert_id, d.seq))

    async def _read_groups(
        self, rule: CompiledRule, keys: list[tuple[str, str]], lo: int, hi: int
    ) -> list[tuple[str, list[str], dict[str, list[Any]] | None]]:
        """(gk, members in [lo, hi], payloads) for each (gk, kp)."""
        pipe = self.r.pipeline(transaction=False)
        for gk, kp in keys:
            pipe.zrangebylex(kp + "e:" + gk, "[" + _pad(lo), "(" + _pad(hi) + "~")
            if rule.payload_columns:
                pipe.hgetall(kp + "p:" + gk)
        res = await pipe.execute()
        out = []
        step = 2 if rule.payload_columns else 1
        for i, (gk, _kp) in enumerate(keys):
            members = [_s(m) for m in res[i * step]]
            payloads = None
            if rule.payload_columns:
                payloads = {_s(k): orjson.loads(v) for k, v in res[i * step + 1].items()}
            out.append((gk, members, payloads))
        return out

    async def rows(
        self, rule: CompiledRule, gks: list[str], as_of: int, alert_range: bool = True
    ) -> dict[str, RowResult]:
        from stream.window.model import bucket_of

        b = Bounds.at(rule, as_of)
        keys = [(gk, self.kp(rule, bucket_of(gk, rule.buckets))) for gk in gks]
        got = await self._read_groups(rule, keys, b.lo, b.alert_hi if alert_range else b.hi)
        return {
            gk: compute_row(rule, list(orjson.loads(gk)), members, pl) for gk, members, pl in got
        }

    async def table(self, rule: CompiledRule, as_of: int) -> list[RowResult]:
        b = Bounds.at(rule, as_of)
        pattern = f"{self.prefix}{{*}}:{rule.id}:{rule.version}:e:*"
        keys: list[tuple[str, str]] = []
        async for k in self.r.scan_iter(match=pattern, count=1000):
            name = _s(k)
            i = name.index(":e:")
            keys.append((name[i + 3 :], name[: i + 1]))
        rows: list[RowResult] = []
        for i in range(0, len(keys), 500):
            for gk, members, pl in await self._read_groups(rule, keys[i : i + 500], b.lo, b.hi):
                if members:
                    rows.append(compute_row(rule, list(orjson.loads(gk)), members, pl))
        return sort_rows(rule, rows)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class RedisClusterStore(RedisStore):
    """The same store on Redis Cluster: `redis+cluster://[:PASSWORD@]HOST:PORT[,HOST:PORT...]`
    (`rediss+cluster://` for TLS). The nodes are only the first ones asked; the client learns the
    whole cluster from them. Every script call's keys share one hash tag (the bucket), so each
    call runs on one node; the calls of a batch go out concurrently, one per bucket."""

    name = "redis-cluster"

    def __init__(
        self,
        url: str,
        prefix: str = "rmm:",
        *,
        password: str | None = None,
        margin_ms: int = DEFAULT_MARGIN_MS,
        client: Any = None,
    ) -> None:
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        scheme, sep, rest = url.partition("://")
        if scheme not in CLUSTER_SCHEMES or not sep:
            raise StoreConfigError(
                f"store URL {url!r}: use redis+cluster://HOST:PORT[,HOST:PORT...]"
            )
        auth, _, hosts = rest.rpartition("@")
        hosts = hosts.split("/", 1)[0]
        nodes = []
        for hp in filter(None, (h.strip() for h in hosts.split(","))):
            host, _, port = hp.rpartition(":")
            if not host or not port.isdigit():
                raise StoreConfigError(f"store URL {url!r}: {hp!r} is not HOST:PORT")
            nodes.append(ClusterNode(host.strip("[]"), int(port)))
        if not nodes:
            raise StoreConfigError(f"store URL {url!r}: no HOST:PORT")
        user, _, url_pw = auth.partition(":") if auth else ("", "", "")
        pw = url_pw or password or os.environ.get("RMM_STREAM_REDIS_PASSWORD") or None
        if client is None:
            from urllib.parse import unquote

            client = RedisCluster(
                startup_nodes=nodes,
                decode_responses=False,
                password=unquote(pw) if pw else None,
                username=unquote(user) if user else None,
                ssl=scheme == "rediss+cluster",
                socket_timeout=SOCKET_TIMEOUT,
                socket_connect_timeout=SOCKET_TIMEOUT,
            )
        super().__init__(
            "redis://cluster", prefix, password=password, margin_ms=margin_ms, client=client
        )
        self.url = url

    async def _eval_many(self, sha_attr: str, calls: list[tuple[list[str], bytes]]) -> list[Any]:
        """A cluster pipeline would split by node anyway; one concurrent call per bucket keeps
        NOSCRIPT handling per call and needs nothing the cluster client lacks."""
        if not calls:
            return []
        import asyncio

        async def one(keys: list[str], arg: bytes) -> Any:
            for attempt in range(2):
                try:
                    return await self.r.evalsha(getattr(self, sha_attr), len(keys), *keys, arg)
                except NoScriptError:
                    if attempt:
                        raise
                    await self._load_scripts()  # a node restarted or was added
            raise RuntimeError("unreachable")

        results = await asyncio.gather(*(one(k, a) for k, a in calls), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        return results
