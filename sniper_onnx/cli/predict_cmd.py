"""`sniper-onnx train | predict | evaluate | feedback | adapt | bench hw-nasbench201`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, List, Optional

import typer


PredictorOpt = Annotated[Optional[str], typer.Option("--predictor", "-p", help="Predictor .onnx (default: the shipped one).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def _print_json(data: dict) -> None:
    typer.echo(json.dumps(data, indent=2, default=float))


def _table(title: str, columns: List[str], rows: List[List[str]]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from sniper_onnx.outputs import output_console

    table = Table(title=escape(title))  # paths and names are text, never rich markup
    for column in columns:
        table.add_column(column, justify="left" if column in ("network", "device", "path", "predictor") else "right")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    output_console().print(table)  # piped: one row per line, network and device names whole


def _epoch_progress(epochs: int):
    from sniper_onnx.cli.progress import progress_bar

    progress = progress_bar()
    task = progress.add_task("training the PCN", total=epochs)

    def advance(epoch: int, loss: float) -> None:
        progress.update(task, completed=epoch + 1, description=f"training the PCN (log-MSE {loss:.4f})")

    return progress, advance


def train(
    output: Annotated[str, typer.Option("--output", "-o", help="Where to write the predictor .onnx.")],
    db: Annotated[Optional[str], typer.Option("--db", help="Network Characteristic Database (SQLite).")] = None,
    table: Annotated[Optional[str], typer.Option("--table", help="Training CSV (as `db export` writes it) instead of --db.")] = None,
    statistic: Annotated[str, typer.Option("--statistic", help="With --db: each measurement's median (default), min, p10 or mean.")] = "median",
    epochs: Annotated[int, typer.Option(help="PCN training epochs (at least 3,000 steps whatever the table's size); "
                                             "the kernel-sum nets train 6,000 steps each either way, so fewer epochs "
                                             "do not make a quick smoke run.")] = 40,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[Optional[List[str]], typer.Option("--device", "-d", help="Train on this device only (repeatable; a name or the part of it only one device holds; default: all), e.g. to leave one out and `adapt` to it.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train key features, per-device Bayesian ridge and the PCN; export ONE framework-free ONNX file."""
    from sniper_onnx.predictors.commands import train_command

    progress, advance = _epoch_progress(epochs)
    with progress:
        report = train_command(output, db=db, table=table, epochs=epochs, seed=seed, progress=advance, statistic=statistic,
                               status=lambda message: typer.echo(message, err=True), warn=_warn, devices=device)
    if as_json:
        _print_json({"output": output, **report.to_json_dict()})
        return
    typer.echo(f"wrote {output}: {report.networks} networks, {len(report.devices)} devices, {report.pairs} pairs; "
               f"Structure Checker threshold {report.structure_threshold:.4g} MACs")
    for device, keys in report.key_features.items():
        typer.echo(f"  {device}: key features " + ", ".join(
            f"{f['name']} ({f['coefficient']:.3g})" for f in keys["features"]))
    for device, facts in report.kernel_path.get("devices", {}).items():
        call = f"; a call costs {facts['call_seconds'] * 1e6:.3g} us" if "call_seconds" in facts else ""
        typer.echo(f"  {device}: held-out MAPE kernel sum {100 * facts['kernel_mape']:.1f} %, "
                   f"PCN {100 * facts['pcn_mape']:.1f} % on {facts['held_out_pairs']} pair(s) -> {facts['path']} "
                   f"answers{_few_pairs(facts)}{call}")


def _few_pairs(facts: dict) -> str:
    """Why the kernel sum answers where the PCN scored lower: too few held-out pairs to trust it."""
    from sniper_onnx.predictors.training import MIN_PAIRS_FOR_THE_PCN

    if facts["path"] == "kernels" and facts["pcn_mape"] <= facts["kernel_mape"] \
            and facts["held_out_pairs"] < MIN_PAIRS_FOR_THE_PCN:
        return (f" (the PCN takes a device from it on {MIN_PAIRS_FOR_THE_PCN} held-out pairs or more; "
                "measure more networks on this device)")
    return ""


