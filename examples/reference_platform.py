"""A simulation platform whose true times are measured: the reference dataset's zoo networks at 224
on its four device configurations, with the zoo exported weightless so the shipped predictor can
predict them (docs/scheduling.md, "Predictor in the loop").

    python examples/reference_platform.py --table data/reference/work/train.csv --out /tmp/refplat
    sniper-onnx simulate --platform /tmp/refplat/platform.json --models /tmp/refplat/models --rates 300,400 --seeds 3 \
        --policies polling,edf,mvsp-free,sniper-idle,sniper,mct-oracle --per-device

Writes OUT/platform.json (true_times from the table's latency_s; predictor_devices mapping each
device type to its configuration) and OUT/models/<network>.onnx.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

RESOLUTION = 224
# device type in the platform -> (configuration in the table and the shipped predictor, node count)
DEVICE_TYPES = {
    "H200": ("NVIDIA H200 | cuda fp32 t16 opt-all", 1),
    "EPYC-2T": ("AMD EPYC | cpu fp32 t2 opt-all", 2),
    "EPYC-1T": ("AMD EPYC | cpu fp32 t1 opt-all", 4),
}


def measured_zoo_times(table: Path) -> dict[str, dict[str, float]]:
    """network -> device type -> measured seconds, for the zoo networks at RESOLUTION."""
    type_of = {config: kind for kind, (config, _) in DEVICE_TYPES.items()}
    times: dict[str, dict[str, float]] = {}
    with open(table, newline="") as handle:
        for row in csv.DictReader(handle):
            name, _, resolution = row["network_name"].partition("@")
            if resolution == str(RESOLUTION) and row["device_name"] in type_of:
                times.setdefault(name, {})[type_of[row["device_name"]]] = float(row["latency_s"])
    return {name: by_type for name, by_type in sorted(times.items()) if len(by_type) == len(DEVICE_TYPES)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, required=True, help="the reference dataset's train.csv")
    parser.add_argument("--out", type=Path, required=True, help="folder for platform.json and models/")
    args = parser.parse_args()
    times = measured_zoo_times(args.table)
    if not times:
        sys.exit(f"{args.table}: no zoo network at {RESOLUTION} measured on every configuration of {list(DEVICE_TYPES)}")
    from sniper_generator.zoo import export_zoo_to_file

    models = args.out / "models"
    models.mkdir(parents=True, exist_ok=True)
    for name in times:  # weightless: the predictor reads only the structure
        export_zoo_to_file(name, models / f"{name}.onnx", RESOLUTION, weights=False)
    platform = {
        "name": "reference-zoo",
        "devices": {kind: count for kind, (_, count) in DEVICE_TYPES.items()},
        "true_times": times,
        "predictor_devices": {kind: config for kind, (config, _) in DEVICE_TYPES.items()},
    }
    (args.out / "platform.json").write_text(json.dumps(platform, indent=1) + "\n")
    print(f"{len(times)} networks; {args.out / 'platform.json'}, {models}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
