"""Exporters' decompositions (GELU, LayerNorm, RMSNorm, HardSwish, SiLU) give the Table 1 features of
the native op; near-misses stay as written; networks written with native ops are unchanged."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from analysis_graphs import model, real_weight
from sniper_onnx import analyze
from sniper_onnx.analysis.kernels import kernel_table
from sniper_onnx.analysis.patterns import DEFAULT_PATTERNS, PATTERNS
from sniper_onnx.errors import SniperError

torch = pytest.importorskip("torch")
nn = torch.nn

PARAM_FEATURES = ("total_params", "critical_path_params", "prop_critical_path_params", "param_bytes")


def export(net: "nn.Module", example, opset: int) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (example,), buffer, dynamo=False, input_names=["input"], opset_version=opset)
    return onnx.load_from_string(buffer.getvalue())


def sorted_kernels(result) -> np.ndarray:
    table = kernel_table(result.nodes)
    return table[np.lexsort(table.T[::-1])]


def fused(result) -> list[tuple[str, int]]:
    return [(n.op_type, len(n.fused_from)) for n in result.nodes if n.fused_from]


class EncoderLayer(nn.Module):
    """nn.TransformerEncoderLayer behind a wrapper: traced directly, its default is_causal reaches
    scaled_dot_product_attention as a tensor and the export fails (torch 2.13)."""

    def __init__(self, norm_first: bool):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, activation="gelu", batch_first=True,
                                                norm_first=norm_first)

    def forward(self, x):
        return self.layer(x, src_mask=None, is_causal=False)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_at_opset_14_has_the_features_of_its_native_export(norm_first):
    torch.manual_seed(0)
    net, example = EncoderLayer(norm_first), torch.randn(1, 5, 16)
    decomposed, native = analyze(export(net, example, 14)), analyze(export(net, example, 20))
    assert decomposed.features == native.features
    assert len(decomposed.critical_path) == len(native.critical_path)
    assert np.array_equal(sorted_kernels(decomposed), sorted_kernels(native))
    assert sorted(fused(decomposed)) == [("Gelu", 5), ("LayerNormalization", 9), ("LayerNormalization", 9)]
    written = analyze(export(net, example, 14), patterns=())
    assert written.features["num_norm"] == 0 and written.features["num_layers"] == native.features["num_layers"] + 20


def mlp(activation: "nn.Module", dim: int = 8) -> "nn.Module":
    return nn.Sequential(nn.Linear(dim, dim), activation, nn.Linear(dim, dim))


@pytest.mark.parametrize("name, layer, low, high, members", [
    ("gelu erf", lambda: nn.GELU(), 14, 20, 5),
    ("gelu tanh", lambda: nn.GELU(approximate="tanh"), 14, 20, 9),
    ("layernorm", lambda: nn.LayerNorm(8), 14, 17, 9),
    ("hardswish", lambda: nn.Hardswish(), 11, 14, 2),
])
def test_decomposed_layer_has_the_features_of_the_native_op(name, layer, low, high, members):
    torch.manual_seed(0)
    net, example = mlp(layer()), torch.randn(1, 4, 8)
    decomposed, native = analyze(export(net, example, low)), analyze(export(net, example, high))
    assert decomposed.features == native.features, name
    assert np.array_equal(sorted_kernels(decomposed), sorted_kernels(native)), name
    [(op_type, count)] = fused(decomposed)
    assert count == members and op_type == next(n.op_type for n in native.nodes if n.op_type not in ("MatMul", "Add"))


class HuggingFaceGelu(nn.Module):
    """BERT's gelu and GPT-2's gelu_new: x * 0.5 first, and the cube as a power."""

    def __init__(self, tanh: bool):
        super().__init__()
        self.tanh = tanh

    def forward(self, x):
        if self.tanh:
            return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
        return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


@pytest.mark.parametrize("tanh", [False, True])
def test_gelu_written_as_hugging_face_does_is_one_gelu(tanh):
    torch.manual_seed(0)
    example = torch.randn(1, 4, 8)
    decomposed = analyze(export(mlp(HuggingFaceGelu(tanh)), example, 14))
    native = analyze(export(mlp(nn.GELU(approximate="tanh" if tanh else "none")), example, 20))
    assert decomposed.features == native.features
    assert [op for op, _ in fused(decomposed)] == ["Gelu"]


def test_layernorm_over_a_symbolic_sequence_keeps_its_affine_weights():
    """The sequence length is unknown; the feature dim, all the weights need, is known."""
    net, example = mlp(nn.LayerNorm(8)), torch.randn(1, 4, 8)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (example,), buffer, dynamo=False, input_names=["input"], opset_version=14,
                          dynamic_axes={"input": {1: "sequence"}})
    result = analyze(onnx.load_from_string(buffer.getvalue()))
    [norm] = [n for n in result.nodes if n.fused_from]
    assert norm.op_type == "LayerNormalization" and len(norm.fused_from) == 9 and norm.params == 16
    assert result.features["total_params"] == sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("layer, unit_tensors", [
    (lambda: nn.LayerNorm(8, elementwise_affine=False), 2),
    (lambda: nn.LayerNorm(8, bias=False), 1),
])
def test_layernorm_without_affine_counts_only_its_own_weights(layer, unit_tensors):
    """torch writes the missing scale and bias as Constants at opset 17 (documented: + C each);
    the decomposed form has none, so its parameter count is torch's own."""
    torch.manual_seed(0)
    net, example = mlp(layer()), torch.randn(1, 4, 8)
    decomposed, native = analyze(export(net, example, 14)), analyze(export(net, example, 17))
    same = {k: v for k, v in native.features.items() if k not in PARAM_FEATURES}
    assert {k: decomposed.features[k] for k in same} == same
    assert decomposed.features["total_params"] == sum(p.numel() for p in net.parameters())
    assert native.features["total_params"] == decomposed.features["total_params"] + unit_tensors * 8
    [norm] = [n for n in decomposed.nodes if n.fused_from]
    assert norm.op_type == "LayerNormalization" and norm.macs == 5 * 4 * 8


