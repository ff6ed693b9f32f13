"""Configuration of `rmm-stream run` (no broker needed): the eventhubs profile, security
settings, secrets kept out of logs, the chart's config keys, the Redis Cluster URL."""

from __future__ import annotations

import argparse

import pytest

from stream.config import ConfigError, load_config_file, resolve
from stream.service.worker import Service, redacted
from stream.sinks.kafka import alert_key
from stream.sources.kafka import client_options, describe
from stream.stores.factory import make_store
from stream.stores.redis import RedisClusterStore, StoreConfigError

SECRET = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=S3cr3t="


def _run_settings(**kw: object) -> dict:
    ns = argparse.Namespace()
    s = resolve("run", ns, environ={})
    s.update(kw)
    return s


def test_eventhubs_profile_defaults() -> None:
    s = _run_settings(
        bootstrap_servers="ns.servicebus.windows.net:9093",
        profile="eventhubs",
        sasl_password=SECRET,
    )
    o = client_options(s)
    assert o["security_protocol"] == "SASL_SSL"
    assert o["sasl_mechanism"] == "PLAIN"
    assert o["sasl_plain_username"] == "$ConnectionString"
    assert o["sasl_plain_password"] == SECRET
    assert o["connections_max_idle_ms"] == 180_000 < 240_000
    assert o["metadata_max_age_ms"] == 180_000
    assert o["request_timeout_ms"] == 60_000
    assert o["session_timeout_ms"] == 30_000
    assert o["ssl_context"] is not None
    assert SECRET not in repr(describe(o))


def test_password_from_env_or_file(tmp_path) -> None:
    ns = argparse.Namespace()
    s = resolve("run", ns, environ={"RMM_STREAM_SASL_PASSWORD": SECRET})
    s.update(bootstrap_servers="h:9093", profile="eventhubs")
    assert client_options(s)["sasl_plain_password"] == SECRET
    assert SECRET not in repr(redacted(s))
    assert redacted({"store": "redis://:pw1@h:6379/0"}) == {"store": "redis://:***@h:6379/0"}
    f = tmp_path / "pw"
    f.write_text(SECRET + "\n")
    s = _run_settings(bootstrap_servers="h:9093", profile="eventhubs", sasl_password_file=str(f))
    assert client_options(s)["sasl_plain_password"] == SECRET
    with pytest.raises(ConfigError, match="connection string"):
        client_options(_run_settings(bootstrap_servers="h:9093", profile="eventhubs"))
    with pytest.raises(ConfigError, match="cannot read"):
        client_options(
            _run_settings(
                bootstrap_servers="h:9093", profile="eventhubs", sasl_password_file="/nonexistent"
            )
        )


def test_scram_tls_and_plain() -> None:
    o = client_options(
        _run_settings(
            bootstrap_servers="a:9092,b:9092",
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username="svc",
            sasl_password="pw",
        )
    )
    assert o["bootstrap_servers"] == ["a:9092", "b:9092"]
    assert (o["sasl_mechanism"], o["sasl_plain_username"]) == ("SCRAM-SHA-512", "svc")
    o = client_options(_run_settings(bootstrap_servers="a:9093", security_protocol="SSL"))
    assert "sasl_plain_password" not in o and o["ssl_context"] is not None
    o = client_options(_run_settings(bootstrap_servers="a:9092"))
    assert "ssl_context" not in o and "sasl_mechanism" not in o
    with pytest.raises(ConfigError, match="sasl-username"):
        client_options(
            _run_settings(
                bootstrap_servers="a", security_protocol="SASL_PLAINTEXT", sasl_password="x"
            )
        )
    with pytest.raises(ConfigError, match="security_protocol"):
        client_options(_run_settings(bootstrap_servers="a", security_protocol="TLS"))
    with pytest.raises(ConfigError, match="bootstrap"):
        client_options(_run_settings())


def test_the_charts_config_keys(tmp_path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "source: kafka\nbootstrap_servers: ns.servicebus.windows.net:9093\n"
        "topic: [defender, other]\ngroup: rmm\nstarting_position: earliest\nprofile: eventhubs\n"
        "security_protocol: SASL_SSL\nsasl_mechanism: PLAIN\nsasl_username: $ConnectionString\n"
        "sasl_password_file: /var/run/secrets/eh\nssl_cafile: ''\nalerts_topic: alerts\n"
        "dead_letter_topic: dlq\nhttp_port: 8080\nunhealthy_after: 600\n"
        "store: redis://r:6379/0\nredis_prefix: 'rmm:'\nrules: [/etc/rmm/rules]\n"
        "exclusions: /etc/rmm/exclusions.yaml\nalerts: '-'\n"
        "log_level: INFO\nlog_format: json\n"
    )
    load_config_file(str(cfg))  # no unknown key
    ns = argparse.Namespace(config=str(cfg))
    s = resolve("run", ns, environ={"RMM_STREAM_GROUP": "from-env"})
    assert s["topic"] == ["defender", "other"]
    assert s["group"] == "from-env"  # env beats the file
    assert s["unhealthy_after"] == 600.0
    assert s["http_port"] == 8080
    s2 = resolve("run", argparse.Namespace(config=None), environ={"RMM_STREAM_TOPIC": "a, b"})
    assert s2["topic"] == ["a", "b"]
    assert s2["starting_position"] == "latest" and s2["http_port"] == 8080


