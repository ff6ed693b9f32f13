"""`rmm-stream run`: the parser and the entry point the main CLI calls."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from stream.config import add_options


def add_run_parser(sub: Any) -> argparse.ArgumentParser:
    rp = sub.add_parser(
        "run",
        help="the live service: consume Kafka / Event Hubs topics (docs/operations.md)",
    )
    add_options(rp, "run")
    return rp


def run_service(s: dict[str, Any]) -> int:
    from stream.service.worker import Service

    service = Service(s)  # configuration errors surface here, before any connection
    return asyncio.run(service.run())
