"""Reading an ONNX file without its weights, checking its structure and inferring tensor shapes.

Weights are never read: their shapes come from initializer dims. Shape inference runs on a light copy
whose large initializers carry dims and dtype only, because ONNX shape inference serialises the whole
model (100 MB of weights would cost more than the rest of the analysis).
"""

from __future__ import annotations

import functools
import heapq
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence, Union

import numpy as np
import onnx
import onnx.inliner
from onnx import TensorProto

from sniper_onnx.analysis.folding import as_constant, fold_static_values, initial_values
from sniper_onnx.analysis.shape_rules import complete_output_shapes, output_elem_type_at
from sniper_onnx.analysis.static_ifs import inline_taken_branches, taken_branches
from sniper_onnx.analysis.weightless import load_weightless
from sniper_onnx.analysis.wording import counted
from sniper_onnx.errors import SniperError

ModelSource = Union[str, os.PathLike, onnx.ModelProto]
InputShapes = Mapping[str, Sequence[int]]

# initializers up to this many elements keep their data in the copy given to shape inference, so
# shape-like constants (Reshape's shape, Slice's starts) propagate; larger ones keep dims only
SMALL_CONSTANT_ELEMENTS = 1024
# folding stops at a fixed point; the cap only bounds a model whose chains keep yielding one more
# shape a pass (opset-13 GroupNorm is a Shape->Reshape chain per block, which ONNX's own data
# propagation does not follow)
MAX_FOLD_PASSES = 64
INT64_MAX = 2**63 - 1
BATCH_SYMBOLS = frozenset({"n", "batch", "batch_size", "batchsize", "bs", "b", "none", "?"})


class TensorInfo:
    """A tensor's shape (int dims, None where unknown; None when even the rank is unknown) and dtype.

    A negative dim (what ONNX inference gives a Conv whose input is smaller than its kernel) is not
    a size: it is kept in ``invalid_shape`` for the error message and is unknown in ``shape``, so no
    count ever multiplies it.
    """

    __slots__ = ("shape", "elem_type", "known_shape", "invalid_shape")

    def __init__(self, shape: tuple | None, elem_type: int = 0):
        negative = shape is not None and any(d is not None and d < 0 for d in shape)
        self.invalid_shape = shape if negative else None
        if negative:
            shape = tuple(None if d is not None and d < 0 else d for d in shape)
        self.shape = shape
        self.elem_type = elem_type
        # looked up for every input of every node: computed once
        self.known_shape = shape if shape is not None and None not in shape else None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TensorInfo) and (self.shape, self.elem_type) == (other.shape, other.elem_type)

    def __repr__(self) -> str:
        return f"TensorInfo({self.shape!r}, {self.elem_type})"


@dataclass
class PreparedModel:
    """A validated model in topological order, with the shapes inference found for its tensors."""

    model: onnx.ModelProto
    source: str
    order: list[int]  # indices into model.graph.node, topologically sorted
    shapes: dict[str, TensorInfo]
    inferred_nodes: dict[int, onnx.NodeProto]  # node index -> node carrying inferred subgraphs
    resolved_inputs: dict[str, tuple]
    warnings: list[str] = field(default_factory=list)
    # inputs --input-shape set to other dims than declared -> (their declaration as messages show
    # it, whether a fixed dim was changed or no shape was declared; False when only symbols were set)
    changed_inputs: dict[str, tuple[str, bool]] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ reading


def read_model(source: ModelSource) -> tuple[onnx.ModelProto, str]:
    if isinstance(source, onnx.ModelProto):
        _check_has_graph(source, "<ModelProto>")
        return source, "<ModelProto>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        raise SniperError(f"bytes given ({len(source):,} bytes), not a path or onnx.ModelProto; pass "
                          "onnx.load_from_string(data) for a serialised model")
    if isinstance(source, onnx.GraphProto):
        raise SniperError("an onnx.GraphProto given, not a model; wrap it with onnx.helper.make_model(graph, "
                          "opset_imports=[...])")
    if not isinstance(source, (str, os.PathLike)):
        raise SniperError(f"{type(source).__name__} given: not a path or onnx.ModelProto; pass a .onnx file path "
                          "or a loaded model")
    if str(source).split(":", 1)[0].lower() in ("http", "https", "ftp", "file", "s3", "gs"):
        raise SniperError(f"{source}: URLs are not supported; download the file and pass its local path")
    path = Path(source)
    if not path.exists():
        raise SniperError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise SniperError(f"{path}: is a directory, not an ONNX file; pass the .onnx file inside it")
    if path.stat().st_size == 0:
        raise SniperError(f"{path}: empty file (0 bytes); re-export the model")
    try:
        model = load_weightless(path)
    except Exception:  # noqa: BLE001 - let the reference parser explain what is wrong with the bytes
        model = _load_with_onnx(path)
    _check_has_graph(model, str(path))
    return model, str(path)


def inline_local_functions(model: onnx.ModelProto, label: str, warnings: list[str]) -> onnx.ModelProto:
    """The model with its model-local function calls replaced by their bodies.

    Exporters (torch.onnx's dynamo path, onnxscript, export_modules_as_functions) wrap layers in
    local functions; a call node would otherwise be one unknown op whose convolutions go uncounted.
    """
    if not model.functions:
        return model
    try:
        inlined = onnx.inliner.inline_local_functions(model)
    except Exception as error:  # noqa: BLE001 - the calls stay as unknown ops, and are reported as such
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        warnings.append(f"{label}: could not inline its {len(model.functions)} local function(s) ({reason}); "
                        "their calls are counted as unknown ops")
        return model
    return inlined


# another spelling of the default domain, which onnxruntime runs but ONNX's shape inference only knows as ""
DEFAULT_DOMAIN_ALIAS = "ai.onnx"


