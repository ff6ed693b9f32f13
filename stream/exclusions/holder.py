"""The live service's exclusions: the current set, swapped atomically on reload.

    holder = ExclusionsHolder(path, [r.id for r in rules], metrics=metrics)  # raises if bad
    pipeline = Pipeline(..., exclusions=holder)
    holder.install_sighup()                       # reload on SIGHUP
    task = asyncio.create_task(holder.watch(10.0))  # reload when the file or a list file changes

A Kubernetes ConfigMap update swaps the `..data` symlink: the mounted path stays the same but
resolves to a new file. The watcher therefore compares the identity of each resolved path (real
path, device, inode, mtime, size), taken just before the file was read. A bad new file is refused:
the previous set stays in force, the error is logged and counted
(`rmm_stream_exclusions_reloads_total{result="error"}`; a good one counts `result="ok"`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from stream.decode.events import Event
from stream.exclusions.loader import read_exclusions, report
from stream.exclusions.model import ExclusionError, ExclusionSet, Files, file_identity
from stream.metrics import Metrics
from stream.timeutil import now_ticks

log = logging.getLogger("rmm_stream")


class ExclusionsHolder:
    """Delegates `first_match` to the current `ExclusionSet`; `reload()` swaps it."""

    def __init__(
        self,
        path: str | Path,
        rule_ids: list[str] | None = None,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], int] = now_ticks,
    ) -> None:
        self.path = Path(path)
        self.rule_ids = rule_ids
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.current: ExclusionSet = read_exclusions(self.path, rule_ids, now=clock())
        report(self.current, self.metrics)
        self._files: Files = self.current.files

    # -- the hot path ----------------------------------------------------------------------
    def first_match(self, rule_id: str, event: Event) -> str | None:
        return self.current.first_match(rule_id, event)

    # -- reloading -------------------------------------------------------------------------
    @property
    def watched(self) -> list[Path]:
        return [p for p, _ in self._files]

    def changed(self) -> bool:
        """True when the file or one of its list files is not what was last read."""
        return any(file_identity(p) != ident for p, ident in self._files)

    def reload(self) -> bool:
        """Read the file again. On success swap the set and return True; on failure keep the old
        set, log the error, count it and return False."""
        try:
            new = read_exclusions(self.path, self.rule_ids, now=self.clock())
        except ExclusionError as exc:
            self.metrics.exclusions_reloads.labels("error").inc()
            log.error(
                "exclusions %s: reload refused, keeping the previous set (%s): %s",
                self.path,
                self.current.describe(),
                exc,
            )
            # Retry once any file changes: those the failed load read (with the identity they
            # had then, e.g. a list file still missing) and the old set's list files.
            merged = dict(self._files)
            merged.update(exc.files)
            self._files = tuple(merged.items())
            return False
        except Exception:  # never let a reload take the service down
            self.metrics.exclusions_reloads.labels("error").inc()
            log.exception("exclusions %s: reload failed, keeping the previous set", self.path)
            self._files = tuple((p, file_identity(p)) for p, _ in self._files)
            return False
        old = self.current
        self.current = new
        self._files = new.files
        self.metrics.exclusions_reloads.labels("ok").inc()
        log.info("exclusions %s: reloaded (was %s)", self.path, old.describe())
        report(new, self.metrics)
        return True

    def check_expiry(self) -> None:
        """Judge expiry at the clock again: an exclusion that ran out at midnight stops."""
        for e in self.current.set_now(self.clock()):
            log.warning(
                "exclusions %s: exclusion %r expired on %s and no longer applies%s",
                self.path,
                e.name,
                e.expires,
                f" (owner {e.owner})" if e.owner else "",
            )
        self.metrics.exclusions_expired.set(len(self.current.expired))

    async def watch(self, interval_s: float = 10.0) -> None:
        """Every interval_s: reload if a file changed, and judge expiry. Runs until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                if self.changed():
                    log.info("exclusions %s: file changed, reloading", self.path)
                    self.reload()
                self.check_expiry()
            except Exception:  # pragma: no cover - keep watching whatever happens
                log.exception("exclusions %s: watch failed", self.path)

    def install_sighup(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Reload on SIGHUP (Unix). Call from within the running loop, or pass the loop."""
        loop = loop or asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)

    def _on_sighup(self) -> None:
        log.info("exclusions %s: SIGHUP, reloading", self.path)
        self.reload()
