"""Exclusions: known-good activity removed from matched events before they enter the window.

    from stream.exclusions import load_exclusions, ExclusionsHolder, ExclusionError

`load_exclusions(path, rule_ids)` reads and compiles a file once (replay); `ExclusionsHolder` keeps
the current set for the live service and swaps it on `reload()` (SIGHUP, or a changed file seen by
`watch()`). The file format is described in docs/exclusions.md.
"""

from __future__ import annotations

from stream.exclusions.holder import ExclusionsHolder
from stream.exclusions.loader import load_exclusions
from stream.exclusions.model import Exclusion, ExclusionError, ExclusionSet

__all__ = ["Exclusion", "ExclusionError", "ExclusionSet", "ExclusionsHolder", "load_exclusions"]