def canonical_default_domain(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with the default domain spelled "" in its opset imports and nodes (a copy when it
    spells it "ai.onnx" anywhere)."""
    functions = list(model.functions)
    nodes = [node for graph in _graphs(model.graph) for node in graph.node] + [
        node for function in functions for node in function.node]
    imports = list(model.opset_import) + [entry for function in functions for entry in function.opset_import]
    if not any(x.domain == DEFAULT_DOMAIN_ALIAS for x in nodes + imports):
        return model
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    _merge_default_imports(fixed.opset_import)
    for function in fixed.functions:
        _merge_default_imports(function.opset_import)
        for node in function.node:
            node.domain = "" if node.domain == DEFAULT_DOMAIN_ALIAS else node.domain
    for graph in _graphs(fixed.graph):
        for node in graph.node:
            node.domain = "" if node.domain == DEFAULT_DOMAIN_ALIAS else node.domain
    return fixed


def _merge_default_imports(imports: "RepeatedCompositeFieldContainer[onnx.OperatorSetIdProto]") -> None:
    """One "" entry for the default domain; its own version wins over the alias's."""
    versions: dict[str, int] = {}
    for entry in sorted(imports, key=lambda e: e.domain != ""):
        versions.setdefault("" if entry.domain == DEFAULT_DOMAIN_ALIAS else entry.domain, entry.version)
    del imports[:]
    imports.extend(onnx.helper.make_opsetid(domain, version) for domain, version in versions.items())


def _check_default_opset(model: onnx.ModelProto, warnings: list[str]) -> None:
    """A default-domain opset newer than the installed onnx knows: shape inference and the cost
    rules then follow the newest opset it knows, which is right only if the ops kept their meaning."""
    newest = onnx.defs.onnx_opset_version()
    version = next((entry.version for entry in model.opset_import if entry.domain == ""), 0)
    if version > newest:
        warnings.append(f"the model imports opset {version} of the default domain (ai.onnx), newer than {newest}, the "
                        f"newest onnx {onnx.__version__} knows; ops may have changed meaning since, and costs use the "
                        f"rules of opset {newest}")


def _check_external_data(model: onnx.ModelProto, source: ModelSource, warnings: list[str]) -> None:
    """External data files missing beside the model: the analysis never reads them, but
    onnxruntime (profile, dispatch) refuses the model, so say it here, before anything is measured."""
    if isinstance(source, onnx.ModelProto):
        return  # its external data, if any, is relative to a folder we do not know
    folder = Path(source).parent
    locations = {entry.value for tensor in model.graph.initializer
                 if tensor.data_location == onnx.TensorProto.EXTERNAL
                 for entry in tensor.external_data if entry.key == "location"}
    missing = sorted(name for name in locations if not (folder / name).is_file())
    if missing:
        shown = ", ".join(f"'{name}'" for name in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        warnings.append(f"external data {shown} not found beside the model in {folder}: analysed all the same (weights "
                        "are never read), but onnxruntime will refuse to run it; copy the data file(s) next to it")


def _check_ir_version(model: onnx.ModelProto, warnings: list[str]) -> None:
    """An IR version newer than the installed onnxruntime loads (or, without onnxruntime, than
    the installed onnx knows): the analysis reads it, but it can be neither measured nor run."""
    if model.ir_version <= SAFE_IR_VERSION:
        return
    runtime = _onnxruntime_newest_ir()
    if runtime is not None and model.ir_version > runtime[1]:
        warnings.append(f"the model has IR version {model.ir_version}, newer than onnxruntime {runtime[0]} loads (at "
                        f"most {runtime[1]}): re-save it with ir_version {runtime[1]} (onnx: set model.ir_version, "
                        "then onnx.save), or upgrade onnxruntime")
    elif runtime is None and model.ir_version > onnx.IR_VERSION:
        warnings.append(f"the model has IR version {model.ir_version}, newer than {onnx.IR_VERSION}, the newest onnx "
                        f"{onnx.__version__} knows; onnxruntime will likely refuse to load it: re-save it with "
                        f"ir_version {onnx.IR_VERSION} or lower, or upgrade onnx and onnxruntime")


# every onnxruntime since 1.16 (2023) loads IR 9; newer ones are probed (_onnxruntime_newest_ir)
SAFE_IR_VERSION = 9


@functools.lru_cache(maxsize=1)
def _onnxruntime_newest_ir() -> tuple[str, int] | None:
    """(onnxruntime's version, the newest IR version it loads), found by loading a one-node model
    at each version down from onnx's newest: onnxruntime states its limit only in that error."""
    try:
        import onnxruntime
    except ImportError:
        return None
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "probe",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    probe = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    for version in range(onnx.IR_VERSION, SAFE_IR_VERSION, -1):
        probe.ir_version = version
        try:
            onnxruntime.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
            return onnxruntime.__version__, version
        except Exception:  # noqa: BLE001 - "Unsupported model IR version", or anything else: try older
            continue
    return onnxruntime.__version__, SAFE_IR_VERSION


def _graphs(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    """The graph and every subgraph nested in it."""
    found = [graph]
    for node in graph.node:
        for attribute in node.attribute:
            for sub in ([attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)):
                found += _graphs(sub)
    return found


# what a file that is not ONNX usually is, told by its first bytes: (offset, magic, what it is, what to do)
OTHER_FORMATS = (
    (0, b"PK\x03\x04", "a zip archive, as torch.save writes a checkpoint (weights, not a graph)",
     "export the model with torch.onnx.export"),
    (0, b"\x80", "a Python pickle, as older torch.save checkpoints are (weights, not a graph)",
     "export the model with torch.onnx.export"),
    (0, b"\x89HDF", "an HDF5 file, as Keras saves models", "convert it with tf2onnx"),
    (4, b"TFL3", "a TensorFlow Lite model", "convert it with tf2onnx"),
    (0, b"\x1f\x8b", "a gzip-compressed file", "decompress it first (gunzip)"),
)


def other_format(path: Path) -> str:
    """'PATH is X; do Y' when the file's first bytes say what it is instead of ONNX, else ''."""
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError:
        return ""
    if not head:
        return f"{path}: an empty file, not an ONNX model; re-export the model"
    for offset, magic, what, remedy in OTHER_FORMATS:
        if head[offset:offset + len(magic)] == magic:
            return f"{path}: {what}, not an ONNX model; {remedy}"
    return ""


def _load_with_onnx(path: Path) -> onnx.ModelProto:
    try:
        with warnings.catch_warnings():  # onnx warns that its .onnxtxt format is experimental
            warnings.simplefilter("ignore", UserWarning)
            return onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf raises DecodeError, RuntimeWarning-like errors or ValueError
        known = other_format(path)
        if known:
            raise SniperError(known) from None
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SniperError(
            f"{path}: not a readable ONNX model ({reason}); the file is truncated or in another format, "
            "re-export it with torch.onnx.export or tf2onnx"
        ) from None


def _check_has_graph(model: onnx.ModelProto, label: str) -> None:
    if not model.HasField("graph") and not model.opset_import and model.ir_version == 0:
        # protobuf reads a short text file as a message with nothing set: say what it is not
        raise SniperError(f"{label}: not an ONNX model (nothing in it reads as one: no graph, IR version or "
                          "opset); give an .onnx file, e.g. from torch.onnx.export or tf2onnx")
    # a graph of no nodes that passes inputs (or constants) to its outputs is valid ONNX and runs;
    # only one with no outputs either gives nothing to analyze or run
    if not model.HasField("graph") or not (model.graph.node or model.graph.output):
        raise SniperError(
            f"{label}: the graph has no nodes and no outputs, so there is nothing to analyze or run; if the model "
            "should have layers, the file is truncated or in another format: re-export it"
        )


# ---------------------------------------------------------------------------- structure checks


def subgraph_outer_names(node: onnx.NodeProto) -> set[str]:
    """Tensors a control-flow node's subgraphs read from the enclosing scope."""
    outer: set[str] = set()
    for attribute in node.attribute:
        graphs = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)
        for graph in graphs:
            defined = {t.name for t in graph.input} | {t.name for t in graph.initializer}
            for inner in graph.node:
                defined.update(inner.output)
            for inner in graph.node:
                outer.update(name for name in inner.input if name and name not in defined)
                outer.update(subgraph_outer_names(inner) - defined)
            outer.update(t.name for t in graph.output if t.name not in defined)
    return outer


def node_label(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"{node.op_type}_{index}"


def topological_order(graph: onnx.GraphProto, source: str) -> list[int]:
    """Checks every input has a provider, outputs are produced once and the graph is acyclic."""
    available = {t.name for t in graph.input} | {t.name for t in graph.initializer}
    available.update(t.values.name for t in graph.sparse_initializer)
    producers: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for name in node.output:
            if not name:
                continue
            if name in producers:
                first = graph.node[producers[name]]
                raise SniperError(
                    f"{source}: tensor '{name}' is produced by two nodes ('{node_label(first, producers[name])}' "
                    f"and '{node_label(node, index)}'); ONNX tensors have one producer, re-export the model"
                )
            producers[name] = index

    dependencies: list[set[int]] = []
    for index, node in enumerate(graph.node):
        needed = [name for name in node.input if name]
        if node.op_type in ("If", "Loop", "Scan"):
            needed += sorted(subgraph_outer_names(node))
        deps = set()
        for name in needed:
            if name in producers:
                deps.add(producers[name])
            elif name not in available:
                raise SniperError(
                    f"{source}: node '{node_label(node, index)}' ({node.op_type}) reads tensor '{name}', which no "
                    "node, graph input or initializer provides (dangling input); the graph is incomplete, "
                    "re-export the model"
                )
        dependencies.append(deps)
    for output in graph.output:
        if output.name not in producers and output.name not in available:
            raise SniperError(
                f"{source}: graph output '{output.name}' is produced by no node; the graph is incomplete, "
                "re-export the model"
            )
    return _kahn(graph, dependencies, source)


def _kahn(graph: onnx.GraphProto, dependencies: list[set[int]], source: str) -> list[int]:
    remaining = [len(deps) for deps in dependencies]
    users: list[list[int]] = [[] for _ in dependencies]
    for index, deps in enumerate(dependencies):
        for dep in deps:
            users[dep].append(index)
    # stable: keep the file's order whenever it is already topological (the usual case)
    ready = [index for index, count in enumerate(remaining) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for user in users[index]:
            remaining[user] -= 1
            if remaining[user] == 0:
                heapq.heappush(ready, user)
    if len(order) != len(dependencies):
        raise SniperError(f"{source}: the graph has a cycle ({_describe_cycle(graph, dependencies, set(order))}); "
                          "ONNX graphs must be acyclic, re-export the model")
    return order


def _describe_cycle(graph: onnx.GraphProto, dependencies: list[set[int]], done: set[int]) -> str:
    import networkx as nx

    stuck = nx.DiGraph()
    for index, deps in enumerate(dependencies):
        if index not in done:
            stuck.add_edges_from((dep, index) for dep in deps if dep not in done)
    try:
        cycle = nx.find_cycle(stuck)
    except nx.NetworkXNoCycle:  # pragma: no cover - Kahn only stops early on a cycle
        return "nodes that never become ready"
    names = [node_label(graph.node[a], a) for a, _ in cycle] + [node_label(graph.node[cycle[0][0]], cycle[0][0])]
    return "through " + " -> ".join(f"'{n}'" for n in names)


# ------------------------------------------------------------------------------ input shapes

def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``'input=1x3x224x224'`` (also ``input:1,3,224,224`` and ``input:[1,3,224,224]``) ->
    ``('input', (1, 3, 224, 224))``; a bare ``'1x3x224x224'`` gets the name ``UNNAMED_INPUT``, which
    :func:`name_unnamed_shape` gives to a model's only input.

    One grammar for every command: the device-side profiler's parser, with its errors as ours.
    """
    from sniper_profiler.config import ProfilerError, parse_input_shape as parse_on_device

    try:
        name, dims = parse_on_device(text)
    except ProfilerError as error:
        raise SniperError(str(error)) from None
    too_large = [d for d in dims if d > INT64_MAX]
    if too_large:
        raise SniperError(f"--input-shape {text}: dim {too_large[0]} is above {INT64_MAX}, the largest an ONNX dim "
                          "(int64) can hold")
    if math.prod(dims) > INT64_MAX:
        raise SniperError(f"--input-shape {text}: {math.prod(dims):,} elements, more than a tensor can hold "
                          f"(int64 sizes, at most {INT64_MAX:,})")
    return name, tuple(dims)


def parse_input_shapes(texts: Sequence[str] | None) -> dict[str, tuple[int, ...]]:
    """Every ``--input-shape`` of a command line, by input name. An input given twice with other
    dims is refused: keeping the last silently would analyse a shape the user did not mean."""
    shapes: dict[str, tuple[int, ...]] = {}
    for text in texts or ():
        name, dims = parse_input_shape(text)
        if name in shapes and shapes[name] != dims:
            from sniper_profiler.config import UNNAMED_INPUT

            shown = " and ".join("x".join(map(str, d)) for d in (shapes[name], dims))
            which = "a shape without an input name" if name == UNNAMED_INPUT else f"input '{name}'"
            raise SniperError(f"--input-shape: {which} given twice ({shown}); give each input once")
        shapes[name] = dims
    return shapes


def checked_input_shapes(requested: InputShapes | None) -> dict[str, tuple[int, ...]] | None:
    """The Python API's ``input_shapes`` with each shape as a tuple of ints: a string is read as the
    CLI's DIMS (``'1x3x224x224'``, ``'1,3,224,224'``); a dim that is not an integer (None, a float,
    a bool) is refused with one line."""
    if not requested:
        return None
    if not isinstance(requested, Mapping):
        raise SniperError(f"input_shapes: {type(requested).__name__} given; pass a dict of input name -> shape, "
                          "e.g. {'input': (1, 3, 224, 224)}")
    checked = {}
    for name, dims in requested.items():
        if isinstance(dims, str):
            try:
                checked[name] = parse_input_shape(f"{name}={dims}")[1]
            except SniperError:
                raise SniperError(f"input_shapes[{name!r}]: {dims!r} is not a shape; give e.g. '1x3x224x224' or "
                                  "(1, 3, 224, 224)") from None
            continue
        try:
            dims = list(dims)
        except TypeError:
            raise SniperError(f"input_shapes[{name!r}]: {dims!r} is not a shape; give a tuple of ints such as "
                              "(1, 3, 224, 224)") from None
        bad = [d for d in dims if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer))]
        if bad:
            raise SniperError(f"input_shapes[{name!r}]: dim {bad[0]!r} is not an integer; every dim must be a "
                              f"positive int (given {tuple(dims)!r})")
        checked[name] = tuple(int(d) for d in dims)
    return checked


def name_unnamed_shape(graph: onnx.GraphProto, requested: InputShapes | None, source: str) -> InputShapes | None:
    """``requested`` with a shape given without a name (``-s 1x3x64x64``) under the name of the
    model's only input; with several inputs, which one it sizes is a guess, so that is an error."""
    if not requested:
        return requested
    from sniper_profiler.config import UNNAMED_INPUT  # the package imports its runner: only when needed

    if UNNAMED_INPUT not in requested:
        return requested
    named = dict(requested)
    dims = tuple(named.pop(UNNAMED_INPUT))
    shown = "x".join(map(str, dims))
    initializers = {t.name for t in graph.initializer}
    inputs = [vi.name for vi in graph.input if vi.name not in initializers]
    if not inputs:
        raise SniperError(f"{source}: --input-shape {shown}: the model has no graph input to size; drop it")
    if len(inputs) > 1:
        raise SniperError(f"{source}: --input-shape {shown} names no input and the model has {len(inputs)} "
                          f"inputs ({', '.join(inputs)}); write NAME=DIMS, e.g. {inputs[0]}={shown}")
    if inputs[0] in named and tuple(named[inputs[0]]) != dims:
        given = "x".join(map(str, named[inputs[0]]))
        raise SniperError(f"{source}: --input-shape: input '{inputs[0]}' given twice ({given} and {shown}, "
                          "the latter without its name); give each input once")
    named[inputs[0]] = dims
    return named


def resolve_input_shapes(
    graph: onnx.GraphProto, requested: InputShapes | None, source: str, warnings: list[str]
) -> dict[str, tuple]:
    """Concrete shapes for the graph inputs; see docs/analyzer.md for the default rule (batch 1)."""
    initializers = {t.name for t in graph.initializer}
    inputs = [vi for vi in graph.input if vi.name not in initializers]
    requested = dict(requested or {})
    unknown = sorted(set(requested) - {vi.name for vi in inputs})
    weights = [name for name in unknown if name in initializers]
    if weights:
        raise SniperError(f"{source}: --input-shape {weights[0]}: that is a weight (an initializer), not a runtime "
                          f"input; its shape is stored in the model. The inputs are: "
                          f"{', '.join(vi.name for vi in inputs) or 'none'}")
    if unknown:
        names = ", ".join(vi.name for vi in inputs) or "none"
        raise SniperError(f"{source}: --input-shape names no graph input: {', '.join(unknown)}; the inputs are: {names}")
    for name, (declared, stored) in _conflicting_initializer_inputs(graph).items():
        warnings.append(f"input '{name}' is declared {_listed(declared)}, but its initializer holds {_listed(list(stored))}: "
                        "onnxruntime refuses such a model (the shape of an initializer must match its input's); "
                        "analysed at the initializer's shape, re-export the model with matching declarations")
    sequences = [vi.name for vi in inputs if vi.name in requested and not vi.type.HasField("tensor_type")]
    if sequences:
        raise SniperError(f"{source}: --input-shape {sequences[0]}: that input is not a tensor (a sequence, map or "
                          "optional), so a shape cannot size it; drop it")
    resolved: dict[str, tuple] = {}
    bound = _bound_symbols(inputs, requested, warnings)
    for vi in inputs:
        declared = written = _declared_dims(vi)
        if vi.name not in requested and declared is not None:
            declared = [bound.get(d, d) if isinstance(d, str) else d for d in declared]
        if vi.name in requested:
            dims = tuple(int(d) for d in requested[vi.name])
            if any(d <= 0 for d in dims):
                raise SniperError(f"{source}: --input-shape {vi.name}: every dim must be a positive integer")
            if declared is not None and len(declared) != len(dims):
                raise SniperError(
                    f"{source}: --input-shape {vi.name} has {counted(len(dims), 'dim')} but the input has rank "
                    f"{len(declared)} ({_listed(written)})"
                )
            fixed = [(position, declared[position]) for position in range(len(dims)) if declared is not None
                     and isinstance(declared[position], int) and declared[position] != dims[position]]
            if fixed:
                warnings.append(
                    f"input '{vi.name}' is declared {_listed(written)}; analysed at "
                    f"{'x'.join(map(str, dims))} as --input-shape asks, a shape onnxruntime would refuse to run "
                    f"(fixed dim(s) {', '.join(str(p) for p, _ in fixed)} changed)")
            resolved[vi.name] = dims
            continue
        if declared is None:
            if vi.type.HasField("tensor_type"):
                warnings.append(f"input '{vi.name}' has no shape; pass --input-shape {vi.name}=DIMS")
            continue
        resolved[vi.name] = _default_dims(vi.name, declared, warnings, written)
        if 0 in declared:
            warnings.append(f"input '{vi.name}' is declared {_listed(written)}: a dim of 0 is an empty tensor, and "
                            "onnxruntime runs it so and refuses any other size, so nodes that read it do no work; if "
                            "the 0 stands for an unknown size, re-export the model with a symbolic dim there")
    return resolved


def _conflicting_initializer_inputs(graph: onnx.GraphProto) -> dict[str, tuple[list, tuple]]:
    """Graph inputs fed by an initializer (an overridable weight) whose declared shape has another
    rank or another fixed dim than the initializer: name -> (declared dims, initializer dims)."""
    stored = {t.name: tuple(int(d) for d in t.dims) for t in graph.initializer}
    conflicts = {}
    for vi in graph.input:
        if vi.name not in stored:
            continue
        declared = _declared_dims(vi)
        dims = stored[vi.name]
        if declared is not None and (len(declared) != len(dims) or any(
                isinstance(d, int) and d != s for d, s in zip(declared, dims))):
            conflicts[vi.name] = (declared, dims)
    return conflicts


def _bound_symbols(inputs: list[onnx.ValueInfoProto], requested: dict, warnings: list[str]) -> dict[str, int]:
    """Symbolic dims that --input-shape sets through one input, for every input that shares them
    (``ids[b, t]`` set to 1x8 sets ``mask[b, t]`` too, as onnxruntime's free-dimension overrides
    do). Two inputs setting one symbol to different sizes: a warning, and neither binds it."""
    seen: dict[str, list[tuple[str, int]]] = {}
    for vi in inputs:
        declared = _declared_dims(vi)
        dims = requested.get(vi.name)
        if declared is None or dims is None or len(declared) != len(dims):
            continue  # the rank mismatch is refused with its own message
        for symbol, size in zip(declared, dims):
            if isinstance(symbol, str):
                seen.setdefault(symbol, []).append((vi.name, int(size)))
    bound = {}
    for symbol, uses in seen.items():
        sizes = sorted({size for _, size in uses})
        if len(sizes) == 1:
            bound[symbol] = sizes[0]
        else:
            given = ", ".join(f"{name} {size}" for name, size in uses)
            warnings.append(f"inputs share dim '{symbol}' but --input-shape sets it to different sizes ({given}); "
                            "the model expects them equal, and other inputs with that dim are left unset")
    return bound


def _declared_dims(vi: onnx.ValueInfoProto) -> list | None:
    """Each dim as int, a symbol name (str) or None. A declared 0 stays 0: onnxruntime runs such an
    input only as an empty tensor and refuses any other size, so that is what the costs describe."""
    if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
        return None
    dims: list = []
    for dim in vi.type.tensor_type.shape.dim:
        if dim.HasField("dim_value") and dim.dim_value >= 0:
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param") and dim.dim_param:
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return dims


def _default_dims(name: str, declared: list, warnings: list[str], written: list | None = None) -> tuple:
    """Unset dims that hold the batch become 1, and a warning names them; others stay unknown.
    ``written``: the declaration as the warning quotes it (its symbols, before --input-shape bound any)."""
    batch = _batch_positions(declared)
    dims = tuple(d if isinstance(d, int) else 1 if i in batch else None for i, d in enumerate(declared))
    assumed = sorted(i for i in batch if not isinstance(declared[i], int))
    missing = [i for i, d in enumerate(dims) if d is None]
    if not assumed and not missing:
        return dims
    parts = []
    if assumed:
        named = ", ".join(f"{i}" + (f" ('{declared[i]}')" if isinstance(declared[i], str) else "") for i in assumed)
        parts.append(f"taken as the batch and set to 1: dim{'s' if len(assumed) > 1 else ''} {named}")
    if missing:
        parts.append(f"unknown dims {missing}, so nodes that depend on them get unknown shapes")
    warnings.append(f"input '{name}' is declared {_listed(written or declared)}, analysed as {_listed(list(dims))}; "
                    f"{'; '.join(parts)}; pass --input-shape {name}=DIMS to set them")
    return dims


def _listed(dims: list) -> str:
    """[seq_len, batch, 3]: symbols joined with 'x' would read as one name."""
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _batch_positions(declared: list) -> set[int]:
    """Dims whose symbol names a batch (N, batch, ...) and those sharing their symbol. Without such a
    name the first dim is taken as the batch; with one elsewhere the first is left alone, as in
    ONNX's recurrent layout [seq_len, batch, features]."""
    named = {d for d in declared if isinstance(d, str) and d.lower() in BATCH_SYMBOLS}
    if not named and declared and not isinstance(declared[0], int):
        return {0} | {i for i, d in enumerate(declared) if d is not None and d == declared[0]}
    return {i for i, d in enumerate(declared) if d in named}


# ------------------------------------------------------------------------------ shape inference


def _light_tensor(tensor: TensorProto) -> TensorProto:
    """The tensor itself when small and inline; otherwise its name, dtype and dims only."""
    external = tensor.data_location == TensorProto.EXTERNAL
    count = 1
    for d in tensor.dims:
        count *= d
    if not external and count <= SMALL_CONSTANT_ELEMENTS:
        return tensor
    light = TensorProto(name=tensor.name, data_type=tensor.data_type)
    light.dims.extend(tensor.dims)
    return light


def _light_node(node: onnx.NodeProto) -> onnx.NodeProto:
    if node.op_type != "Constant" or not any(a.name == "value" for a in node.attribute):
        return node
    value = next(a for a in node.attribute if a.name == "value")
    light_value = _light_tensor(value.t)
    if light_value is value.t:
        return node
    light = onnx.NodeProto()
    light.CopyFrom(node)
    for attribute in light.attribute:
        if attribute.name == "value":
            attribute.t.CopyFrom(light_value)
    return light


def _set_dims(vi: onnx.ValueInfoProto, dims: tuple) -> onnx.ValueInfoProto:
    fixed = onnx.ValueInfoProto()
    fixed.CopyFrom(vi)
    shape = fixed.type.tensor_type.shape
    shape.ClearField("dim")
    for d in dims:
        entry = shape.dim.add()
        if d is not None:
            entry.dim_value = int(d)
    return fixed


def _light_model(model: onnx.ModelProto, order: list[int], resolved: dict[str, tuple],
                 trusted_outputs: frozenset = frozenset()) -> onnx.ModelProto:
    """The graph to infer shapes on, without weights. Graph outputs keep their element types but
    not their declared shapes (ONNX inference lets a declaration win over what the inputs give, and
    onnxruntime runs the computed one), except ``trusted_outputs``: those nothing else gives."""
    graph = model.graph
    light = onnx.ModelProto(ir_version=model.ir_version)
    light.opset_import.extend(model.opset_import)
    light.graph.name = graph.name
    light.graph.node.extend(_light_node(graph.node[i]) for i in order)
    light.graph.initializer.extend(_light_tensor(t) for t in graph.initializer)
    conflicts = _conflicting_initializer_inputs(graph)  # analysed at the initializer's shape
    for vi in graph.input:
        dims = resolved.get(vi.name, conflicts[vi.name][1] if vi.name in conflicts else None)
        light.graph.input.append(vi if dims is None else _set_dims(vi, dims))
    light.graph.output.extend(vi if vi.name in trusted_outputs else _shapeless(vi) for vi in graph.output)
    # functions are needed to infer through model-local function calls
    light.functions.extend(model.functions)
    return light


def _shapeless(vi: onnx.ValueInfoProto) -> onnx.ValueInfoProto:
    if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
        return vi
    bare = onnx.ValueInfoProto()
    bare.CopyFrom(vi)
    bare.type.tensor_type.ClearField("shape")
    return bare


def _infer_outputs(model: onnx.ModelProto, order: list[int], resolved: dict[str, tuple],
                   warnings: list[str]) -> tuple[onnx.ModelProto, dict[str, TensorInfo]]:
    """Shapes computed from the inputs; a graph output's declared shape is used only where nothing
    computes one, and a declaration that disagrees with the computed shape is named."""
    inferred, shapes = _infer_with_folding(_light_model(model, order, resolved), warnings)
    declared = {vi.name: tensor_info(vi) for vi in model.graph.output}
    missing = frozenset(name for name, info in declared.items()
                        if info.known_shape is not None and not _known(shapes, name))
    if missing:  # e.g. after an op ONNX cannot infer: the author's declaration is all there is
        inferred, shapes = _infer_with_folding(_light_model(model, order, resolved, missing), warnings)
    for name, info in declared.items():
        computed = shapes.get(name)
        if info.known_shape is None or name in missing or computed is None or computed.known_shape is None:
            continue
        if computed.known_shape != info.known_shape:
            warning = (f"graph output '{name}' is declared {_listed(list(info.known_shape))}, but its inputs give "
                       f"{_listed(list(computed.known_shape))}, which is what onnxruntime runs: analysed at that")
            if warning not in warnings:
                warnings.append(warning)
    return inferred, shapes


def infer_shapes(prepared_model: onnx.ModelProto, warnings: list[str]) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(prepared_model, check_type=False, strict_mode=False, data_prop=True)
    except Exception as error:  # inference is best effort: report it and continue with declared shapes
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        message = f"ONNX shape inference failed ({reason}); only declared shapes are known"
        if message not in warnings:  # inference reruns after each folding pass and fails the same way
            warnings.append(message)
        return prepared_model


def tensor_info(vi: onnx.ValueInfoProto) -> TensorInfo:
    if not vi.type.HasField("tensor_type"):
        return TensorInfo(None, 0)
    tensor_type = vi.type.tensor_type
    if not tensor_type.HasField("shape"):
        return TensorInfo(None, tensor_type.elem_type)
    dims = tuple(
        int(d.dim_value) if d.HasField("dim_value") else None for d in tensor_type.shape.dim
    )
    return TensorInfo(dims, tensor_type.elem_type)


def collect_shapes(graph: onnx.GraphProto, into: dict[str, TensorInfo] | None = None) -> dict[str, TensorInfo]:
    """Shapes of a (sub)graph's tensors: declared and inferred value infos, initializer and Constant dims."""
    shapes = {} if into is None else into
    for vi in list(graph.value_info) + list(graph.output) + list(graph.input):
        info = tensor_info(vi)
        current = shapes.get(vi.name)
        if current is None or (current.known_shape is None and info.shape is not None):
            shapes[vi.name] = info
    for tensor in graph.initializer:
        shapes[tensor.name] = TensorInfo(tuple(int(d) for d in tensor.dims), tensor.data_type)
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value" and node.output:
                    shapes[node.output[0]] = TensorInfo(tuple(int(d) for d in attribute.t.dims), attribute.t.data_type)
    return shapes


def _has_unknown_shapes(graph: onnx.GraphProto, shapes: dict[str, TensorInfo]) -> bool:
    return any(name and (name not in shapes or shapes[name].known_shape is None)
               for node in graph.node for name in node.output)


def _infer_with_folding(light: onnx.ModelProto, warnings: list[str]) -> tuple[onnx.ModelProto, dict[str, TensorInfo]]:
    """Shape inference, then shape arithmetic folded with numpy and inference again while it helps."""
    inferred = infer_shapes(light, warnings)
    shapes = collect_shapes(inferred.graph)
    values = None
    for _ in range(MAX_FOLD_PASSES):
        if not _has_unknown_shapes(inferred.graph, shapes):
            break
        values = initial_values(light.graph) if values is None else values
        computed = fold_static_values(list(light.graph.node), shapes, values)
        completed = _complete_shapes(light, shapes, values)
        if completed:  # a Shape whose input was completed just now folds in this pass, not the next
            computed.update(fold_static_values(list(light.graph.node), shapes, values))
        if not computed and not completed:
            break
        if computed:
            nodes = [as_constant(n.output[0], computed[n.output[0]]) if len(n.output) == 1 and n.output[0] in computed
                     else n for n in light.graph.node]
            del light.graph.node[:]
            light.graph.node.extend(nodes)
        light.graph.value_info.extend(completed)
        inferred = infer_shapes(light, warnings)
        shapes = collect_shapes(inferred.graph)
    return inferred, shapes


def _complete_shapes(light: onnx.ModelProto, shapes: dict[str, TensorInfo], values: dict) -> list[onnx.ValueInfoProto]:
    """Value infos for outputs inference left unknown, in one pass in topological order: ops ONNX
    knows are inferred node by node (so shapes flow past ops it does not know), the others by
    shape_rules."""
    opsets = {entry.domain or "": entry.version for entry in light.opset_import}
    completed = []
    for node in light.graph.node:
        if not node.output or all(not name or _known(shapes, name) for name in node.output):
            continue
        for name, info in _node_outputs(node, shapes, values, opsets).items():
            if info.known_shape is not None and not _known(shapes, name):
                shapes[name] = info  # later nodes of this pass can use it
                completed.append(onnx.helper.make_tensor_value_info(name, info.elem_type or TensorProto.FLOAT,
                                                                    list(info.known_shape)))
    return completed


def _known(shapes: dict[str, TensorInfo], name: str) -> bool:
    return name in shapes and shapes[name].known_shape is not None


def _node_outputs(node: onnx.NodeProto, shapes: dict[str, TensorInfo], values: dict,
                  opsets: dict[str, int]) -> dict[str, TensorInfo]:
    if node.op_type == "Loop" and node.domain in ("", "ai.onnx"):
        return _loop_scan_outputs(node, shapes, values)
    if node.domain in ("", "ai.onnx") and node.op_type not in ("If", "Loop", "Scan"):
        inferred = _infer_one_node(node, shapes, values, opsets.get("", 0))
        # a function op's schema (GroupNormalization-21) infers the output type but no shape: then
        # the op's shape rule gives it
        if any(info.known_shape is not None for info in inferred.values()):
            return inferred
    found = complete_output_shapes(node, lambda name: shapes[name].known_shape if name in shapes else None)
    elem_type_of = lambda name: shapes[name].elem_type if name in shapes else 0  # noqa: E731
    # the type by rule: QLinearConcat's first input is a float scale, its output uint8 like its data
    return {name: TensorInfo(tuple(shape), output_elem_type_at(node, index, elem_type_of))
            for index, (name, shape) in enumerate(zip(node.output, found)) if name and shape is not None}


def _loop_scan_outputs(node: onnx.NodeProto, shapes: dict[str, TensorInfo], values: dict) -> dict[str, TensorInfo]:
    """A Loop's scan outputs as [trip count, *per-iteration shape] (ONNX inference leaves the first
    dim open), when the trip count is a known value (also folded from shape arithmetic) and the
    condition cannot stop the loop early: the body passes its condition input on unchanged (or a
    constant true) and the initial condition is absent or true. Else they stay unknown."""
    body = next((a.g for a in node.attribute if a.name == "body" and a.type == onnx.AttributeProto.GRAPH), None)
    trip = values.get(node.input[0]) if node.input and node.input[0] else None
    if body is None or trip is None or np.asarray(trip).size != 1 or len(body.input) < 2 or not body.output:
        return {}
    trips = int(np.asarray(trip).reshape(()))
    initial = values.get(node.input[1]) if len(node.input) > 1 and node.input[1] else True
    if trips < 0 or trips == INT64_MAX or initial is None or not bool(np.asarray(initial).reshape(-1).all()):
        return {}
    if not _condition_passes_through(body, values):
        return {}
    carried = len(node.input) - 2
    found = {}
    for name in list(node.output)[carried:]:
        info = shapes.get(name)
        if not name or info is None or info.shape is None or not info.shape or None in info.shape[1:]:
            continue
        found[name] = TensorInfo((trips, *info.shape[1:]), info.elem_type)
    return found


def _condition_passes_through(body: onnx.GraphProto, values: dict) -> bool:
    """The body's condition output is its condition input (through Identity), or constant true."""
    producers = {out: n for n in body.node for out in n.output}
    name = body.output[0].name
    for _ in range(8):
        if name == body.input[1].name:
            return True
        node = producers.get(name)
        if node is None:  # an outer tensor
            value = values.get(name)
            return value is not None and bool(np.asarray(value).reshape(-1).all())
        if node.op_type == "Constant":
            tensor = next((a.t for a in node.attribute if a.name == "value"), None)
            try:
                return tensor is not None and bool(onnx.numpy_helper.to_array(tensor).reshape(-1).all())
            except Exception:  # noqa: BLE001 - a constant without data
                return False
        if node.op_type != "Identity" or not node.input:
            return False
        name = node.input[0]
    return False


def _infer_one_node(node: onnx.NodeProto, shapes: dict[str, TensorInfo], values: dict,
                    opset: int) -> dict[str, TensorInfo]:
    names = [name for name in node.input if name]
    if opset <= 0 or any(name not in shapes or shapes[name].shape is None for name in names):
        return {}
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, "")
        types = {name: onnx.helper.make_tensor_type_proto(shapes[name].elem_type, list(shapes[name].shape))
                 for name in names}
        data = {name: onnx.numpy_helper.from_array(values[name], name) for name in names if name in values}
        outputs = onnx.shape_inference.infer_node_outputs(schema, node, types, data)
    except Exception:  # noqa: BLE001 - an op inference cannot handle keeps its outputs unknown
        return {}
    return {name: tensor_info(onnx.helper.make_value_info(name, type_proto)) for name, type_proto in outputs.items()}


def dense_sparse_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with each ``sparse_initializer`` (top graph and subgraphs) as an ordinary
    initializer of its dense dims and dtype (a copy when it has any).

    onnxruntime densifies a sparse initializer when it loads the model and runs the dense kernel,
    so the layer reading it costs and counts as with the dense weight (the same as a
    ``Constant(sparse_value=...)``, which ONNX inference already gives its dense dims). Small ones
    (at most SMALL_CONSTANT_ELEMENTS dense elements) keep their values for shape arithmetic; the
    others carry dims and dtype only, as a weightless skeleton's initializers do.
    """
    if not any(graph.sparse_initializer for graph in _graphs(model.graph)):
        return model
    dense = onnx.ModelProto()
    dense.CopyFrom(model)
    for graph in _graphs(dense.graph):
        for sparse in graph.sparse_initializer:
            graph.initializer.append(_dense_tensor(sparse))
        graph.ClearField("sparse_initializer")
    return dense


def _dense_tensor(sparse: onnx.SparseTensorProto) -> TensorProto:
    dims = [int(d) for d in sparse.dims]
    values = sparse.values
    tensor = TensorProto(name=values.name, data_type=values.data_type)
    tensor.dims.extend(dims)
    if math.prod(dims) > SMALL_CONSTANT_ELEMENTS or values.data_location == TensorProto.EXTERNAL:
        return tensor
    try:
        nonzero = onnx.numpy_helper.to_array(values).reshape(-1)
        indices = onnx.numpy_helper.to_array(sparse.indices).astype(np.int64)
        flat = np.zeros(math.prod(dims), dtype=nonzero.dtype)
        if indices.ndim == 2:  # [nnz, rank] coordinates
            indices = np.ravel_multi_index(tuple(indices.T), dims)
        flat[indices.reshape(-1)] = nonzero
        return onnx.numpy_helper.from_array(flat.reshape(dims), values.name)
    except Exception:  # noqa: BLE001 - dims without data (or malformed indices): dims are what counts
        return tensor


def prepare(source: ModelSource, input_shapes: InputShapes | None = None) -> PreparedModel:
    model, label = read_model(source)
    model = dense_sparse_initializers(canonical_default_domain(model))
    warnings: list[str] = []
    _check_default_opset(model, warnings)
    _check_ir_version(model, warnings)
    _check_external_data(model, source, warnings)
    model = inline_local_functions(model, label, warnings)
    order = topological_order(model.graph, label)
    input_shapes = name_unnamed_shape(model.graph, checked_input_shapes(input_shapes), label)
    resolved = resolve_input_shapes(model.graph, input_shapes, label, warnings)
    inferred, shapes = _infer_outputs(model, order, resolved, warnings)
    taken = taken_branches(inferred, shapes)
    if taken:
        model, inlined = inline_taken_branches(model, taken)
        if inlined:  # the branches' nodes are the graph's now: order and infer it again
            order = topological_order(model.graph, label)
            inferred, shapes = _infer_outputs(model, order, resolved, warnings)
    for name, dims in resolved.items():
        shapes[name] = TensorInfo(tuple(dims), shapes.get(name, TensorInfo(None)).elem_type)
    _check_output_sizes(model.graph, order, shapes, set(input_shapes or {}), label, warnings)
    inferred_nodes = {index: inferred.graph.node[position] for position, index in enumerate(order)
                      if position < len(inferred.graph.node)}
    return PreparedModel(model, label, order, shapes, inferred_nodes, resolved, warnings,
                         _changed_inputs(model.graph, input_shapes))


def _changed_inputs(graph: onnx.GraphProto, requested: InputShapes | None) -> dict[str, tuple[str, bool]]:
    changed = {}
    for vi in graph.input:
        if vi.name not in (requested or {}):
            continue
        declared, dims = _declared_dims(vi), [int(d) for d in requested[vi.name]]
        if declared is None:
            changed[vi.name] = ("with no shape", False)  # it claims no size: a misfit may be the model's own
        elif list(declared) != dims:
            fixed = any(isinstance(d, int) and d != r for d, r in zip(declared, dims))
            changed[vi.name] = (_listed(declared), fixed)
    return changed


# ------------------------------------------------------------------------------ impossible sizes

# ops that slide a window over their input: an input smaller than the window leaves no output
WINDOW_OPS = frozenset({"Conv", "ConvInteger", "QLinearConv", "DeformConv", "FusedConv", "MaxPool", "AveragePool",
                        "LpPool"})


def _check_output_sizes(graph: onnx.GraphProto, order: list[int], shapes: dict[str, TensorInfo],
                        requested: set[str], source: str, warnings: list[str]) -> None:
    """Nodes whose inferred output has a dim below 1 although their inputs are sound: an error when an
    input the user sized reaches them (the size they chose is impossible), else a warning."""
    reached_from: dict[str, str] = {name: name for name in requested}
    for index in order:
        node = graph.node[index]
        origin = next((reached_from[n] for n in node.input if n in reached_from), None)
        reached_from.update((n, origin) for n in node.output if n and origin is not None)
        bad = _first_impossible_output(node, shapes)
        if bad is None:
            continue
        shown = "x".join(str(d) for d in bad)
        where = f"node '{node_label(node, index)}' ({node.op_type})"
        cause = ("gets an input smaller than its kernel" if node.op_type in WINDOW_OPS
                 else "gets inputs that give it an impossible output")
        if origin is not None:
            given = "x".join(str(d) for d in shapes[origin].shape)
            raise SniperError(f"{source}: --input-shape {origin}={given} is too small: {where} {cause}, so its "
                              f"output would be {shown}; give a larger input")
        warnings.append(f"{where} {cause}: its output is {shown}, which onnxruntime would refuse; the model's own "
                        "shapes are inconsistent, so it and the nodes after it count as "
                        + ("empty (0 MACs)" if 0 in bad else "having unknown shapes"))


def _first_impossible_output(node: onnx.NodeProto, shapes: dict[str, TensorInfo]) -> tuple | None:
    """The raw shape of an output with a negative dim, or (for window ops) an empty output of
    non-empty inputs; None when the node did not cause one (its inputs were already impossible)."""
    inputs = [shapes.get(name) for name in node.input if name]
    if any(info is not None and info.invalid_shape is not None for info in inputs):
        return None
    for name in node.output:
        info = shapes.get(name)
        if info is None:
            continue
        if info.invalid_shape is not None:
            return info.invalid_shape
        empty_inputs = any(info_in is None or info_in.known_shape is None or 0 in info_in.known_shape
                           for info_in in inputs)
        if node.op_type in WINDOW_OPS and info.known_shape is not None and 0 in info.known_shape and not empty_inputs:
            return info.known_shape
    return None
