"""Print the analyzer's features that the docs quote, one line per model.

    python benchmarks/exported_models/features.py MODEL.onnx ... [-s NAME=DIMS ...]

Columns: nodes (in the file's graph), layers (num_layers), crit (critical_path_layers), total_macs,
conv_macs, fc_macs, params (total_params), conv_params, fc_params, param_bytes, norm (num_norm), act
(num_activation), act_read (activation_bytes_read), other (layers whose kernel-table row is in the
`other` group, `kernels.kernel_group`), unknown (layers of unknown ops). -s gives input shapes as
`sniper-onnx analyze -s` does (e.g. -s input_ids=1x16), applied to every model that has that input.
"""
import argparse

import onnx

from sniper_onnx import analyze
from sniper_onnx.analysis.kernels import kernel_group

COLS = [("layers", "num_layers"), ("crit", "critical_path_layers"), ("total_macs", "total_macs"),
        ("conv_macs", "conv_macs"), ("fc_macs", "fc_macs"), ("params", "total_params"),
        ("conv_params", "conv_params"), ("fc_params", "fc_params"), ("param_bytes", "param_bytes"),
        ("norm", "num_norm"), ("act", "num_activation"), ("act_read", "activation_bytes_read")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("-s", "--input-shape", action="append", default=[], metavar="NAME=DIMS")
    a = ap.parse_args()
    shapes = {k: tuple(int(d) for d in v.split("x")) for k, v in (s.split("=", 1) for s in a.input_shape)}
    width = max(len(m) for m in a.models)
    print(f"{'model':{width}} {'nodes':>5} " + " ".join(f"{c:>{max(len(c), 6)}}" for c, _ in COLS) + " other unknown")
    for path in a.models:
        graph = onnx.load(path, load_external_data=False).graph
        names = {i.name for i in graph.input}
        r = analyze(path, input_shapes={k: v for k, v in shapes.items() if k in names} or None)
        f = r.features
        other = sum(1 for n in r.nodes if n.is_layer and kernel_group(n) == "other")
        print(f"{path:{width}} {len(graph.node):>5} "
              + " ".join(f"{f[k]:>{max(len(c), 6)},}" for c, k in COLS)
              + f" {other:>5} {sum(r.unknown_ops.values()):>7}")


if __name__ == "__main__":
    main()
