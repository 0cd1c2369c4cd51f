"""The Caller every use case is handed (services/context.py)."""

from __future__ import annotations

import pytest

from dicomweb_server.services.context import READ, WRITE, Caller
from dicomweb_server.services.errors import Forbidden


def test_the_anonymous_caller_may_do_everything_today() -> None:
    caller = Caller.anonymous("req-1")
    assert caller.request_id == "req-1" and caller.principal is None
    caller.require(READ, "1.2.3")
    caller.require(WRITE)


def test_scopes_and_studies_are_checked() -> None:
    reader = Caller("viewer", frozenset({READ}), frozenset({"1.2.3"}), "req-2")
    reader.require(READ, "1.2.3")
    with pytest.raises(Forbidden, match="may not write"):
        reader.require(WRITE, "1.2.3")
    with pytest.raises(Forbidden, match=r"study 1\.2\.4"):
        reader.require(READ, "1.2.4")
