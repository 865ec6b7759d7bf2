"""What a conversion or an import could not carry over, one line each.

Two severities, because the exit status of `convert-aperture` depends on them:
a `dropped` note means a setting whose effect is lost or changed (the operator
must decide what to do), a `note` is information (an operator step, or a
setting converted to an equivalent that looks different).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    DROPPED = "dropped"
    NOTE = "note"


@dataclass(frozen=True)
class Note:
    severity: Severity
    where: str  # the Aperture setting, e.g. "services[1].constraints"
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.message}"


@dataclass
class Notes:
    """Collects notes in the order the settings were read."""

    items: list[Note] = field(default_factory=list)

    def dropped(self, where: str, message: str) -> None:
        self.items.append(Note(Severity.DROPPED, where, message))

    def note(self, where: str, message: str) -> None:
        self.items.append(Note(Severity.NOTE, where, message))

    @property
    def anything_dropped(self) -> bool:
        return any(n.severity is Severity.DROPPED for n in self.items)
