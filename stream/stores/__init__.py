"""Stores hold the windows, the episode state and the alert outbox: memory or Redis."""