class RMSNorm(nn.Module):
    """LLaMA's: x * rsqrt(mean(x^2) + eps) * weight (the exporter writes rsqrt as 1 / Sqrt)."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))


def native_twin(nodes: list, opset: int) -> onnx.ModelProto:
    """x -> MatMul(w1) -> nodes (reading h, writing g) -> MatMul(w2) -> y, as onnx.helper writes it."""
    inits = [real_weight("w1", 8, 8), real_weight("w2", 8, 8), real_weight("scale", 8)]
    graph = [helper.make_node("MatMul", ["input", "w1"], ["h"], name="fc1"), *nodes,
             helper.make_node("MatMul", ["g", "w2"], ["y"], name="fc2")]
    return model(graph, {"input": [1, 4, 8]}, ["y"], inits, opset=opset)


def rms_native_twin():
    return analyze(native_twin([helper.make_node("RMSNormalization", ["h", "scale"], ["g"], axis=-1, epsilon=1e-6)], 23))


def test_rmsnorm_is_one_norm_costed_as_rms_normalization():
    net = nn.Sequential(nn.Linear(8, 8, bias=False), RMSNorm(8), nn.Linear(8, 8, bias=False))
    decomposed = analyze(export(net, torch.randn(1, 4, 8), 14))
    native = rms_native_twin()
    assert decomposed.features == native.features
    [(op_type, count)] = fused(decomposed)
    assert op_type == "RMSNormalization" and count == 7  # Pow ReduceMean Add Sqrt Div Mul Mul


class LlamaRMSNorm(nn.Module):
    """Hugging Face's LlamaRMSNorm: computes in float32 and casts back to the input's type before the
    weight, a float -> float Cast in an fp32 export."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        input_dtype = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
        return self.weight * x.to(input_dtype)


def test_llama_rmsnorm_casting_to_its_own_type_is_one_norm_with_its_weight():
    net = nn.Sequential(nn.Linear(8, 8, bias=False), LlamaRMSNorm(8), nn.Linear(8, 8, bias=False))
    decomposed = analyze(export(net, torch.randn(1, 4, 8), 14))
    native = rms_native_twin()
    assert decomposed.features == native.features
    [norm] = [n for n in decomposed.nodes if n.fused_from]
    assert norm.op_type == "RMSNormalization" and norm.params == 8
    assert len(norm.fused_from) == 8 and "Cast" in " ".join(norm.fused_from)  # the 7 ops and the Cast


