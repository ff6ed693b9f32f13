"""Parallel prefiltering of a file gives exactly the single-reader result: same table, same
alerts (AlertIds included), same counts, same dead-letter positions."""

from __future__ import annotations

import json
import random

from stream.cli import main
from stream.sources import parallel
from tests.gen import AS_OF, DAY, DEVICES, URLS, network_props, record
from tests.oracle import fmt


def test_parallel_equals_sequential(tmp_path, monkeypatch, capsys):
    rnd = random.Random(3)
    lines = []
    for i in range(400):
        recs = [
            record(
                network_props(
                    rnd.choice(DEVICES),
                    AS_OF - rnd.randint(0, 6 * DAY),
                    i * 10 + j,
                    rnd.choice(URLS),
                    "Splashtop Inc.",
                )
            )
            for j in range(rnd.randint(1, 4))
        ]
        lines.append(json.dumps({"records": recs}))
        if i % 97 == 0:
            lines.append('{"records": [{"RemoteUrl": "x.splashtop.com", truncated')
        if i % 50 == 0:
            lines.append("")
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(parallel, "CHUNK_BYTES", 4096)  # many chunks, lines cut at edges
    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 1)
    out = {}
    for workers in ("1", "2"):
        summary, alerts, dead = (tmp_path / f"{n}-{workers}.jsonl" for n in ("s", "a", "d"))
        # one message per batch on both paths, so the batch boundaries (new vs update) agree
        code = main(
            [
                "replay",
                "--workers",
                workers,
                "--batch-size",
                "1",
                "--as-of",
                fmt(AS_OF),
                "--summary",
                str(summary),
                "--alerts",
                str(alerts),
                "--dead-letter",
                str(dead),
                str(src),
            ]
        )
        assert code == 0
        stats = capsys.readouterr().err.strip().splitlines()[-1]
        docs = [json.loads(x) for x in alerts.read_text().splitlines()]
        for d in docs:
            d.pop("DecidedAt"), d.pop("DetectedAt")
        out[workers] = (summary.read_text(), docs, dead.read_text(), stats.split(" seconds=")[0])
    assert out["1"][0] and out["1"][1] and out["1"][2]
    assert out["1"] == out["2"]
