"""Decode one Event Hubs message body into events, keeping good records beside bad ones.

Accepted bodies: `{"records": [...]}` (the Defender streaming API), a bare JSON array of records,
one record, or a bare table row (columns at top level). A document of an Advanced Hunting API
export (`{"Results": [...]}`) is read as a list of rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from stream.decode.schema import Kind
from stream.timeutil import TimeParseError, parse_ticks

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class Event:
    """A validated row: event time in ticks, the row's columns, and the envelope (or None)."""

    __slots__ = ("envelope", "props", "table", "ticks")

    def __init__(
        self, ticks: int, props: dict[str, Any], envelope: dict[str, Any] | None, table: str = ""
    ):
        self.ticks = ticks
        self.props = props
        self.envelope = envelope
        self.table = table

    def text(self, column: str) -> str:
        """A string column as Kusto sees it: null is the empty string."""
        v = self.props.get(column)
        return "" if v is None else v


@dataclass
class BadRecord:
    reason: str  # a short, stable code: also the metric label
    error: str  # what was wrong, for people
    raw: bytes  # the record (or the whole message when it could not be parsed)
    index: int | None = None  # the record's place in its message, when known


@dataclass
class Decoded:
    events: list[Event] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)
    other_tables: int = 0
    records: int = 0  # records seen in the message, good, bad and other tables
    skipped: int = 0  # records the record-level prefilter ruled out (never decoded)


class Checker:
    """Checks the columns that loaded rules use; built once from the rules."""

    def __init__(self, table: str, columns: dict[str, Kind]) -> None:
        self.table = table
        self.category = f"AdvancedHunting-{table}"
        # Timestamp and ReportId are checked specially; DeviceId/DeviceName are always strings.
        cols = dict(columns)
        cols.pop("Timestamp", None)
        cols.pop("ReportId", None)
        cols.setdefault("DeviceId", "string")
        cols.setdefault("DeviceName", "string")
        self.strings = tuple(c for c, k in cols.items() if k == "string")
        self.longs = tuple(c for c, k in cols.items() if k == "long")
        self.bools = tuple(c for c, k in cols.items() if k == "bool")
        self.datetimes = tuple(c for c, k in cols.items() if k == "datetime")

    def check(self, props: dict[str, Any]) -> Event | tuple[str, str]:
        ts = props.get("Timestamp")
        if ts is None:
            return ("missing_timestamp", "no Timestamp")
        if type(ts) is not str:
            return ("bad_timestamp", f"Timestamp is {_json_type(ts)}, expected a string")
        try:
            ticks = parse_ticks(ts)
        except TimeParseError as exc:
            return ("bad_timestamp", str(exc))
        rid = props.get("ReportId")
        if type(rid) is not int:
            if rid is None:
                return ("missing_report_id", "no ReportId (needed to identify the event)")
            return ("wrong_type", f"ReportId is {_json_type(rid)}, expected a 64-bit integer")
        if not INT64_MIN <= rid <= INT64_MAX:
            return ("wrong_type", "ReportId is outside the 64-bit range")
        for c in self.strings:
            v = props.get(c)
            if v is not None and type(v) is not str:
                return ("wrong_type", f"{c} is {_json_type(v)}, expected a string")
        for c in self.longs:
            v = props.get(c)
            if v is not None and (type(v) is not int or not INT64_MIN <= v <= INT64_MAX):
                return ("wrong_type", f"{c} is {_json_type(v)}, expected an integer")
        for c in self.bools:
            v = props.get(c)
            if v is not None and type(v) is not bool:
                return ("wrong_type", f"{c} is {_json_type(v)}, expected true or false")
        for c in self.datetimes:
            v = props.get(c)
            if v is None:
                continue
            if type(v) is not str:
                return ("wrong_type", f"{c} is {_json_type(v)}, expected a datetime string")
            try:
                parse_ticks(v)
            except TimeParseError as exc:
                return ("wrong_type", f"{c}: {exc}")
        return Event(ticks, props, None, self.table)


class _Envelope(msgspec.Struct):
    """Only what tells the message shape apart; every other key is skipped unparsed."""

    records: list[msgspec.Raw] | None = None
    properties: msgspec.Raw | None = None
    Results: msgspec.Raw | None = None


_split_envelope = msgspec.json.Decoder(_Envelope).decode
_split_array = msgspec.json.Decoder(list[msgspec.Raw]).decode


