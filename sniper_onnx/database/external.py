"""Import of external latency tables (HW-NAS-Bench / HELP, or any similar CSV) into the database.

Two layouts are read, plain or gzipped:

- wide: one row per network, a network column (an arch string or an ONNX path) and one latency
  column per device (the HW-NAS-Bench table: ``arch_index, arch, 1080ti_1, ...``);
- long: one row per measurement, with ``network``, ``device`` and latency columns.

Each device column or value is described by a :class:`DeviceSpec` from a JSON spec file (the
NAS-Bench-201 devices ship with the package). A network given by a NAS-Bench-201 arch string is
built as a batch-1 weightless skeleton, so it gets the same structure hash as the same network
profiled from an ONNX file; its features come from the committed feature table.

The import is idempotent: every measurement's key is a hash of (network structure, the table's
name for the network, device, value), so importing a table again adds nothing, while a different value for the same pair (a
second source) is kept beside the first. A latency the source reports as 0 or less is kept as a
``failed`` measurement flagged ``non_positive_latency``, and one that is not a number (NaN, inf) as a
``failed`` measurement flagged ``not_a_number_latency``: nothing the table measured is dropped. Only
cells that hold no value (empty, NA, none, null) are skipped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from sniper_onnx.errors import SniperError, read_text

NETWORK_COLUMNS = ("arch", "arch_str", "architecture", "network", "model", "onnx", "model_path", "path")
ID_COLUMNS = ("arch_index", "index", "idx", "id", "network_id", "name")
DEVICE_COLUMNS = ("device", "device_name", "hardware")
UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
# how column names spell the units: "time_sec", "latency_usec" ...
UNIT_SUFFIXES = {**{u: u for u in UNIT_SECONDS}, "sec": "s", "secs": "s", "seconds": "s", "msec": "ms", "millis": "ms",
                 "usec": "us", "µs": "us", "micros": "us", "nsec": "ns"}
LATENCY_COLUMNS = tuple(f"{stem}_{suffix}" for stem in ("latency", "median", "time") for suffix in UNIT_SUFFIXES) + \
    ("latency", "time")
FORMATS = ("auto", "wide", "long")
# cells that hold no value; "nan" is not one of them: a NaN is what the source measured, kept as a failure
MISSING_MARKERS = ("na", "n/a", "none", "null")
ROWS_PER_TRANSACTION = 500
HASH_CHUNK = 64
DEFAULT_SPEC_FILE = Path(__file__).resolve().parent.parent / "data" / "hw_nasbench201_devices.json"
NASBENCH201_RESOLUTION = 32

Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass
class ImportResult:
    """What one import did; ``*_added`` count new rows, so a repeated import shows zeros."""

    table: str
    database: str
    layout: str
    unit: str
    rows: int
    devices: List[str]
    networks_added: int = 0
    networks_seen: int = 0
    devices_added: int = 0
    measurements_added: int = 0
    measurements_seen: int = 0
    non_positive: int = 0  # cells of 0 or less, stored as failed measurements without a latency
    not_a_number: int = 0  # NaN or infinite cells, stored the same way
    missing_values: int = 0  # empty or NA cells: nothing to store
    devices_without_spec: List[str] = field(default_factory=list)
    networks_without_features: int = 0

    def to_json_dict(self) -> Dict[str, object]:
        return asdict(self)


@dataclass
class _Cell:
    row_number: int
    network: str
    device: str
    text: str


def _read_rows(path: Path) -> Tuple[List[str], List[List[str]]]:
    if not path.is_file():
        raise SniperError(f"{path}: no such table file; give the path of a .csv or .csv.gz latency table")
    text = read_text(path, "a comma-separated .csv or .csv.gz latency table", gzip_ok=True)
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row and any(cell.strip() for cell in row)]
    except csv.Error as error:
        raise SniperError(f"{path}: cannot read it as CSV ({error}); give a comma-separated .csv or .csv.gz") from None
    if len(rows) < 2:
        raise SniperError(f"{path}: needs a header row and at least one data row")
    header = [name.strip() for name in rows[0]]
    return header, rows[1:]


def _pick(header: Sequence[str], wanted: Optional[str], candidates: Sequence[str], role: str, path: Path) -> Optional[str]:
    lowered = {name.lower(): name for name in header}
    if wanted:
        if wanted not in header:
            raise SniperError(f"{path}: no {role} column {wanted!r}; columns are {', '.join(header)}")
        return wanted
    return next((lowered[c] for c in candidates if c in lowered), None)


def _unit_of(column: str, unit: Optional[str], path: Path) -> str:
    if unit:
        return unit
    if "_" not in column:  # a bare "latency" or "time": the documented default
        return "ms"
    suffix = column.lower().rsplit("_", 1)[-1]
    if suffix not in UNIT_SUFFIXES:
        raise SniperError(f"{path}: latency column {column!r} names no unit this importer knows; "
                          f"give it with --unit ({', '.join(UNIT_SECONDS)})")
    return UNIT_SUFFIXES[suffix]


def _cells(
    path: Path,
    header: List[str],
    rows: List[List[str]],
    layout: str,
    network_column: Optional[str],
    device_column: Optional[str],
    latency_column: Optional[str],
    devices: Optional[Sequence[str]],
    unit: Optional[str],
) -> Tuple[str, str, List[str], List[_Cell]]:
    network_col = _pick(header, network_column, NETWORK_COLUMNS, "network", path)
    if network_col is None:
        raise SniperError(
            f"{path}: no network column (looked for {', '.join(NETWORK_COLUMNS)}); name it with --network-column"
        )
    device_col = _pick(header, device_column, DEVICE_COLUMNS, "device", path)
    if layout == "auto":
        layout = "long" if device_col else "wide"
    width = len(header)
    for number, row in enumerate(rows, start=2):
        if len(row) != width:
            raise SniperError(f"{path}: row {number} has {len(row)} fields, the header has {width}; fix that row")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise SniperError(f"{path}: column {repeated[0]!r} appears {header.count(repeated[0])} times; "
                          "rename or remove the copies (which one holds the latency is not knowable)")
    index = {name: position for position, name in enumerate(header)}
    if layout == "long":
        if device_col is None:
            raise SniperError(f"{path}: long layout needs a device column (e.g. 'device'); name it with --device-column")
        latency_col = _pick(header, latency_column, LATENCY_COLUMNS, "latency", path)
        if latency_col is None:
            raise SniperError(
                f"{path}: no latency column (looked for latency, time or median with a unit suffix, e.g. latency_ms); "
                "name it with --latency-column"
            )
        cells = [
            _Cell(n, row[index[network_col]].strip(), row[index[device_col]].strip(), row[index[latency_col]].strip())
            for n, row in enumerate(rows, start=2)
        ]
        if devices:
            cells = [cell for cell in cells if cell.device in set(devices)]
        names = sorted({cell.device for cell in cells})
        return layout, _unit_of(latency_col, unit, path), names, cells
    skipped = {network_col.lower(), *ID_COLUMNS}
    names = list(devices) if devices else [name for name in header if name.lower() not in skipped]
    missing = [name for name in names if name not in index]
    if missing:
        raise SniperError(f"{path}: no device column {', '.join(missing)}; columns are {', '.join(header)}")
    if not names:
        raise SniperError(f"{path}: no device latency columns besides {network_col!r}; is this a long table? use --format long")
    cells = [
        _Cell(n, row[index[network_col]].strip(), name, row[index[name]].strip())
        for n, row in enumerate(rows, start=2)
        for name in names
    ]
    return layout, unit or "ms", names, cells


def _latency(cell: _Cell, path: Path) -> Optional[float]:
    """The cell's number (NaN and inf included: the caller stores them as failed), or None for no value."""
    if cell.text == "" or cell.text.lower() in MISSING_MARKERS:
        return None
    try:
        value = float(cell.text)
    except ValueError:
        raise SniperError(
            f"{path}: row {cell.row_number}, device {cell.device!r}: latency {cell.text!r} is not a number; "
            "fix it, or import only the device columns with --device NAME"
        ) from None
    return value


