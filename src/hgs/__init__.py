"""hgs (Heritage Graceful Shutdown): UPS-driven shutdown and restore of XenServer / XCP-ng sites."""

__version__ = "0.1.0"
