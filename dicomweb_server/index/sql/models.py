"""Tables of the index. The Alembic migrations build exactly this (a test checks no drift).

On PostgreSQL, migration 0003 also gives the matched text columns the "C" collation (byte
order, as DICOM values compare); migration 0006 makes the stored DICOM JSON `jsonb`, parsed
once when written, with GIN indexes on those columns (below).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    cast,
    type_coerce,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine, UserDefinedType

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class _Jsonb(UserDefinedType[str]):
    """PostgreSQL jsonb that the code reads and writes as text (its DICOM JSON is joined
    into response bodies as it is): cast to jsonb when written, to text when read."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "JSONB"

    def bind_expression(self, bindvalue: Any) -> Any:
        return cast(type_coerce(bindvalue, Text), _Jsonb())

    def column_expression(self, colexpr: Any) -> Any:
        return cast(colexpr, Text)


class DicomJson(TypeDecorator[str]):
    """Stored DICOM JSON: text on SQLite (JSON1 reads it), jsonb on PostgreSQL."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(_Jsonb())
        return dialect.type_descriptor(Text())


# SQLite only gives an auto-increment rowid to INTEGER PRIMARY KEY.
Key = BigInteger().with_variant(Integer(), "sqlite")

studies = Table(
    "studies",
    metadata,
    Column("pk", Key, primary_key=True, autoincrement=True),
    Column("study_instance_uid", String(64), nullable=False, unique=True),
    Column("patient_id", Text),
    # Person names: each component group (PS3.5 6.2.1) upper-cased, for case-insensitive
    # matching on any of them.
    Column("patient_name", Text),  # Alphabetic
    Column("patient_name_ideographic", Text),
    Column("patient_name_phonetic", Text),
    Column("patient_birth_date", String(8)),
    Column("patient_sex", Text),
    Column("study_date", String(8)),
    Column("study_time", String(16)),
    Column("accession_number", Text),
    Column("study_id", Text),
    Column("study_description", Text),
    Column("referring_physician_name", Text),
    Column("referring_physician_name_ideographic", Text),
    Column("referring_physician_name_phonetic", Text),
    Column("modalities_in_study", Text, nullable=False, server_default=""),
    Column("sop_classes_in_study", Text, nullable=False, server_default=""),
    Column("number_of_series", Integer, nullable=False, server_default="0"),
    Column("number_of_instances", Integer, nullable=False, server_default="0"),
    Column("attributes", DicomJson, nullable=False),  # DICOM JSON of the study-level attributes
    # Stable-study detection (issue 16): when an instance last arrived, and whether the quiet
    # period since has been announced (reset by every arrival).
    Column("last_arrival", Float),
    Column("stable_announced", Integer, nullable=False, server_default="0"),
    Index(None, "patient_id"),
    Index(None, "patient_name"),
    Index(None, "patient_name_ideographic"),
    Index(None, "patient_name_phonetic"),
    Index(None, "study_date"),
    Index(None, "accession_number"),
    Index(None, "stable_announced", "last_arrival"),
)

series = Table(
    "series",
    metadata,
    Column("pk", Key, primary_key=True, autoincrement=True),
    Column("study_pk", Key, ForeignKey("studies.pk", ondelete="CASCADE"), nullable=False),
    Column("series_instance_uid", String(64), nullable=False, unique=True),
    Column("modality", Text),
    Column("series_number", Integer),
    Column("series_description", Text),
    Column("performed_procedure_step_start_date", String(8)),
    Column("performed_procedure_step_start_time", String(16)),
    Column("number_of_instances", Integer, nullable=False, server_default="0"),
    Column("attributes", DicomJson, nullable=False),
    Column("last_arrival", Float),
    Column("stable_announced", Integer, nullable=False, server_default="0"),
    Index(None, "study_pk", "series_number"),
    Index(None, "stable_announced", "last_arrival"),
    Index(None, "modality"),
)

instances = Table(
    "instances",
    metadata,
    Column("pk", Key, primary_key=True, autoincrement=True),
    Column("series_pk", Key, ForeignKey("series.pk", ondelete="CASCADE"), nullable=False),
    Column("study_pk", Key, ForeignKey("studies.pk", ondelete="CASCADE"), nullable=False),
    Column("sop_instance_uid", String(64), nullable=False, unique=True),
    Column("sop_class_uid", String(64), nullable=False),
    Column("instance_number", Integer),
    Column("transfer_syntax_uid", String(64), nullable=False),
    Column("blob_key", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("number_of_frames", Integer, nullable=False, server_default="0"),
    Column("attributes", Text, nullable=False),  # the instance-level QIDO return keys
    Column("metadata", DicomJson, nullable=False),  # full DICOM JSON, BulkDataURIs root-relative
    Column("frames", Text),  # JSON: per frame a flat list offset, length, offset, length ...
    Column("frames_error", Text),
    Column("bulk_data", Text, nullable=False),  # JSON: tag path -> [offset, length]
    Index(None, "series_pk", "instance_number"),
    Index(None, "study_pk"),
    Index(None, "sop_class_uid"),
)

# Copies no instance row points at any more (replaced by a newer copy), kept until the
# grace period has passed so that a reader that looked them up can still read them.
retired_objects = Table(
    "retired_objects",
    metadata,
    Column("blob_key", Text, primary_key=True),
    Column("retired_at", Float, nullable=False),  # seconds since the epoch
    Index(None, "retired_at"),
)

# Rejected instances (IOCM, PS3.16 CID 7011): no index row points at them (searches and
# retrievals answer as for a delete); the object stays until the purge delay has passed, and
# a restore indexes it again. `labels`: a JSON array of the study's access-control labels.
rejected_objects = Table(
    "rejected_objects",
    metadata,
    Column("blob_key", Text, primary_key=True),
    Column("study_uid", String(64), nullable=False),
    Column("series_uid", String(64), nullable=False),
    Column("sop_uid", String(64), nullable=False),
    Column("code", String(80), nullable=False),  # CodeValue^CodingSchemeDesignator
    Column("rejected_at", Float, nullable=False),  # seconds since the epoch
    Column("labels", Text, nullable=False),
    Index(None, "study_uid"),
    Index(None, "rejected_at"),
)


# The original versions of corrected instances (issue 18): the copy first stored, kept while
# the instance is (a later correction retires the copies in between; a delete this one).
original_versions = Table(
    "original_versions",
    metadata,
    Column("sop_uid", String(64), primary_key=True),
    Column("blob_key", Text, nullable=False),
    Column("transfer_syntax_uid", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("replaced_at", Float, nullable=False),  # seconds since the epoch
)


# Event consumers of plugins (issue 18): the last change log entry each consumed, and the
# process that holds it (one at a time, so entries go in order).
consumer_cursors = Table(
    "consumer_cursors",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("owner", String(64)),
    Column("leased_until", Float, nullable=False, server_default="0"),
)


# API keys (issue 14): only a hash of each secret is kept; a revocation is a row change every
# process sees on its next request.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("name", Text, nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("scopes", Text, nullable=False),  # space-separated
    Column("created_at", Float, nullable=False),  # seconds since the epoch
    Column("expires_at", Float),
    Column("revoked_at", Float),
    Column("last_used_at", Float),
    # JSON array: the access-control labels of the studies the key may see; NULL: every study.
    Column("labels", Text),
)

# Access-control labels of the studies (issue 14): set at ingest by the label rule, or by an
# admin; a caller limited to labels sees only the studies carrying one of them.
study_labels = Table(
    "study_labels",
    metadata,
    Column(
        "study_pk",
        Key,
        ForeignKey("studies.pk", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("label", Text, primary_key=True),
    Index(None, "label"),
)


# Share links (issue 14): a link token (only its hash kept) grants one study or series; each
# redemption of it (counted against max_uses) makes a short-lived session. Every check reads
# these rows, so a revocation reaches every process on its next request.
shares = Table(
    "shares",
    metadata,
    Column("share_id", String(32), primary_key=True),
    Column("study_uid", String(64), nullable=False),
    Column("series_uid", String(64)),
    Column("rights", String(16), nullable=False),  # view | download
    Column("created_by", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("max_uses", Integer),
    Column("uses", Integer, nullable=False, server_default="0"),
    Column("revoked_at", Float),
    Column("token_sha256", String(64), nullable=False),
    Column("code_sha256", String(64)),  # the one-time code's hash, when it has one
    Column("code_failures", Integer, nullable=False, server_default="0"),
)

share_sessions = Table(
    "share_sessions",
    metadata,
    Column("session_id", String(32), primary_key=True),
    Column(
        "share_id",
        String(32),
        ForeignKey("shares.share_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("secret_sha256", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Index(None, "share_id"),
)

# Every use of a share, refused ones too: when, from where, what came of it.
share_uses = Table(
    "share_uses",
    metadata,
    Column("pk", Key, primary_key=True, autoincrement=True),
    Column(
        "share_id",
        String(32),
        ForeignKey("shares.share_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("at", Float, nullable=False),
    Column("client", Text),
    Column("outcome", Text, nullable=False),
    Index(None, "share_id"),
)


# Failed credentials (issue 30): one row per failure and sender (client address, or the key
# id it claimed), so that every process counts the same failures: N processes allow no more
# attempts than one. Rows older than a minute mean nothing and are removed.
auth_failures = Table(
    "auth_failures",
    metadata,
    Column("pk", Key, primary_key=True, autoincrement=True),
    Column("subject", String(160), nullable=False),
    Column("at", Float, nullable=False),
    Index(None, "subject", "at"),
)

# Work one process at a time does (the retention's pruning): who holds it, until when.
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("until", Float, nullable=False),
)


# The audit trail's table sink (issue 14): one row a DICOM Audit Message (PS3.15 A.5).
audit_events = Table(
    "audit_events",
    metadata,
    Column("pk", Key, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),  # seconds since the epoch
    Column("event_id", String(16), nullable=False),  # EventID code, e.g. 110104
    Column("outcome", String(2), nullable=False),
    Column("requestor", Text, nullable=False),
    Column("studies", Text),  # " uid uid " (space-separated, spaces at both ends)
    Column("message", Text, nullable=False),  # JSON, services.audit.as_dict
    Index(None, "at"),
)


# The change log (issue 16): one row per change to the archive, written in the transaction of
# the change itself. `seq` is the feed's Sequence: on PostgreSQL the writers take it under one
# transaction-level advisory lock held until their commit, so sequences become visible in
# their order (a reader that resumes after the last one it saw misses none); SQLite has one
# writer at a time. AUTOINCREMENT: a sequence is never reused, even after the newest row goes.
changes = Table(
    "changes",
    metadata,
    Column("seq", Key, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),  # seconds since the epoch
    Column("action", String(16), nullable=False),  # create | update | delete
    Column("study_uid", String(64), nullable=False),
    Column("series_uid", String(64)),
    Column("sop_uid", String(64)),
    # The copy the change made (create, update): an entry whose instance now has another
    # copy was replaced; one whose instance is gone was deleted.
    Column("blob_key", Text),
    Index(None, "study_uid"),
    sqlite_autoincrement=True,
)


# Webhooks (issue 16): a subscription follows the change log from its cursor; each entry its
# filter takes becomes a delivery, made in the transaction that moves the cursor (so an entry
# is turned into deliveries exactly once, whichever process does it) and kept until it is
# delivered or dead.
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("subscription_id", String(32), primary_key=True),
    Column("url", Text, nullable=False),
    Column("filter", Text, nullable=False),  # the query string of a stream's filter
    Column("secret", Text, nullable=False),  # Standard Webhooks: whsec_ and base64
    Column("include_metadata", Integer, nullable=False, server_default="0"),
    Column("base_url", Text, nullable=False),  # where the payloads' URLs point
    Column("created_by", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("cursor", BigInteger, nullable=False),  # the last change sequence taken
    Column("disabled_at", Float),
    Column("disabled_reason", Text),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("pk", Key, primary_key=True, autoincrement=True),
    Column(
        "subscription_id",
        String(32),
        ForeignKey("subscriptions.subscription_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("webhook_id", String(64), nullable=False),  # webhook-id: the same on every attempt
    Column("sequence", BigInteger, nullable=False),
    Column("study_uid", String(64), nullable=False),
    Column("payload", Text, nullable=False),  # the CloudEvent, fixed when made
    Column("state", String(16), nullable=False),  # pending | delivered | dead
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_until", Float),  # a sender holds it until then
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("done_at", Float),
    Index(None, "state", "next_attempt_at"),
    Index(None, "subscription_id", "study_uid", "state"),
)


# UPS-RS (issue 17). A workitem is its DICOM JSON (never with its Transaction UID, which is a
# column: the lock is shown to nobody) with columns for the keys worklists are searched by.
workitems = Table(
    "workitems",
    metadata,
    Column("pk", Key, primary_key=True, autoincrement=True),
    Column("uid", String(64), nullable=False, unique=True),
    Column("state", String(16), nullable=False),
    Column("transaction_uid", String(64)),
    # Raised by every change: a change is made only from the version it was decided on.
    Column("version", Integer, nullable=False, server_default="0"),
    Column("priority", String(16)),
    Column("procedure_step_label", Text),
    Column("worklist_label", Text),
    Column("input_readiness_state", String(16)),
    Column("patient_id", Text),
    Column("patient_name", Text),
    Column("patient_name_ideographic", Text),
    Column("patient_name_phonetic", Text),
    Column("attributes", DicomJson, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float),  # when it became COMPLETED or CANCELED (retention)
    Index(None, "state", "finished_at"),
    Index(None, "patient_id"),
    Index(None, "patient_name"),
)

# Who is told of which workitems (PS3.4 CC.2.3): one row per AE title and workitem, or per
# AE title and global subscription (the well-known UIDs of PS3.18 11.10; `filter` holds a
# filtered one's keys as a query string).
workitem_subscriptions = Table(
    "workitem_subscriptions",
    metadata,
    Column("pk", Key, primary_key=True, autoincrement=True),
    Column("aetitle", String(16), nullable=False),
    Column("target", String(64), nullable=False),
    Column("filter", Text),
    Column("deletion_lock", Integer, nullable=False, server_default="0"),
    Column("suspended", Integer, nullable=False, server_default="0"),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("aetitle", "target"),
    Index(None, "target"),
)

# Each event report for each subscriber, written in the transaction of the change (so none
# is lost, and one that reconnects is sent what it missed). `seq` orders them as the change
# log's does (PostgreSQL writers take it under an advisory lock until their commit).
workitem_events = Table(
    "workitem_events",
    metadata,
    Column("seq", Key, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("aetitle", String(16), nullable=False),
    Column("workitem_uid", String(64), nullable=False),
    Column("event_type", Integer, nullable=False),
    Column("report", Text, nullable=False),  # the event information (DICOM JSON)
    Index(None, "aetitle", "seq"),
    sqlite_autoincrement=True,
)

# The AE titles that subscribed: who did (only they open its event channel) and how far its
# channel has been sent.
workitem_receivers = Table(
    "workitem_receivers",
    metadata,
    Column("aetitle", String(16), primary_key=True),
    Column("owner", Text, nullable=False),
    Column("delivered", BigInteger, nullable=False, server_default="0"),
    Column("connected_at", Float),  # when its last channel opened
)


def _json_gin(name: str, table: Table, column: str) -> None:
    """PostgreSQL: a GIN index on a stored JSON column, for `@>` (migration 0006)."""
    Index(
        name,
        table.c[column],
        postgresql_using="gin",
        postgresql_ops={column: "jsonb_path_ops"},
    ).ddl_if(dialect="postgresql")


# The study list newest first (QIDO-RS orderby=-StudyDate, empty dates last): PostgreSQL
# reads the plain index backward only as DESC NULLS FIRST (migration 0018); SQLite, whose
# NULLs sort first, reads it backward as it is.
Index("ix_studies_study_date_newest", studies.c.study_date.desc().nulls_last()).ddl_if(
    dialect="postgresql"
)


def postgresql_only(index: Index) -> bool:
    """Whether an index exists on PostgreSQL alone (the GIN indexes, the newest-first one)."""
    return index.name in _POSTGRESQL_INDEXES


_POSTGRESQL_INDEXES = frozenset(
    {
        "ix_studies_attributes_gin",
        "ix_series_attributes_gin",
        "ix_instances_metadata_gin",
        "ix_workitems_attributes_gin",
        "ix_studies_study_date_newest",
    }
)
_json_gin("ix_studies_attributes_gin", studies, "attributes")
_json_gin("ix_series_attributes_gin", series, "attributes")
_json_gin("ix_instances_metadata_gin", instances, "metadata")
_json_gin("ix_workitems_attributes_gin", workitems, "attributes")
