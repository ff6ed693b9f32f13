"""Alerts: episode decisions (new / update), stable AlertIds, and the alert document."""
