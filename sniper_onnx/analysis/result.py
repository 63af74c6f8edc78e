"""The analysis result: features, unknown ops, warnings, the node table and the operator graph."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING

from sniper_onnx.analysis.costs import NodeCost
from sniper_onnx.analysis.structure import operator_graph
from sniper_onnx.errors import SniperError
from sniper_onnx.feature_schema import FEATURE_SCHEMA  # defined (and bumped) there; still importable from here

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx


NODE_COLUMNS = (
    "name", "op_type", "category", "is_layer", "macs", "params", "param_bytes", "bytes_read",
    "bytes_written", "input_shapes", "output_shapes", "shapes_known", "tags", "subgraph", "on_critical_path",
)


@dataclass
class AnalysisResult:
    source: str
    features: dict[str, float]
    unknown_ops: dict[str, int]
    warnings: list[str]
    nodes: list[NodeCost]
    critical_path: list[str] = field(default_factory=list)
    model_info: dict = field(default_factory=dict)
    unknown_shape_nodes: list[str] = field(default_factory=list)
    _graph: "nx.DiGraph | None" = field(default=None, repr=False, compare=False)

    @property
    def layer_ops(self) -> dict[str, int]:
        """How many layer nodes of each op type (top level; a control-flow node counts as its own
        op): what `predict` compares with the op types a predictor was trained on."""
        from sniper_onnx.analysis.kernels import layer_op_counts

        return layer_op_counts(self.nodes)

    @property
    def graph(self) -> "nx.DiGraph":
        """networkx DiGraph of operator nodes joined by tensors (node attributes: op_type, macs, ...)."""
        if self._graph is None:
            self._graph = operator_graph(self.nodes)
        return self._graph

    def to_json_dict(self, include_nodes: bool = False, include_kernels: bool = False) -> dict:
        from sniper_onnx import __version__

        data = {
            "source": self.source,
            "sniper_onnx_version": __version__,
            "feature_schema": FEATURE_SCHEMA,
            "model": self.model_info,
            "features": dict(self.features),
            "unknown_ops": dict(self.unknown_ops),
            "layer_ops": self.layer_ops,
            "warnings": list(self.warnings),
            "unknown_shape_nodes": list(self.unknown_shape_nodes),
            "critical_path": list(self.critical_path),
        }
        if include_nodes:
            data["nodes"] = [node.to_row() for node in self.nodes]
        if include_kernels:
            from sniper_onnx.analysis.kernels import KERNEL_FEATURE_NAMES, kernel_table_for_prediction

            table = kernel_table_for_prediction(self.nodes)  # null: control flow, which no row can time
            data["kernel_table"] = None if table is None else {"columns": list(KERNEL_FEATURE_NAMES), "rows": table.tolist()}
        return data

    def write_csv(self, path: str | Path) -> Path:
        """The node table as CSV to ``path``; ``"-"`` writes it to stdout."""
        target = Path(path)
        if str(path) == "-":
            import sys

            self._write_csv_rows(sys.stdout)
            return target
        try:
            with target.open("w", newline="") as handle:
                self._write_csv_rows(handle)
        except OSError as error:
            raise SniperError(f"{target}: cannot write the node table ({error.strerror}); choose a writable path") from None
        return target

    def _write_csv_rows(self, handle) -> None:
        writer = csv.DictWriter(handle, fieldnames=NODE_COLUMNS)
        writer.writeheader()
        for node in self.nodes:
            row = node.to_row()
            for key in ("input_shapes", "output_shapes", "tags"):
                row[key] = _compact(row[key])
            writer.writerow({key: row[key] for key in NODE_COLUMNS})


def _compact(value) -> str:
    """Shapes as 1x3x224x224 ('?' for unknown), several shapes or tags joined by ';'."""
    def one(item) -> str:
        if item is None:
            return "?"
        if isinstance(item, (list, tuple)):
            return "x".join("?" if d is None else str(d) for d in item)
        return str(item)

    return ";".join(one(item) for item in value)
