"""Invalid or unreachable backends fail at start with a clear message, not at a request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.interop.test_readme import free_port

SERVE = [str(Path(sys.executable).parent / "dicomweb-server"), "serve", "--port"]


def serve(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMWEB_")}
    env["DICOMWEB_DATA_DIR"] = str(tmp_path)
    env.update({f"DICOMWEB_{k.upper()}": v for k, v in settings.items()})
    return subprocess.run(
        [*SERVE, str(free_port())], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"blob_store": "s3"}, "needs DICOMWEB_S3_BUCKET"),
        (
            {
                "blob_store": "s3",
                "s3_bucket": "archive",
                "s3_endpoint_url": "http://127.0.0.1:1",
                "s3_max_attempts": "1",
                "s3_access_key_id": "k",
                "s3_secret_access_key": "s",
            },
            "the blob store cannot be used",
        ),
        (
            {"database_url": "postgresql+psycopg://nobody@127.0.0.1:1/none"},
            "the database cannot be used",
        ),
        ({"blob_store": "tape"}, "DICOMWEB_BLOB_STORE=tape: no plugin of that name"),
    ],
)
def test_unusable_backend_stops_serve_with_the_reason(
    tmp_path: Path, settings: dict[str, str], message: str
) -> None:
    result = serve(tmp_path, **settings)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_bucket_is_named(tmp_path: Path, s3_endpoint: str) -> None:
    result = serve(
        tmp_path,
        blob_store="s3",
        s3_bucket="no-such-bucket",
        s3_endpoint_url=s3_endpoint,
        s3_access_key_id="test",
        s3_secret_access_key="test-secret",
        s3_addressing_style="path",
    )
    assert result.returncode == 2
    assert "bucket no-such-bucket" in result.stderr
