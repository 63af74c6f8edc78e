from sniper_profiler.device import DEVICE_FEATURE_NAMES, DeviceSpec
from sniper_profiler.fingerprint import _simd_width, collect_fingerprint


def _fingerprint(**overrides):
    settings = {"onnxruntime_version": "1.31.1", "provider": "CPUExecutionProvider", "threads": 1}
    settings.update(overrides)
    return collect_fingerprint(**settings)


def test_device_id_is_stable_and_tracks_the_configuration():
    base = _fingerprint()
    assert base.device_id == _fingerprint().device_id
    others = [_fingerprint(threads=2), _fingerprint(graph_optimization="disabled"), _fingerprint(precision="fp16"),
              _fingerprint(onnxruntime_version="1.18.0"), _fingerprint(provider="CUDAExecutionProvider")]
    assert len({base.device_id, *(f.device_id for f in others)}) == 6


def test_device_spec_vector_matches_the_names():
    spec = _fingerprint(threads=2, graph_optimization="basic").device_spec()
    vector = dict(zip(DEVICE_FEATURE_NAMES, spec.features()))
    assert len(spec.features()) == len(DEVICE_FEATURE_NAMES)
    assert vector["threads"] == 1.0 and vector["threads_known"] == 1.0
    assert vector["graph_optimization_level"] == 1 / 3 and vector["graph_optimization_level_known"] == 1.0
    assert vector["memory_gb_known"] == 1.0


def test_spec_round_trips_through_json():
    spec = _fingerprint().device_spec()
    assert DeviceSpec.from_dict(spec.to_dict()).features() == spec.features()


def test_gpu_configuration_is_a_gpu_kind():
    spec = _fingerprint(provider="CUDAExecutionProvider").device_spec()
    assert spec.kind in ("desktop_gpu", "embedded_gpu") and spec.provider == "CUDAExecutionProvider"


def test_unknown_graph_optimization_is_encoded_as_unknown():
    features = dict(zip(DEVICE_FEATURE_NAMES, DeviceSpec(name="external").features()))
    assert features["graph_optimization_level_known"] == 0.0


def test_simd_width_from_cpu_flags():
    assert _simd_width("fpu sse2 avx avx2 avx512f") == 512
    assert _simd_width("fp asimd evtstrm") == 128
    assert _simd_width("") is None


def _fake_nvidia_smi(monkeypatch, answers: dict):
    """nvidia-smi answering each --query-gpu field list from ``answers`` (missing: the call fails)."""
    import subprocess

    from sniper_profiler import fingerprint

    def run(command, **_):
        fields = command[1].split("=", 1)[1]
        if fields not in answers:
            raise subprocess.CalledProcessError(2, command)
        return subprocess.CompletedProcess(command, 0, stdout=answers[fields])

    monkeypatch.setattr(fingerprint.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(fingerprint.subprocess, "run", run)


def test_gpu_clock_goes_into_the_spec_but_not_the_device_id(monkeypatch):
    first_gpu = "NVIDIA H200, 143771, 9.0\nNVIDIA H200, 143771, 9.0\n"
    _fake_nvidia_smi(monkeypatch, {"name,memory.total,compute_cap": first_gpu, "clocks.max.sm": "1980\n1980\n"})
    gpu = _fingerprint(provider="CUDAExecutionProvider")
    assert (gpu.gpu_name, gpu.gpu_memory_gb, gpu.gpu_compute_capability) == ("NVIDIA H200", 140.4, "9.0")
    assert gpu.gpu_max_clock_ghz == 1.98
    features = dict(zip(DEVICE_FEATURE_NAMES, gpu.device_spec().features()))
    assert features["clock_ghz_known"] == 1.0
    _fake_nvidia_smi(monkeypatch, {"name,memory.total,compute_cap": first_gpu, "clocks.max.sm": "2100\n"})
    assert _fingerprint(provider="CUDAExecutionProvider").device_id == gpu.device_id  # clocks jitter


def test_a_driver_without_clocks_keeps_the_gpu_name(monkeypatch):
    _fake_nvidia_smi(monkeypatch, {"name,memory.total,compute_cap": "Orin, 30592, 8.7\n"})
    gpu = _fingerprint(provider="CUDAExecutionProvider")
    assert gpu.gpu_name == "Orin" and gpu.gpu_max_clock_ghz is None
    assert dict(zip(DEVICE_FEATURE_NAMES, gpu.device_spec().features()))["clock_ghz_known"] == 0.0
