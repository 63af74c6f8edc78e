"""Analyze all 15,625 NAS-Bench-201 architectures and write the committed feature table.

    .venv/bin/python benchmarks/bench_nasbench201_features.py [--jobs 2] [--limit N] [--output PATH]

Each arch is built as a weightless skeleton (batch 1, 32x32, 10 classes) and run through
``sniper_onnx.analyze`` on the FULL network, so every feature is exactly the analyzer's. Rows follow
NAS-Bench-201's ``arch_index`` (taken from the HW-NAS-Bench latency table, or, where that is not
at hand, from the previously committed table). Prints the wall time and the median time per arch.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import List, Sequence, Tuple

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

from sniper_generator.nasbench201 import FEATURE_TABLE, NUM_ARCHS, all_archs, build_nasbench201

LATENCY_TABLE = Path("/work/shared/data/hw-nasbench201/latency_ms.csv.gz")
CHUNK = 64


def arch_order(latency_table: Path) -> Tuple[List[str], str]:
    """Arch strings by NAS-Bench-201 arch_index, and where that order came from."""
    for path in (latency_table, FEATURE_TABLE):
        if path.is_file():
            with gzip.open(path, "rt", newline="") as handle:
                reader = csv.reader(handle)
                header = next(reader)
                column = header.index("arch")
                rows = sorted((int(row[0]), row[column]) for row in reader)
            if [index for index, _ in rows] == list(range(NUM_ARCHS)):
                return [arch for _, arch in rows], str(path)
    return list(all_archs()), "ordinal order (no table with NAS-Bench-201 indices found)"


def analyze_chunk(archs: Sequence[str]) -> List[Tuple[List[float], float]]:
    from sniper_onnx import analyze
    from sniper_onnx.analysis import FEATURE_NAMES

    out = []
    for arch in archs:
        start = time.perf_counter()
        features = analyze(build_nasbench201(arch, weights=False)).features
        out.append(([features[name] for name in FEATURE_NAMES], time.perf_counter() - start))
    return out


def _cell(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def write_table(path: Path, archs: Sequence[str], rows: Sequence[Sequence[float]]) -> None:
    from sniper_onnx.analysis import FEATURE_NAMES

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["arch_index", "arch", *FEATURE_NAMES])
    for index, (arch, values) in enumerate(zip(archs, rows)):
        writer.writerow([index, arch, *map(_cell, values)])
    path.parent.mkdir(parents=True, exist_ok=True)
    # no name and no time in the gzip header: the same features give the same bytes wherever written
    with open(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0, compresslevel=9) as handle:
        handle.write(text.getvalue().encode())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=FEATURE_TABLE)
    parser.add_argument("--latency-table", type=Path, default=LATENCY_TABLE, help="source of the arch_index order")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--limit", type=int, default=0, help="analyze only the first N archs (a quick check)")
    args = parser.parse_args(argv)

    archs, order_source = arch_order(args.latency_table)
    if args.limit:
        archs = archs[: args.limit]
    chunks = [archs[i:i + CHUNK] for i in range(0, len(archs), CHUNK)]
    rows: List[List[float]] = []
    seconds: List[float] = []
    start = time.perf_counter()
    columns = [*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns) as progress, ProcessPoolExecutor(max_workers=args.jobs) if args.jobs > 1 else _Inline() as pool:
        task = progress.add_task("analyzing NAS-Bench-201", total=len(archs))
        for chunk in pool.map(analyze_chunk, chunks):
            rows.extend(values for values, _ in chunk)
            seconds.extend(elapsed for _, elapsed in chunk)
            progress.advance(task, len(chunk))
    wall = time.perf_counter() - start
    write_table(args.output, archs, rows)
    print(f"order: {order_source}")
    print(f"analyzed {len(archs)} archs with {args.jobs} job(s) in {wall:.1f} s wall; "
          f"median {statistics.median(seconds) * 1e3:.1f} ms per arch (build + analyze)")
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.2f} MB)")
    return 0


class _Inline:
    """``map`` in this process, so --jobs 1 pays no pickling and shows errors directly."""

    def __enter__(self) -> "_Inline":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, function, items):
        return map(function, items)


if __name__ == "__main__":
    sys.exit(main())
