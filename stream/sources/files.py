"""Files and stdin. A `.json` file is one JSON document; anything else is JSON Lines, one Event
Hubs message body per line. stdin is read as lines arrive (`tail -f x | rmm-stream replay -`)."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import BinaryIO

from stream.sources.base import RawMessage

CHUNK = 1 << 20


class SourceError(OSError):
    pass


def _lines(chunks: Iterator[bytes], name: str) -> Iterator[RawMessage]:
    tail = b""
    n = 0
    for chunk in chunks:
        if tail:
            chunk = tail + chunk
        parts = chunk.split(b"\n")
        tail = parts.pop()
        for line in parts:
            n += 1
            if line.strip():
                yield RawMessage(line, name, n)
    if tail.strip():
        yield RawMessage(tail, name, n + 1)


def _read_chunks(fh: BinaryIO) -> Iterator[bytes]:
    while True:
        chunk = fh.read(CHUNK)
        if not chunk:
            return
        yield chunk


BATCH_BYTES = 4 << 20  # a batch also ends at this size: memory stays small and warm


def file_batches(path: str, batch: int, max_bytes: int = BATCH_BYTES) -> Iterator[list[RawMessage]]:
    try:
        fh = open(path, "rb", buffering=CHUNK)  # noqa: SIM115 - closed below
    except OSError as exc:
        raise SourceError(f"cannot read input {path}: {exc.strerror or exc}") from None
    with fh:
        if path.endswith(".json"):
            yield [RawMessage(fh.read(), path)]
            return
        out: list[RawMessage] = []
        n = size = 0
        for line in fh:  # C-level line splitting: the fastest way to walk a big file
            n += 1
            if len(line) <= 2 and not line.strip():
                continue
            out.append(RawMessage(line, path, n))
            size += len(line)
            if len(out) >= batch or size >= max_bytes:
                yield out
                out = []
                size = 0
        if out:
            yield out


async def stdin_batches(
    batch: int, idle: float = 1.0, stream: BinaryIO | None = None
) -> AsyncIterator[list[RawMessage]]:
    """Batches of the lines available now; an empty batch after `idle` seconds without input,
    so the caller can fire due updates while the pipe is quiet."""
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=16)
    fh = stream or sys.stdin.buffer

    def reader() -> None:
        try:
            while True:
                chunk = fh.read1(CHUNK) if hasattr(fh, "read1") else fh.read(CHUNK)
                if not chunk:
                    break
                asyncio.run_coroutine_threadsafe(q.put(chunk), loop).result()
        finally:
            asyncio.run_coroutine_threadsafe(q.put(None), loop).result()

    threading.Thread(target=reader, name="stdin-reader", daemon=True).start()
    tail = b""
    n = 0
    done = False
    while not done:
        try:
            chunk = await asyncio.wait_for(q.get(), timeout=idle)
        except TimeoutError:
            yield []
            continue
        chunks = [chunk]
        while not q.empty() and chunks[-1] is not None:
            chunks.append(q.get_nowait())
        out: list[RawMessage] = []
        for c in chunks:
            if c is None:
                done = True
                break
            parts = (tail + c).split(b"\n")
            tail = parts.pop()
            for line in parts:
                n += 1
                if line.strip():
                    out.append(RawMessage(line + b"\n", "-", n))  # as the file reader sees it
        if done and tail.strip():
            out.append(RawMessage(tail, "-", n + 1))
        for i in range(0, len(out), batch):
            yield out[i : i + batch]
