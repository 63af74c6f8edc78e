"""Benchmark the Network Structure Analyzer (issue 2).

1. In-process ``analyze()`` of ResNet-50 (with its 100 MB of weights on disk): median of N runs,
   from the file and from an already loaded ModelProto. Target: under 100 ms.
2. The whole CLI process ``sniper-onnx analyze densenet121.onnx --json`` against onnx-tool's profile
   of the same file (``python -m onnx_tool -i densenet121.onnx -f out.txt``), run alternately, side by
   side, median wall time of N runs each. Target: sniper-onnx faster.
3. A cross-check of parameters and MACs against onnx-tool's own counts (its MACs count elementwise and
   normalisation work differently, see docs/analyzer.md).

Usage: .venv/bin/python benchmarks/bench_analyze.py [--repeat 15] [--cli-repeat 5] [--json]
Models are generated from sniper_generator.zoo into a temporary directory (nothing is downloaded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import importlib.util
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path


LIBRARY_PROCESS = (
    "import json, sys; from sniper_onnx import analyze; print(json.dumps(analyze(sys.argv[1]).to_json_dict()))"
)


def median_ms(samples: list[float]) -> float:
    return round(1000 * statistics.median(samples), 1)


def time_calls(function, repeat: int) -> list[float]:
    function()  # warm-up: imports and file cache
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return samples


def time_process(command: list[str], env: dict) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def process_env(folder: str) -> dict:
    """Both tools run as installed packages do: with cached bytecode (kept in a temporary folder,
    since this development shell sets PYTHONDONTWRITEBYTECODE and would recompile sniper-onnx's
    editable sources on every run while onnx-tool's site-packages bytecode is cached)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(folder) / "pycache")
    return env


def onnx_tool_counts(path: Path) -> tuple[float, int]:
    import onnx_tool

    graph = onnx_tool.Model(str(path)).graph
    graph.shape_infer()
    graph.profile()
    macs = graph.macs[0] if isinstance(graph.macs, (list, tuple)) else graph.macs
    return float(macs), int(graph.params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="in-process runs per measurement")
    parser.add_argument("--cli-repeat", type=int, default=5, help="process runs per tool")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if importlib.util.find_spec("onnx_tool") is None:
        sys.exit("bench_analyze.py: onnx-tool (the peer it measures against) is not installed; "
                 "pip install -e \".[bench]\"")

    import onnx
    from rich.progress import Progress

    from sniper_generator.zoo import export_zoo_model
    from sniper_onnx import analyze

    cli = Path(sys.executable).parent / "sniper-onnx"
    report: dict = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs)",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    with tempfile.TemporaryDirectory() as folder, Progress(transient=True) as progress:
        task = progress.add_task("benchmark", total=2 * args.repeat + 2 * args.cli_repeat + 4)
        paths = {}
        for name in ("resnet50", "densenet121"):
            paths[name] = Path(folder) / f"{name}.onnx"
            onnx.save(export_zoo_model(name, weights=True), paths[name])
            progress.advance(task)
        resnet = paths["resnet50"]
        loaded = onnx.load(str(resnet))

        def advancing(function):
            def run():
                function()
                progress.advance(task)
            return run

        from_file = time_calls(advancing(lambda: analyze(resnet)), args.repeat)
        from_proto = time_calls(advancing(lambda: analyze(loaded)), args.repeat)
        report["resnet50_file_mb"] = round(resnet.stat().st_size / 1e6, 1)
        report["analyze_resnet50_from_file_median_ms"] = median_ms(from_file)
        report["analyze_resnet50_from_modelproto_median_ms"] = median_ms(from_proto)

        dense = paths["densenet121"]
        ours_cmd = [str(cli), "analyze", str(dense), "--json"]
        theirs_cmd = [sys.executable, "-m", "onnx_tool", "-i", str(dense), "-f", str(Path(folder) / "onnx_tool.txt")]
        env = process_env(folder)
        commands = {
            "sniper_onnx": ours_cmd,
            "onnx_tool": theirs_cmd,
            # where the time goes: the same analysis without the CLI framework, and the framework alone
            "sniper_onnx_library": [sys.executable, "-c", LIBRARY_PROCESS, str(dense)],
            "sniper_onnx_version_only": [str(cli), "--version"],
        }
        runs: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
        for command in commands.values():  # warm-up: bytecode and file cache
            time_process(command, env)
        for _ in range(args.cli_repeat):  # alternate so that machine load hits all alike
            for label, command in commands.items():
                runs[label].append(time_process(command, env))
            progress.advance(task, 2)
        report["densenet121_file_mb"] = round(dense.stat().st_size / 1e6, 1)
        for label, samples in runs.items():
            report[f"process_{label}_wall_median_ms"] = median_ms([wall for wall, _ in samples])
            report[f"process_{label}_cpu_median_ms"] = median_ms([cpu for _, cpu in samples])
        report["cli_wall_ratio_onnx_tool_over_sniper_onnx"] = round(
            statistics.median(w for w, _ in runs["onnx_tool"]) / statistics.median(w for w, _ in runs["sniper_onnx"]), 2)

        for name, path in paths.items():
            mine = analyze(path).features
            their_macs, their_params = onnx_tool_counts(path)
            report[f"{name}_params"] = {"sniper_onnx": mine["total_params"], "onnx_tool": their_params}
            report[f"{name}_macs"] = {"sniper_onnx": mine["total_macs"],
                                      "sniper_onnx_conv_fc": mine["conv_macs"] + mine["fc_macs"],
                                      "onnx_tool": their_macs}
            progress.advance(task)

    if args.json:
        print(json.dumps(report))
        return
    width = max(len(key) for key in report)
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
