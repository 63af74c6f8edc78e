"""Tiny torch nets exported to ONNX: params equal torch's count up to the documented BatchNorm rules,
and conv/fc MACs equal the textbook formula applied to torch's own layer output shapes."""

from __future__ import annotations

import io
import warnings

import onnx
import pytest

from sniper_onnx import analyze

torch = pytest.importorskip("torch")
nn = torch.nn


def export(net: "nn.Module", example, dynamic_batch: bool = False, opset: int = 17, dynamic_axes=None,
           do_constant_folding: bool = True) -> onnx.ModelProto:
    """The TorchScript exporter (dynamo=False): the dynamo one needs onnxscript, not installed here."""
    buffer = io.BytesIO()
    axes = {"input": {0: "batch"}} if dynamic_batch else None
    if dynamic_axes is not None:
        axes = {"input": dict(dynamic_axes)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (example,), buffer, dynamo=False, input_names=["input"], dynamic_axes=axes,
                          opset_version=opset, do_constant_folding=do_constant_folding)
    return onnx.load_from_string(buffer.getvalue())


def torch_params(net: "nn.Module") -> int:
    return sum(p.numel() for p in net.parameters())


def torch_layer_macs(net: "nn.Module", example: "torch.Tensor") -> tuple[int, int]:
    """Conv and Linear MACs from forward hooks: outputs x (in_channels / groups) x kernel, outputs x in_features."""
    totals = {"conv": 0, "fc": 0}

    def hook(module, _inputs, output):
        if isinstance(module, nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            totals["conv"] += output.numel() * module.in_channels // module.groups * kernel
        elif isinstance(module, nn.Linear):
            totals["fc"] += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        net.eval()(example)
    for handle in handles:
        handle.remove()
    return totals["conv"], totals["fc"]


class ConvBnNet(nn.Module):
    """Conv -> BN (foldable: the exporter folds it into the conv) and Conv -> ReLU -> BN (not foldable)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 12, 3, stride=2, padding=2, dilation=2, groups=4)
        self.bn2 = nn.BatchNorm2d(12)
        self.fc = nn.Linear(12, 5)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.bn2(torch.relu(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


def test_conv_bn_net_params_follow_the_batchnorm_rules():
    net = ConvBnNet()
    example = torch.randn(1, 3, 16, 16)
    result = analyze(export(net, example))
    # bn1 folded into conv1: its gamma and beta disappear and conv1 gains a bias of 8;
    # bn2 stays a BatchNormalization node whose running mean and variance are weights too
    expected = torch_params(net) - 2 * 8 + 8 + 2 * 12
    assert result.features["total_params"] == expected
    conv, fc = torch_layer_macs(net, example)
    assert result.features["conv_macs"] == conv and result.features["fc_macs"] == fc
    assert result.features["num_norm"] == 1 and result.features["num_atrous_conv3x3"] == 1
    assert result.unknown_ops == {}


def test_dynamic_batch_defaults_to_one_and_can_be_set():
    net = ConvBnNet()
    example = torch.randn(1, 3, 16, 16)
    dynamic = export(net, example, dynamic_batch=True)
    static = analyze(export(net, example))
    assert analyze(dynamic).features == static.features
    assert [w for w in analyze(dynamic).warnings if "taken as the batch and set to 1: dim 0" in w]
    four = analyze(dynamic, input_shapes={"input": (4, 3, 16, 16)}).features
    assert four["conv_macs"] == 4 * static.features["conv_macs"] and four["total_params"] == static.features["total_params"]


class TinyTransformerBlock(nn.Module):
    def __init__(self, vocab=50, dim=16, heads=2):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, tokens):
        x = self.embed(tokens)
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


def test_transformer_block_params_equal_torch_exactly():
    net = TinyTransformerBlock()
    example = torch.randint(0, 50, (1, 7))
    result = analyze(export(net, example))
    assert result.features["total_params"] == torch_params(net)
    assert result.unknown_ops == {} and result.unknown_shape_nodes == []
    seq, dim = 7, 16
    # q, k, v and out projections, two MLP linears; QK^T and attention x V between activations
    assert result.features["fc_macs"] == seq * dim * 3 * dim + seq * dim * dim + 2 * seq * dim * 4 * dim
    assert result.features["matmul_macs"] == 2 * seq * seq * dim
    assert result.features["num_norm"] == 2 and result.features["num_add"] == 2
    # every Linear's weight and bias (MatMul + bias Add in the export) counts as fully connected
    linears = net.attn.in_proj_weight.numel() + net.attn.in_proj_bias.numel() + torch_params(net.attn.out_proj)
    assert result.features["fc_params"] == linears + torch_params(net.mlp)


class Inception(nn.Module):
    def __init__(self):
        super().__init__()
        self.b1 = nn.Conv2d(4, 4, 1)
        self.b3 = nn.Conv2d(4, 4, 3, padding=1)
        self.b5 = nn.Conv2d(4, 4, 5, padding=2)
        self.b7 = nn.Conv2d(4, 4, 7, padding=3)
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.b7(x), self.pool(x)], dim=1)


def test_inception_branches_and_kernel_counts():
    net = Inception()
    example = torch.randn(1, 4, 8, 8)
    result = analyze(export(net, example))
    f = result.features
    assert f["max_branches"] == 5 and f["num_concat"] == 1 and f["num_avgpool"] == 1
    assert (f["num_conv1x1"], f["num_conv3x3"], f["num_conv5x5"], f["num_conv7x7"]) == (1, 1, 1, 1)
    assert f["total_params"] == torch_params(net)
    assert f["conv_macs"] == torch_layer_macs(net, example)[0]
    assert f["critical_path_layers"] == 2  # the 7x7 branch, then the concat


class DecoderBits(nn.Module):
    """Upsampling, padding computed by shape arithmetic, ConvTranspose, GroupNorm, InstanceNorm."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.group_norm = nn.GroupNorm(2, 4)
        self.instance_norm = nn.InstanceNorm2d(4, affine=True)

    def forward(self, x):
        y = nn.functional.pad(nn.functional.interpolate(self.conv(x), scale_factor=2, mode="bilinear"), (1, 1, 1, 1))
        y = self.instance_norm(self.group_norm(self.up(y)))
        return nn.functional.hardswish(nn.functional.avg_pool2d(y, 2))


def test_decoder_ops_have_known_shapes_and_params_by_the_groupnorm_rule():
    net = DecoderBits()
    result = analyze(export(net, torch.randn(1, 3, 8, 8)))
    assert result.unknown_shape_nodes == [] and result.unknown_ops == {}
    # opset 17 has no GroupNormalization: torch exports InstanceNormalization over the groups with a
    # constant unit scale and zero bias (2 x groups elements), then the affine Mul and Add
    assert result.features["total_params"] == torch_params(net) + 2 * 2
    up = next(n for n in result.nodes if n.op_type == "ConvTranspose")
    assert up.input_shapes[0] == [1, 8, 18, 18] and up.macs == 8 * 18 * 18 * 4 * 2 * 2


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.gru = nn.GRU(16, 8, bidirectional=True)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        y, _ = self.lstm(x)
        y, _ = self.gru(y)
        return self.fc(y[:, -1])


def test_recurrent_params_equal_torch_exactly():
    net = Recurrent()
    result = analyze(export(net, torch.randn(2, 5, 8)))
    assert result.features["total_params"] == torch_params(net)
    lstm = next(n for n in result.nodes if n.op_type == "LSTM")
    assert lstm.macs == 5 * 2 * 4 * 16 * (8 + 16)  # steps x batch x gates x hidden x (input + hidden)


def test_opset_13_group_norm_chains_keep_every_shape():
    """Below opset 18 GroupNorm exports as Shape -> Reshape -> InstanceNorm -> Reshape, which ONNX's
    own data propagation does not follow; the analyzer's folding must reach the 8th block too."""
    blocks = nn.Sequential(*[nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU())
                             for _ in range(8)])
    example = torch.randn(1, 16, 16, 16)
    result = analyze(export(blocks, example, opset=13))
    assert result.unknown_shape_nodes == []
    assert result.features["conv_macs"] == torch_layer_macs(blocks, example)[0] == 8 * 16 * 16 * 16 * 16 * 9


