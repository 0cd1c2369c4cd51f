"""DICOMWEB_AUTH=api-key: keys made with the CLI, checked on every request, scoped per route
(read, write), revoked at once in every process (issue 14). A real `serve` process and the
real `dicomweb-server keys` command, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dicomweb_server.container import upgrade_database
from tests.conftest import RunningServer, make_settings, settings_env, start_serve
from tests.factories import make_instance, to_bytes
from tests.helpers import multipart_body
from tests.integration.test_migrations import pg_schema


def keys(settings: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMWEB_")}
    env.update(settings_env(settings))
    command = [str(Path(sys.executable).parent / "dicomweb-server"), "keys", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def new_key(settings: Any, scopes: str, *extra: str) -> str:
    made = keys(settings, "create", "--name", f"test {scopes}", "--scopes", scopes, *extra)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1]  # the key is the last line


@pytest.fixture
def secured(
    archive: RunningServer, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Any, str]]:
    if archive.backend not in ("sqlite", "postgresql"):
        pytest.skip("access control does not depend on the blob store")
    if archive.backend != "sqlite" and request.node.get_closest_marker("sqlite_only"):
        pytest.skip("this does not depend on the database")
    # A database of its own: keys and studies of these tests meet nobody else's.
    url = None
    if archive.backend == "postgresql":
        url = pg_schema(request.getfixturevalue("pg_url"), "api_keys")
    settings = make_settings(tmp_path, url, auth="api-key", auth_failures_per_minute=3)
    upgrade_database(settings)
    process, base = start_serve(settings)
    try:
        yield settings, base
    finally:
        process.terminate()
        process.wait(timeout=30)


def _stow(base: str, key: str | None) -> httpx.Response:
    body, content_type = multipart_body([to_bytes(make_instance())])
    headers = {"Content-Type": content_type}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(f"{base}/studies", content=body, headers=headers)


def test_no_key_bad_key_and_public_probes(secured: tuple[Any, str]) -> None:
    _, base = secured
    missing = httpx.get(f"{base}/studies")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="dicomweb"'
    assert "API key" in missing.json()["error"]
    bad = httpx.get(f"{base}/studies", headers={"Authorization": "Bearer dwk_0123456789abcdef_x"})
    assert bad.status_code == 401
    assert bad.headers["www-authenticate"] == 'Bearer realm="dicomweb", error="invalid_token"'
    root = base.rsplit("/", 1)[0]
    for path in ("/health", "/ready", "/openapi.yaml"):
        assert httpx.get(root + path).status_code == 200, path


def test_scopes_per_route_and_both_headers(secured: tuple[Any, str]) -> None:
    settings, base = secured
    reader = new_key(settings, "read")
    writer = new_key(settings, "read,write")
    assert _stow(base, writer).status_code == 200
    denied = _stow(base, reader)
    assert denied.status_code == 403 and "write" in denied.json()["error"]
    assert httpx.get(f"{base}/studies", headers={"X-API-Key": reader}).status_code == 200
    found = httpx.get(f"{base}/studies", headers={"Authorization": f"Bearer {reader}"})
    assert found.status_code == 200 and len(found.json()) == 1


def test_revoked_and_expired_keys_are_refused_at_once(secured: tuple[Any, str]) -> None:
    settings, base = secured
    key = new_key(settings, "read")
    auth = {"Authorization": f"Bearer {key}"}
    # Several uses on one connection: past the first, the server keeps its check of the key
    # (services/access.py known_caller) and must still see the revocation below.
    with httpx.Client(headers=auth) as client:
        for _ in range(4):
            assert client.get(f"{base}/studies").status_code == 200
    key_id = key.split("_")[1]
    listed = keys(settings, "list")
    assert key_id in listed.stdout and "active" in listed.stdout
    # Revoked by another process (the CLI): the running server refuses the next request.
    assert keys(settings, "revoke", key_id).returncode == 0
    refused = httpx.get(f"{base}/studies", headers=auth)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]
    assert keys(settings, "revoke", key_id).returncode == 1
    assert "revoked" in keys(settings, "list").stdout


def test_key_creation_refuses_unknown_scopes(secured: tuple[Any, str]) -> None:
    settings, _ = secured
    made = keys(settings, "create", "--name", "x", "--scopes", "read,everything")
    assert made.returncode == 2 and "everything" in made.stderr
    assert keys(settings, "create", "--name", "x", "--expires", "soon").returncode == 2


def test_guessing_keys_is_answered_429(secured: tuple[Any, str]) -> None:
    """After DICOMWEB_AUTH_FAILURES_PER_MINUTE failures (3 here) an address's further failures
    get 429 with Retry-After until the minute is over; a good key always passes (the limit
    weighs on failures, so nobody locks out someone else's key or address)."""
    settings, base = secured
    good = new_key(settings, "read")
    for n in range(3):
        wrong = f"dwk_{n:016d}_{'x' * 43}"
        r = httpx.get(f"{base}/studies", headers={"Authorization": f"Bearer {wrong}"})
        assert r.status_code == 401, n
    blocked = httpx.get(f"{base}/studies", headers={"Authorization": f"Bearer {'dwk_' + 'y' * 60}"})
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["retry-after"]) <= 60
    passes = httpx.get(f"{base}/studies", headers={"Authorization": f"Bearer {good}"})
    assert passes.status_code == 200
    # A request without a key is not a guess: it is told what it lacks.
    assert httpx.get(f"{base}/studies").status_code == 401


