"""Speed targets of the generator (issue 3), recorded in docs/generator.md.

    .venv/bin/python benchmarks/bench_generator.py            # specs + materialization
    .venv/bin/python benchmarks/bench_generator.py --zoo-run  # also every zoo export in onnxruntime

1. 1,000 CNN specs with their analyzer features, no weights: target < 60 s.
   Timed per stage (sampling, skeleton materialization, analysis), one process, then with --jobs.
2. Materializing a ResNet-50-sized net with weights: target < 2 s (median of --repeats).
   Side by side, the floor: drawing the same number of float32 normals with numpy alone.
3. (--zoo-run) every zoo export with random weights at its reference resolution runs in
   onnxruntime (CPU): build time and the median of 3 runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def bench_specs(count: int, seed: int, jobs: int) -> dict:
    from sniper_generator.dataset import iter_records
    from sniper_generator.spec import materialize, sample_spec
    from sniper_onnx import analyze

    sampling = materializing = analysing = 0.0
    for index in range(count):
        spec, seconds = _timed(sample_spec, seed, index, "cnn")
        sampling += seconds
        skeleton, seconds = _timed(materialize, spec, weights=False)
        materializing += seconds
        _, seconds = _timed(analyze, skeleton)
        analysing += seconds
    result = {"count": count, "one_process_s": round(sampling + materializing + analysing, 2),
              "sampling_s": round(sampling, 2), "skeleton_s": round(materializing, 2), "analysis_s": round(analysing, 2)}
    if jobs > 1:
        _, seconds = _timed(lambda: list(iter_records(count, seed, "cnn", jobs=jobs)))
        result[f"jobs_{jobs}_s"] = round(seconds, 2)
    return result


def bench_resnet50(repeats: int) -> dict:
    import numpy as np

    from sniper_generator.builder import count_parameters
    from sniper_generator.zoo import export_zoo_model

    build, serialize, floor = [], [], []
    params = 0
    for repeat in range(repeats):
        model, seconds = _timed(export_zoo_model, "resnet50", seed=repeat)
        build.append(seconds)
        _, seconds = _timed(model.SerializeToString)
        serialize.append(seconds)
        params = count_parameters(model)
        rng = np.random.default_rng(repeat)
        _, seconds = _timed(rng.standard_normal, params, dtype=np.float32)
        floor.append(seconds)
    build_median, floor_median = statistics.median(build), statistics.median(floor)
    return {"params": params, "repeats": repeats, "materialize_median_s": round(build_median, 3),
            "serialize_median_s": round(statistics.median(serialize), 3),
            "numpy_normals_median_s": round(floor_median, 3),
            "materialize_over_numpy_normals": round(build_median / floor_median, 2)}


def bench_zoo_run() -> dict:
    import numpy as np
    import onnxruntime as ort

    from sniper_generator.zoo import ZOO, export_zoo_model

    rows = {}
    for name in ZOO:
        model, build_s = _timed(export_zoo_model, name)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        del model
        feed = {"input": np.random.default_rng(0).standard_normal(session.get_inputs()[0].shape).astype(np.float32)}
        runs = [_timed(session.run, None, feed)[1] for _ in range(3)]
        outputs = session.run(None, feed)
        rows[name] = {"build_s": round(build_s, 2), "run_median_s": round(statistics.median(runs), 3),
                      "finite": bool(np.isfinite(outputs[0]).all())}
        print(name, rows[name], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--zoo-run", action="store_true")
    parser.add_argument("--skip-specs", action="store_true", help="skip targets 1 and 2 (with --zoo-run)")
    args = parser.parse_args()
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.processor() or platform.machine()}
    if not args.skip_specs:
        report["resnet50"] = bench_resnet50(args.repeats)
        print(json.dumps(report["resnet50"]), flush=True)
        report["cnn_specs"] = bench_specs(args.count, args.seed, args.jobs)
        print(json.dumps(report["cnn_specs"]), flush=True)
    if args.zoo_run:
        report["zoo_run"] = bench_zoo_run()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
