"""``db export``: the predictors' training table as CSV.

One row per (network, device): the network's features, the device's hardware features (recomputed
from its stored spec, so they follow the current :data:`DEVICE_FEATURE_NAMES`) and the latency,
the median over that pair's successful measurements of each one's `--statistic` (default: its median),
then how to re-make the network and the feature schema that computed its features.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import stat
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator, Optional, Sequence

from sniper_onnx.database.store import Database, DeviceRecord, _median_of
from sniper_onnx.errors import SniperError
from sniper_profiler.device import DEVICE_FEATURE_NAMES, DeviceSpec

ID_COLUMNS = ("network_id", "network_name", "structure_hash", "device_id", "device_name")
# How to re-make the network (generator spec, zoo name or file): the kernel-sum path's trainer needs
# every layer node, which the feature columns have summed away.
SOURCE_COLUMN = "network_source"
# Which analyzer feature schema computed the row's network features (blank: unknown, stored before
# the database recorded it), so `train` records the schema the features really have.
FEATURE_SCHEMA_COLUMN = "feature_schema"
TARGET_COLUMNS = ("latency_s", "measurements", "runs")
DEVICE_PREFIX = "device_"
# Flags the profiler sets (and contended_sessions, which the importer sets: importer.protocol_flags);
# measurements with any of them can be left out with exclude_flags.
KNOWN_FLAGS = ("nan_outputs", "inf_outputs", "denormal_outputs", "ci_target_not_reached", "machine_busy", "contended_sessions",
               "precision_mismatch", "symbolic_dims_defaulted")
# A precision_mismatch time belongs to another precision than its device configuration's: training on
# it would teach the configuration a second precision's speed.
ALWAYS_EXCLUDED_FLAGS = ("contended_sessions", "precision_mismatch")
# -o spellings that name an open descriptor, not a file: even when it is redirected to a regular
# file, a temporary name beside /dev/stdout and a rename over it would replace the link itself
DESCRIPTOR_ALIASES = ("/dev/stdout", "/dev/stderr")
DESCRIPTOR_FOLDERS = ("/dev/fd/", "/proc/self/fd/")


@dataclass
class ExportSummary:
    path: str
    rows: int
    skipped_without_features: int
    network_feature_names: list[str] = field(default_factory=list)
    device_feature_names: list[str] = field(default_factory=list)
    left_out_by_flag: dict[str, int] = field(default_factory=dict)  # measurements, per flag that left them out
    left_out_without_statistic: int = 0  # measurements that lack the --statistic asked for


def network_feature_names(feature_dicts: list[dict]) -> list[str]:
    try:
        from sniper_onnx.analysis import FEATURE_NAMES

        names = list(FEATURE_NAMES)
    except ImportError:
        names = []
    extra = sorted({key for features in feature_dicts for key in features} - set(names))
    return names + extra


def _source_json(stored: str, path: Optional[str]) -> str:
    source = json.loads(stored or "{}")
    if path and source.get("kind") not in ("generator", "zoo"):
        source = {**source, "kind": source.get("kind") or "file", "path": path}
    return json.dumps(source, sort_keys=True, separators=(",", ":"))


def export_csv(
    db: Database, out: "str | Path", device_ids: Optional[list[str]] = None, exclude_flags: Sequence[str] = (),
    statistic: str = "median",
) -> ExportSummary:
    out = Path(out)
    if str(out) != "-":  # stdout: nothing there to protect
        _check_writable_export(out, db.path)
    # Always left out: a biased protocol's numbers (kept in the database, superseded by re-measurements).
    excluded = sorted({*exclude_flags, *ALWAYS_EXCLUDED_FLAGS})
    if device_ids:
        device_ids = resolve_devices(db, device_ids)
    rows = list(db.latency_rows(excluded, statistic))
    if device_ids:
        rows = [row for row in rows if row["device_id"] in device_ids]
    with_features = [row for row in rows if row["features"]]
    features = {row["network_id"]: json.loads(row["features"]) for row in with_features}
    names = network_feature_names(list(features.values()))
    specs = {d.id: d.spec for d in db.devices()}
    header = [*ID_COLUMNS, *names, *(DEVICE_PREFIX + n for n in DEVICE_FEATURE_NAMES), *TARGET_COLUMNS, SOURCE_COLUMN, FEATURE_SCHEMA_COLUMN]
    paths = db.network_paths()
    with _csv_target(out) as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in with_features:
            network = features[row["network_id"]]
            device_vector = DeviceSpec.features(specs[row["device_id"]])
            writer.writerow([
                row["network_id"], row["network_name"], row["structure_hash"], row["device_id"], row["device_name"],
                *(network.get(name, "") for name in names), *device_vector,
                repr(_median_of(row["latencies"])), row["measurements"], row["runs"] or "",
                _source_json(row["network_source"], paths.get(row["network_id"])), row["feature_schema"] or "",
            ])
    return ExportSummary(str(out), len(with_features), len(rows) - len(with_features), names, list(DEVICE_FEATURE_NAMES),
                         db.flagged_counts(excluded, device_ids), db.count_without_statistic(statistic, device_ids))


def resolve_devices(db: Database, wanted: Sequence[str]) -> list[str]:
    """The ids of the devices ``wanted`` names, each an id, a name, or a part of a name or id that
    only one device holds (as `predict -d` takes them), in the order given, without repeats."""
    devices = db.devices()
    ids = [_resolve_device(devices, text, db.path) for text in wanted]
    return list(dict.fromkeys(ids))


def _resolve_device(devices: Sequence[DeviceRecord], wanted: str, db_path: Path) -> str:
    if any(d.id == wanted for d in devices):
        return wanted
    hint = f"see `sniper-onnx db stats --db {shlex.quote(str(db_path))}`"
    if not wanted.strip():  # "" is part of every name: it would match them all
        raise SniperError(f"--device {wanted!r}: empty; give a device id, a name or a part of one ({hint})")
    holders = [d for d in devices if d.name == wanted] or _holders(devices, wanted)
    if len(holders) == 1:
        return holders[0].id
    if not holders:
        raise SniperError(f"--device {wanted!r}: no such device in {db_path} (no id or name holds it); {hint}")
    listed = ", ".join(f"{d.id} ({d.name})" for d in holders)
    raise SniperError(f"--device {wanted!r}: matches {len(holders)} devices in {db_path}: {listed}; "
                      "give more of the name, or the id")


def _holders(devices: Sequence[DeviceRecord], wanted: str) -> list[DeviceRecord]:
    """Devices whose name or id holds ``wanted``, by the rule `predict -d` uses (whole words first)."""
    from sniper_onnx.matching import names_holding

    holding = set(names_holding(wanted, [text for d in devices for text in (d.name, d.id)]))
    return [d for d in devices if d.name in holding or d.id in holding]


def is_stream(out: Path) -> bool:
    """Whether ``out`` is written in place, as a stream: ``-`` (stdout), a descriptor alias such as
    /dev/stdout, or an existing path that is not a regular file (a terminal, a FIFO). Told by stat,
    which never opens the path, so a FIFO with no writer yet cannot block it."""
    if str(out) == "-":
        return True
    spelled = os.path.abspath(out)  # not resolved: /dev/stdout resolves to whatever fd 1 is
    if spelled in DESCRIPTOR_ALIASES or spelled.startswith(DESCRIPTOR_FOLDERS):
        return True
    try:
        mode = os.stat(out).st_mode
    except FileNotFoundError:  # a new file
        return False
    # a block device or a socket is no place for a CSV: the file checks refuse it
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def writes_to_stdout(out: Path) -> bool:
    """Whether ``out`` spells stdout: ``-`` or one of its descriptor aliases."""
    return str(out) == "-" or os.path.abspath(out) in ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")


@contextmanager
def _csv_target(out: Path) -> Iterator[IO[str]]:
    """A text handle for the CSV. A regular file is written to a temporary name and renamed, so a
    reader never sees half a file; a stream has no name to rename onto, so it is written directly."""
    if str(out) == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    if is_stream(out):  # appended: /dev/stdout of `>> log` reopened with "w" would truncate the log
        with open(out, "a", newline="") as handle:
            yield handle
        return
    temporary = out.with_name(out.name + ".tmp")
    with open(temporary, "w", newline="") as handle:
        yield handle
    temporary.replace(out)


def _check_writable_export(out: Path, db_path: "str | Path") -> None:
    """Refuse an output that would destroy measurements: the database itself, or any file that is
    not an earlier export (a results file, another database)."""
    from sniper_onnx.outputs import check_output_file, is_same_file

    if is_stream(out):  # never read back (a FIFO would block), and its folder (/dev) need not be writable
        _check_writable_stream(out, db_path)
        return
    check_output_file(out, "-o")
    if not out.exists():
        return
    if is_same_file(out, db_path):
        raise SniperError(f"{out}: is the database being exported; give another -o path")
    with open(out, "rb") as handle:
        first = handle.read(len(ID_COLUMNS[0]) + 1)
    if first != f"{ID_COLUMNS[0]},".encode():
        raise SniperError(f"{out}: exists and is not an earlier `db export` CSV; give another -o path "
                          "(nothing is overwritten that may hold measurements)")


def _check_writable_stream(out: Path, db_path: "str | Path") -> None:
    from sniper_onnx.outputs import is_same_file

    if not out.exists():  # /dev/fd/N of a descriptor that is not open
        raise SniperError(f"-o {out}: no such file or open descriptor; give a file path, or - for stdout")
    if is_same_file(out, db_path):  # /dev/stdout redirected onto the database
        raise SniperError(f"{out}: is the database being exported; give another -o path")
    if not os.access(out, os.W_OK):
        raise SniperError(f"-o {out}: not writable; choose another path")
    # an alias of a descriptor redirected with >> onto a file that holds something (a results file,
    # an earlier export) would get the CSV appended to it; a regular file can be checked, not a FIFO
    if stat.S_ISREG(os.stat(out).st_mode) and os.stat(out).st_size > 0:
        raise SniperError(f"-o {out}: it is appended to a file that is not empty ({os.path.realpath(out)}); "
                          "redirect with > to an empty file, or give -o a file path")
