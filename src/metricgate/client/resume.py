"""The client's resume record: which upload session a local file or directory is going into.

Kept under ``$XDG_CACHE_HOME/metricgate/uploads`` (``~/.cache/...``), never next to the data (a
checkpoint directory may be read-only or shared). The record is keyed by server, run, destination
and absolute source path, and remembers each file's size and mtime: a changed source starts a new
session instead of mixing old and new parts. The server, not this record, says which parts it has.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from metricgate.config import cache_home


def default_state_dir() -> Path:
    return cache_home() / "metricgate" / "uploads"


@dataclass(frozen=True)
class SourceFile:
    rel_path: str  # relative to the uploaded directory; "" for a single file
    abs_path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class ResumeRecord:
    upload_id: str
    part_size: int
    files: list[SourceFile]

    def matches(self, files: list[SourceFile]) -> bool:
        return [asdict(f) for f in self.files] == [asdict(f) for f in files]


class ResumeStore:
    def __init__(
        self, state_dir: Path | None, *, base_url: str, run_id: str, dest: str, source: Path
    ) -> None:
        key = "\n".join([base_url.rstrip("/"), run_id, dest, str(source.resolve())])
        self.path = (state_dir or default_state_dir()) / (
            hashlib.sha256(key.encode()).hexdigest()[:32] + ".json"
        )

    def load(self) -> ResumeRecord | None:
        try:
            raw = json.loads(self.path.read_text())
            return ResumeRecord(
                raw["upload_id"], int(raw["part_size"]), [SourceFile(**f) for f in raw["files"]]
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None  # no record, or one we cannot read: start a new session

    def save(self, record: ResumeRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(record)))
        # Renamed into place so a client killed mid-write leaves the old record or the new one.
        os.replace(tmp, self.path)

    def clear(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
