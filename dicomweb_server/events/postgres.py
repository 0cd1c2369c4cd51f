"""LISTEN on the change log's channel: each NOTIFY a committed store sends wakes this
process's reader of the log.

A notification carries nothing the reader needs (the log is read from the database), so one
lost while the connection was down costs only latency: the reader also polls, and the
listener wakes it once more each time it connects again.
"""

from __future__ import annotations

import logging
import threading

import psycopg
from psycopg import sql

from dicomweb_server.services.ports.changes import WakeUp

log = logging.getLogger("dicomweb_server.events")


class PostgresChangeSignal:
    def __init__(self, conninfo: str, channel: str, retry_seconds: float = 1.0) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._retry = retry_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, wake: WakeUp) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._listen, args=(wake,), name="change-listener", daemon=True
        )
        self._thread.start()

    def _listen(self, wake: WakeUp) -> None:
        failed = False
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    if failed:
                        log.info("listening for changes again")
                    failed = False
                    wake()  # whatever was committed while not listening
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            wake()
            except psycopg.Error as exc:
                if not failed:
                    log.warning("listening for changes failed (%s); polling", type(exc).__name__)
                failed = True
                self._stop.wait(self._retry)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
