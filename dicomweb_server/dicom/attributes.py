"""Which attributes belong to which query level, and what QIDO-RS always returns.

Return keys follow PS3.18 Tables 10.6.3-3 (study), 10.6.3-4 (series) and 10.6.3-5 (instance).
Level membership follows the Patient/Study/Series/Instance information model (PS3.3 A.1.2):
it decides which attributes the index keeps on the study and series rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword


class Level(StrEnum):
    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


SPECIFIC_CHARACTER_SET = 0x00080005
SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
STUDY_DATE = 0x00080020
STUDY_TIME = 0x00080030
ACCESSION_NUMBER = 0x00080050
INSTANCE_AVAILABILITY = 0x00080056
MODALITY = 0x00080060
MODALITIES_IN_STUDY = 0x00080061
SOP_CLASSES_IN_STUDY = 0x00080062
REFERRING_PHYSICIAN_NAME = 0x00080090
TIMEZONE_OFFSET_FROM_UTC = 0x00080201
RETRIEVE_URL = 0x00081190
STUDY_DESCRIPTION = 0x00081030
SERIES_DESCRIPTION = 0x0008103E
PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020
PATIENT_BIRTH_DATE = 0x00100030
PATIENT_SEX = 0x00100040
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
STUDY_ID = 0x00200010
SERIES_NUMBER = 0x00200011
INSTANCE_NUMBER = 0x00200013
NUMBER_OF_STUDY_RELATED_SERIES = 0x00201206
NUMBER_OF_STUDY_RELATED_INSTANCES = 0x00201208
NUMBER_OF_SERIES_RELATED_INSTANCES = 0x00201209
NUMBER_OF_FRAMES = 0x00280008
ROWS = 0x00280010
COLUMNS = 0x00280011
BITS_ALLOCATED = 0x00280100
PPS_START_DATE = 0x00400244
PPS_START_TIME = 0x00400245
REQUEST_ATTRIBUTES_SEQUENCE = 0x00400275

# PS3.18 Table 10.6.3-3
STUDY_RETURN_KEYS: tuple[int, ...] = (
    SPECIFIC_CHARACTER_SET,
    STUDY_DATE,
    STUDY_TIME,
    ACCESSION_NUMBER,
    INSTANCE_AVAILABILITY,
    MODALITIES_IN_STUDY,
    REFERRING_PHYSICIAN_NAME,
    TIMEZONE_OFFSET_FROM_UTC,
    RETRIEVE_URL,
    PATIENT_NAME,
    PATIENT_ID,
    PATIENT_BIRTH_DATE,
    PATIENT_SEX,
    STUDY_INSTANCE_UID,
    STUDY_ID,
    NUMBER_OF_STUDY_RELATED_SERIES,
    NUMBER_OF_STUDY_RELATED_INSTANCES,
)
# PS3.18 Table 10.6.3-4
SERIES_RETURN_KEYS: tuple[int, ...] = (
    SPECIFIC_CHARACTER_SET,
    MODALITY,
    TIMEZONE_OFFSET_FROM_UTC,
    SERIES_DESCRIPTION,
    RETRIEVE_URL,
    SERIES_INSTANCE_UID,
    SERIES_NUMBER,
    NUMBER_OF_SERIES_RELATED_INSTANCES,
    PPS_START_DATE,
    PPS_START_TIME,
    REQUEST_ATTRIBUTES_SEQUENCE,
)
# PS3.18 Table 10.6.3-5
INSTANCE_RETURN_KEYS: tuple[int, ...] = (
    SPECIFIC_CHARACTER_SET,
    SOP_CLASS_UID,
    SOP_INSTANCE_UID,
    INSTANCE_AVAILABILITY,
    TIMEZONE_OFFSET_FROM_UTC,
    RETRIEVE_URL,
    INSTANCE_NUMBER,
    ROWS,
    COLUMNS,
    BITS_ALLOCATED,
    NUMBER_OF_FRAMES,
)
RETURN_KEYS: dict[Level, tuple[int, ...]] = {
    Level.STUDY: STUDY_RETURN_KEYS,
    Level.SERIES: SERIES_RETURN_KEYS,
    Level.INSTANCE: INSTANCE_RETURN_KEYS,
}

_EVERY_LEVEL = frozenset({SPECIFIC_CHARACTER_SET, TIMEZONE_OFFSET_FROM_UTC})

# PS3.3 C.7.2.1 General Study, C.7.2.2 Patient Study (with the Patient module, group 0010).
_STUDY_TAGS = frozenset(
    {
        STUDY_DATE,
        STUDY_TIME,
        ACCESSION_NUMBER,
        0x00080051,
        REFERRING_PHYSICIAN_NAME,
        0x00080096,
        STUDY_DESCRIPTION,
        0x00081032,
        0x00081048,
        0x00081049,
        0x00081060,
        0x00081062,
        0x00081080,
        0x00081084,
        0x00081110,
        STUDY_INSTANCE_UID,
        STUDY_ID,
        0x00321032,
        0x00321033,
        0x00321060,
        0x00321064,
        0x00380010,
        0x00380014,
        0x00400031,
        0x00401001,
    }
)
# PS3.3 C.7.3.1 General Series, C.7.5.1 General Equipment.
_SERIES_TAGS = frozenset(
    {
        0x00080021,
        0x00080031,
        MODALITY,
        0x00080070,
        0x00080080,
        0x00080081,
        0x00081010,
        SERIES_DESCRIPTION,
        0x00081040,
        0x00081050,
        0x00081052,
        0x00081070,
        0x00081072,
        0x00081090,
        0x00081111,
        0x00180015,
        0x00181000,
        0x00181020,
        0x00181030,
        0x00185100,
        SERIES_INSTANCE_UID,
        SERIES_NUMBER,
        0x00200052,
        0x00200060,
        0x00400244,
        0x00400245,
        0x00400253,
        0x00400254,
        0x00400260,
        REQUEST_ATTRIBUTES_SEQUENCE,
    }
)


def level_of(tag: int) -> Level:
    """The information-model level an attribute belongs to."""
    if tag >> 16 == 0x0010 or tag in _STUDY_TAGS:
        return Level.STUDY
    if tag in _SERIES_TAGS:
        return Level.SERIES
    return Level.INSTANCE


def keeps_at(tag: int, level: Level) -> bool:
    """Whether the study or series row keeps this attribute (for includefield)."""
    return tag in _EVERY_LEVEL or level_of(tag) is level


def levels_above(level: Level) -> tuple[Level, ...]:
    """The level itself and the levels above it, top first."""
    order = (Level.STUDY, Level.SERIES, Level.INSTANCE)
    return order[: order.index(level) + 1]


def vr_of(tag: int) -> str:
    try:
        return str(dictionary_VR(tag)).split(" or ")[0]
    except KeyError:
        return "UN"


def keyword_of(tag: int) -> str:
    return str(keyword_for_tag(tag)) or f"{tag:08X}"


def tag_of_keyword(keyword: str) -> int | None:
    tag = tag_for_keyword(keyword)
    return None if tag is None else int(tag)


@dataclass(frozen=True)
class Aggregates:
    """What an archive counts and collects of a study (and a series) as instances arrive:
    the computed attributes of PS3.18 Tables 10.6.3-3 and 10.6.3-4 (PS3.4 C.3.4)."""

    modalities_in_study: list[str]
    sop_classes_in_study: list[str]
    study_related_series: int
    study_related_instances: int
    series_related_instances: int | None = None

    def to_json(self) -> dict[str, dict[str, object]]:
        """The DICOM JSON of these attributes, each in its dictionary VR."""
        values: dict[int, list[str] | list[int]] = {
            MODALITIES_IN_STUDY: self.modalities_in_study,
            SOP_CLASSES_IN_STUDY: self.sop_classes_in_study,
            NUMBER_OF_STUDY_RELATED_SERIES: [self.study_related_series],
            NUMBER_OF_STUDY_RELATED_INSTANCES: [self.study_related_instances],
        }
        if self.series_related_instances is not None:
            values[NUMBER_OF_SERIES_RELATED_INSTANCES] = [self.series_related_instances]
        out: dict[str, dict[str, object]] = {}
        for tag, held in values.items():
            element: dict[str, object] = {"vr": vr_of(tag)}
            if held:
                element["Value"] = held
            out[f"{tag:08X}"] = element
        return out
