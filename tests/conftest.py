"""Shared fixtures. Integration tests talk to a real redis-server: the README's test command
starts one with scripts/services and exports REDIS_URL; without it, a private redis-server is
started here on a free loopback port (and the test fails if none can be had)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SEED_RULES = ROOT / "config" / "rules"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis_server(workdir: str, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    """A private redis-server on a free loopback port, answering when this returns."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("no redis-server: run the tests with scripts/test (it installs one)")
    port = _free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, port


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    tmp = tempfile.mkdtemp(prefix="rmm-redis-")
    proc, port = start_redis_server(tmp)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def redis_prefix() -> str:
    """A fresh key prefix per test, so tests sharing one Redis never see each other's state."""
    return f"t{uuid.uuid4().hex[:12]}:"
