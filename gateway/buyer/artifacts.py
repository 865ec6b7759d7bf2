"""summary.json (pretty, replaced atomically) and events.jsonl (appended as it happens).

Shared by the EP212 runner and the Payment session runner. An event line is
`{ts, stage, requestId, status, details}`; nothing secret goes in (callers
pass proof references, never preimages or credentials).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class Artifacts:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.summary_path = directory / "summary.json"
        self.events_path = directory / "events.jsonl"
        self.events_path.write_text("", encoding="utf-8")

    def event(self, stage: str, request_id: str, status: str, details: dict[str, Any]) -> None:
        ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        line = {
            "ts": ts,
            "stage": stage,
            "requestId": request_id,
            "status": status,
            "details": details,
        }
        with self.events_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, sort_keys=False) + "\n")

    def summary(self, summary: dict[str, Any]) -> None:
        tmp = self.summary_path.with_name(f".{self.summary_path.name}.tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.summary_path)