# Weights reaching a layer through ops on constants count as the initializers they come from, once,
# whatever the analysed batch or sequence length (docs/analyzer.md, Parameters).


class ClassToken(nn.Module):
    """ViT-style: a class token expanded to the batch, concatenated with the patch tokens."""

    def __init__(self, d: int = 64):
        super().__init__()
        self.patch = nn.Conv2d(3, d, 8, 8)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.zeros(1, 17, d))
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], 1) + self.pos
        return self.head(tokens[:, 0])


def test_class_token_expanded_to_the_batch_counts_its_own_elements():
    torch.manual_seed(0)
    net = ClassToken()
    model = export(net, torch.randn(1, 3, 32, 32), dynamic_batch=True)
    for batch in (1, 16):
        result = analyze(model, input_shapes={"input": (batch, 3, 32, 32)})
        assert result.features["total_params"] == torch_params(net) == 14_154
        assert result.features["param_bytes"] == 4 * torch_params(net)


class LearnedPositions(nn.Module):
    """GPT-style: a table of 64 learned positions gathered with arange(T)."""

    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(500, 64)
        self.wpe = nn.Embedding(64, 64)
        self.head = nn.Linear(64, 500)

    def forward(self, idx):
        return self.head(self.wte(idx) + self.wpe(torch.arange(idx.shape[1]).unsqueeze(0)))


