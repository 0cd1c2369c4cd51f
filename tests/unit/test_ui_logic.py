"""The web application's own logic (dicomweb_server/ui/logic.js), tested with Node's test
runner: tests/unit/ui/logic.test.mjs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import IN_CI

HERE = Path(__file__).parent
LOGIC = HERE.parents[1] / "dicomweb_server" / "ui" / "logic.js"


def test_the_ui_logic(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        if IN_CI:
            pytest.fail("CI=true and node is not installed (.ci/run installs npm, and node)")
        pytest.skip("node is not installed")
    # The app's files are ES modules served to browsers as .js; Node 20 takes a module by
    # its .mjs name.
    module = tmp_path / "logic.mjs"
    shutil.copyfile(LOGIC, module)
    run = subprocess.run(
        [node, "--test", str(HERE / "ui" / "logic.test.mjs")],
        env={"UI_LOGIC": module.as_uri(), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "# fail 0" in run.stdout
