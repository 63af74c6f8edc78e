"""examples/reference_platform.py: the measured zoo times it turns into a platform."""

import csv
import gzip
import importlib.util
from pathlib import Path

import pytest

from sniper_onnx.scheduling import load_platform

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "reference_platform.py"


def _example():
    spec = importlib.util.spec_from_file_location("reference_platform", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_table(path: Path, rows: list[tuple[str, str, float]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["network_name", "device_name", "latency_s"])
        writer.writerows(rows)


def test_only_zoo_networks_at_224_measured_on_every_device_type_are_kept(tmp_path):
    example = _example()
    configs = [config for config, _ in example.DEVICE_TYPES.values()]
    rows = [("resnet50@224", c, 0.01 * (i + 1)) for i, c in enumerate(configs)]
    rows += [("resnet50@448", c, 9.0) for c in configs]          # another resolution
    rows += [("vgg16@224", configs[0], 1.0)]                      # not on every type
    rows += [("mixed-abc", configs[0], 1.0)]                      # a random net
    _write_table(tmp_path / "t.csv", rows)
    times = example.measured_zoo_times(tmp_path / "t.csv")
    assert list(times) == ["resnet50"]
    assert sorted(times["resnet50"].values()) == [0.01, 0.02, 0.03]


def test_the_platform_it_writes_loads(tmp_path, monkeypatch):
    example = _example()
    configs = [config for config, _ in example.DEVICE_TYPES.values()]
    _write_table(tmp_path / "t.csv", [("squeezenet1_1@224", c, 0.004) for c in configs])
    monkeypatch.setattr("sys.argv", ["reference_platform.py", "--table", str(tmp_path / "t.csv"), "--out", str(tmp_path / "p")])
    assert example.main() == 0
    platform = load_platform(str(tmp_path / "p" / "platform.json"))
    assert (tmp_path / "p" / "models" / "squeezenet1_1.onnx").stat().st_size > 0
    assert platform.num_devices == sum(count for _, count in example.DEVICE_TYPES.values())
    assert platform.predictor_devices == {kind: config for kind, (config, _) in example.DEVICE_TYPES.items()}


def test_it_reads_the_committed_gzipped_table_by_default():
    """A fresh checkout has data/reference/train.csv.gz only (work/train.csv is a build product)."""
    example = _example()
    assert example.DEFAULT_TABLE.name == "train.csv.gz" and example.DEFAULT_TABLE.is_file()
    times = example.measured_zoo_times(example.DEFAULT_TABLE)
    assert "resnet50" in times and all(len(by_type) == len(example.DEVICE_TYPES) for by_type in times.values())


def _bad_table(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name, data, fragment", [
    ("conv.onnx", b"\x08\xca\x01\x12\x00\xff", "not UTF-8 text"),
    ("t.csv.gz", gzip.compress(b"network_name,device_name\nresnet50@224,x\n"), "no column latency_s"),
    ("t.csv", b"network_name,device_name,latency_s\nresnet50@224,NVIDIA H200 | cuda fp32 t16 opt-all,fast\n",
     "t.csv:2: latency_s 'fast'"),
    ("missing.csv", None, "no such table"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, name, data, fragment):
    example = _example()
    table = _bad_table(tmp_path, name, data) if data is not None else tmp_path / name
    monkeypatch.setattr("sys.argv", ["reference_platform.py", "--table", str(table), "--out", str(tmp_path / "p")])
    assert example.main() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reference_platform.py: error: ") and fragment in err[0], err
    assert not (tmp_path / "p").exists()
