"""Lint, format, strict typing and the dependency rule, as part of the test command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*command: str) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}"


def test_ruff_lint() -> None:
    run(sys.executable, "-m", "ruff", "check", ".")


def test_ruff_format() -> None:
    run(sys.executable, "-m", "ruff", "format", "--check", ".")


def test_mypy_strict() -> None:
    run(sys.executable, "-m", "mypy")


def test_dependency_rule() -> None:
    lint_imports = shutil.which("lint-imports", path=str(BIN)) or shutil.which("lint-imports")
    if lint_imports is None:
        pytest.fail("import-linter is not installed (pip install -e '.[test]')")
    run(lint_imports)


SOURCES = sorted((ROOT / "dicomweb_server").rglob("*.py"))


def test_numbers_are_read_by_one_parser() -> None:
    """str.isdigit() and friends take superscript and Arabic-Indic digits (dicom/numbers.py
    reads every number)."""
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in SOURCES
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if any(f".{m}(" in line for m in ("isdigit", "isdecimal", "isnumeric"))
    ]
    assert found == []


def test_patterns_are_ascii_and_matched_whole() -> None:
    """`\\d` takes any script's digits without re.ASCII, and `$` a trailing newline: every
    pattern is compiled ASCII and has no anchors (it is used with fullmatch)."""
    import re

    found = []
    for path in SOURCES:
        text = path.read_text("utf-8")
        for call in re.finditer(r"re\.compile\((.*?)\)\n", text, re.DOTALL):
            body = call.group(1)
            if "re.ASCII" not in body or re.search(r"""^r?f?["']\^|\$["']""", body.strip()):
                found.append(f"{path.relative_to(ROOT)}: re.compile({body[:60]}...)")
    assert found == []


def test_the_core_decides_no_io_and_services_parse_no_dicom() -> None:
    """dicom/ takes bytes, buffers, streams, datasets and callables: it names no file and
    removes none (DESIGN); services hand DICOM parsing to dicom/ (dicom/part10.py)."""
    import re

    found = []
    for path in SOURCES:
        relative = path.relative_to(ROOT).as_posix()
        text = path.read_text("utf-8")
        if relative.startswith("dicomweb_server/dicom/"):
            for word in ("pathlib", "tempfile", ".unlink(", "os.remove", "mmap.mmap("):
                if word in text:
                    found.append(f"{relative}: {word}")
        parses = re.search(r"\bdcmread\b|\bdcmwrite\b", text)
        if relative.startswith(("dicomweb_server/services/", "dicomweb_server/web/")) and parses:
            found.append(f"{relative}: pydicom reading or writing")
    assert found == []
