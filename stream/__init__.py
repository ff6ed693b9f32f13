"""rmm-stream: real-time detection of remote-management (RMM) tool abuse."""

__version__ = "0.1.0"
