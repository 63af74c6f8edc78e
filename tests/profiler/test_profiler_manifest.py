import json

from sniper_profiler.manifest import generator_sources, source_for


def test_manifest_entries_become_generator_sources(tmp_path):
    entry = {"file": "cnn-1.onnx", "net_id": "cnn-1", "seed": 5, "family": "cnn", "config": {"a": 1}, "generator_version": "1", "features": {}}
    lines = [json.dumps(entry), '{"file": "torn', json.dumps({"file": "x.onnx", "net_id": "x"})]
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    sources = generator_sources(tmp_path)
    assert list(sources) == ["cnn-1.onnx"]  # torn and incomplete lines give no provenance
    assert sources["cnn-1.onnx"]["spec"] == {k: entry[k] for k in ("net_id", "seed", "family", "config", "generator_version")}
    cache: dict = {}
    assert source_for(tmp_path / "cnn-1.onnx", cache)["kind"] == "generator"
    assert source_for(tmp_path / "other.onnx", cache) == {"kind": "file"}


def test_no_manifest_means_plain_files(tmp_path):
    assert generator_sources(tmp_path) == {}
