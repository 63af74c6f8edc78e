from pathlib import Path

import pytest
from database_testkit import conv_net


@pytest.fixture(scope="module")
def profiled(tmp_path_factory) -> tuple[Path, Path]:
    """(results.jsonl, model folder): three conv nets measured by the real profiler."""
    from sniper_profiler.config import ProfileConfig
    from sniper_profiler.runner import ModelJob, run_profile

    folder = tmp_path_factory.mktemp("models")
    paths = [conv_net(folder / f"net{k}.onnx", channels=4 * (k + 1), kernel=(1, 3, 5)[k]) for k in range(3)]
    out = folder / "results.jsonl"
    config = ProfileConfig(threads=1, warmup=1, min_repeats=3, max_time_s=0.05)
    run_profile([ModelJob(str(p)) for p in paths], out, config)
    return out, folder
