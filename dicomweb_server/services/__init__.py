"""Use cases of the archive: store, search, retrieve. No HTTP, no SQL."""