@pytest.mark.sqlite_only
def test_nobody_locks_out_someone_elses_key(secured: tuple[Any, str]) -> None:
    """A key's id is no secret (/whoami, the audit and the web app show it): wrong secrets
    under it are refused, then 429, but the real key always passes (issue 31)."""
    settings, base = secured
    real = new_key(settings, "read")
    key_id = real.split("_")[1]
    for _ in range(5):
        guess = httpx.get(
            f"{base}/studies", headers={"Authorization": f"Bearer dwk_{key_id}_{'x' * 43}"}
        )
        assert guess.status_code in (401, 429)
    assert guess.status_code == 429
    owner = httpx.get(f"{base}/studies", headers={"Authorization": f"Bearer {real}"})
    assert owner.status_code == 200


def test_the_limit_holds_across_processes(secured: tuple[Any, str]) -> None:
    """Failures are counted in the database: two processes on one archive allow the limit
    once, not once each."""
    settings, first = secured
    process, second = start_serve(settings)
    try:
        wrong = {"Authorization": f"Bearer dwk_{'1' * 16}_{'x' * 43}"}
        answers = [
            httpx.get(f"{base}/studies", headers=wrong).status_code
            for base in (first, second, first, second, second)
        ]
        assert answers == [401, 401, 401, 429, 429]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_key_limited_to_a_label_from_the_cli(secured: tuple[Any, str]) -> None:
    """`keys create --studies-label L` makes a key that sees only studies labelled L (the
    label rule and the queries are tested in test_study_scope.py)."""
    settings, base = secured
    writer = new_key(settings, "read,write")
    assert _stow(base, writer).status_code == 200
    limited = new_key(settings, "read", "--studies-label", "Ward 7", "--studies-label", "ICU")
    assert "labels ICU,Ward 7" in keys(settings, "list").stdout
    found = httpx.get(f"{base}/studies", headers={"Authorization": f"Bearer {limited}"})
    assert found.status_code == 200 and found.json() == []


def test_a_label_limited_admin_cannot_exist(secured: tuple[Any, str]) -> None:
    """Admin (and metrics) reach every study: a key limited to labels cannot have them, from
    the CLI or over HTTP; one made before the rule (a row as it was) has none of admin's
    reach: no keys, no labels, no audit of other studies (issue 31)."""
    import time

    from sqlalchemy import create_engine, insert

    from dicomweb_server.index.sql.models import api_keys
    from dicomweb_server.services.tokens import new_token

    settings, base = secured
    refused = keys(settings, "create", "--name", "x", "--scopes", "admin,read")
    assert refused.returncode == 0  # unlimited: fine
    limited = keys(
        settings, "create", "--name", "x", "--scopes", "admin,read", "--studies-label", "W"
    )
    assert limited.returncode == 2 and "cannot have admin" in limited.stderr
    admin = new_key(settings, "admin")
    over_http = httpx.post(
        f"{base}/keys",
        json={"name": "y", "scopes": ["admin", "read"], "labels": ["W"]},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert over_http.status_code == 400 and "cannot have admin" in over_http.json()["error"]
    # A row made before the rule.
    token = new_token("dwk")
    engine = create_engine(settings.resolved_database_url)
    with engine.begin() as conn:
        conn.execute(
            insert(api_keys).values(
                key_id=token.id,
                name="old",
                secret_sha256=token.digest,
                scopes="admin read",
                created_at=time.time(),
                labels='["W"]',
            )
        )
    engine.dispose()
    old = {"Authorization": f"Bearer {token.text}"}
    for path in ("/keys", "/audit", "/shares"):
        assert httpx.get(f"{base}{path}", headers=old).status_code == 403, path
    assert httpx.get(f"{base}/studies", headers=old).status_code == 200


def test_a_revoked_key_ends_its_open_streams_at_once(secured: tuple[Any, str]) -> None:
    """Revoked by another process (the CLI), a key's open change stream (served by the
    server process) ends within about a second, not at the next minute's recheck."""
    import threading

    settings, base = secured
    key = new_key(settings, "read")
    opened, ended = threading.Event(), threading.Event()

    def follow() -> None:
        with httpx.stream(
            "GET",
            f"{base}/changefeed/stream",
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        ) as answer:
            assert answer.status_code == 200
            opened.set()
            for _ in answer.iter_lines():
                pass
        ended.set()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    assert opened.wait(10)
    time.sleep(1.5)
    assert not ended.is_set()
    assert keys(settings, "revoke", key.split("_")[1]).returncode == 0
    revoked_at = time.monotonic()
    assert ended.wait(10), "the stream of a revoked key went on"
    assert time.monotonic() - revoked_at < 5
    reader.join(timeout=5)


@pytest.mark.sqlite_only
def test_keys_help_names_every_scope_and_list_shows_expiry(secured: tuple[Any, str]) -> None:
    from dicomweb_server.services.access import KEY_SCOPES

    settings, _ = secured
    shown = keys(settings, "create", "--help").stdout
    for scope in KEY_SCOPES:
        assert f"{scope} (" in shown, scope
    lasting = new_key(settings, "read", "--expires", "90d").split("_")[1]
    forever = new_key(settings, "metrics").split("_")[1]
    lines = {line.split()[0]: line for line in keys(settings, "list").stdout.splitlines()}
    assert "expires 20" in lines[lasting] and "UTC" in lines[lasting]
    assert "expires never" in lines[forever]
