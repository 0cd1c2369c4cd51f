"""The DIMSE gateway: DICOM network services over the archive (an entry point beside web/)."""
