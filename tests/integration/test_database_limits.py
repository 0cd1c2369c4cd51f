"""A statement past a limit of the database is the request's fault (400), not an outage (503).

SQLite answers "parser stack overflow" for a deeply nested expression, PostgreSQL "memory
exhausted" (its parser) or SQLSTATE class 54 ("stack depth limit exceeded"); all come back
from the index as InvalidRequest, with no word of how the server is built.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from dicomweb_server.services.errors import InvalidRequest, Unavailable
from tests.conftest import RunningServer


def test_a_statement_past_the_databases_limits_is_a_bad_request(archive: RunningServer) -> None:
    if archive.backend.endswith("+s3"):
        pytest.skip("the index alone; once per database")
    nested = "SELECT " + "(" * 20000 + "1" + ")" * 20000
    with pytest.raises(InvalidRequest) as raised, archive.container.engine.connect() as conn:
        conn.execute(text(nested))
    assert "too complex" in str(raised.value)
    assert not isinstance(raised.value, Unavailable)
