"""JSON Lines to stdout or a file. A write returns once the lines are flushed (and, for files
opened with fsync, on disk): that is the confirmation the outbox waits for."""

from __future__ import annotations

import os
import sys
from typing import IO, Any

import orjson


class JsonLinesSink:
    def __init__(self, target: str, *, fsync: bool = False, append: bool = True) -> None:
        self.target = target
        self.fsync = fsync
        self.mode = "ab" if append else "wb"
        self._fh: IO[bytes] | None = None

    def _file(self) -> IO[bytes]:
        if self._fh is None:
            if self.target == "-":
                self._fh = sys.stdout.buffer
            else:
                self._fh = open(self.target, self.mode)  # noqa: SIM115 - lives as long as the sink
        return self._fh

    def write_docs(self, docs: list[dict[str, Any]]) -> None:
        if not docs:
            return
        self.write_raw([orjson.dumps(d) for d in docs])

    def write_raw(self, lines: list[bytes]) -> None:
        if not lines:
            return
        fh = self._file()
        fh.write(b"\n".join(lines) + b"\n")
        fh.flush()
        if self.fsync and self.target != "-":
            os.fsync(fh.fileno())

    async def write(self, docs: list[dict[str, Any]]) -> None:
        self.write_docs(docs)

    def close(self) -> None:
        if self._fh is not None and self.target != "-":
            self._fh.close()
        self._fh = None


class MultiSink:
    """Alerts to several sinks; confirmed only when every sink has them."""

    def __init__(self, sinks: list[Any]) -> None:
        self.sinks = sinks

    async def write(self, docs: list[dict[str, Any]]) -> None:
        for s in self.sinks:
            await s.write(docs)

    def close(self) -> None:
        for s in self.sinks:
            s.close()
