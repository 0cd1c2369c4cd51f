"""Adapters of the audit trail: JSON lines (a file or stdout) and RFC 5424 syslog."""
