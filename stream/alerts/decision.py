"""What a store decides for a group, recorded in its outbox atomically with the state."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from stream.timeutil import TICK_WIDTH

EVIDENCE_COLUMNS = (
    "Timestamp",
    "ReportId",
    "ActionType",
    "RemoteIP",
    "RemotePort",
    "RemoteUrl",
    "LocalIP",
    "LocalPort",
    "Protocol",
    "InitiatingProcessFileName",
    "InitiatingProcessFolderPath",
    "InitiatingProcessCommandLine",
    "InitiatingProcessAccountName",
    "InitiatingProcessAccountUpn",
    "InitiatingProcessVersionInfoCompanyName",
    "MachineGroup",
)


def alert_id(rule_id: str, gk: str, start_ticks: int) -> str:
    """Stable for an episode: the same rule, group key and episode start give the same id, in
    every process and store (the Redis script computes the same SHA-1)."""
    h = hashlib.sha1(f"{rule_id}\n{gk}\n{start_ticks:0{TICK_WIDTH}d}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


@dataclass(frozen=True)
class Decision:
    kind: str  # "new" | "update"
    alert_id: str
    seq: int  # 0 for new, then 1, 2, ... per update of the episode
    rule_id: str
    gk: str
    as_of: int  # ticks: the query's now() when decided
    start: int  # ticks: the episode's first event
    evidence: bytes | None  # JSON of the latest event's evidence columns
    decided_ms: int  # wall clock

    @property
    def field(self) -> str:
        return f"{self.alert_id}:{self.seq}"

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "k": self.kind,
                "id": self.alert_id,
                "seq": self.seq,
                "rid": self.rule_id,
                "gk": self.gk,
                "as_of": f"{self.as_of:0{TICK_WIDTH}d}",
                "start": f"{self.start:0{TICK_WIDTH}d}",
                "ev": self.evidence.decode() if self.evidence else None,
                "wall": self.decided_ms,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Decision:
        d: dict[str, Any] = orjson.loads(raw)
        ev = d.get("ev")
        return cls(
            kind=d["k"],
            alert_id=d["id"],
            seq=int(d["seq"]),
            rule_id=d["rid"],
            gk=d["gk"],
            as_of=int(d["as_of"]),
            start=int(d["start"]),
            evidence=ev.encode() if isinstance(ev, str) and ev else None,
            decided_ms=int(d["wall"]),
        )


def evidence_of(props: dict[str, Any], envelope: dict[str, Any] | None) -> bytes:
    ev = {c: props.get(c) for c in EVIDENCE_COLUMNS if c in props}
    if envelope is not None:
        ev["tenantId"] = envelope.get("tenantId")
    return orjson.dumps(ev)
