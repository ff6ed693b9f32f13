"""The command line: the README sample, summary format, exit codes, settings precedence, inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from stream.cli import main
from tests.conftest import ROOT
from tests.gen import AS_OF, DEVICES, network_props, record
from tests.oracle import fmt

SAMPLE = ROOT / "samples" / "defender-mixed.jsonl"
EXPECTED = ROOT / "samples" / "expected-summary.jsonl"
AS_OF_TEXT = "2026-11-30T12:00:00Z"


def replay(tmp_path: Path, *args: str) -> tuple[int, list[dict], list[dict]]:
    summary = tmp_path / f"summary-{uuid.uuid4().hex}.jsonl"
    alerts = tmp_path / f"alerts-{uuid.uuid4().hex}.jsonl"
    code = main(["replay", "--summary", str(summary), "--alerts", str(alerts), *args])
    read = lambda p: [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []  # noqa: E731
    return code, read(summary), read(alerts)


def test_readme_sample(tmp_path: Path, capsys) -> None:
    dead = tmp_path / "dead.jsonl"
    code, summary, alerts = replay(
        tmp_path, "--as-of", AS_OF_TEXT, "--dead-letter", str(dead), str(SAMPLE)
    )
    assert code == 0
    assert summary == [json.loads(x) for x in EXPECTED.read_text().splitlines()]
    # hand-checked: two groups on the laptop, one on the server; Report sorted, 7 digits
    assert [(r["RemoteUrl"], r["Count"], r["Report"]) for r in summary] == [
        ("https://api.splashtop.com/v1/x", 1, [356002]),
        ("st2-v3-dc.relay.splashtop.com", 2, [355896, 355901]),
        ("relay-eu.splashtop.eu", 1, [71234]),
    ]
    assert summary[1]["FirstSeen"] == "2026-11-30T09:15:02.1234567Z"
    assert summary[1]["LastSeen"] == "2026-11-30T09:15:40.5000000Z"
    assert sorted(a["Kind"] for a in alerts) == ["new", "new", "new"]
    entries = [json.loads(x) for x in dead.read_text().splitlines()]
    assert [(e["reason"], e["source"]) for e in entries] == [("invalid_json", f"{SAMPLE}:7")]
    err = capsys.readouterr().err
    assert "messages=10 " in err and "bad=1(invalid_json=1)" in err and "outside_lookback=1" in err
    assert "records/s=" in err and "prefiltered_out=2" in err


def test_summary_key_order_and_sorting(tmp_path: Path) -> None:
    _, summary, _ = replay(tmp_path, "--as-of", AS_OF_TEXT, str(SAMPLE))
    assert list(summary[0]) == [
        "RuleId",
        "DeviceId",
        "DeviceName",
        "RemoteUrl",
        "FirstSeen",
        "LastSeen",
        "Report",
        "Count",
    ]
    keys = [(r["RuleId"], r["DeviceId"], r["DeviceName"], r["RemoteUrl"]) for r in summary]
    assert keys == sorted(keys)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay", "--no-such-option", "x"], None),
        (["replay", "--rules", "/nonexistent/rules.yaml", "-"], "no such rule file"),
        (["replay", "--store", "mongodb://x", "-"], "unknown store"),
        (["replay", "--alerts", "-", "--summary", "-", "-"], "cannot both write to stdout"),
        (["replay", "--as-of", "tomorrow", "-"], "--as-of"),
        (["replay", "--as-of", "2026-11-30T12:00:00", "-"], "no time zone"),
        (["replay", "/nonexistent/input.jsonl"], "cannot read input"),
        (["replay", "--redis-buckets", "0", "-"], "redis_buckets"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args, message, capsys) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    if message:
        assert message in err and len(err.splitlines()) == 1


def test_bad_rule_file_names_file_and_key(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (ROOT / "config/rules/splashtop.yaml").read_text().replace("has_any:", "has_some:")
    )
    assert main(["replay", "--rules", str(bad), str(SAMPLE)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "where[0].RemoteUrl.has_some" in err and "unknown operator" in err


def test_flag_beats_env_beats_config_file(tmp_path: Path, monkeypatch) -> None:
    from stream.cli import build_parser
    from stream.config import resolve

    cfg = tmp_path / "c.yaml"
    cfg.write_text("redis_prefix: fromfile\nbatch_size: 7\nvalidate_all: true\n")
    ns = build_parser().parse_args(["replay", "--config", str(cfg), "--batch-size", "9", "-"])
    env = {"RMM_STREAM_BATCH_SIZE": "8", "RMM_STREAM_REDIS_PREFIX": "fromenv"}
    s = resolve("replay", ns, env)
    assert (s["batch_size"], s["redis_prefix"], s["validate_all"]) == (9, "fromenv", True)
    ns = build_parser().parse_args(["replay", "--config", str(cfg), "-"])
    s = resolve("replay", ns, {})
    assert (s["batch_size"], s["redis_prefix"], s["store"]) == (7, "fromfile", "memory")
    s = resolve("replay", ns, {"RMM_STREAM_RULES": "a.yaml,b.yaml"})
    assert s["rules"] == ["a.yaml", "b.yaml"]


def test_unknown_config_key_is_an_error(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("redis_prefx: x\n")
    assert main(["replay", "--config", str(cfg), str(SAMPLE)]) == 2
    assert "unknown key 'redis_prefx'" in capsys.readouterr().err


def _props(rid: int, off: int) -> dict:
    return network_props(DEVICES[0], AS_OF + off, rid, "relay.splashtop.com", "Splashtop Inc.")


def test_json_document_inputs(tmp_path: Path) -> None:
    export = tmp_path / "export.json"
    export.write_text(json.dumps([_props(1, -(10**7)), _props(2, -2 * 10**7)], indent=2))
    api = tmp_path / "api.json"
    api.write_text(json.dumps({"Schema": [], "Results": [_props(3, -3 * 10**7)]}))
    code, summary, _ = replay(tmp_path, "--as-of", fmt(AS_OF), str(export), str(api))
    assert code == 0
    assert summary[0]["Count"] == 3 and summary[0]["Report"] == [1, 2, 3]


def test_stdin_alerts_as_lines_arrive(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream", "replay", "--as-of", fmt(AS_OF), "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdin and proc.stdout
    try:
        proc.stdin.write(json.dumps({"records": [record(_props(1, -(10**7)))]}).encode() + b"\n")
        proc.stdin.flush()
        t0 = time.monotonic()
        line = proc.stdout.readline()  # the alert arrives while stdin is still open
        assert time.monotonic() - t0 < 30
        alert = json.loads(line)
        assert alert["Kind"] == "new" and alert["Count"] == 1
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert proc.returncode == 0


@pytest.mark.redis
def test_table_command_reads_what_replay_left_in_redis(
    tmp_path, redis_url, redis_prefix, capsys
) -> None:
    code, summary, _ = replay(
        tmp_path,
        "--as-of",
        AS_OF_TEXT,
        "--store",
        redis_url,
        "--redis-prefix",
        redis_prefix,
        str(SAMPLE),
    )
    assert code == 0
    capsys.readouterr()
    assert (
        main(["table", "--store", redis_url, "--redis-prefix", redis_prefix, "--as-of", AS_OF_TEXT])
        == 0
    )
    printed = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert printed == summary == [json.loads(x) for x in EXPECTED.read_text().splitlines()]


def test_metrics_port_serves_prometheus_metrics_during_replay() -> None:
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stream",
            "replay",
            "--as-of",
            fmt(AS_OF),
            "--metrics-port",
            str(port),
            "--alerts",
            os.devnull,
            "-",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdin
    try:
        proc.stdin.write(json.dumps({"records": [record(_props(1, -(10**7)))]}).encode() + b"\n")
        proc.stdin.write(b"not json but splashtop\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline:
            try:
                text = (
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
                    .read()
                    .decode()
                )
                if "rmm_stream_messages_total 2.0" in text and "rmm_stream_alerts_total{" in text:
                    break  # (alerts count once delivered, a moment after the batch is read)
            except OSError:
                pass
            time.sleep(0.2)
        assert "rmm_stream_messages_total 2.0" in text
        assert 'rmm_stream_bad_records_total{reason="invalid_json"} 1.0' in text
        assert (
            'rmm_stream_alerts_total{kind="new",rule="7253fc17-ed4b-4c54-9612-7ad48274c294"}'
            in text
        )
        assert "rmm_stream_event_lag_seconds_bucket" in text
        assert "rmm_stream_batch_seconds_count" in text
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "  - RemoteUrl: {has_any",
            "  - RemoteURL: {has_any",
            "unknown column 'RemoteURL' of DeviceNetworkEvents (did you mean 'RemoteUrl'?)",
        ),
        (
            "table: DeviceNetworkEvents",
            "table: DeviceNetworkEventz",
            "unknown table 'DeviceNetworkEventz' (did you mean 'DeviceNetworkEvents'?)",
        ),
        ("by: [DeviceId,", "by: [DeviceIdd,", "summarize.by: unknown column 'DeviceIdd'"),
        ("lookback: 5d", "lookback: [5d", "invalid YAML"),
    ],
)
def test_rule_typos_are_refused_not_silently_unmatched(tmp_path, capsys, old, new, message):
    bad = tmp_path / "bad.yaml"
    text = (ROOT / "config/rules/splashtop.yaml").read_text()
    assert old in text
    bad.write_text(text.replace(old, new))
    assert main(["replay", "--rules", str(bad), str(SAMPLE)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_exclusions_demo_on_the_sample(tmp_path: Path, capsys) -> None:
    excluded = tmp_path / "excluded.jsonl"
    code, summary, alerts = replay(
        tmp_path,
        "--as-of",
        AS_OF_TEXT,
        "--exclusions",
        str(ROOT / "samples/exclusions-demo.yaml"),
        "--excluded",
        str(excluded),
        str(SAMPLE),
    )
    assert code == 0
    # hand-checked: 09:15 UTC is 10:15 in Berlin (inside 08:00-10:30), 10:02 UTC is 11:02
    assert [(r["RemoteUrl"], r["Count"]) for r in summary] == [
        ("https://api.splashtop.com/v1/x", 1)
    ]
    names = [json.loads(x)["Exclusion"] for x in excluded.read_text().splitlines()]
    assert sorted(names) == [
        "cloud-vps",
        "cloud-vps",
        "office-hours",
        "office-hours",
        "office-hours",
    ]
    err = capsys.readouterr().err
    assert "excluded=5(" in err and "/office-hours=3" in err and "/cloud-vps=2" in err
    assert [a["Kind"] for a in alerts] == ["new"]
