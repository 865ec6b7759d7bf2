"""What `import-aperture` can be asked to do (light: the CLI parser reads it at start-up)."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

SOURCE = "aperture"  # the store's `source` of imported keys, unless --source-name says otherwise
SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
PAGE_ROWS = 1000  # rows read, and keys written in one store transaction, at a time


class OnError(StrEnum):
    """A bad row: SKIP it (reported) and go on, or STOP the import there."""

    SKIP = "skip"
    STOP = "stop"


@dataclass(frozen=True)
class ImportOptions:
    route_names: Collection[str]
    on_error: OnError = OnError.SKIP
    sync_revocations: bool = False
    source_name: str = SOURCE
    page_rows: int = PAGE_ROWS
