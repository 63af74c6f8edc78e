"""The JSONL results file: append-only and durable, so a kill loses at most the model in flight.

Each record is one line written with a single ``write``, then flushed and fsynced. A kill in the
middle of a write can leave a truncated last line; readers skip it (it is never deleted) and the
next append starts on a fresh line.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

from sniper_profiler.config import GPU_PROVIDERS

RECORD_SCHEMA = "sniper-profiler/1"
SCHEMA_FAMILY = "sniper-profiler/"

# Records of a protocol later found to bias them: a resumed run measures their models again, and
# `sniper-onnx db import` stores them with this flag (nothing measured is thrown away).
CONTENDED_SESSIONS_FLAG = "contended_sessions"


def contended_sessions(record: Dict[str, Any]) -> bool:
    """A CPU record with intra-op threads timed in several sessions. Each session kept its own
    worker threads, and the idle ones spun and slowed the timed session up to 2x
    (docs/profiler.md); the profiler now times such configurations in one session."""
    config, stats = record.get("config") or {}, record.get("stats") or {}
    return (config.get("provider") not in GPU_PROVIDERS and config.get("threads", 0) != 1
            and (stats.get("sessions") or 1) > 1)


@dataclass
class ResultsFile:
    records: List[Dict[str, Any]] = field(default_factory=list)
    unreadable_lines: List[int] = field(default_factory=list)  # 1-based line numbers
    newer_schema_lines: List[int] = field(default_factory=list)  # records of a later sniper-profiler

    def keys(self, include_failed: bool = True, include_busy: bool = True) -> set:
        """Keys of the models done: biased records (contended_sessions) are not, nor, without
        ``include_busy``, those measured while other work ran (flagged machine_busy)."""
        return {r["key"] for r in self.records
                if (include_failed or r.get("status") == "ok") and not contended_sessions(r)
                and (include_busy or "machine_busy" not in (r.get("flags") or ()))}


def append_record(path: "str | Path", record: Dict[str, Any]) -> None:
    line = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
    new_file = not Path(path).exists() or Path(path).stat().st_size == 0
    with open(path, "ab") as handle:
        if handle.tell() > 0 and not _ends_with_newline(path):
            line = "\n" + line
        handle.write(line.encode())
        handle.flush()
        os.fsync(handle.fileno())
    if new_file:
        _fsync_folder(Path(path).resolve().parent)  # the file's directory entry must survive too


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _ends_with_newline(path: "str | Path") -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def read_records(path: "str | Path") -> ResultsFile:
    result = ResultsFile()
    if not Path(path).exists():
        return result
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                result.unreadable_lines.append(number)
                continue
            if isinstance(record, dict) and record.get("schema") == RECORD_SCHEMA and "key" in record:
                result.records.append(record)
            elif isinstance(record, dict) and str(record.get("schema", "")).startswith(SCHEMA_FAMILY):
                result.newer_schema_lines.append(number)
            else:
                result.unreadable_lines.append(number)
    return result


def is_results_file(path: "str | Path") -> bool:
    """Whether appending records to ``path`` is safe: it is empty, or its first line is a
    sniper-profiler record (or the start of one, cut short by a kill, with a record after it)."""
    with open(path, "rb") as handle:
        lines = (line for line in iter(lambda: handle.readline(1 << 22), b"") if line.strip())
        first = next(lines, None)
        if first is None:
            return True
        try:
            record = json.loads(first)
        except ValueError:  # a first record cut short by a kill: the next append started a new line
            following = next(lines, None)
            return first.lstrip().startswith(b'{"') and (following is None or _is_record(following))
        return _is_record(record)


def _is_record(line: "bytes | Any") -> bool:
    if isinstance(line, bytes):
        try:
            line = json.loads(line)
        except ValueError:
            return False
    return isinstance(line, dict) and str(line.get("schema", "")).startswith(SCHEMA_FAMILY)


def file_sha256(path: "str | Path") -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stable_hash(value: Any, length: int = 16) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]

