"""The change feed under load (issue 16): 8 uploaders store 2,000 instances through two
server processes sharing one PostgreSQL database. The feed then holds exactly one `create`
per acknowledged instance, its sequences strictly increasing; a reader polling with `after=`
all along saw every entry exactly once, though the processes' transactions committed in
whatever order they finished; a WebSocket subscriber of the other process got them all too,
in order (LISTEN/NOTIFY carries the news across processes)."""

from __future__ import annotations

import asyncio
import itertools
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

UPLOADERS = 8
PER_UPLOADER = 250


def _acknowledged(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text[:300]
    return [item["00081155"]["Value"][0] for item in answer.json()["00081199"]["Value"]]


def test_gap_free_feed_under_concurrent_uploads_through_two_processes(
    pg_url: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, pg_schema(pg_url, "changefeed_load"))
    a, url_a = start_serve(settings)
    b, url_b = start_serve(settings)
    try:
        acknowledged: list[str] = []
        polled: list[dict[str, Any]] = []
        streamed: list[dict[str, Any]] = []
        errors: list[str] = []
        done = threading.Event()
        subscribed = threading.Event()
        total = UPLOADERS * PER_UPLOADER

        def upload(n: int) -> None:
            sessions = [httpx.Client(base_url=u, timeout=120) for u in (url_a, url_b)]
            try:
                sent, turn = 0, 0
                while sent < PER_UPLOADER:
                    size = min(1 + (turn + n) % 5, PER_UPLOADER - sent)
                    study = generate_uid()
                    items = [make_instance(study_uid=study) for _ in range(size)]
                    acknowledged.extend(_acknowledged(stow(sessions[turn % 2], items)))
                    sent, turn = sent + size, turn + 1
            except Exception as exc:  # noqa: BLE001 - reported by the test
                errors.append(repr(exc))
            finally:
                for session in sessions:
                    session.close()

        def poll() -> None:
            after = 0
            with httpx.Client(base_url=url_a, timeout=60) as http:
                while True:
                    page = http.get("/changefeed", params={"after": after, "limit": 250}).json()
                    polled.extend(page)
                    if page:
                        after = page[-1]["Sequence"]
                    elif done.is_set() and (len(polled) >= total or time.monotonic() > deadline):
                        return
                    else:
                        time.sleep(0.05)

        async def listen() -> None:
            url = url_b.replace("http://", "ws://") + "/changefeed/ws"
            async with websockets.connect(url, max_size=2**20) as socket:
                subscribed.set()
                while len(streamed) < total:
                    streamed.append(json.loads(await asyncio.wait_for(socket.recv(), 60)))

        listener = threading.Thread(target=lambda: asyncio.run(listen()))
        listener.start()
        assert subscribed.wait(30)
        deadline = time.monotonic() + 600
        poller = threading.Thread(target=poll)
        poller.start()
        uploaders = [threading.Thread(target=upload, args=(n,)) for n in range(UPLOADERS)]
        for t in uploaders:
            t.start()
        for t in uploaders:
            t.join(timeout=600)
        done.set()
        deadline = time.monotonic() + 30
        poller.join(timeout=60)
        listener.join(timeout=60)
        assert errors == []
        assert len(acknowledged) == total

        with httpx.Client(base_url=url_b, timeout=60) as http:
            feed: list[dict[str, Any]] = []
            after = 0
            while page := http.get("/changefeed", params={"after": after, "limit": 1000}).json():
                feed.extend(page)
                after = page[-1]["Sequence"]
        sequences = [e["Sequence"] for e in feed]
        assert all(x < y for x, y in itertools.pairwise(sequences))
        assert sorted(e["SopInstanceUid"] for e in feed) == sorted(acknowledged)
        assert {e["Action"] for e in feed} == {"create"}
        # The reader that polled throughout saw the same entries, each once, in order.
        assert polled == feed
        # The subscriber of the other process: every entry, in order.
        assert [e["Sequence"] for e in streamed] == sequences
    finally:
        for process in (a, b):
            process.terminate()
            process.wait(timeout=30)
