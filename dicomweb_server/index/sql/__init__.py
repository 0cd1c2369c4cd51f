"""The metadata index on SQLAlchemy 2: SQLite (embedded default) and PostgreSQL."""