def test_positions_gathered_with_arange_count_the_whole_table():
    torch.manual_seed(0)
    net = LearnedPositions()
    model = export(net, torch.randint(0, 500, (1, 16)), dynamic_axes={0: "batch", 1: "sequence"})
    for batch, sequence in ((1, 16), (4, 64)):
        result = analyze(model, input_shapes={"input": (batch, sequence)})
        assert result.features["total_params"] == torch_params(net) == 68_596


def test_positions_over_a_symbolic_sequence_count_the_whole_table():
    """Analysed without input shapes, the gathered positions have no known shape; their table (a
    weight root) is counted all the same, so parameters do not depend on knowing the sequence."""
    torch.manual_seed(0)
    net = LearnedPositions()
    model = export(net, torch.randint(0, 500, (1, 16)), dynamic_axes={0: "batch", 1: "sequence"})
    result = analyze(model)
    assert result.features["total_params"] == torch_params(net) == 68_596
    [positions] = [n for n in result.nodes if n.op_type == "Add" and n.params == 64 * 64]
    assert positions.input_shapes[0][1] is None  # the sequence stays symbolic


class RotaryScale(nn.Module):
    """A rotary-style table computed in the graph: positions arange(T) times a stored inv_freq."""

    def __init__(self):
        super().__init__()
        self.inv_freq = nn.Parameter(torch.rand(8))

    def forward(self, x):
        positions = torch.arange(x.shape[1], dtype=torch.float32)
        return x * torch.cos(positions[:, None] * self.inv_freq[None, :])


def test_a_table_computed_from_arange_counts_only_its_stored_factor_at_any_sequence_length():
    """positions x inv_freq counted arange(T)'s T elements as parameters: 8 without -s, 8 + T with."""
    net = RotaryScale()
    model = export(net, torch.randn(1, 16, 8), dynamic_axes={0: "batch", 1: "sequence"})
    counts = {analyze(model).features["total_params"]}
    counts |= {analyze(model, {"input": (1, t, 8)}).features["total_params"] for t in (16, 64)}
    assert counts == {torch_params(net)} == {8}


class TiedHead(nn.Module):
    """An LM head sharing the embedding's weight (read through a Transpose)."""

    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(500, 64)
        self.ln = nn.LayerNorm(64)
        self.head = nn.Linear(64, 500, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, idx):
        return self.head(self.ln(self.wte(idx)))


def test_weight_tied_through_a_transpose_counts_once():
    torch.manual_seed(0)
    net = TiedHead()
    model = export(net, torch.randint(0, 500, (1, 16)), dynamic_axes={0: "batch", 1: "sequence"},
                   do_constant_folding=False)
    assert any(node.op_type == "Transpose" and node.input[0] == "wte.weight" for node in model.graph.node)
    for batch, sequence in ((1, 16), (2, 48)):
        result = analyze(model, input_shapes={"input": (batch, sequence)})
        assert result.features["total_params"] == torch_params(net) == 32_128
        assert result.features["param_bytes"] == 4 * 32_128