def rms_norm_with_cast(to: int) -> onnx.ModelProto:
    """h -> x * (1 / sqrt(mean(x^2) + eps)) -> Cast(to) -> * weight -> g, by hand."""
    rsqrt = [helper.make_node("Pow", ["h", "two"], ["sq"]), helper.make_node("ReduceMean", ["sq"], ["ms"], axes=[-1]),
             helper.make_node("Add", ["ms", "eps"], ["var"]), helper.make_node("Sqrt", ["var"], ["root"]),
             helper.make_node("Div", ["one", "root"], ["inv"]), helper.make_node("Mul", ["h", "inv"], ["normed"]),
             helper.make_node("Cast", ["normed"], ["cast"], to=to)]
    weight_type = helper.tensor_dtype_to_np_dtype(to)
    consts = [helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(np.array(v, np.float32), name))
              for name, v in (("two", 2.0), ("eps", 1e-6), ("one", 1.0))]
    consts.append(helper.make_node("Constant", [], ["w"], value=onnx.numpy_helper.from_array(
        np.linspace(0.5, 1.5, 8).astype(weight_type), "w")))
    back = [helper.make_node("Mul", ["cast", "w"], ["scaled"]), helper.make_node("Cast", ["scaled"], ["g"],
                                                                                 to=TensorProto.FLOAT)]
    return native_twin([*consts, *rsqrt, *back], 17)


def test_a_cast_to_another_type_ends_the_norm_before_its_weight():
    """The weight Mul computes in float16 after the Cast: the norm is fused without it."""
    cast_to_half = analyze(rms_norm_with_cast(TensorProto.FLOAT16))
    [norm] = [n for n in cast_to_half.nodes if n.fused_from]
    assert norm.op_type == "RMSNormalization" and len(norm.fused_from) == 6 and norm.params == 0
    assert [n.op_type for n in cast_to_half.nodes if n.is_layer] == ["MatMul", "RMSNormalization", "Mul", "MatMul"]
    same_type = analyze(rms_norm_with_cast(TensorProto.FLOAT))
    [norm] = [n for n in same_type.nodes if n.fused_from]
    assert len(norm.fused_from) == 8 and norm.params == 8


def silu_chain() -> onnx.ModelProto:
    nodes = [helper.make_node("Sigmoid", ["h"], ["s"], name="sigmoid"),
             helper.make_node("Mul", ["h", "s"], ["g"], name="mul")]
    return native_twin(nodes, 17)


def test_silu_is_fused_only_when_asked():
    """Off by default: sniper_generator writes SiLU this way and its networks' features must not move."""
    assert "silu" in PATTERNS and "silu" not in DEFAULT_PATTERNS
    native = analyze(native_twin([helper.make_node("Swish", ["h"], ["g"])], 24))
    assert analyze(silu_chain(), patterns=[*DEFAULT_PATTERNS, "silu"]).features == native.features
    written = analyze(silu_chain())
    assert not fused(written) and written.features["num_layers"] == native.features["num_layers"] + 1
    assert written.features["max_branches"] == 2 and native.features["max_branches"] == 1


# ------------------------------------------------------------------------------- near-misses


def gelu_export() -> onnx.ModelProto:
    return export(mlp(nn.GELU()), torch.randn(1, 4, 8), 14)


def set_constant(built: onnx.ModelProto, old: float, new: float) -> onnx.ModelProto:
    for node in built.graph.node:
        if node.op_type == "Constant":
            value = onnx.numpy_helper.to_array(node.attribute[0].t)
            if value.size == 1 and np.isclose(float(value), old):
                node.attribute[0].t.CopyFrom(onnx.numpy_helper.from_array(np.array(new, value.dtype)))
                return built
    raise AssertionError(f"no constant {old}")


