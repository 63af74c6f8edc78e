"""Export the models that docs/analyzer.md and docs/predictor-measurements.md quote, and quantize them.

    python benchmarks/exported_models/build.py --out DIR [--only GROUP ...]

Groups (all by default; see README.md for the file names):
  small      2-layer BERT, GPT-2, LLaMA, ViT (opsets 14 and 20; BERT, GPT-2, LLaMA also with a
             dynamic batch and sequence at opset 20), Linear-RMSNorm-Linear and Conv-LayerNorm-Conv
             micro nets, and the BERT and ViT after quant_pre_process, statically quantized (QDQ,
             QOperator) at opsets 14 and 20
  medium     BERT, GPT-2, LLaMA, ViT, MobileNetV3 block at predict's scale (opset 20), and a BERT-like
             encoder of nn.TransformerEncoderLayer (opsets 14 and 20)
  quantized  small CNN, CNN with a concat, transformer layer, small ResNet: float (as exported and after
             quant_pre_process), QDQ, QOperator, dynamic; a MatMulNBits (4-bit) graph
  mbv2       the zoo's MobileNetV2 (`sniper-onnx zoo export`), quantized the same ways

torch.onnx.export(..., dynamo=False) throughout. Weights are random (torch seed 0 per model) and
the calibration data of static quantization is random (numpy seed 0): the analyzer's features do
not depend on either.
"""
import argparse
import logging
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models as M  # noqa: E402

GROUPS = ("small", "medium", "quantized", "mbv2")


def export(model, args, path, opset, names, dynamic_axes=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), args, str(path), opset_version=opset, dynamo=False,
                          input_names=names, dynamic_axes=dynamic_axes)


def seeded(cls, *a, **kw):
    torch.manual_seed(0)
    return cls(*a, **kw).eval()


def quantizers():
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(s, make, n):
            rng = np.random.default_rng(0)
            s.it = iter([make(rng) for _ in range(n)])

        def get_next(s):
            return next(s.it, None)

    def pre(src, dst, **kw):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(str(src), str(dst), **kw)

    def static(src, dst, make, fmt, n=4, **kw):
        quantize_static(str(src), str(dst), Reader(make, n), quant_format=getattr(QuantFormat, fmt), **kw)

    def dynamic(src, dst, **kw):
        quantize_dynamic(str(src), str(dst), **kw)

    return pre, static, dynamic, QuantType


def image(shape):
    return lambda rng, name="x": {name: rng.random(shape, dtype=np.float32)}


def build_small(out):
    pre, static, _, _ = quantizers()
    s = 16
    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (1, s))
    mask = torch.ones(1, s, dtype=torch.int64)
    mask[0, -3:] = 0
    img = torch.randn(1, 3, 64, 64)
    seq = {0: "batch", 1: "seq"}
    specs = {
        "bert": (M.Bert, (ids, mask), ["input_ids", "attention_mask"], {"input_ids": seq, "attention_mask": seq}),
        "gpt2": (M.GPT2, (ids,), ["input_ids"], {"input_ids": seq}),
        "llama": (M.Llama, (ids,), ["input_ids"], {"input_ids": seq}),
        "vit": (M.ViT, (img,), ["x"], None),
    }
    for name, (cls, args, names, dyn) in specs.items():
        print(f"{name}: torch parameters {sum(p.numel() for p in seeded(cls).parameters()):,}")
        for o in (14, 20):
            export(seeded(cls), args, out / f"{name}_o{o}.onnx", o, names)
        if dyn:
            export(seeded(cls), args, out / f"{name}_dyn_o20.onnx", 20, names, dyn)
    x = torch.randn(1, 16, 64)
    for f in (M.rms_llama_cast, M.rms_nocast):
        for o in (13, 18, 20):
            export(seeded(M.Sandwich, f), (x,), out / f"{f.__name__}_o{o}.onnx", o, ["x"])
    x = torch.randn(1, 3, 16, 16)
    for eps in ("1e-3", "1e-2"):
        for o in (14, 17):
            export(seeded(M.ConvLNConv, float(eps)), (x,), out / f"conv_ln_eps{eps}_o{o}.onnx", o, ["x"])

    def tokens(rng):
        return {"input_ids": rng.integers(0, 1000, (1, s), dtype=np.int64), "attention_mask": np.ones((1, s), np.int64)}

    for name, make in (("bert", tokens), ("vit", image((1, 3, 64, 64)))):
        for o in (14, 20):
            p = out / f"{name}_o{o}_pre.onnx"
            pre(out / f"{name}_o{o}.onnx", p, skip_symbolic_shape=True)
            static(p, out / f"{name}_o{o}_qdq.onnx", make, "QDQ")
            static(p, out / f"{name}_o{o}_qop.onnx", make, "QOperator")


