"""Whole-model ORT time (1 thread, opt all; min of 3x20 after 10 warm-up) with and without SkipLayerNormFusion, interleaved."""
import sys, time, numpy as np, onnxruntime as ort
def sess(p, dis):
    so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    s = ort.InferenceSession(p, so, providers=["CPUExecutionProvider"], disabled_optimizers=dis)
    feed = {}
    for i in s.get_inputs():
        shp = [d if isinstance(d, int) else (1 if k == 0 else int(__import__("os").environ.get("SEQ", 1))) for k, d in enumerate(i.shape)]
        feed[i.name] = (np.random.randint(0, 1000, shp).astype(np.int64) if "int64" in i.type else np.random.randn(*shp).astype(np.float32))
        if i.name == "attention_mask": feed[i.name][:] = 1
    for _ in range(10): s.run(None, feed)
    return s, feed
for p in sys.argv[1:]:
    variants = {"all": [], "noSkipLN": ["SkipLayerNormFusion"], "noSkipLN,noMatMulAdd": ["SkipLayerNormFusion", "MatMulAddFusion"]}
    ss = {k: sess(p, v) for k, v in variants.items()}
    best = {k: 1e9 for k in ss}
    for r in range(int(__import__("os").environ.get("ROUNDS", 3))):
        for k, (s, feed) in ss.items():
            for _ in range(20):
                t = time.perf_counter(); s.run(None, feed); best[k] = min(best[k], time.perf_counter() - t)
    print(p.split('/')[-1], "  ".join(f"{k}: {v*1e3:.3f} ms" for k, v in best.items()))