def predict(
    models: Annotated[Optional[List[str]], typer.Argument(help="ONNX models (.onnx), folders of them, or `analyze --json` outputs; -s applies to the .onnx models only.")] = None,
    device: Annotated[Optional[List[str]], typer.Option("--device", "-d", help="Device name, or the part of it only one device holds (repeatable; default: all known).")] = None,
    predictor: PredictorOpt = None,
    input_shape: Annotated[Optional[List[str]], typer.Option(
        "--input-shape", "-s", metavar="[NAME=]DIMS",
        help="Concrete input shape of the .onnx models: input=1x3x224x224, input:1,3,224,224 or input:[1,3,224,224]; "
             "a bare 1x3x224x224 sizes each model's only input (repeatable).")] = None,
    as_json: JsonOpt = False,
    list_known: Annotated[bool, typer.Option("--list-devices", help="List the devices the predictor knows, and exit.")] = False,
) -> None:
    """Predict inference time without running the model: seconds, 90% interval, and which path answered."""
    from sniper_onnx.predictors.commands import predict_files

    if list_known:
        _print_devices(predictor, as_json)
        return
    if not models:
        from sniper_onnx.errors import SniperError

        raise SniperError("give one or more models to predict (or --list-devices to see the devices)")

    shapes = None
    if input_shape:
        from sniper_onnx.analysis import parse_input_shapes

        shapes = parse_input_shapes(input_shape)
    result = predict_files(models, device, predictor, shapes)
    for warning in result.warnings():
        typer.echo(f"sniper-onnx: warning: {warning}", err=True)
    if as_json:
        _print_json(result.to_json_dict())
    else:
        from sniper_profiler.units import milliseconds

        _table(f"predicted latency ({result.predictor})", ["network", "device", "ms", "90% interval (ms)", "path"],
               [[r.network, r.device, milliseconds(r.seconds), f"{milliseconds(r.low)} – {milliseconds(r.high)}",
                 f"{r.path}, extrapolated" if r.extrapolated else r.path] for r in result.rows])
    for failure in result.failures:  # the others were predicted; a script must still see the failure
        typer.echo(f"sniper-onnx: error: {failure}", err=True)
    if result.failures:
        raise typer.Exit(1)


def _print_devices(predictor: Optional[str], as_json: bool) -> None:
    from dataclasses import asdict

    from sniper_onnx.predictors.commands import list_devices

    known = list_devices(predictor)
    if as_json:
        _print_json({"devices": [asdict(k) for k in known]})
        return
    _table("devices the predictors know", ["device", "path", "corrected", "predictor"],
           [[k.device, k.path, "yes" if k.corrected else "", Path(k.predictor).name] for k in known])


