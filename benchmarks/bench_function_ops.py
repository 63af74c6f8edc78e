"""Ops onnxruntime runs as their ONNX function body: predicted against measured, on this CPU.

onnxruntime has no CPU kernel for GroupNormalization, Mish, HardSwish or Swish; it runs each as the
nodes of its ONNX function (sniper_onnx/analysis/runtime_bodies.py). The reference dataset holds
none of them, so this benchmark builds small convolutional nets that do (and a control with
BatchNormalization and Relu, ops the predictor was trained on), measures each with the profiler on
the two 1-thread configurations and prints the shipped predictor's predicted / measured ratio.

    OMP_NUM_THREADS=1 python benchmarks/bench_function_ops.py [--repeats-time 2]

Run it on a quiet host: every model is timed by the profiler's own stopping rule, minimum kept.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CONFIGS = {"AMD EPYC | cpu fp32 t1 opt-all": "all", "AMD EPYC | cpu fp32 t1 opt-disabled": "disabled"}
# (normalization, activation, opset): the control first
VARIANTS = (
    ("BatchNormalization", "Relu", 21),
    ("GroupNormalization", "Relu", 21),
    ("BatchNormalization", "Mish", 21),
    ("BatchNormalization", "HardSwish", 21),
    ("BatchNormalization", "Swish", 24),
    ("GroupNormalization", "Mish", 21),
)
SIZES = ((32, 56), (128, 28), (256, 14))  # (channels, map side)
BLOCKS = 6


def _tensor(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(array.astype(np.float32), name)


def build_net(norm: str, act: str, opset: int, channels: int, side: int, seed: int = 0) -> onnx.ModelProto:
    """BLOCKS blocks of 3x3 conv -> norm -> activation, He-initialized, norms at unit statistics."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "input"
    for b in range(BLOCKS):
        fan_in = channels * 9
        inits.append(_tensor(f"w{b}", rng.normal(0, math.sqrt(2 / fan_in), (channels, channels, 3, 3))))
        nodes.append(helper.make_node("Conv", [x, f"w{b}"], [f"c{b}"], pads=[1, 1, 1, 1]))
        ones, zeros = np.ones(channels), np.zeros(channels)
        if norm == "BatchNormalization":
            inits += [_tensor(f"s{b}", ones), _tensor(f"b{b}", zeros), _tensor(f"m{b}", zeros), _tensor(f"v{b}", ones)]
            nodes.append(helper.make_node(norm, [f"c{b}", f"s{b}", f"b{b}", f"m{b}", f"v{b}"], [f"n{b}"]))
        else:
            inits += [_tensor(f"s{b}", ones), _tensor(f"b{b}", zeros)]
            nodes.append(helper.make_node(norm, [f"c{b}", f"s{b}", f"b{b}"], [f"n{b}"], num_groups=min(32, channels)))
        nodes.append(helper.make_node(act, [f"n{b}"], [f"a{b}"]))
        x = f"a{b}"
    graph = helper.make_graph(nodes, f"{norm}-{act}", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                              [1, channels, side, side])], [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def measure_min(path: Path, level: str, max_time_s: float) -> float:
    from sniper_profiler.config import ProfileConfig
    from sniper_profiler.measure import measure

    result = measure(str(path), ProfileConfig(threads=1, graph_optimization=level, max_time_s=max_time_s))
    if result["flags"]:
        print(f"  {path.name} ({level}): flags {result['flags']}")
    return float(result["stats"]["min_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-time", type=float, default=4.0, help="profiler time budget per model (s)")
    parser.add_argument("--predictor", default=None, help="predictor .onnx (default: the shipped reference)")
    args = parser.parse_args()
    from sniper_onnx.predictors.commands import predict_files

    ratios: dict = {}
    with tempfile.TemporaryDirectory() as folder:
        for norm, act, opset in VARIANTS:
            for channels, side in SIZES:
                path = Path(folder) / f"{norm}-{act}-{channels}x{side}.onnx"
                onnx.save(build_net(norm, act, opset, channels, side), path)
                table = predict_files([str(path)], devices=list(CONFIGS), predictor=args.predictor)
                predicted = {row.device: row.seconds for row in table.rows}
                for device, level in CONFIGS.items():
                    measured = measure_min(path, level, args.max_time)
                    ratio = predicted[device] / measured
                    ratios.setdefault((norm, act, CONFIGS[device]), []).append(ratio)
                    print(f"{path.stem:36s} {level:8s} measured {measured * 1e3:8.3f} ms  "
                          f"predicted {predicted[device] * 1e3:8.3f} ms  ratio {ratio:5.2f}", flush=True)
    print("\n| norm | activation | opt level | predicted / measured, per size (32x56, 128x28, 256x14) | median |")
    print("|---|---|---|---|---|")
    for (norm, act, level), values in ratios.items():
        cells = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {norm} | {act} | {level} | {cells} | {statistics.median(values):.2f} |")


if __name__ == "__main__":
    main()
