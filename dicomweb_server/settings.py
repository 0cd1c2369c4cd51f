"""Every setting of the server, typed, read from the environment and `.env`.

Each field is documented in `.env.example` and in the README's settings table; a test keeps the
three in step. Nothing else in the package reads `os.environ`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DICOMWEB_",
        env_file=".env",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    host: str = Field(default="127.0.0.1", description="Address the server binds to.")
    port: int = Field(default=8080, description="TCP port the server listens on.")
    workers: int = Field(
        default=0,
        ge=0,
        description="Number of server processes `serve` starts; 0: one per core the process "
        "may use (its CPU affinity and cgroup quota).",
    )
    base_path: str = Field(
        default="/dicomweb", description="URL path under which the DICOMweb services are served."
    )
    public_base_url: str | None = Field(
        default=None,
        description="Absolute URL of the DICOMweb root as clients see it (behind a proxy); "
        "by default derived from each request.",
    )
    allowed_hosts: str = Field(
        default="",
        description="Comma-separated Host values (host or host:port) the URLs in answers may be "
        "built from when no public base URL is set; another Host gets the first. Empty: any.",
    )
    data_dir: Path = Field(
        default=Path("data"),
        description="Folder of the embedded default: SQLite index and objects.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the index (e.g. postgresql+psycopg://host/db); "
        "default: SQLite file `index.sqlite3` in the data folder.",
    )
    blob_dir: Path | None = Field(
        default=None,
        description="Folder where objects are stored; default: `objects` in the data folder.",
    )
    blob_store: str = Field(
        default="filesystem",
        min_length=1,
        description="Where objects are stored: filesystem (DICOMWEB_BLOB_DIR), s3 "
        "(an S3-compatible bucket, DICOMWEB_S3_*), or the name of a blob store a plugin adds "
        "(entry point group dicomweb_server.blob_stores).",
    )
    ingest_steps: str = Field(
        default="",
        description="Ingest steps of plugins (entry point group dicomweb_server.ingest_steps) "
        "every received object goes through, in order, comma-separated (after the "
        "de-identification when it is on).",
    )
    event_consumers: str = Field(
        default="",
        description="Event consumers of plugins (entry point group "
        "dicomweb_server.event_consumers), comma-separated: each is handed the change log's "
        "entries in order, once across every server process.",
    )
    s3_bucket: str | None = Field(default=None, description="Bucket of the s3 blob store.")
    s3_prefix: str = Field(default="", description="Key prefix inside the bucket.")
    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint URL (MinIO, Ceph, a region endpoint); AWS's by default.",
    )
    s3_region: str | None = Field(default=None, description="S3 region name.")
    s3_access_key_id: str | None = Field(
        default=None,
        description="S3 access key; without it the standard AWS credential chain is used.",
    )
    s3_secret_access_key: str | None = Field(
        default=None, description="S3 secret key (with DICOMWEB_S3_ACCESS_KEY_ID)."
    )
    s3_addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto", description="S3 addressing: path for MinIO and Ceph, virtual for AWS."
    )
    s3_connect_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to wait for a connection to S3."
    )
    s3_read_timeout: float = Field(
        default=60.0, gt=0, description="Seconds to wait for S3 to send data."
    )
    s3_max_attempts: int = Field(
        default=5, ge=1, description="Attempts per S3 call (retries with backoff)."
    )
    s3_max_pool_connections: int = Field(
        default=50, ge=1, description="HTTP connections to S3 kept per process."
    )
    spool_dir: Path | None = Field(
        default=None,
        description="Folder for request parts while they are received; default: `spool` in "
        "the data folder (same file system as the objects, so storing is a rename).",
    )
    cors_allow_origins: str = Field(
        default="*",
        description="Comma-separated origins allowed by CORS; `*` for any, empty for none.",
    )
    qido_max_limit: int = Field(
        default=10000, ge=1, description="Largest number of results one QIDO-RS response returns."
    )
    bulk_data_threshold: int = Field(
        default=1024,
        ge=0,
        description="Binary values longer than this many bytes are returned as BulkDataURI "
        "in metadata instead of InlineBinary.",
    )
    auth: Literal["none", "api-key", "oidc", "oidc,api-key", "api-key,oidc"] = Field(
        default="none",
        description="Who may call: none (anyone who reaches the port; the embedded default on "
        "127.0.0.1), api-key (keys made with `dicomweb-server keys create`), oidc (bearer "
        "tokens of the DICOMWEB_OIDC_ISSUER), or oidc,api-key (either).",
    )
    oidc_issuer: str | None = Field(
        default=None,
        description="The OpenID provider's issuer URL (https; http only on loopback); its "
        "discovery document gives the JWKS.",
    )
    oidc_audience: str = Field(
        default="dicomweb",
        description="The `aud` a token must carry to be accepted.",
    )
    oidc_scopes_claim: str = Field(
        default="scope",
        description="The claim holding the scopes or roles: scope, scp, roles, or a dotted path "
        "such as realm_access.roles (Keycloak).",
    )
    oidc_role_map: str = Field(
        default="",
        description="Claim values and the scopes they give, `Role=read,write;Other=admin`, or "
        "`microsoft` (DicomDataReader: read; DicomDataOwner: read, write, delete, workitems). "
        "Values named like a scope (read, dicomweb.read) always give it.",
    )
    oidc_algorithms: str = Field(
        default="RS256,ES256,PS256",
        description="Signature algorithms accepted (asymmetric only; none and HS* never).",
    )
    oidc_leeway_seconds: int = Field(
        default=60, ge=0, le=600, description="Clock skew allowed on exp and nbf."
    )
    oidc_patient_claim: str = Field(
        default="patient",
        description="The claim naming the patient of a SMART patient/ImagingStudy.read token.",
    )
    oidc_labels_claim: str | None = Field(
        default=None,
        description="A claim listing study labels: the token then sees only those studies.",
    )
    oidc_introspect: bool = Field(
        default=False,
        description="Ask the provider's introspection endpoint (RFC 7662) about tokens that "
        "are not JWTs.",
    )
    oidc_client_id: str | None = Field(
        default=None, description="Client id for token introspection."
    )
    oidc_client_secret: str | None = Field(
        default=None, description="Client secret for token introspection."
    )
    ui_oidc_client_id: str | None = Field(
        default=None,
        description="The client id the web application (/ui) signs in with at the "
        "DICOMWEB_OIDC_ISSUER: a public client, authorization code with PKCE, whose redirect "
        "URI is this server's /ui/; unset, the app signs in with an API key only.",
    )
    ui_oidc_scope: str = Field(
        default="openid",
        description="The scopes the web application asks the provider for (space-separated).",
    )
    viewer_dir: Path | None = Field(
        default=None,
        description="Where `dicomweb-server viewer install` puts the OHIF viewer, served at "
        "/viewer; default: `viewer` in the data folder.",
    )
    viewer_url: str | None = Field(
        default=None,
        description='An external viewer the web application\'s "open in viewer" uses when '
        "no viewer is installed, with {study} in it, e.g. "
        "https://viewer.example/viewer?StudyInstanceUIDs={study}.",
    )
    auth_failures_per_minute: int = Field(
        default=10,
        ge=1,
        description="Failed authentications one client address (or claimed key id) may make "
        "per minute, counted in the database for every process together; past it, its "
        "failing requests answer 429 with Retry-After (a valid credential always passes).",
    )
    share_session_seconds: int = Field(
        default=3600,
        ge=60,
        le=86400,
        description="How long the session token a share link is redeemed for lasts (never past "
        "the share's expiry).",
    )
    share_viewer_url: str | None = Field(
        default=None,
        description="Where an opened share link redirects, with {study} and {token} in it, "
        "e.g. https://viewer.example/viewer?StudyInstanceUIDs={study}&token={token} (OHIF); "
        "unset, the link answers the session as JSON.",
    )
    audit: str = Field(
        default="auto",
        description="Where DICOM audit messages (PS3.15 A.5) go, comma-separated: table (the "
        "audit_events table, read by GET /audit), file (JSON lines, DICOMWEB_AUDIT_FILE), "
        "stdout (JSON lines), syslog (DICOMWEB_AUDIT_SYSLOG); none; auto: table when "
        "DICOMWEB_AUTH is not none, else none.",
    )
    audit_file: Path | None = Field(
        default=None, description="The JSON lines file of DICOMWEB_AUDIT=file (appended)."
    )
    audit_syslog: str | None = Field(
        default=None,
        description="The audit record repository: tls://host:6514 (RFC 5425), tcp://host:port "
        "or udp://host:514 (RFC 5426).",
    )
    audit_syslog_ca: str | None = Field(
        default=None, description="CA certificates (PEM) the syslog TLS server is checked with."
    )
    audit_syslog_cert: str | None = Field(
        default=None, description="This node's certificate (PEM) for mutual TLS (ATNA)."
    )
    audit_syslog_key: str | None = Field(
        default=None, description="The private key (PEM) of DICOMWEB_AUDIT_SYSLOG_CERT."
    )
    audit_source_id: str = Field(
        default="dicomweb-server",
        description="The AuditSourceID of every audit message (name this archive).",
    )
    label_attributes: str = Field(
        default="",
        description="Comma-separated attribute keywords (e.g. InstitutionName) whose values "
        "become access-control labels of the study at ingest; a key or token limited to "
        "labels sees only the studies carrying one of them.",
    )
    trusted_proxies: str = Field(
        default="",
        description="Addresses or networks (comma-separated, e.g. 10.0.0.0/8,127.0.0.1) of the "
        "proxies in front of the server, whose X-Forwarded-For and X-Forwarded-Proto are "
        "believed (the client's address for limits and logs); empty: none is, the peer's "
        "address is the client's.",
    )
    allow_open_access: bool = Field(
        default=False,
        description="Let `serve` bind an address other than loopback with DICOMWEB_AUTH=none "
        "(anyone who reaches it may read every study); refused otherwise.",
    )
    duplicate_policy: Literal["reject", "ignore", "overwrite"] = Field(
        default="ignore",
        description="A SOP Instance stored again: reject (failure), ignore (warning, first "
        "copy kept) or overwrite (object and metadata replaced).",
    )
    max_request_bytes: int = Field(
        default=64 * 2**30, ge=1, description="Largest STOW-RS request body, in bytes (413 above)."
    )
    max_instance_bytes: int = Field(
        default=8 * 2**30,
        ge=1,
        description="Largest single instance in a STOW-RS request, in bytes.",
    )
    max_parts: int = Field(
        default=10_000, ge=1, description="Most parts (instances) in one STOW-RS request."
    )
    deidentify: bool = Field(
        default=False,
        description="De-identify every stored object (PS3.15 Annex E Basic Profile).",
    )
    deidentify_options: str = Field(
        default="",
        description="Comma-separated PS3.15 E.3 options: retain-uids, retain-device-identity, "
        "retain-institution-identity, retain-patient-characteristics, retain-long-full-dates, "
        "retain-long-modified-dates, clean-descriptors, clean-structured-content, "
        "clean-graphics.",
    )
    deidentify_key: str | None = Field(
        default=None,
        description="Secret from which replacement UIDs and date shifts are derived; "
        "required with DICOMWEB_DEIDENTIFY.",
    )
    max_transcode_bytes: int = Field(
        default=512 * 2**20,
        ge=1,
        description="Most bytes of decoded pixel data one response transcodes; past it, a "
        "request for another transfer syntax answers 406.",
    )
    max_render_pixels: int = Field(
        default=64 * 2**20,
        ge=1,
        description="Most pixels one rendered response holds (width x height x frames of an "
        "animation); past it, 400.",
    )
    decode_memory_bytes: int = Field(
        default=2 * 2**30,
        ge=1,
        description="Most memory one process holds for transcoding and rendering at once; "
        "requests wait for room, then answer 503.",
    )
    metadata_cache_bytes: int = Field(
        default=64 * 2**20,
        ge=0,
        description="Stored DICOM JSON each process keeps in memory for WADO-RS metadata, by "
        "stored copy (never stale); 0 reads every answer from the index.",
    )
    changes_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Each process reads the change log for its live streams at least this "
        "often (also woken at once by its own stores and, on PostgreSQL, by LISTEN/NOTIFY).",
    )
    max_streams: int = Field(
        default=1000,
        ge=1,
        description="Live change streams (WebSocket, Server-Sent Events) one process serves at "
        "once; past it, 503.",
    )
    max_streams_per_caller: int | None = Field(
        default=None,
        ge=1,
        description="Live change streams one caller (a key, a token, a share session; without "
        "access control an address) may hold in one process; past it, 429. Default: a tenth of "
        "DICOMWEB_MAX_STREAMS.",
    )
    webhook_max_attempts: int = Field(
        default=8,
        ge=1,
        le=100,
        description="Attempts of a webhook delivery before it becomes a dead letter.",
    )
    webhook_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="How long a webhook receiver has to answer one delivery.",
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Let webhook receivers be on loopback, private (RFC 1918, unique local), "
        "link-local or other addresses that are not globally reachable (refused otherwise, "
        "at registration and at every connection).",
    )
    webhook_secret_key: str | None = Field(
        default=None,
        min_length=16,
        description="A key (16 characters or more; keep it secret, e.g. 32 random bytes in "
        "base64) that encrypts webhook secrets at rest (AES-GCM); unset, they are stored as "
        "given.",
    )
    webhook_retry_base_seconds: float = Field(
        default=1.0,
        gt=0,
        description="The wait after a webhook delivery's first failure; it doubles with each "
        "further failure (with jitter), up to DICOMWEB_WEBHOOK_RETRY_MAX_SECONDS.",
    )
    webhook_retry_max_seconds: float = Field(
        default=600.0,
        gt=0,
        description="The longest wait between two attempts of a webhook delivery.",
    )
    stable_seconds: float = Field(
        default=60.0,
        ge=0,
        description="A series or study is announced stable (series-stable, study-stable "
        "events) once no instance has arrived in it for this long; 0: never.",
    )
    workitem_retention_seconds: float = Field(
        default=7 * 24 * 3600.0,
        ge=0,
        description="UPS-RS: a COMPLETED or CANCELED workitem is removed this long after it "
        "became so, unless a subscriber holds a deletion lock on it; 0: kept for ever.",
    )
    audit_retention_seconds: float = Field(
        default=6 * 365 * 24 * 3600.0,
        ge=0,
        description="Audit events in the table are kept this long (6 years by default, as "
        "healthcare record rules commonly ask), then pruned; 0: kept for ever.",
    )
    changes_retention_seconds: float = Field(
        default=90 * 24 * 3600.0,
        ge=0,
        description="Change log entries (the change feed) are kept this long, then pruned; a "
        "webhook or consumer more than this far behind misses the pruned ones; 0: for ever.",
    )
    delivery_retention_seconds: float = Field(
        default=7 * 24 * 3600.0,
        ge=0,
        description="Delivered webhook deliveries are kept this long (pending and dead ones "
        "until they are delivered), then pruned; 0: kept for ever.",
    )
    share_use_retention_seconds: float = Field(
        default=365 * 24 * 3600.0,
        ge=0,
        description="The record of each use of a share link is kept this long; 0: for ever.",
    )
    retention_interval_seconds: float = Field(
        default=600.0,
        gt=0,
        description="How often a process tries to prune what is past its retention (one "
        "process at a time does it, in batches).",
    )
    max_correction_instances: int = Field(
        default=20000,
        gt=0,
        description="The most instances one correction or merge request rewrites (each is "
        "read and stored again).",
    )
    rejected_retention_seconds: float = Field(
        default=30 * 24 * 3600.0,
        ge=0,
        description="Rejected instances (IOCM) are kept this long, restorable, then purged "
        "(their objects removed); 0: purged at the next round.",
    )
    workitem_rules: str = Field(
        default="",
        description="UPS-RS workitems made by ingest rules: a JSON array of {name, filter "
        "(a change filter: modality=CT&...), label, worklist?, priority?, code? "
        "(value^scheme^meaning)}; each study a filter takes gets one SCHEDULED workitem once "
        "it is stable.",
    )
    dimse_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="The DIMSE service (C-ECHO, C-STORE, C-FIND, C-GET, C-MOVE) listens on this "
        "port when "
        "set: `serve` starts it beside the web server, `dicomweb-server dimse` alone.",
    )
    dimse_host: str | None = Field(
        default=None, description="The DIMSE service's bind address; default: DICOMWEB_HOST."
    )
    dimse_ae_title: str = Field(
        default="DICOMWEB",
        min_length=1,
        max_length=16,
        pattern=r"^[ -\[\]-~]*[!-\[\]-~][ -\[\]-~]*$",
        description="The archive's AE title.",
    )
    dimse_peers: str = Field(
        default="",
        description="C-MOVE destinations, comma-separated AETITLE@host:port.",
    )
    dimse_ae_access: str = Field(
        default="",
        description="What each calling AE title may do over DIMSE, and from where: "
        "AETITLE@address|network=scope,scope[:label|label];... (e.g. "
        "CT1@10.0.5.21=write;WS1@10.0.8.0/24=read,download; without @: loopback only). Needed "
        "when DICOMWEB_AUTH is not none; AE titles not named are rejected.",
    )
    dimse_tls_cert: Path | None = Field(
        default=None,
        description="DICOM TLS (PS3.15 B.1): the DIMSE service's certificate (PEM); with "
        "DICOMWEB_DIMSE_TLS_KEY, the service takes TLS connections only.",
    )
    dimse_tls_key: Path | None = Field(
        default=None, description="DICOM TLS: the private key of DICOMWEB_DIMSE_TLS_CERT (PEM)."
    )
    dimse_tls_ca: Path | None = Field(
        default=None,
        description="DICOM TLS: when set, peers must present a certificate this CA file "
        "(PEM) vouches for.",
    )
    dimse_accepted_aets: str = Field(
        default="",
        description="Calling AE titles the DIMSE service accepts, comma-separated; empty: any.",
    )
    uid_root: str = Field(
        default="",
        max_length=40,
        description="The organisation's UID root for UIDs the server makes (POST /uids); "
        "empty: 2.25. followed by a random UUID as an integer (PS3.5 B.2).",
    )
    migrate_on_start: bool = Field(
        default=True,
        description="`serve` applies pending migrations; false: it refuses to start on an "
        "old schema (a separate job runs `dicomweb-server db upgrade`).",
    )
    db_pool_size: int = Field(default=10, ge=1, description="Connections kept open per process.")
    db_max_overflow: int = Field(
        default=10, ge=0, description="Extra connections a process may open under load."
    )
    db_pool_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a request waits for a free connection before answering 503.",
    )
    log_level: str = Field(default="info", description="Log level: debug, info, warning or error.")
    log_format: Literal["auto", "text", "json"] = Field(
        default="auto",
        description="Log lines as JSON objects (json) or as text (text); auto: text on a "
        "terminal, JSON otherwise.",
    )
    log_query_values: bool = Field(
        default=False,
        description="Write query values (patient names, IDs...) to the access log; for "
        "debugging only: by default they are replaced by `*`.",
    )
    orphan_grace_seconds: float = Field(
        default=3600,
        ge=0,
        description="Objects no index row points at are removed once older than this (a "
        "younger one may belong to a store in progress in another process).",
    )
    header_timeout_seconds: float = Field(
        default=30,
        gt=0,
        description="A connection whose request headers are not complete within this many "
        "seconds is closed.",
    )
    body_timeout_seconds: float = Field(
        default=60,
        gt=0,
        description="A request body that sends nothing for this many seconds is answered 408 "
        "and what it sent is discarded.",
    )
    http: Literal["httptools", "h11"] = Field(
        default="httptools",
        description="uvicorn's HTTP/1.1 parser: httptools (llhttp, C; about twice h11's "
        "requests per second on small answers) or h11 (pure Python).",
    )
    loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="The event loop: uvloop (libuv) or Python's asyncio.",
    )
    keep_alive_seconds: int = Field(
        default=5, ge=1, description="An idle kept-alive connection is closed after this long."
    )
    max_concurrent_uploads: int = Field(
        default=64,
        ge=1,
        description="STOW-RS requests one process receives at once; more answer 503 with "
        "Retry-After.",
    )
    max_connections: int = Field(
        default=1000,
        ge=1,
        description="Connections and requests one process serves at once; more answer 503.",
    )
    sweep_interval_seconds: float = Field(
        default=600,
        ge=0,
        description="How often each process removes what ended requests left (spool folders, "
        "orphan objects past the grace period); 0: only at start.",
    )

    @field_validator("base_path")
    @classmethod
    def _normalise_base_path(cls, value: str) -> str:
        value = "/" + value.strip("/")
        return "" if value == "/" else value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'index.sqlite3').resolve()}"

    @property
    def resolved_blob_dir(self) -> Path:
        return (self.blob_dir or self.data_dir / "objects").resolve()

    @property
    def resolved_viewer_dir(self) -> Path:
        return (self.viewer_dir or self.data_dir / "viewer").resolve()

    @property
    def resolved_spool_dir(self) -> Path:
        return (self.spool_dir or self.data_dir / "spool").resolve()

    @property
    def allowed_host_list(self) -> tuple[str, ...]:
        return tuple(h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip())

    @property
    def cors_origins(self) -> list[str]:
        return [o.strip() for o in self.cors_allow_origins.split(",") if o.strip()]
