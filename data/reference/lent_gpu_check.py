"""Fail fast on the lent GPU machine: CUDA EP must run a Conv, and the CLI must import."""
import sys
import numpy as np
import onnx
from onnx import helper, TensorProto, numpy_helper
import onnxruntime as ort

print("onnxruntime", ort.__version__, ort.__file__, ort.get_available_providers())
w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["y"], ["z"])],
                          "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 8, 32, 32])], [w])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
session = ort.InferenceSession(model.SerializeToString(), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
print("session providers", session.get_providers())
out = session.run(None, {"x": np.ones((1, 3, 32, 32), np.float32)})[0]
print("output", out.shape, float(out.mean()))
if session.get_providers()[0] != "CUDAExecutionProvider" and "--cpu-ok" not in sys.argv:
    sys.exit("CUDA EP did not load")
from sniper_profiler.runner import device_fingerprint
from sniper_profiler.config import ProfileConfig
fp = device_fingerprint(ProfileConfig(provider="cpu" if "--cpu-ok" in sys.argv else "cuda"))
print("device_id", fp.device_id, "(committed H200: dev-496feff705ca2a3f)", "memory_gb", fp.memory_gb, "gpu_max_clock_ghz", fp.gpu_max_clock_ghz)
import sniper_onnx.cli, typer
print("typer", typer.__version__, "cli ok")
