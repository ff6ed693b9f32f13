"""Windows: event members, window bounds and the summarize aggregates over a group's window."""
