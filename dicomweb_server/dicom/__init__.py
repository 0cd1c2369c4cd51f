"""The pure DICOM core: no I/O policy, no web, no database, no settings."""