def build_medium(out):
    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (1, 128))
    mask = torch.ones(1, 128, dtype=torch.int64)
    img = torch.randn(1, 3, 224, 224)
    specs = {
        "bert": (M.Bert, dict(d=256, h=4, ff=1024, L=4, maxpos=128), (ids, mask), ["input_ids", "attention_mask"]),
        "gpt2": (M.GPT2, dict(d=256, h=4, L=4, n_ctx=128), (ids,), ["input_ids"]),
        "llama": (M.Llama, dict(d=256, h=4, ff=688, L=4), (ids,), ["input_ids"]),
        "mbv3": (M.MBV3, dict(c=24, e=96), (img,), ["x"]),
        "vit": (M.ViT, dict(img=224, d=192, h=3, ff=768, L=4), (img,), ["x"]),
    }
    for name, (cls, kw, args, names) in specs.items():
        export(seeded(cls, **kw), args, out / f"med_{name}_o20.onnx", 20, names)
    net = seeded(M.Encoder)
    ids = torch.randint(0, 30522, (1, 128))
    for o in (14, 20):
        p = out / f"encoder_o{o}.onnx"
        export(net, (ids,), p, o, ["input_ids"])
        print(f"{p.name}: {len(onnx.load(str(p), load_external_data=False).graph.node)} nodes")


def build_quantized(out):
    pre, static, dynamic, QT = quantizers()
    for name, cls, shape in (("cnn", M.CNN, (1, 3, 32, 32)), ("tf", M.TF, (1, 8, 32)),
                             ("cnn2", M.CNN2, (1, 3, 32, 32)), ("res", M.Res, (1, 3, 112, 112))):
        torch.manual_seed(0)
        export(seeded(cls), (torch.randn(*shape),), out / f"{name}_fp32.onnx", 17, ["x"])
        pre(out / f"{name}_fp32.onnx", out / f"{name}_pre.onnx", skip_symbolic_shape=(name == "tf"))
        n = 2 if name in ("cnn2", "res") else 4
        kw = dict(activation_type=QT.QUInt8, weight_type=QT.QInt8) if name in ("cnn", "tf") else {}  # u8s8
        static(out / f"{name}_pre.onnx", out / f"{name}_qdq.onnx", image(shape), "QDQ", n, **kw)
        static(out / f"{name}_pre.onnx", out / f"{name}_qop.onnx", image(shape), "QOperator", n, **kw)
        if name != "cnn2":
            weight = QT.QInt8 if name == "res" else QT.QUInt8
            dynamic(out / f"{name}_fp32.onnx", out / f"{name}_dyn.onnx", weight_type=weight)
    dynamic(out / "res_fp32.onnx", out / "res_dyn_pc.onnx", per_channel=True)
    # com.microsoft::MatMulNBits, 4-bit, K=32, N=64, block 16, then a Relu
    from onnx import TensorProto, helper, numpy_helper
    k, n, bs = 32, 64, 16
    rng = np.random.default_rng(0)
    b = numpy_helper.from_array(rng.integers(0, 255, (n, k // bs, bs // 2), dtype=np.uint8), "B")
    sc = numpy_helper.from_array(rng.random(n * k // bs, dtype=np.float32), "S")
    g = helper.make_graph(
        [helper.make_node("MatMulNBits", ["A", "B", "S"], ["Y"], domain="com.microsoft", K=k, N=n, bits=4,
                          block_size=bs, name="mmnb"), helper.make_node("Relu", ["Y"], ["Z"], name="relu")],
        "g", [helper.make_tensor_value_info("A", TensorProto.FLOAT, [1, 8, k])],
        [helper.make_tensor_value_info("Z", TensorProto.FLOAT, [1, 8, n])], [b, sc])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)],
                          ir_version=10)
    onnx.save(m, str(out / "nbits4.onnx"))


def build_mbv2(out):
    pre, static, dynamic, _ = quantizers()
    cli = Path(sys.executable).with_name("sniper-onnx")
    subprocess.run([str(cli), "zoo", "export", "mobilenet_v2", "-o", str(out / "mbv2.onnx")], check=True,
                   stdout=subprocess.DEVNULL)
    name = onnx.load(str(out / "mbv2.onnx"), load_external_data=False).graph.input[0].name
    pre(out / "mbv2.onnx", out / "mbv2_pre.onnx")
    make = lambda rng: image((1, 3, 224, 224))(rng, name)  # noqa: E731
    static(out / "mbv2_pre.onnx", out / "mbv2_qdq.onnx", make, "QDQ", 2)
    static(out / "mbv2_pre.onnx", out / "mbv2_qop.onnx", make, "QOperator", 2)
    dynamic(out / "mbv2.onnx", out / "mbv2_dyn.onnx")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/sniper-exported"), help="output folder (default %(default)s)")
    ap.add_argument("--only", nargs="+", choices=GROUPS, default=list(GROUPS))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    logging.getLogger().setLevel(logging.ERROR)  # the quantizer's advice on formats and pre-processing
    for group in a.only:
        t = time.time()
        globals()[f"build_{group}"](a.out)
        print(f"{group}: done in {time.time() - t:.0f} s")
    print(f"models in {a.out}")


if __name__ == "__main__":
    main()