def _load_specs(path: Optional[Path]) -> Dict[str, "DeviceSpec"]:  # noqa: F821
    from sniper_profiler.device import load_device_specs

    path = path or DEFAULT_SPEC_FILE
    try:
        specs = load_device_specs(path)
    except FileNotFoundError:
        raise SniperError(f"{path}: no such device-spec file; give a JSON file of DeviceSpec objects") from None
    except (ValueError, TypeError) as error:
        raise SniperError(f"{path}: not a valid device-spec file ({error}); see docs/devices.md for the format") from None
    return {spec.name: spec for spec in specs}


class _Networks:
    """Resolves a table's network cell (arch string or ONNX path) to a database network, once each."""

    def __init__(self, db, table: Path, result: ImportResult, arch_hashes: Mapping[str, str]) -> None:
        self.db = db
        self.table = table
        self.result = result
        self.arch_hashes = arch_hashes
        self.ids: Dict[str, Tuple[int, str]] = {}
        self._feature_table: Optional[Tuple[Dict[str, int], object, Tuple[str, ...]]] = None

    def id_for(self, network: str, row_number: int) -> Tuple[int, str]:
        """The database id and structure hash of ``network``."""
        if network not in self.ids:
            record = self._add_arch(network) if network.startswith("|") else self._add_onnx(network, row_number)
            self.result.networks_seen += 1
            self.result.networks_added += int(record.added)
            self.result.networks_without_features += int(record.features is None)
            self.ids[network] = (record.id, record.structure_hash)
        return self.ids[network]

    def _nasbench201_features(self, arch: str) -> Optional[Dict[str, float]]:
        if self._feature_table is None:
            from sniper_generator.nasbench201 import load_feature_table

            try:
                archs, matrix, names = load_feature_table()
            except SniperError:
                archs, matrix, names = [], None, ()
            self._feature_table = ({a: row for row, a in enumerate(archs)}, matrix, names)
        rows, matrix, names = self._feature_table
        row = rows.get(arch)
        return None if row is None else dict(zip(names, map(float, matrix[row])))

    def _add_arch(self, arch: str):
        structure = self.arch_hashes.get(arch) or nasbench201_structure_hash(arch, self.table)
        source = {"family": "nasbench201", "arch": arch, "resolution": NASBENCH201_RESOLUTION, "batch": 1,
                  "imported_from": self.table.name}
        # The committed feature table does not record which analyzer computed it: its schema is unknown.
        return self.db.add_network(structure, arch, source, self._nasbench201_features(arch), feature_schema=None)

    def _add_onnx(self, network: str, row_number: int):
        import onnx

        from sniper_onnx.database.hashing import structure_hash

        candidates = [self.table.parent / network, Path(network)]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise SniperError(
                f"{self.table}: row {row_number}: network {network!r} is neither a NAS-Bench-201 arch string nor an "
                f"ONNX file ({_where_looked(network, self.table.parent)}); fix the path"
            )
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        known = self.db.network_for_file(digest)
        if known is not None:
            return known
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as error:  # noqa: BLE001 - any parse failure is the user's file
            raise SniperError(f"{path}: not a readable ONNX model ({error}); re-export it") from None
        record = self.db.add_network(structure_hash(model), path.stem, {"path": str(path), "imported_from": self.table.name},
                                     _onnx_features(model))
        self.db.link_file(digest, record.id, str(path))
        return record


