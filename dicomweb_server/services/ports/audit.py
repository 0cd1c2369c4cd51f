"""The audit port: the audit table, which keeps messages and answers GET /audit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class KeptAuditMessage:
    number: int  # increasing: where the next page starts
    at: float
    message: dict[str, Any]  # the PS3.15 A.5.1 form (services.audit.as_dict)


class AuditLog(Protocol):
    name: str

    def write(self, messages: list[Any]) -> None: ...

    def events(
        self, after: int, since: float | None, study: str | None, limit: int
    ) -> list[KeptAuditMessage]:
        """Kept messages numbered past `after`, at or after `since`, naming `study` when
        given, oldest first."""

    def close(self) -> None: ...
