"""`sniper-onnx import-latencies`: external latency tables into the Network Characteristic Database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, List, Optional

import typer

if TYPE_CHECKING:
    from sniper_onnx.database.external import ImportResult


def import_latencies(
    table: Annotated[Path, typer.Argument(help="Latency table, .csv or .csv.gz (wide: one column per device; long: network, device, latency).")],
    db: Annotated[Path, typer.Option("--db", help="Database file; created if absent.")] = Path("ncd.sqlite"),
    device_specs: Annotated[Optional[Path], typer.Option("--device-specs", help="JSON DeviceSpec list naming the table's devices (default: the shipped NAS-Bench-201 devices).")] = None,
    layout: Annotated[str, typer.Option("--format", help="auto, wide or long.")] = "auto",
    unit: Annotated[Optional[str], typer.Option("--unit", help="s, ms, us or ns (default: the latency column's suffix, e.g. latency_us or time_sec; a bare 'latency' or 'time' is ms).")] = None,
    network_column: Annotated[Optional[str], typer.Option("--network-column", help="Column holding arch strings or ONNX paths.")] = None,
    device_column: Annotated[Optional[str], typer.Option("--device-column", help="Long format: column naming the device.")] = None,
    latency_column: Annotated[Optional[str], typer.Option("--latency-column", help="Long format: column holding the latency.")] = None,
    devices: Annotated[Optional[List[str]], typer.Option("--device", help="Import only this device (repeatable).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Processes that build and hash NAS-Bench-201 networks (1 or more).")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
) -> None:
    """Import an external latency table (HW-NAS-Bench, HELP, or any similar CSV). Idempotent: a second import adds nothing."""
    from sniper_onnx.cli.progress import progress_bar
    from sniper_onnx.database.external import import_latency_table

    # progress on stderr, so stdout holds only the summary (or the one JSON object)
    with progress_bar(disable=as_json) as bar:
        task = bar.add_task(f"importing {table.name}", total=None)
        result = import_latency_table(
            db, table, device_specs=device_specs, layout=layout, unit=unit, network_column=network_column,
            device_column=device_column, latency_column=latency_column, devices=devices, jobs=jobs,
            progress=lambda phase, done, total: bar.update(task, description=phase, completed=done, total=total),
        )
    if as_json:
        typer.echo(json.dumps(result.to_json_dict()))
        return
    if result.devices_without_spec:
        typer.echo(
            f"sniper-onnx: warning: no device spec for {', '.join(result.devices_without_spec)}; imported with every "
            "fact unknown (give --device-specs to describe them)",
            err=True,
        )
    typer.echo(_summary(result))


def _summary(result: ImportResult) -> str:
    """What the import stored, line by line; failed measurements are said to be failed, never
    hidden in the added count, and skipped cells are said to store nothing."""
    from sniper_onnx.analysis.wording import counted

    lines = [
        f"{result.table}: {result.layout} table, {result.rows} rows, {len(result.devices)} devices -> {result.database}",
        f"  networks     {result.networks_added} added, {result.networks_seen - result.networks_added} already there",
        f"  devices      {result.devices_added} added, {len(result.devices) - result.devices_added} already there",
        f"  measurements {result.measurements_added} added, {result.measurements_seen - result.measurements_added} already there",
    ]
    reasons = [text for number, text in (
        (result.non_positive, counted(result.non_positive, "latency", "latencies") + " of 0 or less"),
        (result.not_a_number, counted(result.not_a_number, "not-a-number latency", "not-a-number latencies") + " (NaN or inf)"),
    ) if number]
    if reasons:
        failed = result.non_positive + result.not_a_number
        lines.append(f"  failed       {failed} of these {result.measurements_seen} stored as failed measurements, "
                     f"without a latency: {', '.join(reasons)}")
    if result.missing_values:
        lines.append(f"  skipped      {counted(result.missing_values, 'empty or NA cell', 'empty or NA cells')}, nothing stored")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    app.command("import-latencies")(import_latencies)