class Decoder:
    """Decodes messages for the tables that loaded rules read; other tables are counted."""

    def __init__(self, checkers: list[Checker], bare_table: str = "DeviceNetworkEvents") -> None:
        self.by_category = {c.category: c for c in checkers}
        # A bare row (no envelope) is taken to be a row of this table.
        self.bare = next((c for c in checkers if c.table == bare_table), checkers[0])

    def decode(self, data: bytes, record_filter: Callable[[bytes], bool] | None = None) -> Decoded:
        """Decode a message. With record_filter, a multi-record message is first cut into its
        records' raw bytes (msgspec skips them without building objects) and only the records
        the filter keeps are decoded: the filter must be conservative (see prefilter.py)."""
        if record_filter is not None:
            raws = _split(data)
            if raws is not None:
                out = Decoded(records=len(raws))
                for i, raw in enumerate(raws):
                    rb = bytes(raw)
                    if not record_filter(rb):
                        out.skipped += 1
                        continue
                    try:
                        rec = orjson.loads(rb)
                    except orjson.JSONDecodeError as exc:
                        bad = _unparsable(rb, exc)
                        bad.index = i
                        out.bad.append(bad)
                        continue
                    self._record(rec, i, out)
                return out
        return self._decode_whole(data)

    def _decode_whole(self, data: bytes) -> Decoded:
        out = Decoded()
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            out.records = 1
            out.bad.append(_unparsable(data, exc))
            return out
        if isinstance(body, dict):
            if "records" in body and "properties" not in body:
                records = body["records"]
                if not isinstance(records, list):
                    out.records = 1
                    out.bad.append(BadRecord("bad_envelope", "'records' is not a list", data))
                    return out
            elif "Results" in body and isinstance(body["Results"], list):
                records = body["Results"]
            else:
                records = [body]
        elif isinstance(body, list):
            records = body
        else:
            out.records = 1
            out.bad.append(BadRecord("not_object", f"message is a JSON {_json_type(body)}", data))
            return out
        out.records = len(records)
        for i, rec in enumerate(records):
            self._record(rec, i, out)
        return out

    def _record(self, rec: Any, i: int, out: Decoded) -> None:
        if type(rec) is not dict:
            out.bad.append(BadRecord("not_object", f"record is {_json_type(rec)}", _dump(rec), i))
            return
        if "properties" in rec or "category" in rec:
            cat = rec.get("category")
            checker = self.by_category.get(cat)  # type: ignore[arg-type]
            if checker is None:
                if isinstance(cat, str):
                    out.other_tables += 1
                    return
                out.bad.append(BadRecord("bad_envelope", "record has no category", _dump(rec), i))
                return
            props = rec.get("properties")
            if type(props) is not dict:
                out.bad.append(
                    BadRecord("bad_envelope", "properties is not an object", _dump(rec), i)
                )
                return
            envelope: dict[str, Any] | None = rec
        else:
            props = rec
            envelope = None
            checker = self.bare
        res = checker.check(props)
        if type(res) is tuple:
            out.bad.append(BadRecord(res[0], res[1], _dump(rec), i))
            return
        res.envelope = envelope  # type: ignore[union-attr]
        out.events.append(res)  # type: ignore[arg-type]


def _split(data: bytes) -> list[msgspec.Raw] | None:
    """The raw records of a {"records": [...]} or [...] message; None for any other shape or
    for input msgspec rejects (the whole-message path then reports it exactly)."""
    if not data.isascii():
        try:
            data.decode("utf-8")  # msgspec does not check the UTF-8 of the parts it skips
        except UnicodeDecodeError:
            return None
    head = data[:64].lstrip()
    try:
        if head.startswith(b"{"):
            env = _split_envelope(data)
            if env.records is None or env.properties is not None:
                return None
            return env.records
        if head.startswith(b"["):
            return _split_array(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return None


def _unparsable(data: bytes, exc: Exception) -> BadRecord:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as u:
        return BadRecord("invalid_utf8", f"not valid UTF-8 at byte {u.start}", data)
    msg = str(exc).split("\n", 1)[0]
    if not data.strip():
        return BadRecord("invalid_json", "empty message", data)
    return BadRecord("invalid_json", f"invalid JSON: {msg}", data)


def _dump(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return repr(value).encode()


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    return "an object"
