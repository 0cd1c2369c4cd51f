"""DICOMWEB_WORKITEM_RULES: what a rule is made of, and the workitem it makes."""

from __future__ import annotations

import pytest

from dicomweb_server.dicom import ups
from dicomweb_server.services.workitem_rules import (
    parse_rules,
    workitem_for,
    workitem_uid,
)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"name": "x"}',
        '[{"name": "x", "filter": "modality=CT"}]',
        '[{"name": "x", "filter": "modality=CT", "label": "l", "priority": "URGENT"}]',
        '[{"name": "x", "filter": "action=create", "label": "l"}]',
        '[{"name": "x", "filter": "modality=CT", "label": "l", "code": "only^two"}]',
        '[{"name": "x", "filter": "modality=CT", "label": "l", "colour": "red"}]',
    ],
)
def test_bad_rules_are_refused_at_start(text: str) -> None:
    with pytest.raises(ValueError, match=r"rule|JSON"):
        parse_rules(text)


def test_a_rule_makes_a_complete_workitem_with_a_stable_uid() -> None:
    [rule] = parse_rules(
        '[{"name": "ct", "filter": "modality=CT", "label": "AI triage", "code": "A^99X^AI"}]'
    )
    study = {"0020000D": {"vr": "UI", "Value": ["1.2.3"]}, "00100020": {"vr": "LO", "Value": ["P"]}}
    made = workitem_for(rule, study, 0.0)
    assert ups.missing_for_create(made) == []
    assert made["00404018"]["Value"][0]["00080100"]["Value"] == ["A"]
    assert workitem_uid(rule, "1.2.3") == workitem_uid(rule, "1.2.3") != workitem_uid(rule, "1.2.4")
    assert len(workitem_uid(rule, "1.2.3")) <= 64
