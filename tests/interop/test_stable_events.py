"""Stable studies and series (issue 16): once no instance has arrived for the quiet period,
one `series-stable` per series and one `study-stable` per study, though two server
processes both look for them; a later arrival starts a new quiet period and a new event.
The stable events are in the feed with `includestable=true` and reach a WebSocket that asks
for `action=study-stable`."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import websockets
from pydicom.uid import generate_uid

from tests.conftest import make_settings, start_serve
from tests.factories import make_instance
from tests.helpers import stow
from tests.integration.test_migrations import pg_schema


def _stable(http: httpx.Client) -> list[dict[str, Any]]:
    feed = http.get("/changefeed", params={"includestable": "true", "limit": 1000}).json()
    return [e for e in feed if e["Action"].endswith("-stable")]


def test_one_stable_event_per_quiet_period_across_two_processes(
    pg_url: str, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path, pg_schema(pg_url, "stable_events"), stable_seconds=1.0, changes_poll_seconds=0.2
    )
    a, url_a = start_serve(settings)
    b, url_b = start_serve(settings)
    try:
        study, series = generate_uid(), [generate_uid(), generate_uid()]
        heard: list[dict[str, Any]] = []
        listening = threading.Event()

        async def listen() -> None:
            url = url_b.replace("http://", "ws://") + "/changefeed/ws?action=study-stable"
            async with websockets.connect(url) as socket:
                listening.set()
                heard.append(json.loads(await asyncio.wait_for(socket.recv(), 30)))

        listener = threading.Thread(target=lambda: asyncio.run(listen()))
        listener.start()
        assert listening.wait(30)
        with (
            httpx.Client(base_url=url_a, timeout=60) as http_a,
            httpx.Client(base_url=url_b, timeout=60) as http_b,
        ):
            for n in range(4):
                ds = make_instance(study_uid=study, series_uid=series[n % 2])
                assert stow((http_a, http_b)[n % 2], [ds]).status_code == 200
            # Instance entries only, by default: Microsoft's feed.
            assert {e["Action"] for e in http_a.get("/changefeed").json()} == {"create"}
            listener.join(30)
            assert [(e["Action"], e["StudyInstanceUid"]) for e in heard] == [
                ("study-stable", study)
            ]
            time.sleep(2.5)  # both processes looked again, more than once
            stable = _stable(http_a)
            assert sorted((e["Action"], e["SeriesInstanceUid"]) for e in stable) == sorted(
                [("series-stable", s) for s in series] + [("study-stable", None)]
            )
            # A late instance: a new quiet period, announced once more (its series and study).
            late = make_instance(study_uid=study, series_uid=series[0])
            assert stow(http_b, [late]).status_code == 200
            time.sleep(3.5)
            again = _stable(http_b)[len(stable) :]
            assert sorted((e["Action"], e["SeriesInstanceUid"]) for e in again) == [
                ("series-stable", series[0]),
                ("study-stable", None),
            ]
            latest = http_a.get("/changefeed/latest", params={"includestable": "true"}).json()
            assert latest["Action"] == "study-stable"
    finally:
        for process in (a, b):
            process.terminate()
            process.wait(timeout=30)
