"""Workitems made by ingest rules: a study the archive receives that a rule's filter takes
gets a SCHEDULED workitem, once it is complete (its `study-stable` change: no instance has
arrived for DICOMWEB_STABLE_SECONDS), e.g. every new CT study an "AI triage" workitem.

A rule follows the change log like a live stream (`ChangeHub`), from when the process
starts. The workitem's UID is derived from the rule and the study (a name-based UUID under
2.25, PS3.5 B.2), so every process may follow the rules: the second to create one is told it
exists, and a study that becomes stable again (more instances came) gets no second one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson

from dicomweb_server.dicom import ups
from dicomweb_server.dicom.attributes import (
    ACCESSION_NUMBER,
    PATIENT_BIRTH_DATE,
    PATIENT_ID,
    PATIENT_NAME,
    PATIENT_SEX,
    STUDY_DESCRIPTION,
    STUDY_INSTANCE_UID,
    Level,
)
from dicomweb_server.dicom.errors import InvalidQuery
from dicomweb_server.dicom.matching import Match, MatchKind, SearchRequest
from dicomweb_server.services.changes import ChangeHub, parse_filter
from dicomweb_server.services.context import READ, WORKITEMS, Caller
from dicomweb_server.services.errors import WorkitemRefused
from dicomweb_server.services.search import SearchService
from dicomweb_server.services.workitems import WorkitemService

log = logging.getLogger("dicomweb_server.workitems")

_NAMESPACE = uuid.UUID("6f1f3c1e-5d0b-4f0e-9a57-2b1f0d3c9e41")
RULES_CALLER = Caller("ingest rules", frozenset({READ, WORKITEMS}), None)


@dataclass(frozen=True)
class WorkitemRule:
    """One rule of DICOMWEB_WORKITEM_RULES."""

    name: str
    filter: str  # a change filter's query: modality=CT&StudyDescription=*CHEST*
    label: str  # Procedure Step Label (0074,1204)
    worklist: str = ""  # Worklist Label (0074,1202)
    priority: str = "MEDIUM"
    code: tuple[str, str, str] | None = None  # Scheduled Workitem Code: value, scheme, meaning


def parse_rules(text: str) -> list[WorkitemRule]:
    """DICOMWEB_WORKITEM_RULES: a JSON array of {"name", "filter", "label", "worklist"?,
    "priority"?, "code"?: "value^scheme^meaning"}; ValueError naming the fault."""
    if not text.strip():
        return []
    try:
        found = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"DICOMWEB_WORKITEM_RULES is not JSON: {exc}") from exc
    if not isinstance(found, list):
        raise ValueError("DICOMWEB_WORKITEM_RULES is a JSON array of rules")
    rules = []
    for number, item in enumerate(found, 1):
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k), str) and item.get(k) for k in ("name", "filter", "label")
        ):
            raise ValueError(f"workitem rule {number} needs name, filter and label (strings)")
        unknown = set(item) - {"name", "filter", "label", "worklist", "priority", "code"}
        if unknown:
            raise ValueError(f"workitem rule {number}: unknown {', '.join(sorted(unknown))}")
        priority = item.get("priority", "MEDIUM")
        if priority not in ups.PRIORITIES:
            raise ValueError(f"workitem rule {number}: priority is HIGH, MEDIUM or LOW")
        code = None
        if "code" in item:
            parts = str(item["code"]).split("^")
            if len(parts) != 3 or not all(parts):
                raise ValueError(f"workitem rule {number}: code is value^scheme^meaning")
            code = (parts[0], parts[1], parts[2])
        try:
            wanted = parse_filter(parse_qsl(item["filter"], keep_blank_values=True))
        except InvalidQuery as exc:
            raise ValueError(f"workitem rule {number}: {exc}") from exc
        if wanted.actions is not None:
            raise ValueError(f"workitem rule {number}: the filter chooses studies, not actions")
        rules.append(
            WorkitemRule(
                item["name"],
                item["filter"],
                item["label"],
                str(item.get("worklist", "")),
                priority,
                code,
            )
        )
    return rules


def workitem_uid(rule: WorkitemRule, study_uid: str) -> str:
    return f"2.25.{uuid.uuid5(_NAMESPACE, f'{rule.name}/{study_uid}').int}"


def _element(tag: int, *values: Any) -> dict[str, Any]:
    return ups.element(f"{tag:08X}", *values)


def workitem_for(rule: WorkitemRule, study: dict[str, Any], now: float) -> dict[str, Any]:
    """The workitem a rule makes for a study (every Type 1 and 2 attribute of N-CREATE):
    the study's patient, the study as its input and its request."""

    def kept(tag: int) -> dict[str, Any]:
        return study.get(f"{tag:08X}") or _element(tag)

    study_uid = ups.first(study, f"{STUDY_INSTANCE_UID:08X}")
    code = (
        [
            {
                "00080100": {"vr": "SH", "Value": [rule.code[0]]},
                "00080102": {"vr": "SH", "Value": [rule.code[1]]},
                "00080104": {"vr": "LO", "Value": [rule.code[2]]},
            }
        ]
        if rule.code
        else []
    )
    reference = {
        f"{STUDY_INSTANCE_UID:08X}": _element(STUDY_INSTANCE_UID, study_uid),
        f"{ACCESSION_NUMBER:08X}": kept(ACCESSION_NUMBER),
        "00401001": {"vr": "SH"},
        "00321060": {
            "vr": "LO",
            **({"Value": v} if (v := kept(STUDY_DESCRIPTION).get("Value")) else {}),
        },
        "00321064": {"vr": "SQ"},
    }
    item: dict[str, Any] = {
        ups.PRIORITY: ups.element(ups.PRIORITY, rule.priority),
        ups.PROCEDURE_STEP_LABEL: ups.element(ups.PROCEDURE_STEP_LABEL, rule.label),
        ups.WORKLIST_LABEL: ups.element(
            ups.WORKLIST_LABEL, *([rule.worklist] if rule.worklist else [])
        ),
        "00404025": {"vr": "SQ"},
        "00404026": {"vr": "SQ"},
        "00404027": {"vr": "SQ"},
        ups.START_DATETIME: ups.element(ups.START_DATETIME, ups.dicom_datetime(now)),
        "00404018": {"vr": "SQ", **({"Value": code} if code else {})},
        ups.INPUT_READINESS_STATE: ups.element(ups.INPUT_READINESS_STATE, "READY"),
        # Input Information Sequence: the study, whole (PS3.3 Table 10-3b).
        "00404021": {
            "vr": "SQ",
            "Value": [
                {
                    f"{STUDY_INSTANCE_UID:08X}": _element(STUDY_INSTANCE_UID, study_uid),
                    "00400E01": {"vr": "CS", "Value": ["DICOM"]},  # Type of Instances
                }
            ],
        },
        f"{PATIENT_NAME:08X}": kept(PATIENT_NAME),
        f"{PATIENT_ID:08X}": kept(PATIENT_ID),
        f"{PATIENT_BIRTH_DATE:08X}": kept(PATIENT_BIRTH_DATE),
        f"{PATIENT_SEX:08X}": kept(PATIENT_SEX),
        "00380010": {"vr": "LO"},
        "00380014": {"vr": "SQ"},
        "00081080": {"vr": "LO"},
        "00081084": {"vr": "SQ"},
        "0040A370": {"vr": "SQ", "Value": [reference]},
        ups.PROCEDURE_STEP_STATE: ups.element(ups.PROCEDURE_STEP_STATE, ups.SCHEDULED),
    }
    return item


