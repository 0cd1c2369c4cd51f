"""Other DICOMweb archives, reached over HTTP (imports into and exports to them)."""
