"""Sizes of single convolutions: the random families against the zoo's big nets (docs/generator.md,
"Node sizes: the cnn-wide family").

    .venv/bin/python benchmarks/bench_node_sizes.py [--mixed 400] [--wide 100] [--seed 2026]

Whole-graph features can match a zoo network while its single kernels lie outside anything the
training nets hold. This counts, for every Conv node, its MACs and output elements, in the first
--mixed nets of the `mixed` family and the first --wide nets of `cnn-wide` (the reference dataset's
seed), and reports where VGG-16/19 and ResNet-50 at 224 and 448 fall against them: the share of their
convs above the mixed nets' 99th percentile, and whether every one lies inside the cnn-wide range.
Weightless skeletons only; about a minute.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

ZOO_NETS = ("vgg16", "vgg19", "resnet50")
RESOLUTIONS = (224, 448)


def conv_sizes(model) -> np.ndarray:
    """(MACs, output elements) of each Conv node, one row per node."""
    from sniper_onnx import analyze

    rows = [(node.macs, int(np.prod(node.output_shapes[0])))
            for node in analyze(model).nodes if node.op_type == "Conv" and node.shapes_known]
    return np.array(rows, dtype=np.float64).reshape(-1, 2)


def family_sizes(family: str, count: int, seed: int) -> np.ndarray:
    from sniper_generator.spec import materialize, sample_spec

    tables = [conv_sizes(materialize(sample_spec(seed, i, family), weights=False)) for i in range(count)]
    return np.concatenate(tables)


def _log2_quantiles(values: np.ndarray) -> dict:
    logs = np.log2(values)
    return {"median": round(float(np.median(logs)), 1), "q99": round(float(np.quantile(logs, 0.99)), 1),
            "max": round(float(logs.max()), 1)}


def compare(mixed_count: int, wide_count: int, seed: int) -> dict:
    from sniper_generator.zoo import export_zoo_model

    mixed = family_sizes("mixed", mixed_count, seed)
    wide = family_sizes("cnn-wide", wide_count, seed)
    mixed_q99 = np.quantile(mixed, 0.99, axis=0)
    report = {"mixed": {"nets": mixed_count, "convs": len(mixed), "log2_macs": _log2_quantiles(mixed[:, 0]),
                        "log2_output_elements": _log2_quantiles(mixed[:, 1])},
              "cnn-wide": {"nets": wide_count, "convs": len(wide), "log2_macs": _log2_quantiles(wide[:, 0]),
                           "log2_output_elements": _log2_quantiles(wide[:, 1])},
              "zoo": {}}
    for name in ZOO_NETS:
        for resolution in RESOLUTIONS:
            convs = conv_sizes(export_zoo_model(name, resolution, weights=False))
            median_macs = float(np.median(convs[:, 0]))
            report["zoo"][f"{name}@{resolution}"] = {
                "convs": len(convs),
                "above_mixed_q99_macs": round(float(np.mean(convs[:, 0] > mixed_q99[0])), 2),
                "above_mixed_q99_output_elements": round(float(np.mean(convs[:, 1] > mixed_q99[1])), 2),
                "inside_wide_range": bool(np.all((convs >= wide.min(axis=0)) & (convs <= wide.max(axis=0)))),
                "median_conv_macs_wide_percentile": round(float(np.mean(wide[:, 0] <= median_macs)) * 100)}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mixed", type=int, default=400, help="mixed nets to count")
    parser.add_argument("--wide", type=int, default=100, help="cnn-wide nets to count")
    parser.add_argument("--seed", type=int, default=2026, help="generator seed (the reference dataset's)")
    args = parser.parse_args()
    print(json.dumps(compare(args.mixed, args.wide, args.seed), indent=1))


if __name__ == "__main__":
    main()
