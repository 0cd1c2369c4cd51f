"""web/errors.py: every error the core and services raise has one answer."""

from __future__ import annotations


def test_every_storage_error_has_its_answer() -> None:
    """The OS errors the core passes on as the storage's state are the ones web/errors.py
    answers with 507 or 503 and a reason."""
    from dicomweb_server.dicom.errors import STORAGE_ERRNOS
    from dicomweb_server.web.errors import _STORAGE

    assert set(_STORAGE) == STORAGE_ERRNOS


def _subclasses(root: type[Exception]) -> set[type[Exception]]:
    found: set[type[Exception]] = set()
    todo = [root]
    while todo:
        kind = todo.pop()
        for sub in kind.__subclasses__():
            if sub not in found:
                found.add(sub)
                todo.append(sub)
    return found | {root}


def test_every_error_class_maps_to_a_status() -> None:
    """Each class of the service and core error trees answers with a status of its own
    (none falls to the 500 of an unexpected error), and the new ones where access control
    and conflicts need them."""
    # Import every module, so that every subclass defined anywhere is found.
    import importlib
    import pkgutil

    import dicomweb_server
    import dicomweb_server.dicom.errors as core
    import dicomweb_server.services.errors as service
    from dicomweb_server.web.errors import HANDLERS, STATUS, status_of

    for module in pkgutil.walk_packages(dicomweb_server.__path__, "dicomweb_server."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    kinds = _subclasses(service.ServiceError) | _subclasses(core.DicomError)
    unmapped = sorted(k.__name__ for k in kinds if status_of(k) is None)
    assert unmapped == []
    assert all(400 <= status_of(k) <= 599 for k in kinds)  # type: ignore[operator]
    assert {status_of(service.Unauthenticated), status_of(service.Forbidden)} == {401, 403}
    assert status_of(service.Conflict) == 409
    assert status_of(service.Busy) == 503
    # Every mapped class has the handler that answers it.
    assert set(STATUS) <= set(HANDLERS)