def _where_looked(network: str, table_folder: Path) -> str:
    """Where a relative network path was looked for, each folder named once: the table's folder is
    often the current one."""
    if Path(network).is_absolute():
        return f"no file {network}"
    if table_folder.resolve() == Path.cwd().resolve():
        return "looked in the current folder"
    return f"looked in {table_folder} and the current folder"


def nasbench201_structure_hash(arch: str, table: "Path | None" = None) -> str:
    """The structure hash of the batch-1, 32x32 skeleton of ``arch`` (what a profiled file would get)."""
    from sniper_generator.nasbench201 import build_nasbench201, parse_arch
    from sniper_onnx.database.hashing import structure_hash

    try:
        parse_arch(arch)
    except SniperError as error:
        raise SniperError(f"{table}: {error}" if table else str(error)) from None
    return structure_hash(build_nasbench201(arch, weights=False, resolution=NASBENCH201_RESOLUTION, batch=1))


def _arch_hashes(archs: Sequence[str], table: Path, jobs: int, progress: Optional[Progress]) -> Dict[str, str]:
    """Structure hashes of the table's arch strings, built in ``jobs`` processes: the slow part of an import."""
    if jobs <= 1 or len(archs) < 2 * HASH_CHUNK:
        return {}
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    hashes: Dict[str, str] = {}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        results = pool.map(partial(nasbench201_structure_hash, table=table), archs, chunksize=HASH_CHUNK)
        for done, (arch, structure) in enumerate(zip(archs, results), start=1):
            hashes[arch] = structure
            if progress and (done % HASH_CHUNK == 0 or done == len(archs)):
                progress("hashing networks", done, len(archs))
    return hashes


