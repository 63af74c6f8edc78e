"""`sniper-onnx generate`: random networks (ONNX + manifest), or the generator's coverage report."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from sniper_generator.dataset import GenerateResult

FAMILY_HELP = "cnn, cnn-strided (blocks that stride), cnn-wide (big convs at full resolution), transformer, transformer-torch (3-D tokens, MatMul + Add linear layers, post-norm, masks: as torch exports them), tiny (1-8 layers, up to about 1e6 MACs: microsecond nets; with activations up to ~20 layer nodes), mixed (75% cnn) or nasbench201."


def _progress(label: str):
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from sniper_onnx.cli.progress import progress_bar

    return progress_bar(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())


def _run_with_progress(total: int, label: str, work):
    with _progress(label) as bar:
        task = bar.add_task(label, total=total)
        return work(lambda done: bar.update(task, completed=done))


def _print_coverage(report) -> None:
    from rich.table import Table

    from sniper_onnx.outputs import output_console

    from sniper_generator.coverage import QUANTILES

    table = Table(title=f"{report.count} nets, family {report.family} {report.families}, seed {report.seed}")
    table.add_column("feature")
    for level in QUANTILES:
        table.add_column({0.0: "min", 1.0: "max"}.get(level, f"q{int(level * 100)}"), justify="right")
    for name, values in report.quantiles.items():
        table.add_row(name, *(f"{v:.3g}" for v in values))
    console = output_console()
    console.print(table)
    if report.unknown_ops:
        console.print(f"ops the analyzer does not know (nets affected): {report.unknown_ops}")
    if report.zoo_note:
        console.print(f"zoo: not compared, {report.zoo_note}")
    for entry in report.zoo:
        verdict = "inside" if not entry.outside else "OUTSIDE: " + ", ".join(
            f"{k}={entry.features.get(k, 0.0):.3g}" for k in entry.outside)
        console.print(f"zoo {entry.name}: {verdict}")


def generate(
    count: Annotated[int, typer.Option("--count", "-n", help="How many networks.")] = 100,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Run seed; net i depends on (seed, i) only.")] = 0,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Output directory (created); required unless --coverage.")] = None,
    family: Annotated[str, typer.Option("--family", "-f", help=FAMILY_HELP)] = "cnn",
    manifest_only: Annotated[bool, typer.Option(
        "--manifest-only", help="Write manifest.jsonl only (specs + features), no ONNX files.")] = False,
    max_macs: Annotated[Optional[float], typer.Option(
        "--max-macs", help="Truncate the MACs distribution (e.g. 1e9 for a quick dataset): a positive finite "
                           "number of MACs, 1e6 or more (--family tiny: 1000 or more).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Worker processes.")] = 1,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an existing manifest in --out and delete the .onnx files it listed "
                            "(only those; other files stay); likewise the files an interrupted run lists in "
                            "manifest.jsonl.partial.")] = False,
    coverage: Annotated[bool, typer.Option(
        "--coverage", help="Instead of writing nets, report feature quantiles and check the zoo is inside "
                           "(--family tiny and nasbench201: the quantiles only, their nets are not meant to cover it).")] = False,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="With --coverage: write a PNG plot here.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Generate random networks as ONNX files plus manifest.jsonl (id, seed, config, features).

    A net is re-made from (generator version, config, seed): keep the manifest, not the weights.
    """
    from sniper_onnx.errors import SniperError

    if plot is not None and not coverage:
        raise SniperError("--plot draws the coverage report; add --coverage, or drop --plot")
    if coverage and (out is not None or manifest_only or overwrite):
        given = "--out" if out is not None else "--manifest-only" if manifest_only else "--overwrite"
        raise SniperError(f"{given} writes nets, which --coverage does not (it reports feature quantiles); drop "
                          f"{given}, or drop --coverage to write the nets")
    if jobs < 1:  # here, not in the generator: it checks only after it has made the --out folder
        raise SniperError(f"--jobs {jobs}: must be at least 1")
    if coverage:
        from sniper_generator.coverage import coverage_report, plot_coverage

        if plot is not None:
            from sniper_onnx.outputs import plot_path

            plot = plot_path(plot)  # a bad format or a folder fails now, not after sampling
        from sniper_profiler.runner import terminate_as_interrupt

        with terminate_as_interrupt():  # SIGTERM, SIGHUP: the workers stopped and said as Ctrl-C is
            report = _run_with_progress(count, "coverage", lambda tick: coverage_report(
                count, seed, family, jobs=jobs, progress=tick, max_macs=max_macs))
        if plot is not None:
            plot_coverage(report, str(plot))
        if json_output:
            typer.echo(json.dumps(report.to_json_dict()))
        else:
            _print_coverage(report)
        if plot is not None:  # on stderr, so that --json's stdout stays one JSON object
            typer.echo(f"wrote {plot}", err=True)
        return
    if out is None:
        raise SniperError("--out DIR is required unless --coverage: give the directory for the ONNX files and "
                          "manifest.jsonl")
    from sniper_generator.dataset import generate_dataset
    from sniper_onnx.cli import on_interrupt
    from sniper_profiler.runner import terminate_as_interrupt

    with terminate_as_interrupt():  # SIGTERM, SIGHUP: the workers stopped and said as Ctrl-C is (exit 130)
        result = _run_with_progress(count, "generate", lambda tick: generate_dataset(
            count, seed, out, family, manifest_only, max_macs, overwrite, jobs, progress=tick,
            interrupted=lambda left: on_interrupt(left.hint())))
    if json_output:
        typer.echo(json.dumps(result.to_json_dict()))
    else:
        _print_written(result)
    _warn_unlisted(result)


def _print_written(result: GenerateResult) -> None:
    from sniper_onnx.analysis.wording import counted

    files = "no ONNX files (manifest only)" if result.manifest_only else counted(
        len(result.onnx_files), "ONNX file", "ONNX files")
    typer.echo(f"wrote {result.manifest} ({counted(result.count, 'net', 'nets')}, {files}); total MACs "
               f"{min(result.total_macs):.3g} .. {max(result.total_macs):.3g}")
    if result.removed_partial_onnx:
        typer.echo(f"removed {counted(len(result.removed_partial_onnx), 'ONNX file', 'ONNX files')} an interrupted "
                   "run had left (listed in manifest.jsonl.partial)")
    if result.removed_onnx:
        typer.echo(f"removed {counted(len(result.removed_onnx), 'ONNX file', 'ONNX files')} the replaced manifest listed and the new one does not")


def _warn_unlisted(result: GenerateResult) -> None:
    """On stderr, so that --json's stdout stays one JSON object; `profile DIR` measures every .onnx
    file in DIR, listed in the manifest or not."""
    from sniper_onnx.analysis.wording import counted

    if not result.unlisted_onnx:
        return
    number = len(result.unlisted_onnx)
    typer.echo(f"sniper-onnx: warning: {result.out_dir} holds {counted(number, '.onnx file', '.onnx files')} the "
               f"manifest does not list (e.g. {Path(result.unlisted_onnx[0]).name}); `sniper-onnx profile "
               f"{shlex.quote(result.out_dir)}` would measure {'it' if number == 1 else 'them'} too", err=True)


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
