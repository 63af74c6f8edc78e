"""Time models in onnxruntime: CPU, 1 intra-op thread, ORT_ENABLE_ALL.

    python benchmarks/exported_models/ort_time.py MODEL.onnx ... [--rounds 3] [--runs 20] [--warmup 10]

Rounds are interleaved across the models (round 1 of every model, then round 2, ...), each round
`--warmup` untimed runs then `--runs` timed ones. Prints per model the minimum over all runs and each
round's minimum (and their median). Inputs: int64 inputs random token ids below 1000 (an
`attention_mask` all ones), float inputs standard normal; symbolic dims are 1.
"""
import argparse
import time

import numpy as np
import onnxruntime as ort


def feed_for(session, rng):
    feed = {}
    for i in session.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        if "int64" in i.type:
            feed[i.name] = np.ones(shape, np.int64) if i.name == "attention_mask" else rng.integers(0, 1000, shape)
        else:
            feed[i.name] = rng.standard_normal(shape).astype(np.float16 if "float16" in i.type else np.float32)
    return feed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=10)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    sessions = {}
    for path in a.models:
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        sessions[path] = (s, feed_for(s, rng))
    mins = {p: [] for p in a.models}
    for _ in range(a.rounds):
        for path, (s, feed) in sessions.items():
            for _ in range(a.warmup):
                s.run(None, feed)
            times = []
            for _ in range(a.runs):
                t = time.perf_counter()
                s.run(None, feed)
                times.append(time.perf_counter() - t)
            mins[path].append(min(times) * 1e3)
    for path, m in mins.items():
        print(f"{path}: min {min(m):.3f} ms, median of round minima {np.median(m):.3f} ms "
              f"(rounds: {', '.join(f'{x:.2f}' for x in m)})")


if __name__ == "__main__":
    main()
