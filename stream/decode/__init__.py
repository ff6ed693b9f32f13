"""Decoding: raw message bytes -> typed events. The only place that knows the JSON shapes."""
