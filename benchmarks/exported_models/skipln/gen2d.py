"""usage: gen2d.py [OUT_DIR]. Generated transformers comparable to the medium BERT (sequence input, 128 tokens, d=256, 4 heads, 4 layers, mlp 4, gelu)."""
import sys, numpy as np, onnx
OUT = sys.argv[1] if len(sys.argv) > 1 else "/tmp/sniper-exported"
from sniper_generator.builder import GraphBuilder
from sniper_generator.transformer import build_transformer
cfgs = {
 "gen_seq": {"input": "sequence", "tokens": 128, "features": 256, "batch": 1, "dim": 256, "heads": 4, "head_dim": 64,
             "depth": 4, "mlp_ratio": 4, "activation": "gelu", "class_token": False, "fc": [1000]},
 "gen_seq_ct": {"input": "sequence", "tokens": 127, "features": 256, "batch": 1, "dim": 256, "heads": 4, "head_dim": 64,
             "depth": 4, "mlp_ratio": 4, "activation": "gelu", "class_token": True, "fc": [1000]},
}
for name, cfg in cfgs.items():
    b = GraphBuilder("generated", np.random.default_rng(0), True)
    b.output(build_transformer(b, cfg), "logits")
    m = b.build(); onnx.save(m, f"{OUT}/{name}.onnx"); print(name, len(m.graph.node))
