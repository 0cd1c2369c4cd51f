"""web/errors.py: every error the core and services raise has one answer."""

from __future__ import annotations


def test_every_storage_error_has_its_answer() -> None:
    """The OS errors the core passes on as the storage's state are the ones web/errors.py
    answers with 507 or 503 and a reason."""
    from dicomweb_server.dicom.errors import STORAGE_ERRNOS
    from dicomweb_server.web.errors import _STORAGE

    assert set(_STORAGE) == STORAGE_ERRNOS