def evaluate(
    predictor: PredictorOpt = None,
    db: Annotated[Optional[str], typer.Option("--db", help="Database with measured latencies.")] = None,
    table: Annotated[Optional[str], typer.Option("--table", help="Measured CSV (as `db export` writes it).")] = None,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Write a predicted-vs-measured PNG here.")] = None,
    statistic: Annotated[Optional[str], typer.Option("--statistic", help="With --db: each measurement's median, min, p10 or mean (default: the one the predictor was trained on, else median).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """MAPE, RMSPE, Acc(±5%), Acc(±10%) and Spearman per device against measured latencies."""
    from sniper_onnx.predictors.commands import evaluate_command

    report = evaluate_command(predictor, db=db, table=table, plot=plot, statistic=statistic, warn=_warn)
    for warning in report.warnings:
        _warn(warning)
    for device, pairs in report.unknown_devices.items():
        typer.echo(f"sniper-onnx: warning: {device}: {pairs} measured pairs left out, unknown to {report.predictor} "
                   "(adapt it to that device first)", err=True)
    if as_json:
        _print_json(report.to_json_dict())
        return
    rows = [[d, str(m["n"]), f"{m['mape_pct']:.2f}", f"{m['rmspe_pct']:.2f}", f"{100 * m['acc5']:.1f}",
             f"{100 * m['acc10']:.1f}", f"{m['spearman']:.3f}"] for d, m in {**report.devices, "ALL": report.overall}.items()]
    against = f" against each measurement's {report.statistic}" if report.statistic else ""
    _table(f"accuracy of {report.predictor}{against}", ["device", "n", "MAPE %", "RMSPE %", "Acc±5 %", "Acc±10 %",
                                                          "Spearman"], rows)
    if report.plot:
        typer.echo(f"plot: {report.plot}")


def _before(mape: Optional[float]) -> str:
    return "(new device, nothing before) " if mape is None else f"{100 * mape:.1f}% -> "


def _adapt_summary(report, output: str, as_json: bool, verb: str = "adapting") -> None:
    for warning in report.warnings:
        _warn(warning)
    if as_json:
        _print_json({"output": output, **report.to_json_dict()})
        return
    ridge = f", ridge {report.ridge:g}" if report.ridge is not None else ""
    typer.echo(f"wrote {output}: device {report.device} (slot {report.slot}) from {report.samples} samples, "
               f"{verb} {Path(report.predictor).name}; sample MAPE {_before(report.sample_mape_before)}"
               f"{100 * report.sample_mape_after:.1f}%, leave-one-out log-RMSE {report.loo_rmse_log:.3f}; "
               f"prior {report.prior}{ridge}, Time Trimmer features: {', '.join(report.trimmer_features) or 'none'}")
    if report.set_aside:
        typer.echo(f"sniper-onnx: warning: {len(report.set_aside)} sample(s) set aside, their networks have no layer "
                   f"for the kernel sum to time (kept in the file's measurements): {', '.join(report.set_aside[:5])}", err=True)


def adapt(
    samples: Annotated[str, typer.Option("--samples", help="CSV/JSONL of network,latency_ms (networks: .onnx, analyze JSON or arch string).")],
    output: Annotated[str, typer.Option("--output", "-o", help="Adapted predictor .onnx.")],
    predictor: PredictorOpt = None,
    device_spec: Annotated[Optional[str], typer.Option("--device-spec", help="DeviceSpec JSON of the new device.")] = None,
    device: Annotated[Optional[str], typer.Option("--device", "-d", help="Device name (default: the spec's name).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Few-shot adaptation: a predictor for a new device from ~10 measured networks (still one ONNX file)."""
    from sniper_onnx.predictors.commands import adapt_command

    _adapt_summary(adapt_command(predictor, samples, output, device_spec, device), output, as_json)


def feedback(
    device: Annotated[str, typer.Option("--device", "-d", help="Known device the measurements come from (or the part of its name only it holds).")],
    samples: Annotated[str, typer.Option("--samples", help="CSV/JSONL of network,latency_ms measured on it.")],
    predictor: PredictorOpt = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Output .onnx (default: update --predictor in place).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Time Trimmer: most residual features to fit (leave-one-out picks 0..k).")] = 3,
    as_json: JsonOpt = False,
) -> None:
    """Time Trimmer: correct a device's residuals from new measurements (Pearson top-k, linear fit)."""
    from sniper_onnx.predictors.commands import feedback_command

    report = feedback_command(predictor, device, samples, output, top_k)
    _adapt_summary(report, output or str(predictor), as_json, verb="correcting")


def bench_hw_nasbench201(
    table: Annotated[str, typer.Option("--table", help="latency_ms.csv.gz (arch_index, arch, one column per device).")],
    train: Annotated[str, typer.Option("--train", help="Comma-separated training device columns.")],
    test: Annotated[str, typer.Option("--test", help="Comma-separated test device columns (never trained on).")],
    devices: Annotated[Optional[str], typer.Option("--devices", help="devices.csv (kind, batch) for devices without a shipped spec.")] = None,
    samples: Annotated[int, typer.Option("--samples", help="Measured archs per test device.")] = 10,
    reference_archs: Annotated[Optional[str], typer.Option("--reference-archs", help="Arch indices to use as samples (default: random).")] = None,
    epochs: Annotated[int, typer.Option(help="PCN training epochs.")] = 15,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Few-shot benchmark on HW-NAS-Bench: train, adapt each test device with its samples, rank all archs."""
    from rich.console import Console

    from sniper_onnx.predictors.hwnas import run_benchmark

    split = lambda text: [t.strip() for t in text.split(",") if t.strip()]  # noqa: E731
    console = Console(stderr=True)
    with console.status("benchmark") as status:
        report = run_benchmark(table, devices, split(train), split(test), samples, reference_archs, epochs, seed,
                               progress=lambda message: status.update(message))
    if as_json:
        _print_json(report.to_json_dict())
        return
    rows = [[r.device, str(r.samples), f"{r.sniper['spearman']:.3f}", f"{r.sniper['kendall']:.3f}",
             f"{r.sniper['mape_pct']:.1f}", f"{100 * r.sniper['acc10']:.1f}", f"{r.flops['spearman']:.3f}",
             f"{r.flops['mape_pct']:.1f}"] for r in report.results]
    rows.append(["MEAN", "", *(f"{report.mean('sniper', k):.3f}" for k in ("spearman", "kendall")),
                 f"{report.mean('sniper', 'mape_pct'):.1f}", f"{100 * report.mean('sniper', 'acc10'):.1f}",
                 f"{report.mean('flops', 'spearman'):.3f}", f"{report.mean('flops', 'mape_pct'):.1f}"])
    _table(f"HW-NAS-Bench few-shot ({report.feature_source})",
           ["device", "samples", "ρ", "τ", "MAPE %", "Acc±10 %", "FLOPs ρ", "FLOPs MAPE %"], rows)


def register(app: typer.Typer) -> None:
    from sniper_onnx.cli import new_group

    for command in (train, predict, evaluate, feedback, adapt):
        app.command()(command)
    bench = new_group("Accuracy benchmarks of the predictors on public latency data.")
    bench.command("hw-nasbench201")(bench_hw_nasbench201)
    app.add_typer(bench, name="bench")


def _warn(message: str) -> None:
    typer.echo(f"sniper-onnx: warning: {message}", err=True)
