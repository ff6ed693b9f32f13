"""The alert document that sinks receive (schema: docs/alerts.md)."""

from __future__ import annotations

from typing import Any

import orjson

from stream.alerts.decision import Decision
from stream.rules.compiled import CompiledRule
from stream.timeutil import format_ticks

SCHEMA_VERSION = 1


def alert_document(
    rule: CompiledRule, d: Decision, row: dict[str, Any], detected_ms: int
) -> dict[str, Any]:
    r = rule.rule
    doc: dict[str, Any] = {
        "SchemaVersion": SCHEMA_VERSION,
        "AlertId": d.alert_id,
        "Kind": d.kind,
        "Sequence": d.seq,
        "RuleId": r.id,
        "RuleName": r.name,
        "RuleVersion": rule.version,
        "Severity": r.severity,
        "Tactics": list(r.tactics),
        "Techniques": list(r.techniques),
        "Group": {k: row[k] for k in rule.by},
    }
    doc.update(row)
    doc["EpisodeStart"] = format_ticks(d.start)
    doc["AsOf"] = format_ticks(d.as_of)
    doc["DecidedAt"] = _ms_iso(d.decided_ms)
    doc["DetectedAt"] = _ms_iso(detected_ms)
    doc["Evidence"] = orjson.loads(d.evidence) if d.evidence else {}
    return doc


def _ms_iso(ms: int) -> str:
    from stream.timeutil import TICKS_PER_MS, UNIX_EPOCH_TICKS

    return format_ticks(UNIX_EPOCH_TICKS + ms * TICKS_PER_MS)
