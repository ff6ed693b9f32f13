"""Command line: argument parsing and wiring only. `rmm-stream replay|table|run`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import orjson

from stream import __version__
from stream.config import ConfigError, add_options, default_rules_paths, resolve, unknown_env
from stream.errors import ConfigurationError
from stream.rules.compiled import CompiledRule
from stream.rules.loader import load_rules
from stream.timeutil import TimeParseError, format_ticks, now_ticks, parse_ticks

log = logging.getLogger("rmm_stream")
USAGE_ERRORS = (ConfigurationError,)


class UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rmm-stream",
        description="Real-time detection of remote-management (RMM) tool abuse over Microsoft "
        "Defender events.",
    )
    p.add_argument("--version", action="version", version=f"rmm-stream {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    rp = sub.add_parser("replay", help="run the rules over files or stdin")
    add_options(rp, "replay")
    rp.add_argument("inputs", nargs="+", metavar="INPUT", help="file path or - for stdin")
    tp = sub.add_parser("table", help="print the table held in a store")
    add_options(tp, "table")
    try:
        from stream.service.cli import add_run_parser
    except ImportError:  # the live service is optional at this point of the build
        pass
    else:
        add_run_parser(sub)
    return p


def compiled_rules(s: dict[str, Any]) -> list[CompiledRule]:
    paths = [Path(p) for p in s["rules"]] if s.get("rules") else default_rules_paths()
    buckets = s.get("redis_buckets")
    buckets = 256 if buckets is None else buckets
    if not 1 <= buckets <= 16384:
        raise ConfigError("redis_buckets: must be 1..16384")
    return [CompiledRule(r, buckets) for r in load_rules(paths)]


def as_of_ticks(s: dict[str, Any]) -> int | None:
    if not s.get("as_of"):
        return None
    try:
        return parse_ticks(s["as_of"], require_utc=True)
    except TimeParseError as exc:
        raise ConfigError(f"--as-of: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    try:
        s = resolve(ns.command, ns)
        from stream import logs

        logs.setup(s.get("log_level") or "INFO", s.get("log_format") or "text")
        for name in unknown_env():
            log.warning("environment variable %s is not an option and is ignored", name)
        if ns.command == "replay":
            from stream.replay import run_replay

            return asyncio.run(run_replay(s, ns.inputs))
        if ns.command == "table":
            return asyncio.run(run_table(s))
        if ns.command == "run":
            from stream.service.cli import run_service

            return run_service(s)
    except USAGE_ERRORS as exc:
        print(f"rmm-stream: error: {exc}", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"rmm-stream: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last word: a clear line, not a traceback
        log.debug("fatal", exc_info=True)
        print(f"rmm-stream: fatal: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {ns.command}")
    return 2


async def run_table(s: dict[str, Any]) -> int:
    from stream.stores.factory import make_store

    rules = compiled_rules(s)
    if s["store"] == "memory":
        raise UsageError("table reads a shared store: pass --store redis://HOST:PORT/DB")
    store = make_store(s["store"], s["redis_prefix"])
    as_of = as_of_ticks(s) or now_ticks()
    try:
        await store.open(rules)
        out = sys.stdout.buffer
        rows = 0
        for rule in sorted(rules, key=lambda r: r.id):
            for rr in await store.table(rule, as_of):
                out.write(orjson.dumps({"RuleId": rule.id, **rr.row}) + b"\n")
                rows += 1
        out.flush()
        if rows == 0:
            log.warning(
                "the table is empty at %s: no group of rules %s (versions %s) under prefix %r "
                "has an event in its window; check --redis-prefix, --rules and --as-of",
                format_ticks(as_of),
                ", ".join(r.id for r in rules),
                ", ".join(r.version for r in rules),
                s["redis_prefix"],
            )
    finally:
        await store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
