"""The composition root: reads Settings, builds the adapters and the services.

This is the only module that knows which index and blob store are in use; swapping SQLite
for PostgreSQL is a change of `DICOMWEB_DATABASE_URL`, never of code.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlsplit

from pydicom.datadict import tag_for_keyword
from sqlalchemy import Engine

from dicomweb_server.audit.jsonlines import JsonLinesSink
from dicomweb_server.audit.syslog import SyslogSink
from dicomweb_server.blobs.filesystem import FilesystemBlobStore
from dicomweb_server.blobs.s3 import S3BlobStore, S3Location
from dicomweb_server.dicom.confidentiality_profile import Option
from dicomweb_server.dicom.deidentify import Deidentifier
from dicomweb_server.dicom.errors import backend_text
from dicomweb_server.events.postgres import PostgresChangeSignal
from dicomweb_server.events.webhooks import HttpWebhookSender
from dicomweb_server.identity.http import UrllibJsonClient
from dicomweb_server.index.sql import migrate
from dicomweb_server.index.sql.audit import SqlAuditLog
from dicomweb_server.index.sql.changes import SqlChangeLog
from dicomweb_server.index.sql.consistency import SqlConsistencyIndex
from dicomweb_server.index.sql.consumers import SqlConsumerCursors
from dicomweb_server.index.sql.corrections import SqlCorrectionIndex
from dicomweb_server.index.sql.database import Database
from dicomweb_server.index.sql.delete import SqlDeleteIndex
from dicomweb_server.index.sql.engine import make_engine, make_inline_engine
from dicomweb_server.index.sql.keys import SqlKeyIndex
from dicomweb_server.index.sql.labels import SqlLabelIndex
from dicomweb_server.index.sql.limits import SqlFailureLog
from dicomweb_server.index.sql.reject import SqlRejectIndex
from dicomweb_server.index.sql.retention import SqlRetentionIndex
from dicomweb_server.index.sql.retrieve import SqlRetrieveIndex
from dicomweb_server.index.sql.revocations import SqlRevocationIndex
from dicomweb_server.index.sql.search import SqlSearchIndex
from dicomweb_server.index.sql.shares import SqlShareIndex
from dicomweb_server.index.sql.stats import SqlStatsIndex
from dicomweb_server.index.sql.store import CHANGES_CHANNEL, SqlStoreIndex
from dicomweb_server.index.sql.webhooks import SqlWebhookIndex
from dicomweb_server.index.sql.workitems import EVENTS_CHANNEL, SqlWorkitemIndex
from dicomweb_server.peers.stow import StowSink
from dicomweb_server.services.access import AccessService
from dicomweb_server.services.audit import AuditSink, AuditTrail
from dicomweb_server.services.budget import MemoryBudget
from dicomweb_server.services.changes import ChangeFeed, ChangeHub
from dicomweb_server.services.consistency import ConsistencyService
from dicomweb_server.services.consumers import Consumers
from dicomweb_server.services.corrections import CorrectionService
from dicomweb_server.services.delete import DeleteService
from dicomweb_server.services.oidc import OidcConfig, OidcVerifier, parse_role_map
from dicomweb_server.services.pixels import PixelReader
from dicomweb_server.services.ports import BlobStore
from dicomweb_server.services.ports.bulk import Sink
from dicomweb_server.services.ports.plugins import BLOB_STORES, EVENT_CONSUMERS, INGEST_STEPS
from dicomweb_server.services.ports.retention import AUDIT, CHANGES, DELIVERIES, SHARE_USES
from dicomweb_server.services.reject import RejectService
from dicomweb_server.services.render import RenderService
from dicomweb_server.services.retention import Retention
from dicomweb_server.services.retrieve import RetrieveService, TextCache
from dicomweb_server.services.revocations import Revocations
from dicomweb_server.services.search import SearchService
from dicomweb_server.services.shares import ShareService
from dicomweb_server.services.stats import StatsService
from dicomweb_server.services.store import DuplicatePolicy, StoreLimits, StoreService
from dicomweb_server.services.webhooks import RetryPolicy, Webhooks
from dicomweb_server.services.workitem_rules import RuleRunner, parse_rules
from dicomweb_server.services.workitems import EventChannels, WorkitemService
from dicomweb_server.settings import Settings
from dicomweb_server.web import urls
from dicomweb_server.web.context import PublicRoot, WebApp


@dataclass
class Container:
    settings: Settings
    store: StoreService
    delete: DeleteService
    reject: RejectService
    corrections: CorrectionService
    stats: StatsService
    search: SearchService
    retrieve: RetrieveService
    render: RenderService
    consistency: ConsistencyService
    access: AccessService
    shares: ShareService
    audit: AuditTrail
    # The logs' retention (audit, change log, deliveries, share uses), pruned in the background.
    retention: Retention
    # Open streams end when their key or share is revoked, in any process.
    revocations: Revocations
    changes: ChangeFeed
    hub: ChangeHub
    webhooks: Webhooks
    # The event consumers of plugins (none: DICOMWEB_EVENT_CONSUMERS is empty).
    consumers: Consumers
    workitems: WorkitemService
    channels: EventChannels
    # The ingest rules that make workitems (None: there are none).
    rules: RuleRunner | None
    # Tells this process's readers of the change log that it has new entries.
    wake: Callable[[], None]
    blobs: BlobStore
    checks: dict[str, Callable[[], None]]
    engine: Engine
    root: PublicRoot
    webapp: WebApp
    # The organisation's root of the UIDs the server makes ("": 2.25.<UUID>).
    uid_root: str
    # Short reads may run on the event loop (the embedded database: services/ports/inline.py).
    reads_inline: bool = False
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for closer in self._closers:
            closer()

    def gauges(self) -> dict[str, tuple[str, float]]:
        """What `/metrics` reads at scrape time: name -> (meaning, value), of this process
        (the webhook backlog: of the database)."""
        pool = self.engine.pool
        found: dict[str, tuple[str, float]] = {
            "db_pool_checked_out": (
                "Database connections of this process in use",
                float(getattr(pool, "checkedout", lambda: 0)()),
            ),
            "db_pool_size": (
                "Database connections this process keeps open",
                float(getattr(pool, "size", lambda: 0)()),
            ),
            "audit_messages_dropped": (
                "Audit messages this process could not queue",
                float(self.audit.dropped),
            ),
            "audit_sink_failures": (
                "Failed writes to the audit sinks by this process",
                float(sum(self.audit.failures.values())),
            ),
            "webhook_backlog": ("Webhook deliveries pending", float(self.webhooks.backlog())),
        }
        cache = self.retrieve.metadata_cache
        if cache is not None:
            found["metadata_cache_hits"] = ("Metadata texts found in the cache", float(cache.hits))
            found["metadata_cache_misses"] = (
                "Metadata texts not in the cache",
                float(cache.misses),
            )
        return found

    def problems(self) -> dict[str, str]:
        """Each backend that cannot be used now, with the first line of the reason (for
        `/ready` and for the start-up check)."""
        found = {}
        for name, check in self.checks.items():
            try:
                check()
            except Exception as exc:  # noqa: BLE001 - any failure is reported by name
                found[name] = backend_text(str(exc)) or type(exc).__name__
        return found

    def verify(self) -> None:
        """Fail at start, with a clear message, when a backend cannot be used."""
        for name, reason in self.problems().items():
            raise BackendUnusable(f"the {name} cannot be used: {reason}")


def upgrade_database(settings: Settings) -> None:
    """Create or upgrade the index schema with the Alembic migrations."""
    migrate.upgrade(settings.resolved_database_url)


def pending_migrations(settings: Settings) -> str | None:
    """What the index schema lacks ("revision X, newest Y"), or None when it is current."""
    return migrate.pending(settings.resolved_database_url)


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
    configured = deidentifier(settings)
    if configured is not None:
        return configured
    key = settings.deidentify_key.encode() if settings.deidentify_key else secrets.token_bytes(32)
    return Deidentifier(key)


def oidc_verifier(settings: Settings) -> OidcVerifier | None:
    """The verifier of OpenID Connect tokens when DICOMWEB_AUTH takes them; a bad
    configuration fails at start."""
    if "oidc" not in settings.auth.split(","):
        return None
    issuer = settings.oidc_issuer
    if not issuer:
        raise ValueError("DICOMWEB_AUTH=oidc needs DICOMWEB_OIDC_ISSUER")
    parts = urlsplit(issuer)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ValueError("DICOMWEB_OIDC_ISSUER must be an https URL (http only on loopback)")
    config = OidcConfig(
        issuer=issuer,
        audience=settings.oidc_audience,
        scopes_claim=settings.oidc_scopes_claim,
        role_map=parse_role_map(settings.oidc_role_map),
        algorithms=tuple(a.strip() for a in settings.oidc_algorithms.split(",") if a.strip()),
        leeway_seconds=settings.oidc_leeway_seconds,
        patient_claim=settings.oidc_patient_claim,
        labels_claim=settings.oidc_labels_claim,
        introspect=settings.oidc_introspect,
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret,
    )
    return OidcVerifier(config, UrllibJsonClient())


def audit_trail(settings: Settings, db: Database) -> AuditTrail:
    """The audit trail and its sinks (DICOMWEB_AUDIT), the table among them read back by GET
    /audit; a bad configuration fails at start."""
    names = {n.strip() for n in settings.audit.split(",") if n.strip()} - {"none"}
    if names == {"auto"}:
        names = {"table"} if settings.auth != "none" else set()
    unknown = names - {"table", "file", "stdout", "syslog"}
    if unknown:
        raise ValueError(f"DICOMWEB_AUDIT: unknown sink(s) {', '.join(sorted(unknown))}")
    sinks: list[AuditSink] = []
    table = SqlAuditLog(db) if "table" in names else None
    if table is not None:
        sinks.append(table)
    if "file" in names:
        if settings.audit_file is None:
            raise ValueError("DICOMWEB_AUDIT=file needs DICOMWEB_AUDIT_FILE")
        sinks.append(JsonLinesSink(settings.audit_file))
    if "stdout" in names:
        sinks.append(JsonLinesSink(None))
    if "syslog" in names:
        if not settings.audit_syslog:
            raise ValueError("DICOMWEB_AUDIT=syslog needs DICOMWEB_AUDIT_SYSLOG")
        sinks.append(
            SyslogSink(
                settings.audit_syslog,
                settings.audit_syslog_ca,
                settings.audit_syslog_cert,
                settings.audit_syslog_key,
            )
        )
    return AuditTrail(sinks, settings.audit_source_id, log=table)


def label_tags(settings: Settings) -> tuple[int, ...]:
    """The tags of DICOMWEB_LABEL_ATTRIBUTES; an unknown keyword fails at start."""
    tags = []
    for name in (n.strip() for n in settings.label_attributes.split(",")):
        if not name:
            continue
        tag = tag_for_keyword(name)
        if tag is None:
            raise ValueError(f"DICOMWEB_LABEL_ATTRIBUTES: {name!r} is not a DICOM keyword")
        tags.append(int(tag))
    return tuple(tags)


class BackendUnusable(RuntimeError):
    """A configured backend cannot be used; the message says which and why."""


def build_blob_store(settings: Settings) -> BlobStore:
    """The blob store the settings name: the local file system or an S3-compatible bucket."""
    if settings.blob_store == "s3":
        if not settings.s3_bucket:
            raise BackendUnusable("DICOMWEB_BLOB_STORE=s3 needs DICOMWEB_S3_BUCKET")
        return S3BlobStore(
            S3Location(
                bucket=settings.s3_bucket,
                prefix=settings.s3_prefix,
                endpoint_url=settings.s3_endpoint_url,
                region=settings.s3_region,
                access_key_id=settings.s3_access_key_id,
                secret_access_key=settings.s3_secret_access_key,
                addressing_style=settings.s3_addressing_style,
                connect_timeout=settings.s3_connect_timeout,
                read_timeout=settings.s3_read_timeout,
                max_attempts=settings.s3_max_attempts,
                max_pool_connections=settings.s3_max_pool_connections,
            )
        )
    if settings.blob_store == "filesystem":
        return FilesystemBlobStore(settings.resolved_blob_dir)
    store = plugin(BLOB_STORES, settings.blob_store, settings, "DICOMWEB_BLOB_STORE")
    return store  # type: ignore[no-any-return]


def plugin(group: str, name: str, settings: Settings, setting: str) -> Any:
    """What the entry point `name` of `group` makes from the settings (a plugin's factory);
    BackendUnusable naming those installed when there is none such, or it fails."""
    found = {e.name: e for e in entry_points(group=group)}
    if name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise BackendUnusable(f"{setting}={name}: no plugin of that name ({group}: {known})")
    try:
        return found[name].load()(settings)
    except Exception as exc:
        raise BackendUnusable(
            f"{setting}={name}: the plugin failed to start: {backend_text(str(exc))}"
        ) from exc


def plugins(group: str, names: str, settings: Settings, setting: str) -> list[Any]:
    return [plugin(group, n.strip(), settings, setting) for n in names.split(",") if n.strip()]


def stow_sink(url: str, token: str | None = None) -> Sink:
    """Another archive's STOW-RS, as the sink of an import or an export (`--to URL`)."""
    return StowSink(url, {"Authorization": f"Bearer {token}"} if token else {})


def build_container(settings: Settings) -> Container:
    engine = make_engine(
        settings.resolved_database_url,
        settings.db_pool_size,
        settings.db_max_overflow,
        settings.db_pool_timeout,
    )
    db = Database(engine, make_inline_engine(settings.resolved_database_url))
    retrieve_index = SqlRetrieveIndex(db)
    search = SearchService(SqlSearchIndex(db), settings.qido_max_limit)
    changes = ChangeFeed(SqlChangeLog(db), search)
    signal = workitem_signal = None
    if db.dialect == "postgresql":
        # A connection of its own for LISTEN, outside the pool.
        conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        signal = PostgresChangeSignal(conninfo, CHANGES_CHANNEL)
        workitem_signal = PostgresChangeSignal(conninfo, EVENTS_CHANNEL)
    workitem_index = SqlWorkitemIndex(db)
    workitems = WorkitemService(workitem_index, settings.qido_max_limit, settings.uid_root)
    channels = EventChannels(workitem_index, workitem_signal, settings.changes_poll_seconds)
    workitems.committed = channels.wake
    rules = parse_rules(settings.workitem_rules)
    hub = ChangeHub(
        changes,
        signal,
        settings.changes_poll_seconds,
        settings.max_streams,
        max_per_caller=settings.max_streams_per_caller,
    )
    webhooks = Webhooks(
        SqlWebhookIndex(db, settings.webhook_secret_key),
        HttpWebhookSender(settings.webhook_allow_private),
        changes,
        urls.Urls,
        RetryPolicy(
            settings.webhook_max_attempts,
            settings.webhook_retry_base_seconds,
            settings.webhook_retry_max_seconds,
            settings.webhook_timeout_seconds,
        ),
        settings.changes_poll_seconds,
    )

    consumers = Consumers(
        plugins(EVENT_CONSUMERS, settings.event_consumers, settings, "DICOMWEB_EVENT_CONSUMERS"),
        SqlConsumerCursors(db),
        changes.log,
        settings.changes_poll_seconds,
    )

    def changed() -> None:
        hub.wake()
        webhooks.wake()
        consumers.wake()

    blobs = build_blob_store(settings)
    # One decode budget per process, for transcoding, rendering and whole-object ingest.
    budget = MemoryBudget(settings.decode_memory_bytes)
    pixels = PixelReader(blobs, settings.max_transcode_bytes, budget=budget)
    store = StoreService(
        SqlStoreIndex(db),
        blobs,
        settings.resolved_spool_dir,
        settings.bulk_data_threshold,
        # Root-relative: the served metadata gets the base URL of each request.
        urls.bulk_data_path,
        DuplicatePolicy(settings.duplicate_policy),
        deidentifier=deidentifier(settings),
        steps=plugins(INGEST_STEPS, settings.ingest_steps, settings, "DICOMWEB_INGEST_STEPS"),
        limits=StoreLimits(
            settings.max_request_bytes,
            settings.max_instance_bytes,
            settings.max_parts,
            settings.body_timeout_seconds,
        ),
        max_uploads=settings.max_concurrent_uploads,
        budget=budget,
        label_tags=label_tags(settings),
        changed=changed,
    )
    trail = audit_trail(settings, db)
    failure_log = SqlFailureLog(db)
    shares = ShareService(
        SqlShareIndex(db),
        SqlSearchIndex(db),
        settings.share_session_seconds,
        settings.auth_failures_per_minute,
        settings.share_viewer_url,
        trail,
        failure_log,
    )
    retention = Retention(
        SqlRetentionIndex(db),
        {
            AUDIT: settings.audit_retention_seconds,
            CHANGES: settings.changes_retention_seconds,
            DELIVERIES: settings.delivery_retention_seconds,
            SHARE_USES: settings.share_use_retention_seconds,
        },
    )
    return Container(
        settings=settings,
        retention=retention,
        revocations=Revocations(SqlRevocationIndex(db)),
        shares=shares,
        store=store,
        stats=StatsService(SqlStatsIndex(db)),
        delete=DeleteService(
            SqlDeleteIndex(db), blobs, SqlConsistencyIndex(db), trail, changed=changed
        ),
        corrections=CorrectionService(
            SqlCorrectionIndex(db),
            retrieve_index,
            store,
            blobs,
            settings.max_correction_instances,
            trail,
            changed=changed,
        ),
        reject=RejectService(
            SqlRejectIndex(db),
            store.reindex,
            blobs,
            SqlConsistencyIndex(db),
            settings.rejected_retention_seconds,
            trail,
            changed=changed,
        ),
        search=search,
        changes=changes,
        hub=hub,
        webhooks=webhooks,
        consumers=consumers,
        workitems=workitems,
        channels=channels,
        rules=RuleRunner(rules, hub, search, workitems) if rules else None,
        wake=changed,
        retrieve=RetrieveService(
            retrieve_index,
            blobs,
            pixels,
            retrieve_anonymizer(settings),
            TextCache(settings.metadata_cache_bytes) if settings.metadata_cache_bytes else None,
        ),
        render=RenderService(retrieve_index, pixels, max_pixels=settings.max_render_pixels),
        access=AccessService(
            SqlKeyIndex(db),
            SqlLabelIndex(db),
            settings.auth,
            settings.auth_failures_per_minute,
            oidc_verifier(settings),
            shares,
            trail,
            failure_log,
        ),
        audit=trail,
        consistency=ConsistencyService(
            SqlConsistencyIndex(db), blobs, store.spool, settings.orphan_grace_seconds
        ),
        blobs=blobs,
        checks={"database": db.check, "blob store": blobs.check, "spool": store.spool.check},
        engine=engine,
        root=PublicRoot(settings.public_base_url, settings.base_path, settings.allowed_host_list),
        webapp=WebApp(
            oidc_issuer=settings.oidc_issuer if settings.ui_oidc_client_id else None,
            oidc_client_id=settings.ui_oidc_client_id if settings.oidc_issuer else None,
            oidc_scope=settings.ui_oidc_scope,
            viewer_dir=settings.resolved_viewer_dir,
            viewer_url=settings.viewer_url,
        ),
        uid_root=settings.uid_root,
        reads_inline=db.reads_inline,
        # The trail first: its last messages still reach the table.
        _closers=[
            trail.close,
            hub.close_signal,
            channels.close_signal,
            webhooks.close,
            db.close,
            blobs.close,
        ],
    )