def _onnx_features(model) -> Optional[Dict[str, float]]:
    """Analyzer features where the analyzer can read the model; the latencies matter more than them."""
    try:
        from sniper_onnx import analyze

        return dict(analyze(model).features)
    except Exception:  # noqa: BLE001 - missing features are filled later; the measurement is kept
        return None


def _record_key(structure: str, network: str, device_id: str, seconds: float) -> str:
    text = json.dumps([structure, network, device_id, repr(float(seconds))], separators=(",", ":"))
    return "ext:" + hashlib.sha256(text.encode()).hexdigest()


def import_latency_table(
    database: "str | Path",
    table: "str | Path",
    *,
    device_specs: "str | Path | None" = None,
    layout: str = "auto",
    unit: Optional[str] = None,
    network_column: Optional[str] = None,
    device_column: Optional[str] = None,
    latency_column: Optional[str] = None,
    devices: Optional[Sequence[str]] = None,
    jobs: int = 1,
    progress: Optional[Progress] = None,
) -> ImportResult:
    """Add every latency of ``table`` to the database at ``database`` (created if absent).

    ``jobs`` > 1 builds and hashes the NAS-Bench-201 skeletons in that many processes first."""
    from sniper_onnx.database.store import Database

    table = Path(table)
    if jobs < 1:  # before the table is read or the database made: a refused import leaves nothing
        raise SniperError(f"--jobs {jobs}: must be at least 1")
    if layout not in FORMATS:
        raise SniperError(f"layout {layout!r}: use one of {', '.join(FORMATS)}")
    if unit is not None and unit not in UNIT_SECONDS:
        raise SniperError(f"unit {unit!r}: use one of {', '.join(UNIT_SECONDS)}")
    header, rows = _read_rows(table)
    layout, unit, names, cells = _cells(table, header, rows, layout, network_column, device_column, latency_column, devices, unit)
    specs = _load_specs(Path(device_specs) if device_specs else None)
    result = ImportResult(table=str(table), database=str(database), layout=layout, unit=unit, rows=len(rows), devices=names)
    with Database(database) as db:
        device_ids = _add_devices(db, names, specs, result)
        archs = sorted({cell.network for cell in cells if cell.network.startswith("|")})
        networks = _Networks(db, table, result, _arch_hashes(archs, table, jobs, progress))
        earlier = _earlier_values(db, table)
        for start in range(0, len(cells), ROWS_PER_TRANSACTION):
            with db.transaction():
                for cell in cells[start:start + ROWS_PER_TRANSACTION]:
                    _add_cell(db, cell, networks, device_ids, unit, table, result, earlier)
            if progress:
                progress("importing latencies", min(start + ROWS_PER_TRANSACTION, len(cells)), len(cells))
    return result


