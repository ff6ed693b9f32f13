"""Fixtures of the Kafka integration tests: the broker, Redis and the Redis Cluster that
`eval "$(scripts/services up redis kafka redis-cluster)"` started. Without them the tests are
skipped on a developer machine and FAIL under CI=true."""

from __future__ import annotations

import os

import pytest


def _need(var: str) -> str:
    value = os.environ.get(var)
    if value:
        return value
    msg = f'{var} is not set: run eval "$(scripts/services up redis kafka redis-cluster)"'
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def kafka() -> str:
    value = _need("KAFKA_BOOTSTRAP")
    assert all(h.startswith("127.0.0.1:") for h in value.split(",")), value
    return value


@pytest.fixture(scope="session")
def redis_single() -> str:
    return _need("REDIS_URL")


@pytest.fixture(scope="session")
def redis_cluster() -> str:
    return "redis+cluster://" + _need("REDIS_CLUSTER_NODES")


RUNNERS = ("aiokafka", "faust")


@pytest.fixture(params=RUNNERS)
def runner(request, monkeypatch) -> str:
    """Each Kafka test runs once per runner (stream/sources/kafka.py, faust_source.py): the
    service subprocesses inherit RMM_STREAM_RUNNER."""
    monkeypatch.setenv("RMM_STREAM_RUNNER", request.param)
    return request.param


@pytest.fixture
def workers():
    """Every worker a test starts; those still running at the end are killed (by pid)."""
    started: list = []
    yield started
    for w in started:
        w.kill()
