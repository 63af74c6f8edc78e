"""Rich tables for an AnalysisResult: features grouped by Table 1's dimensions, and the node table."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from sniper_onnx.analysis.features import FEATURE_GROUPS
from sniper_onnx.analysis.result import AnalysisResult
from sniper_onnx.analysis.wording import counted
from sniper_onnx.outputs import output_console

UNITS = {"macs": "MACs", "params": "params", "bytes": "bytes"}


def format_value(name: str, value: float) -> str:
    if name.startswith("prop_"):
        return f"{100 * value:.1f} %"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def unit_of(name: str) -> str:
    if name.startswith("prop_"):
        return ""
    for key, unit in UNITS.items():
        if key in name:
            return unit
    return "layers" if name.startswith(("num_", "critical_path_layers")) else ""


def summary_title(result: AnalysisResult) -> Text:
    """The model and its input shapes, the line above the summary table."""
    info = result.model_info
    inputs = ", ".join(f"{n}={'x'.join('?' if d is None else str(d) for d in dims) or 'scalar'}"
                       for n, dims in info["inputs"].items())
    # Text, never markup: a path or an input name in brackets ("[batch]") would otherwise vanish
    return Text(f"{result.source}  ({counted(info['num_nodes'], 'node')}; {inputs})", style="table.title")


def summary_table(result: AnalysisResult) -> Table:
    """Features under Table 1's dimensions; a layer count and its proportion share a row."""
    table = Table()
    table.add_column("Feature", no_wrap=True)
    table.add_column("Value", justify="right", no_wrap=True)
    table.add_column("Unit", no_wrap=True)
    table.add_column("Share", justify="right", no_wrap=True)
    features = result.features
    for group, names in FEATURE_GROUPS.items():
        table.add_row(f"[bold]{group}[/]", "", "", "")
        for name in names:
            if name.startswith("prop_") and f"num_{name[5:]}" in features:
                continue  # shown in the Share column of its count
            share = features.get(f"prop_{name[4:]}") if name.startswith("num_") else None
            table.add_row(
                f"  {name}", format_value(name, features[name]), unit_of(name),
                "" if share is None else format_value("prop_", share),
            )
        table.add_section()
    return table


def node_table(result: AnalysisResult) -> Table:
    """Names, ops and costs; the bytes and every shape are in --json --nodes and --csv."""
    table = Table(title="Per-node costs (* = on the critical path)", title_justify="left")
    table.add_column("node", overflow="fold")
    table.add_column("op", no_wrap=True)
    table.add_column("MACs", justify="right", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("output", no_wrap=True)
    for node in result.nodes:
        shape = node.output_shapes[0] if node.output_shapes else None
        shown = "?" if shape is None else "x".join("?" if d is None else str(d) for d in shape)
        table.add_row(
            escape(("* " if node.on_critical_path else "") + node.name), escape(node.op_type),
            f"{node.macs:,}", f"{node.params:,}", shown if node.shapes_known else f"{shown} (unknown)",
        )
    return table


def print_summary(result: AnalysisResult, with_nodes: bool = False, csv_path: Path | None = None) -> None:
    console = output_console()
    if with_nodes:
        console.print(node_table(result))
    # a line of its own, not the table's title: a title wraps at the table's width, and a long path
    # would split the line that names the model
    console.print(summary_title(result))
    console.print(summary_table(result))
    # on stderr with the prefix every other command uses, so `analyze model.onnx > report.txt` keeps
    # the report clean and the warnings still reach the user
    errors = output_console(stderr=True)
    for warning in result.warnings:
        errors.print(f"sniper-onnx: warning: {escape(warning)}", highlight=False, soft_wrap=True)
    if csv_path is not None:
        console.print(f"node table written to {escape(str(csv_path))}")