def _add_devices(db, names: Sequence[str], specs: Mapping[str, object], result: ImportResult) -> Dict[str, Tuple[str, int]]:
    from sniper_profiler.device import DeviceSpec

    device_ids: Dict[str, Tuple[str, int]] = {}
    for name in names:
        spec = specs.get(name)
        if spec is None:
            spec = DeviceSpec(name=name, kind="other", description="imported without a spec: every fact unknown")
            result.devices_without_spec.append(name)
        record = db.add_device(spec)
        result.devices_added += int(record.added)
        device_ids[name] = (record.id, int(spec.batch_size))
    return device_ids


def _earlier_values(db, table: Path) -> Dict[Tuple[str, str], float]:
    """(table's network name, device id) -> seconds, of what earlier imports of this table stored."""
    return db.imported_values(f"external:{table.name}")


def _refuse_another_unit(cell: _Cell, seconds: float, earlier: Optional[float], table: Path) -> None:
    """The same table imported again in another unit would sit beside the first import for good
    (each value is its own measurement): refuse a value a power of 1000 away from the stored one."""
    if earlier is None or earlier == seconds:
        return
    exponent = math.log10(seconds / earlier) / 3
    if round(exponent) != 0 and abs(exponent - round(exponent)) < 1e-6:
        raise SniperError(f"{table}: row {cell.row_number}, device {cell.device!r}: {seconds:.6g} s, but an earlier import "
                          f"of this table stored {earlier:.6g} s, {1000 ** abs(round(exponent)):g} times "
                          f"{'more' if exponent < 0 else 'less'}; give the --unit that import used")


def _add_cell(db, cell: _Cell, networks: _Networks, device_ids, unit: str, table: Path, result: ImportResult,
              earlier: Mapping[Tuple[str, str], float]) -> None:
    value = _latency(cell, table)
    if value is None:
        result.missing_values += 1
        return
    network_id, structure = networks.id_for(cell.network, cell.row_number)
    device_id, batch = device_ids[cell.device]
    timed = math.isfinite(value) and value > 0
    if timed:
        _refuse_another_unit(cell, value * UNIT_SECONDS[unit], earlier.get((cell.network, device_id)), table)
    key = _record_key(structure, cell.network, device_id, value * UNIT_SECONDS[unit])
    # the table's own name for the network: NAS-Bench-201 archs that differ only in where a zero
    # node sits build the same graph, so one database network can stand for several of them
    config = {"batch_size": batch, "source_network": cell.network}
    common = dict(config=config, source=f"external:{table.name}", record_key=key)
    if timed:
        record = db.add_measurement(network_id, device_id, value * UNIT_SECONDS[unit], **common)
    else:
        flag, failure = _failure_of(value, cell.text, unit, result)
        record = db.add_measurement(network_id, device_id, None, status="failed", flags=[flag], failure=failure, **common)
    result.measurements_seen += 1
    result.measurements_added += int(record.added)


def _failure_of(value: float, text: str, unit: str, result: ImportResult) -> Tuple[str, Dict[str, object]]:
    """The flag and failure record of a latency that cannot be a time, counted in ``result``."""
    if math.isfinite(value):
        result.non_positive += 1
        return "non_positive_latency", {"reason": "the source table reports a non-positive latency", "value": value,
                                        "unit": unit}
    result.not_a_number += 1
    # the table's text, not the float: JSON has no NaN or inf
    return "not_a_number_latency", {"reason": "the source table reports a latency that is not a number",
                                    "value": text, "unit": unit}
