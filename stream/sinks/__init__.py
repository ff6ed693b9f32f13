"""Sinks: where alerts, dead letters, excluded events and summaries leave the process."""
