"""`sniper-onnx zoo list|export`: the reference networks (torchvision layouts, random weights)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def zoo_list(
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """List the zoo networks with torchvision's parameter counts."""
    from sniper_generator.zoo import list_zoo

    rows = list_zoo()
    if json_output:
        typer.echo(json.dumps({"networks": rows}))
        return
    from rich.table import Table

    from sniper_onnx.outputs import output_console

    table = Table(title="sniper-onnx zoo (random weights)")
    columns = (("name", "left"), ("torchvision params", "right"), ("exported", "right"), ("resolution", "right"),
               ("description", "left"))
    for column, justify in columns:
        table.add_column(column, justify=justify)
    for row in rows:
        table.add_row(row["name"], f"{row['params']:,}", f"{row['export_params']:,}", str(row["default_resolution"]),
                      row["description"])
    output_console().print(table)


def zoo_export(
    name: Annotated[str, typer.Argument(help="Network name, see `sniper-onnx zoo list`.")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="ONNX file to write; an existing file is replaced without asking "
                               "(as onnxsim and polygraphy do).")],
    resolution: Annotated[Optional[int], typer.Option(
        "--resolution", "-r", help="Input height and width (default: the network's, 224 or 299).")] = None,
    batch: Annotated[int, typer.Option("--batch", "-b", help="Batch size.")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random weights.")] = 0,
    no_weights: Annotated[bool, typer.Option(
        "--no-weights", help="Weightless skeleton (dims only) for the analyzer; onnxruntime cannot run it.")] = False,
    aux_head: Annotated[bool, typer.Option(
        "--aux-head", help="inception_v3: add the auxiliary classifier as output aux_logits.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Write one zoo network as ONNX (input `input`: batch x 3 x resolution x resolution)."""
    from rich.console import Console

    from sniper_generator.zoo import export_zoo_to_file

    with Console(stderr=True).status(f"building {name}"):  # VGG's 138M random weights take seconds
        result = export_zoo_to_file(name, output, resolution, batch, not no_weights, seed, aux_head)
    if json_output:
        typer.echo(json.dumps(result.to_json_dict()))
    else:
        typer.echo(f"wrote {result.path} ({result.name}, {result.params:,} parameters, "
                   f"input {'x'.join(map(str, result.input_shape))}, {result.bytes / 1e6:.1f} MB)")


def register(app: typer.Typer) -> None:
    from sniper_onnx.cli import new_group

    group = new_group("The reference networks of the paper's Table 2 and more, in torchvision's layouts.")
    group.command("list")(zoo_list)
    group.command("export")(zoo_export)
    app.add_typer(group, name="zoo")
