"""The Caller every use case is handed (services/context.py)."""

from __future__ import annotations

import pytest

from dicomweb_server.services.context import (
    ADMIN,
    DOWNLOAD,
    METRICS,
    READ,
    SHARE,
    WRITE,
    Caller,
    StudyScope,
    granted,
)
from dicomweb_server.services.errors import (
    Forbidden,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
)


def test_the_anonymous_caller_may_do_everything() -> None:
    caller = Caller.anonymous("req-1")
    assert caller.request_id == "req-1" and caller.principal is None
    assert caller.studies is None
    for scope in (READ, DOWNLOAD, WRITE, SHARE, ADMIN):
        caller.require(scope)


def test_scopes_are_checked_and_studies_left_to_the_queries() -> None:
    reader = Caller("viewer", frozenset({READ}), StudyScope(study_uids=frozenset({"1.2.3"})))
    reader.require(READ)
    with pytest.raises(Forbidden, match="may not write"):
        reader.require(WRITE)
    assert reader.studies == StudyScope(study_uids=frozenset({"1.2.3"}))


def test_refused_throttled_and_unchecked_callers() -> None:
    with pytest.raises(Unauthenticated) as missing:
        Caller.refused("this request needs a bearer token").require(READ)
    assert not missing.value.invalid_token
    with pytest.raises(Unauthenticated) as bad:
        Caller.refused("the token has expired", token=True).require(READ)
    assert bad.value.invalid_token
    with pytest.raises(Unavailable):
        Caller.refused("provider down", token=True, unchecked=True).require(READ)
    throttled = Caller.refused("", token=True)
    from dataclasses import replace

    with pytest.raises(TooManyRequests):
        replace(throttled, throttled_for=30).require(READ)


def test_read_grants_download_and_admin_share_and_metrics() -> None:
    assert granted({READ}) == {READ, DOWNLOAD}
    assert granted({ADMIN}) == {ADMIN, SHARE, METRICS}
    assert granted({WRITE}) == {WRITE}
