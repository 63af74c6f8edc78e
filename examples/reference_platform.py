"""A simulation platform whose true times are measured: the reference dataset's zoo networks at 224
on its four device configurations, with the zoo exported weightless so the shipped predictor can
predict them (docs/scheduling.md, "Predictor in the loop").

    python examples/reference_platform.py --out /tmp/refplat
    sniper-onnx simulate --platform /tmp/refplat/platform.json --models /tmp/refplat/models --rates 300,400 --seeds 3 \
        --policies polling,edf,mvsp-free,sniper-idle,sniper,mct-oracle --per-device

--table defaults to the committed data/reference/train.csv.gz (a table `sniper-onnx db export` wrote,
.csv or .csv.gz). Writes OUT/platform.json (true_times from the table's latency_s; predictor_devices
mapping each device type to its configuration) and OUT/models/<network>.onnx.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path

from sniper_onnx.errors import SniperError, read_text

RESOLUTION = 224
# device type in the platform -> (configuration in the table and the shipped predictor, node count)
DEVICE_TYPES = {
    "H200": ("NVIDIA H200 | cuda fp32 t16 opt-all", 1),
    "EPYC-2T": ("AMD EPYC | cpu fp32 t2 opt-all", 2),
    "EPYC-1T": ("AMD EPYC | cpu fp32 t1 opt-all", 4),
}
DEFAULT_TABLE = Path(__file__).resolve().parents[1] / "data" / "reference" / "train.csv.gz"
COLUMNS = ("network_name", "device_name", "latency_s")
TABLE_HINT = "a .csv or .csv.gz training table written by `sniper-onnx db export`"


def _rows(table: Path) -> csv.DictReader:
    if not table.is_file():
        raise SniperError(f"{table}: no such table; give {TABLE_HINT}")
    rows = csv.DictReader(io.StringIO(read_text(table, TABLE_HINT, gzip_ok=True), newline=""))
    missing = [name for name in COLUMNS if name not in (rows.fieldnames or ())]
    if missing:
        raise SniperError(f"{table}: no column {', '.join(missing)}; give {TABLE_HINT}")
    return rows


def _seconds(table: Path, line: int, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise SniperError(f"{table}:{line}: latency_s {text!r} is not a positive number of seconds")
    return value


def measured_zoo_times(table: Path) -> dict[str, dict[str, float]]:
    """network -> device type -> measured seconds, for the zoo networks at RESOLUTION."""
    type_of = {config: kind for kind, (config, _) in DEVICE_TYPES.items()}
    times: dict[str, dict[str, float]] = {}
    for line, row in enumerate(_rows(Path(table)), start=2):
        name, _, resolution = (row["network_name"] or "").partition("@")
        if resolution == str(RESOLUTION) and row["device_name"] in type_of:
            times.setdefault(name, {})[type_of[row["device_name"]]] = _seconds(Path(table), line, row["latency_s"])
    return {name: by_type for name, by_type in sorted(times.items()) if len(by_type) == len(DEVICE_TYPES)}


def _write_platform(table: Path, out: Path) -> str:
    """Writes OUT/platform.json and OUT/models/; what was written, in one line."""
    if out.exists() and not out.is_dir():
        raise SniperError(f"--out {out}: exists and is not a folder; give a folder for platform.json and models/")
    times = measured_zoo_times(table)
    if not times:
        raise SniperError(f"{table}: no zoo network at {RESOLUTION} measured on every configuration of {list(DEVICE_TYPES)}")
    from sniper_generator.zoo import export_zoo_to_file

    models = out / "models"
    models.mkdir(parents=True, exist_ok=True)
    for name in times:  # weightless: the predictor reads only the structure
        export_zoo_to_file(name, models / f"{name}.onnx", RESOLUTION, weights=False)
    platform = {
        "name": "reference-zoo",
        "devices": {kind: count for kind, (_, count) in DEVICE_TYPES.items()},
        "true_times": times,
        "predictor_devices": {kind: config for kind, (config, _) in DEVICE_TYPES.items()},
    }
    (out / "platform.json").write_text(json.dumps(platform, indent=1) + "\n")
    return f"{len(times)} networks; {out / 'platform.json'}, {models}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE,
                        help="a db export table, .csv or .csv.gz (default: the committed reference train.csv.gz)")
    parser.add_argument("--out", type=Path, required=True, help="folder for platform.json and models/")
    args = parser.parse_args()
    try:
        print(_write_platform(args.table, args.out))
    except SniperError as error:  # bad input: one line, as argparse says its own errors
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # --out in a read-only place, a full disk
        print(f"{parser.prog}: error: {error.filename or args.out}: {error.strerror or error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