def read_elsewhere(built: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """An extra graph output reading the output of node ``name`` (an interior tensor)."""
    tensor = next(n.output[0] for n in built.graph.node if n.name == name)
    built.graph.node.append(helper.make_node("Relu", [tensor], ["elsewhere"], name="elsewhere"))
    built.graph.output.append(helper.make_tensor_value_info("elsewhere", TensorProto.FLOAT, None))
    return built


def assert_unfused(built: onnx.ModelProto) -> None:
    result = analyze(built)
    assert not fused(result)
    assert result.features == analyze(built, patterns=()).features


@pytest.mark.parametrize("old, new", [(0.5, 0.6), (1.0, 2.0), (1.4142135, 1.5)])
def test_gelu_with_another_constant_stays_as_written(old, new):
    assert_unfused(set_constant(gelu_export(), old, new))


def test_gelu_tanh_with_another_cubic_coefficient_stays_as_written():
    assert_unfused(set_constant(export(mlp(nn.GELU(approximate="tanh")), torch.randn(1, 4, 8), 14), 0.044715, 0.05))


@pytest.mark.parametrize("name", ["/1/Div", "/1/Erf", "/1/Add", "/1/Mul"])
def test_gelu_whose_interior_is_read_elsewhere_stays_as_written(name):
    assert_unfused(read_elsewhere(gelu_export(), name))


def layernorm_export() -> onnx.ModelProto:
    return export(mlp(nn.LayerNorm(8)), torch.randn(1, 4, 8), 14)


@pytest.mark.parametrize("old, new", [(2.0, 3.0), (1e-5, 0.1)])
def test_layernorm_with_another_exponent_or_a_large_epsilon_stays_as_written(old, new):
    assert_unfused(set_constant(layernorm_export(), old, new))


def test_layernorm_with_the_keras_epsilon_1e_3_is_fused():
    """1e-3 is stored as float32 0.0010000000475, above the bound 1e-3 compared in float64."""
    built = set_constant(layernorm_export(), 1e-5, 1e-3)
    [norm] = [n for n in analyze(built).nodes if n.fused_from]
    assert norm.op_type == "LayerNormalization" and len(norm.fused_from) == 9


@pytest.mark.parametrize("name", ["/1/ReduceMean", "/1/Sub", "/1/Pow", "/1/Sqrt"])
def test_layernorm_whose_interior_is_read_elsewhere_stays_as_written(name):
    assert_unfused(read_elsewhere(layernorm_export(), name))


def test_layernorm_over_a_leading_axis_stays_as_written():
    built = layernorm_export()
    for node in built.graph.node:
        if node.op_type == "ReduceMean":
            node.attribute[0].CopyFrom(helper.make_attribute("axes", [1]))
    assert_unfused(built)


def test_layernorm_whose_affine_output_is_read_elsewhere_keeps_the_bias_add_apart():
    """The norm and its scale are fused; the bias Add stays, since the scaled tensor has another reader."""
    result = analyze(read_elsewhere(layernorm_export(), "/1/Mul"))
    [norm] = [n for n in result.nodes if n.fused_from]
    assert len(norm.fused_from) == 8 and norm.params == 8
    [bias] = [n for n in result.nodes if n.name == "/1/Add_1"]
    assert bias.op_type == "Add" and bias.params == 8 and not bias.fused_from


def test_silu_whose_gate_multiplies_another_tensor_stays_as_written():
    """Squeeze-and-excitation: sigmoid(s) * x multiplies another tensor than the gate's input."""
    nodes = [helper.make_node("Sigmoid", ["h"], ["s"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Mul", ["r", "s"], ["g"])]
    built = native_twin(nodes, 17)
    result = analyze(built, patterns=["silu"])
    assert not fused(result) and result.features == analyze(built, patterns=()).features


# -------------------------------------------------------------------- native networks unchanged


def test_zoo_and_generator_networks_are_unchanged():
    """They are written with native ops (the generator's SiLU is Sigmoid then Mul, not fused by default)."""
    generator = pytest.importorskip("sniper_generator")
    zoo = pytest.importorskip("sniper_generator.zoo")
    models = [zoo.export_zoo_model(name, weights=False) for name in ("vit_b_16", "mobilenet_v2")]
    models += [generator.materialize(spec, weights=False) for family in ("cnn", "transformer", "mixed")
               for spec in generator.sample_specs(3, seed=11, family=family)]
    for built in models:
        result, written = analyze(built), analyze(built, patterns=())
        assert result.features == written.features and not fused(result), built.graph.name
        assert [n.to_row() for n in result.nodes] == [n.to_row() for n in written.nodes]


def test_unknown_pattern_names_are_refused():
    with pytest.raises(SniperError, match="unknown pattern.*'gelu'.*choose from: gelu_erf"):
        analyze(gelu_export(), patterns=["gelu"])
    assert fused(analyze(gelu_export(), patterns="gelu_erf")) == [("Gelu", 5)]


def test_json_nodes_name_what_was_fused():
    rows = analyze(gelu_export()).to_json_dict(include_nodes=True)["nodes"]
    [gelu] = [row for row in rows if row["op_type"] == "Gelu"]
    assert gelu["fused_from"] == ["/1/Div", "/1/Erf", "/1/Add", "/1/Mul", "/1/Mul_1"]
    assert gelu["name"] == "/1/Mul_1" and gelu["category"] == "activation" and gelu["macs"] == 4 * 8
    assert all(row["fused_from"] == [] for row in rows if row is not gelu)
