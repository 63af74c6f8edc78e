"""`sniper-onnx analyze`: Table 1 structural features of an ONNX model, without running it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze_command)


def analyze_command(
    model: Annotated[Path, typer.Argument(help="ONNX model file to analyse (its weights are not loaded).")],
    input_shape: Annotated[
        Optional[list[str]],
        typer.Option("--input-shape", "-s", metavar="[NAME=]DIMS",
                     help="Concrete shape of a graph input: input=1x3x224x224, input:1,3,224,224 or "
                          "input:[1,3,224,224]; a bare 1x3x224x224 sizes the model's only input. Repeatable. "
                          "Default: unknown batch dims are 1."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    nodes: Annotated[bool, typer.Option("--nodes", help="Add the per-node cost table (to JSON too).")] = False,
    kernels: Annotated[bool, typer.Option(
        "--kernels", help="With --json: add the kernel table (one row per layer node), the input of a "
                          "predictor's kernel-sum path.")] = False,
    csv_path: Annotated[
        Optional[Path], typer.Option("--csv", metavar="FILE", help="Write the per-node cost table as CSV ('-': to stdout, instead of the summary).")
    ] = None,
) -> None:
    """Extract the structural features that decide inference time (Sniper Table 1)."""
    from sniper_onnx.analysis import analyze, parse_input_shapes

    if kernels and not as_json:
        from sniper_onnx.errors import SniperError

        raise SniperError("--kernels: the kernel table is part of the JSON output only; add --json")
    to_stdout = csv_path is not None and str(csv_path) == "-"
    if to_stdout and as_json:
        from sniper_onnx.errors import SniperError

        raise SniperError("--csv - and --json both write to stdout; give --csv a file name, or drop --json")
    if csv_path is not None and not to_stdout:
        _refuse_overwriting_the_model(model, csv_path)
    shapes = parse_input_shapes(input_shape)
    result = analyze(model, input_shapes=shapes or None)
    if to_stdout:  # the table alone on stdout, for a pipe; warnings go to stderr
        result.write_csv(csv_path)
        for warning in result.warnings:
            typer.echo(f"sniper-onnx: warning: {warning}", err=True)
        return
    if csv_path is not None:
        result.write_csv(csv_path)
    if as_json:
        typer.echo(json.dumps(result.to_json_dict(include_nodes=nodes, include_kernels=kernels)))
        for warning in result.warnings:  # also in the JSON; on stderr too, so a pipe's reader is not the only one told
            typer.echo(f"sniper-onnx: warning: {warning}", err=True)
        return
    from sniper_onnx.analysis.render import print_summary

    print_summary(result, with_nodes=nodes, csv_path=csv_path)


def _refuse_overwriting_the_model(model: Path, output: Path) -> None:
    from sniper_onnx.errors import SniperError
    from sniper_onnx.outputs import is_same_file

    if is_same_file(output, model):
        raise SniperError(f"--csv {output}: is the model being analysed; writing the table there would destroy it, "
                          "give another file")