def test_eventhub_source_is_refused_clearly() -> None:
    with pytest.raises(ConfigError, match="--profile eventhubs"):
        Service(_run_settings(source="eventhub", bootstrap_servers="a", topic=["t"]))


def test_no_alert_sink_is_refused() -> None:
    with pytest.raises(ConfigError, match="no alert sink"):
        Service(_run_settings(bootstrap_servers="a", topic=["t"], alerts=""))


def test_redis_cluster_url() -> None:
    st = make_store("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", "x:")
    assert isinstance(st, RedisClusterStore)
    assert st.url.startswith("redis+cluster://")
    for bad in ("redis+cluster://", "redis+cluster://host", "redis+cluster://h:p"):
        with pytest.raises(StoreConfigError):
            make_store(bad)


def test_alert_key_is_rule_and_group() -> None:
    doc = {"RuleId": "r1", "Group": {"DeviceId": "d", "DeviceName": "n", "RemoteUrl": None}}
    assert alert_key(doc) == b'r1:["d","n",null]'


def test_runner_option() -> None:
    assert _run_settings()["runner"] in ("faust", "aiokafka")
    ns = argparse.Namespace()
    assert resolve("run", ns, environ={"RMM_STREAM_RUNNER": "faust"})["runner"] == "faust"
    assert resolve("run", ns, environ={"RMM_STREAM_RUNNER": "aiokafka"})["runner"] == "aiokafka"
    with pytest.raises(ConfigError, match="runner"):
        resolve("run", ns, environ={"RMM_STREAM_RUNNER": "kstreams"})


def test_faust_settings_from_the_client_options() -> None:
    """The faust runner's App settings: Event Hubs security and timeouts, nothing declared,
    no leader topic, no web server, faust's own commits out of the way."""
    from faust import SASLCredentials, SSLCredentials

    from stream.sources.faust_source import faust_settings
    from stream.sources.kafka import MAX_PARTITION_FETCH

    s = _run_settings(
        bootstrap_servers="ns.servicebus.windows.net:9093",
        profile="eventhubs",
        sasl_password=SECRET,
        topic=["t"],
    )
    f = faust_settings(s, client_options(s))
    creds = f["broker_credentials"]
    assert isinstance(creds, SASLCredentials)
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "PLAIN"
    assert (creds.username, creds.password) == ("$ConnectionString", SECRET)
    assert creds.ssl_context is not None
    assert SECRET not in repr(creds)
    assert f["broker"] == ["kafka://ns.servicebus.windows.net:9093"]
    assert (f["broker_request_timeout"], f["broker_session_timeout"]) == (60.0, 30.0)
    assert f["broker_heartbeat_interval"] == 3.0
    assert f["consumer_metadata_max_age_ms"] == f["producer_metadata_max_age_ms"] == 180_000
    assert f["consumer_connections_max_idle_ms"] == 180_000 < 240_000
    assert f["producer_max_request_size"] == 1_000_000
    assert f["consumer_max_fetch_size"] == MAX_PARTITION_FETCH
    assert f["topic_allow_declare"] is False and f["topic_disable_leader"] is True
    assert f["web_enabled"] is False and f["stream_wait_empty"] is False
    assert f["value_serializer"] == "raw" and f["consumer_auto_offset_reset"] == "latest"
    assert f["broker_commit_interval"] > 86_400 and f["broker_commit_every"] > 10**9

    s = _run_settings(
        bootstrap_servers="a:9092",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="svc",
        sasl_password="pw",
        starting_position="earliest",
    )
    f = faust_settings(s, client_options(s))
    creds = f["broker_credentials"]
    assert creds.protocol.value == "SASL_PLAINTEXT" and creds.mechanism.value == "SCRAM-SHA-256"
    assert creds.ssl_context is None and f["consumer_auto_offset_reset"] == "earliest"
    assert (f["broker_request_timeout"], f["broker_session_timeout"]) == (40.0, 10.0)
    s = _run_settings(bootstrap_servers="a:9093", security_protocol="SSL")
    assert isinstance(faust_settings(s, client_options(s))["broker_credentials"], SSLCredentials)
    s = _run_settings(bootstrap_servers="a:9092")
    assert "broker_credentials" not in faust_settings(s, client_options(s))


def test_faust_runner_builds_and_exports_faust_metrics() -> None:
    """Without a broker: the App is built with our settings, faust's commits are off, and
    faust's Prometheus sensor writes into our registry."""
    import asyncio

    from prometheus_client import generate_latest

    from stream.metrics import Metrics
    from stream.sources.faust_source import FaustSource, _Consumer

    async def build() -> None:
        m = Metrics()
        src = FaustSource(_run_settings(bootstrap_servers="127.0.0.1:9", topic=["a", "b", "a"]), m)
        assert src.topics == ["a", "b"]
        assert src.app.conf.id == "rmm-stream" and src.app.conf.web_enabled is False
        assert src.app.conf.topic_allow_declare is False
        assert isinstance(src.app.consumer, _Consumer)
        assert await src.app.consumer.commit() is False  # faust never commits by itself
        text = generate_latest(m.registry).decode()
        assert "faust_messages_received" in text and "rmm_stream_commit_seconds" in text

    asyncio.run(build())
