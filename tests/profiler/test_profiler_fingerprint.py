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