class RuleRunner:
    """Follows the change log's `study-stable` entries for each rule."""

    def __init__(
        self,
        rules: list[WorkitemRule],
        hub: ChangeHub,
        search: SearchService,
        workitems: WorkitemService,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._rules = rules
        self._hub = hub
        self._search = search
        self._workitems = workitems
        self._clock = clock

    async def run(self) -> None:
        await asyncio.gather(*(self._follow(rule) for rule in self._rules))

    async def _follow(self, rule: WorkitemRule) -> None:
        params = [("action", "study-stable"), *parse_qsl(rule.filter, keep_blank_values=True)]
        while True:
            try:
                subscription = await self._hub.open(RULES_CALLER, parse_filter(params), None)
                async for batch in subscription.batches():
                    for change in batch:
                        await asyncio.to_thread(self.make, rule, change.study_uid)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - followed again after a pause
                log.warning("workitem rule %s failed: %s", rule.name, type(exc).__name__)
                await asyncio.sleep(5)

    def make(self, rule: WorkitemRule, study_uid: str) -> str | None:
        """The rule's workitem for the study (None: it exists already, or the study went)."""
        found = self._search.search(
            RULES_CALLER,
            Level.STUDY,
            SearchRequest(
                matches=[Match(STUDY_INSTANCE_UID, "UI", MatchKind.SINGLE, (study_uid,))],
                include_all=True,
            ),
            lambda study, series, instance: "",
        ).results
        if not found:
            return None
        uid = workitem_uid(rule, study_uid)
        try:
            self._workitems.create(RULES_CALLER, workitem_for(rule, found[0], self._clock()), uid)
        except WorkitemRefused as exc:
            if exc.dicom_status == ups.DUPLICATE_INSTANCE:
                return None
            raise
        log.info("workitem rule %s made a workitem for a study", rule.name)
        return uid
