"""`sniper-onnx db import|stats|export`: the Network Characteristic Database."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, List, Optional

import typer

DbOption = Annotated[Path, typer.Option("--db", help="database file (import creates it if missing)", envvar="SNIPER_ONNX_DB")]
JsonOption = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]


def register(app: typer.Typer) -> None:
    from sniper_onnx.cli import new_group

    group = new_group("The Network Characteristic Database: import measurements, show counts, export training data.")

    @group.command("import")
    def import_(
        results: Annotated[List[Path], typer.Argument(help="JSONL files written by `sniper-profiler run --out`")],
        db: DbOption = Path("ncd.sqlite"),
        models: Annotated[Optional[List[Path]], typer.Option("--models", help="folder with copies of the measured .onnx files, matched by sha256 (repeatable)")] = None,
        json_output: JsonOption = False,
    ) -> None:
        """Import profiler results (idempotent: importing a file twice adds nothing)."""
        from sniper_onnx.analysis.wording import counted, first_five
        from sniper_onnx.cli.progress import progress_bar

        from sniper_onnx.database import Database, import_results
        from sniper_onnx.database.importer import check_model_folders, read_results
        from sniper_onnx.database.store import check_database_path

        # every path is checked before the database is opened: a refused import leaves no new file
        check_database_path(db)
        read = [read_results(path) for path in results]
        check_model_folders(models or ())
        summaries = []
        with Database(db) as database, progress_bar(disable=json_output) as progress:
            for path, records in zip(results, read):
                task = progress.add_task(f"importing {path.name}", total=None)
                summaries.append(import_results(database, path, lambda done, total: progress.update(task, completed=done, total=total), models or (), records))
        left_out = sum(len(s.invalid_records) for s in summaries)
        if json_output:
            typer.echo(json.dumps({"db": str(db), "files": [asdict(s) for s in summaries]}))
            raise typer.Exit(1 if left_out else 0)
        for s in summaries:
            typer.echo(f"{s.path}: {counted(s.added, 'measurement')} and {counted(s.failures_added, 'failure')} added, "
                       f"{s.already_present} already present ({counted(s.networks_added, 'new network')}, "
                       f"{counted(s.devices_added, 'new device')})")
            if s.unreadable_lines:
                typer.echo(f"  {len(s.unreadable_lines)} unreadable line(s) skipped (kept in the file): {s.unreadable_lines[:10]}", err=True)
            if s.newer_schema_lines:
                typer.echo(f"  {len(s.newer_schema_lines)} record(s) of a newer sniper-profiler skipped (kept in the file; "
                           f"upgrade sniper-onnx to import them): lines {s.newer_schema_lines[:10]}", err=True)
            for problem in s.invalid_records[:5]:
                typer.echo(f"  left out: {problem}", err=True)
            if len(s.invalid_records) > 5:
                typer.echo(f"  ... and {len(s.invalid_records) - 5} more left out (--json lists them all)", err=True)
            for problem in s.networks_without_features[:5]:
                typer.echo(f"  no features yet: {problem}", err=True)
            if s.precision_flagged:
                typer.echo(f"  flagged precision_mismatch: {first_five(s.precision_flagged)}; `db export` and `train` leave "
                           "them out: measure again with --precision set to the weights' (int8 for a quantized model, "
                           "fp16, bf16)", err=True)
            if s.precision_cleared:
                typer.echo(f"  precision_mismatch cleared, the weights match the label: {first_five(s.precision_cleared)}",
                           err=True)
        if left_out:  # the rest of each file is imported; the bad records stay in the files
            others = sum(s.records for s in summaries) - left_out
            typer.echo(f"sniper-onnx: {counted(left_out, 'record')} left out (listed above); the other {others} imported",
                       err=True)
            raise typer.Exit(1)

    @group.command("stats")
    def stats(db: DbOption = Path("ncd.sqlite"), json_output: JsonOption = False) -> None:
        """Count networks, devices, measurements and predictions."""
        from sniper_onnx.database import Database
        from sniper_onnx.errors import SniperError

        if not db.exists():
            raise SniperError(f"{db}: no such database; create one with `sniper-onnx db import RESULTS.jsonl --db {db}`")
        with Database(db, create=False) as database:
            result = database.stats()
        if json_output:
            typer.echo(json.dumps(asdict(result)))
            return
        _print_stats(result)

    @group.command("export")
    def export(
        out: Annotated[Path, typer.Option("-o", "--out", help="CSV file to write; - for stdout")] = Path("train.csv"),
        db: DbOption = Path("ncd.sqlite"),
        device: Annotated[Optional[List[str]], typer.Option("--device", help="only this device: its id, its name, or a part of one that only one device holds (repeatable; `db stats` lists them)")] = None,
        exclude_flag: Annotated[Optional[List[str]], typer.Option("--exclude-flag", help="leave out measurements with this flag (repeatable): nan_outputs, inf_outputs, denormal_outputs, ci_target_not_reached, machine_busy, symbolic_dims_defaulted (contended_sessions and precision_mismatch are always left out)")] = None,
        statistic: Annotated[str, typer.Option("--statistic", help="latency of each measurement: median (typical run), min (undisturbed run, most repeatable on shared hosts), p10 or mean")] = "median",
        json_output: JsonOption = False,
    ) -> None:
        """Write the training table: network features, device features, latency (one row per pair)."""
        from sniper_onnx.database import Database, export_csv
        from sniper_onnx.database.export import KNOWN_FLAGS, is_stream, writes_to_stdout
        from sniper_onnx.errors import SniperError

        unknown = sorted(set(exclude_flag or []) - set(KNOWN_FLAGS))
        if unknown:
            raise SniperError(f"--exclude-flag {unknown[0]}: not a profiler flag; use one of {', '.join(KNOWN_FLAGS)}")
        to_stdout, streamed = str(out) == "-", is_stream(out)
        if json_output and writes_to_stdout(out):
            raise SniperError(f"-o {out} with --json: both would be written to stdout; give -o a file, or drop --json")
        if not db.exists():
            raise SniperError(f"{db}: no such database; create one with `sniper-onnx db import RESULTS.jsonl --db {db}`")
        with Database(db, create=False) as database:
            result = export_csv(database, out, device, exclude_flag or (), statistic)
        if json_output:
            typer.echo(json.dumps(asdict(result)))
            return
        # a stream target (/dev/stdout, a FIFO) may be stdout itself, which must hold the CSV alone
        typer.echo(f"{result.rows} rows -> {'stdout' if to_stdout else result.path}", err=streamed)
        if result.left_out_by_flag:
            shown = ", ".join(f"{count} {flag}" for flag, count in result.left_out_by_flag.items())
            typer.echo(f"measurements left out by their flags: {shown} (docs/profiler.md, Flags)", err=True)
        if result.left_out_without_statistic:
            typer.echo(f"{result.left_out_without_statistic} measurements left out: they have no {statistic} "
                       "(imported tables give a median only); --statistic median keeps them", err=True)
        if result.skipped_without_features:
            typer.echo(f"{result.skipped_without_features} (network, device) pairs skipped: their networks have no features yet", err=True)

    app.add_typer(group, name="db")


def _print_stats(result) -> None:
    from rich.markup import escape
    from rich.table import Table

    from sniper_onnx.outputs import output_console

    console = output_console()
    console.print(f"{escape(str(result.path))} (schema {result.schema_version}): {result.networks} networks "
                  f"({result.networks_without_features} without features), {result.devices} devices, "
                  f"{result.measurements} measurements, {result.failed_measurements} failures, {result.predictions} predictions")
    table = Table("device id", "name", "networks", "measurements", "failures")
    for row in result.per_device:
        table.add_row(row.device_id, escape(row.name), str(row.networks), str(row.measurements), str(row.failures))
    if result.per_device:
        console.print(table)
