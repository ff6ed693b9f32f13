"""Parallel prefiltering of a large JSON Lines file, results in file order.

The byte prefilter (stream/decode/prefilter.py) is the cost of looking at every byte once; it holds
the GIL, so threads do not help. Worker processes each scan a chunk of the file and send back only
the messages that may match (a few percent of the bytes); the main process takes the chunks in
file order, so the pipeline sees exactly the sequence a single reader would produce and every
result, AlertIds included, is the same as with one reader.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

from stream.decode.prefilter import Prefilter
from stream.sources.base import RawMessage

CHUNK_BYTES = 16 << 20
PARALLEL_MIN_BYTES = 64 << 20  # below this, start-up of the workers costs more than it saves


@dataclass
class ChunkResult:
    lines: int  # every line of the chunk, empty ones included (for line numbers)
    messages: int  # non-empty lines
    nbytes: int
    ruled_out: int
    candidates: list[tuple[int, bytes]]  # (line number within the chunk, message)


def scan_chunk(path: str, start: int, end: int, literals: tuple[bytes, ...]) -> ChunkResult:
    """Lines that *start* in [start, end) belong to this chunk."""
    pre = Prefilter(frozenset(literals))
    may_match = pre.may_match
    out = ChunkResult(0, 0, 0, 0, [])
    with open(path, "rb", buffering=1 << 20) as fh:
        pos = start
        if start > 0:
            fh.seek(start - 1)
            pos = start - 1 + len(fh.readline())
        while pos < end:
            line = fh.readline()
            if not line:
                break
            pos += len(line)
            out.lines += 1
            if len(line) <= 2 and not line.strip():
                continue
            out.messages += 1
            out.nbytes += len(line)
            if may_match(line):
                out.candidates.append((out.lines, line))
            else:
                out.ruled_out += 1
    return out


@dataclass
class PrefilteredBatch:
    messages: list[RawMessage]  # the candidates
    ruled_out: int
    ruled_out_bytes: int


def worth_it(path: str, workers: int) -> bool:
    try:
        return workers > 1 and os.path.getsize(path) >= PARALLEL_MIN_BYTES
    except OSError:
        return False


async def parallel_batches(
    path: str, prefilter: Prefilter, workers: int, batch: int
) -> AsyncIterator[PrefilteredBatch]:
    size = os.path.getsize(path)
    bounds = [(s, min(s + CHUNK_BYTES, size)) for s in range(0, size, CHUNK_BYTES)]
    loop = asyncio.get_running_loop()
    # spawn: the parent has an event loop and maybe threads; fork would copy them half-made.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        pending = []
        nxt = 0
        line_base = 0
        while nxt < len(bounds) or pending:
            while nxt < len(bounds) and len(pending) < 2 * workers:
                s, e = bounds[nxt]
                pending.append(
                    loop.run_in_executor(pool, scan_chunk, path, s, e, prefilter.literals)
                )
                nxt += 1
            res: ChunkResult = await pending.pop(0)
            msgs = [RawMessage(m, path, line_base + n) for n, m in res.candidates]
            ruled_out_bytes = res.nbytes - sum(len(m.data) for m in msgs)
            line_base += res.lines
            first = True
            for i in range(0, max(len(msgs), 1), batch):
                yield PrefilteredBatch(
                    msgs[i : i + batch],
                    res.ruled_out if first else 0,
                    ruled_out_bytes if first else 0,
                )
                first = False
