"""Models as torch users export them: the shipped predictor's answer against the profiler's, per model.

Exports every model of ``benchmarks/torch_exports/models.py`` (about 45: norms, activations,
transposed, dilated, grouped, 1-D and 3-D convolutions, Resize, PixelShuffle, pads, LSTM/GRU,
attention, transformer layers, pools, Softmax over the channels) with torch's TorchScript exporter,
predicts each on one device of the shipped reference predictor, measures it with the profiler
(minimum kept) and prints predicted / measured with what `predict` flagged. Run it on a quiet host:

    OMP_NUM_THREADS=1 python benchmarks/bench_torch_exports.py [--device "t1 opt-all"] [--max-time 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "torch_exports"))

LEVELS = {"opt-all": "all", "opt-disabled": "disabled"}


def export_all(folder: Path) -> list[Path]:
    import torch
    from models import MODELS, init

    paths = []
    for name, (make, opset) in MODELS.items():
        torch.manual_seed(0)
        module, inputs = make()
        path = folder / f"{name}.onnx"
        with torch.no_grad():
            torch.onnx.export(init(module), inputs, str(path), opset_version=opset, dynamo=False,
                              input_names=[f"in{i}" for i in range(len(inputs))])
        paths.append(path)
    return paths


def measure_min(path: Path, device: str, max_time_s: float) -> tuple[float, list]:
    from sniper_profiler.config import ProfileConfig
    from sniper_profiler.measure import measure

    level = next((value for key, value in LEVELS.items() if key in device), "all")
    threads = 2 if " t2 " in device else 1
    result = measure(str(path), ProfileConfig(threads=threads, graph_optimization=level, max_time_s=max_time_s))
    return float(result["stats"]["min_s"]), result["flags"]


def flags_of(row) -> str:
    said = [f"unseen {', '.join(row.unseen_ops)}"] if row.unseen_ops else []
    said += ["outside " + ", ".join(row.outside_training_range)] if row.outside_training_range else []
    said += ["control flow"] if row.control_flow else []
    return "; ".join(said)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="t1 opt-all", help="a reference-dataset device (part of its name)")
    parser.add_argument("--max-time", type=float, default=2.0, help="profiler time budget per model (s)")
    args = parser.parse_args()
    from rich.progress import track

    from sniper_onnx.predictors.commands import predict_files

    unflagged, flagged = [], []
    with tempfile.TemporaryDirectory() as scratch:
        paths = export_all(Path(scratch))
        print("| model | predicted ms | measured ms | predicted / measured | path | flagged |\n|---|---|---|---|---|---|")
        for path in track(paths, description="predicting and measuring", transient=True):
            row = predict_files([str(path)], devices=[args.device]).rows[0]
            measured, _ = measure_min(path, row.device, args.max_time)
            ratio = row.seconds / measured
            (flagged if row.extrapolated else unflagged).append((ratio, path.stem))
            print(f"| {path.stem} | {row.seconds * 1e3:.3f} | {measured * 1e3:.3f} | {ratio:.2f} | {row.path} | "
                  f"{flags_of(row)} |", flush=True)
    for label, group in (("not marked extrapolated", unflagged), ("marked extrapolated", flagged)):
        if group:
            low, high = min(group), max(group)
            print(f"{label}: {len(group)} models, predicted / measured {low[0]:.2f} ({low[1]}) - {high[0]:.2f} ({high[1]})")


if __name__ == "__main__":
    main()
