"""`--profile DIR`: a py-spy profile of our server for each phase of the benchmark.

py-spy samples the server process and its workers from outside (no change to the server, a
few percent of its time while sampling); each phase of a peer writes
DIR/{peer}-{phase}.speedscope.json, to open in https://www.speedscope.app or `py-spy`'s own
viewers. Orthanc is C++: it is not profiled.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.peers import Peer


def py_spy() -> str | None:
    """The py-spy command beside this Python, or on the PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.is_file() else shutil.which("py-spy")


class Profiler:
    """Phases of one peer, one after the other: `begin` ends the phase before."""

    def __init__(self, out: Path | None, peer: Peer) -> None:
        self._out = out if out is not None and peer.name.startswith("ours") else None
        self._peer = peer
        self._running: subprocess.Popen[bytes] | None = None
        if self._out is not None:
            if py_spy() is None:
                raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
            self._out.mkdir(parents=True, exist_ok=True)

    def begin(self, phase: str) -> None:
        self.end()
        if self._out is None:
            return
        target = self._out / f"{self._peer.name}-{phase}.speedscope.json"
        command = [
            str(py_spy()),
            "record",
            "--pid",
            str(self._peer.process.pid),
            "--subprocesses",
            "--nonblocking",
            "--rate",
            "100",
            "--format",
            "speedscope",
            "--output",
            str(target),
        ]
        self._running = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(0.5)  # attached before the phase's first request

    def end(self) -> None:
        running, self._running = self._running, None
        if running is None:
            return
        running.send_signal(signal.SIGINT)  # py-spy writes the profile when interrupted
        try:
            running.wait(timeout=60)
        except subprocess.TimeoutExpired:
            running.kill()
            running.wait()
