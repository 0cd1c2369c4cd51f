"""Fan-out of the change log to every server process: PostgreSQL LISTEN/NOTIFY."""
