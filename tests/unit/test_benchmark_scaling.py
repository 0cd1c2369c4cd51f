"""The worker-scaling table's reading of which resource limited a run."""

from __future__ import annotations

import os

from benchmarks.scaling import _limit


def _figures(**kw: float) -> dict[str, float]:
    return {
        "machine_busy_cores": 0.5,
        "server_cores": 0.3,
        "postgres_cores": 0.1,
        "iowait_cores": 0.0,
        **kw,
    }


def test_the_limit_is_read_off_the_figures() -> None:
    cores = os.cpu_count() or 1
    assert _limit(_figures(machine_busy_cores=cores), 4).startswith("CPU")
    # One process a core busy: the GIL of each worker, not the machine.
    assert _limit(_figures(server_cores=0.96), 1).startswith("our processes")
    assert not _limit(_figures(server_cores=0.96), 2).startswith("our processes")
    assert _limit(_figures(postgres_cores=0.9), 4).startswith("PostgreSQL")
    assert _limit(_figures(iowait_cores=0.5), 4).startswith("disk")
    assert _limit(_figures(), 4).startswith("none reached")
