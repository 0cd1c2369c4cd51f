"""The composition root: reads Settings, builds the adapters and the services.

This is the only module that knows which index and blob store are in use; swapping SQLite
for PostgreSQL is a change of `DICOMWEB_DATABASE_URL`, never of code.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from dicomweb_server.blobs.filesystem import FilesystemBlobStore
from dicomweb_server.dicom.confidentiality_profile import Option
from dicomweb_server.dicom.deidentify import Deidentifier
from dicomweb_server.index.sql import migrate
from dicomweb_server.index.sql.engine import make_engine
from dicomweb_server.index.sql.repository import SqlIndex
from dicomweb_server.services.check import CheckService
from dicomweb_server.services.pixels import PixelReader
from dicomweb_server.services.render import RenderService
from dicomweb_server.services.retrieve import RetrieveService
from dicomweb_server.services.search import SearchService
from dicomweb_server.services.store import DuplicatePolicy, StoreLimits, StoreService
from dicomweb_server.settings import Settings


@dataclass
class Container:
    settings: Settings
    store: StoreService
    search: SearchService
    retrieve: RetrieveService
    render: RenderService
    consistency: CheckService
    checks: dict[str, Callable[[], None]]
    engine: Engine
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for closer in self._closers:
            closer()


def upgrade_database(settings: Settings) -> None:
    """Create or upgrade the index schema with the Alembic migrations."""
    migrate.upgrade(settings.resolved_database_url)


def deidentifier(settings: Settings) -> Deidentifier | None:
    """The de-identification of ingest, or None; a bad configuration fails at start."""
    if not settings.deidentify:
        return None
    if not settings.deidentify_key:
        raise ValueError("DICOMWEB_DEIDENTIFY needs DICOMWEB_DEIDENTIFY_KEY (a secret)")
    try:
        options = frozenset(
            Option(o.strip()) for o in settings.deidentify_options.split(",") if o.strip()
        )
    except ValueError as exc:
        raise ValueError(f"DICOMWEB_DEIDENTIFY_OPTIONS: {exc}") from exc
    return Deidentifier(settings.deidentify_key.encode(), options)


def retrieve_anonymizer(settings: Settings) -> Deidentifier:
    """For WADO-URI `anonymize=yes`: the ingest options and key when configured; otherwise a
    key made for this process (replacement UIDs then differ between processes and restarts)."""
    configured = deidentifier(settings) if settings.deidentify else None
    if configured is not None:
        return configured
    key = settings.deidentify_key.encode() if settings.deidentify_key else secrets.token_bytes(32)
    return Deidentifier(key)


def build_container(settings: Settings) -> Container:
    engine = make_engine(settings.resolved_database_url, settings.db_pool_size)
    index = SqlIndex(engine)
    blobs = FilesystemBlobStore(settings.resolved_blob_dir)
    pixels = PixelReader(blobs, settings.max_transcode_bytes)
    return Container(
        settings=settings,
        store=StoreService(
            index,
            blobs,
            settings.resolved_spool_dir,
            settings.bulk_data_threshold,
            DuplicatePolicy(settings.duplicate_policy),
            deidentifier=deidentifier(settings),
            limits=StoreLimits(
                settings.max_request_bytes, settings.max_instance_bytes, settings.max_parts
            ),
        ),
        search=SearchService(index, settings.qido_max_limit),
        retrieve=RetrieveService(index, blobs, pixels, retrieve_anonymizer(settings)),
        render=RenderService(index, pixels),
        consistency=CheckService(index, blobs, settings.resolved_spool_dir),
        checks={"database": index.check, "blob store": blobs.check},
        engine=engine,
        _closers=[engine.dispose],
    )
