"""In-process tests of inputs, output checks and the stopping rule (no child processes)."""

import itertools
import time

import numpy as np
import pytest
from profiler_testkit import half_precision_model, mixed_inputs_model, tiny_mlp

from sniper_profiler import measure as measure_module
from sniper_profiler.config import ProfileConfig, ProfilerError, parse_input_shape, parse_provider_option
from sniper_profiler.measure import check_outputs, create_session, make_inputs, measure, precision_mismatch, time_runs


def test_inputs_follow_dtypes_and_symbolic_dims(tmp_path):
    session = create_session(str(mixed_inputs_model(tmp_path / "m.onnx")), ProfileConfig(threads=1))
    feeds, described = make_inputs(session, ProfileConfig(input_shapes={"x": [3, 8], "ids": [3, 8], "mask": [3, 8]}))
    assert feeds["x"].dtype == np.float32 and feeds["ids"].dtype == np.int64 and feeds["mask"].dtype == bool
    assert all(array.shape == (3, 8) for array in feeds.values())
    assert described[0]["model_shape"] == ["batch", 8]
    feeds, _ = make_inputs(session, ProfileConfig(default_dim=2))
    assert feeds["x"].shape == (2, 8)


def test_unsigned_inputs_and_a_fixed_zero_dim_are_fed_as_the_model_says(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["ids"], ["wide"], to=TensorProto.FLOAT), helper.make_node("Relu", ["empty"], ["y"])],
        "g", [helper.make_tensor_value_info("ids", TensorProto.UINT32, [1, 4]),
              helper.make_tensor_value_info("empty", TensorProto.FLOAT, [0, 3])],
        [helper.make_tensor_value_info("wide", TensorProto.FLOAT, [1, 4]), helper.make_tensor_value_info("y", TensorProto.FLOAT, [0, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))
    session = create_session(str(tmp_path / "m.onnx"), ProfileConfig(threads=1))
    feeds, _ = make_inputs(session, ProfileConfig())
    assert feeds["ids"].dtype == np.uint32 and feeds["empty"].shape == (0, 3)
    session.run(None, feeds)


def test_input_shape_errors_name_the_input(tmp_path):
    session = create_session(str(tiny_mlp(tmp_path / "m.onnx", width=8)), ProfileConfig(threads=1))
    with pytest.raises(ProfilerError, match="conflict"):
        make_inputs(session, ProfileConfig(input_shapes={"x": [1, 9]}))
    # a shape for an input this model lacks is another model's of the run (runner.check_input_shape_names
    # refuses a name no model has): it is ignored here
    feeds, _ = make_inputs(session, ProfileConfig(input_shapes={"nope": [1]}))
    assert list(feeds) == ["x"]
    with pytest.raises(ProfilerError, match="rank"):
        make_inputs(session, ProfileConfig(input_shapes={"x": [1, 8, 1]}))


def test_output_check_flags_nan_inf_and_denormals():
    assert check_outputs([np.ones(4, np.float32)])["flags"] == []
    tiny = np.array([1e-40, 1.0], dtype=np.float32)
    result = check_outputs([np.array([np.nan, np.inf], np.float32), tiny, np.arange(3)])
    assert result["flags"] == ["nan_outputs", "inf_outputs", "denormal_outputs"]
    assert result["denormal_fraction"] == pytest.approx(1 / 4)


def test_fp16_values_below_its_normal_range_and_ragged_sequences_are_not_flagged_or_fatal():
    """An fp16 Softmax over 30,000 classes was flagged denormal (fp16's tiny is 6.1e-5; a CPU
    computes it in fp32), and a sequence of tensors of different shapes failed the whole model."""
    softmax = np.full(30000, 1 / 30000, np.float16)
    assert check_outputs([softmax])["flags"] == []
    ragged = [np.ones(2, np.float32), np.ones(3, np.float32)]
    assert check_outputs([ragged, np.array([np.nan], np.float32)])["flags"] == ["nan_outputs"]


def test_integer_inputs_index_a_two_row_table(tmp_path):
    """BERT's token_type_ids index a table of two rows: integers up to 7 failed the model."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["y"])], "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 4])],
        [helper.make_tensor("table", TensorProto.FLOAT, [2, 4], [0.5] * 8)])
    path = tmp_path / "types.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    feeds = make_inputs(create_session(str(path), ProfileConfig()), ProfileConfig())[0]
    assert set(np.unique(feeds["ids"])) <= {0, 1}
    result = measure(str(path), ProfileConfig(min_repeats=3, max_repeats=3, warmup=1, sessions=1, min_time_s=0))
    assert result["stats"]["count"] == 3 and "nan_outputs" not in result["flags"]


def test_denormal_weights_are_flagged_in_a_real_measurement(tmp_path):
    path = tiny_mlp(tmp_path / "denormal.onnx", width=8, activation="Identity", weight=1e-39)
    result = measure(str(path), ProfileConfig(threads=1, warmup=1, min_repeats=3, max_time_s=0.02))
    assert "denormal_outputs" in result["flags"]


def test_a_model_of_another_precision_than_the_label_is_flagged(tmp_path):
    half = create_session(str(half_precision_model(tmp_path / "half.onnx")), ProfileConfig(threads=1))
    full = create_session(str(tiny_mlp(tmp_path / "full.onnx", width=8)), ProfileConfig(threads=1))
    assert precision_mismatch(half, ProfileConfig()) and not precision_mismatch(half, ProfileConfig(precision="fp16"))
    assert not precision_mismatch(full, ProfileConfig()) and not precision_mismatch(full, ProfileConfig(precision="tf32"))
    assert precision_mismatch(full, ProfileConfig(precision="fp16"))  # the CPU provider runs it in fp32
    # TensorRT builds an fp32 model in fp16 or int8 when asked; QDQ int8 models keep fp32 inputs
    tensorrt = ProfileConfig(provider="tensorrt", precision="fp16")
    assert not precision_mismatch(full, tensorrt) and not precision_mismatch(full, ProfileConfig(precision="int8"))
    result = measure(str(tmp_path / "half.onnx"), ProfileConfig(threads=1, warmup=1, min_repeats=3, max_time_s=0.02))
    assert "precision_mismatch" in result["flags"]


def test_symbolic_dims_past_the_batch_left_to_default_dim_are_flagged(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "sequence",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "length"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "length"])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "seq.onnx")
    quick = dict(threads=1, warmup=1, min_repeats=3, max_time_s=0.02)
    assert "symbolic_dims_defaulted" in measure(str(tmp_path / "seq.onnx"), ProfileConfig(**quick))["flags"]
    given = measure(str(tmp_path / "seq.onnx"), ProfileConfig(input_shapes={"x": [1, 64]}, **quick))
    assert "symbolic_dims_defaulted" not in given["flags"] and given["inputs"][0]["shape"] == [1, 64]
    # a symbolic batch alone is the usual case, and not flagged
    assert "symbolic_dims_defaulted" not in measure(str(tiny_mlp(tmp_path / "m.onnx", width=8)), ProfileConfig(**quick))["flags"]


def _fake_clock(monkeypatch, durations):
    """perf_counter advancing by the next duration at each 'run' (two calls per run)."""
    now = [0.0]
    steps = itertools.cycle(durations)

    def clock():
        now[0] += next(steps) / 2
        return now[0]

    monkeypatch.setattr(measure_module.time, "perf_counter", clock)


def test_stops_at_ci_target_when_timings_are_steady(monkeypatch):
    _fake_clock(monkeypatch, [1.0])
    samples, reason = time_runs(lambda: None, ProfileConfig(min_repeats=10, target_relative_ci=0.01, max_time_s=1e9))
    assert reason == "ci_target" and len(samples) == 10


def test_stops_at_max_repeats_when_timings_are_noisy(monkeypatch):
    _fake_clock(monkeypatch, [1.0, 3.0, 2.0, 5.0])
    samples, reason = time_runs(lambda: None, ProfileConfig(min_repeats=5, max_repeats=40, target_relative_ci=0.001, max_time_s=1e9, min_time_s=0))
    assert reason == "max_repeats" and len(samples) == 40


def test_stops_at_max_time_after_at_least_three_runs(monkeypatch):
    _fake_clock(monkeypatch, [1.0, 3.0])
    samples, reason = time_runs(lambda: None, ProfileConfig(min_repeats=10, target_relative_ci=0.001, max_time_s=0.5))
    assert reason == "max_time" and len(samples) == 3


def test_measure_records_every_statistic(tmp_path):
    result = measure(str(tiny_mlp(tmp_path / "m.onnx")), ProfileConfig(threads=1, warmup=2, min_repeats=5, max_time_s=0.05))
    stats = result["stats"]
    for name in ("median_s", "mean_s", "std_s", "p10_s", "p90_s", "min_s", "count", "session_create_s", "stop_reason"):
        assert name in stats
    assert stats["min_s"] <= stats["p10_s"] <= stats["median_s"] <= stats["p90_s"]
    assert stats["count"] >= 3 and result["providers_used"][0] == "CPUExecutionProvider"


@pytest.mark.parametrize(
    "text, expected",
    [("x=1x3x224x224", ("x", [1, 3, 224, 224])), ("input_ids:2,128", ("input_ids", [2, 128])),
     ("input:[1,3,64,64]", ("input", [1, 3, 64, 64])), ("1x3x64x64", ("", [1, 3, 64, 64]))],
)
def test_parse_input_shape(text, expected):
    assert parse_input_shape(text) == expected


def test_a_shape_without_an_input_name_is_refused_by_the_profiler():
    """It measures many models, whose inputs may differ: which input a bare shape sizes is a guess."""
    with pytest.raises(ProfilerError, match=r"--input-shape 1x3x8x8: write NAME=1x3x8x8, naming the input it sizes"):
        ProfileConfig(input_shapes=dict([parse_input_shape("1x3x8x8")]))


@pytest.mark.parametrize("text", ["x", "x=1xa", "x=0x3", "=1x2", "x:[1,2", "x:1,2]"])
def test_parse_input_shape_rejects(text):
    with pytest.raises(ProfilerError, match="--input-shape"):
        parse_input_shape(text)


def test_parse_provider_option_types():
    assert parse_provider_option("device_id=0") == ("device_id", 0)
    assert parse_provider_option("trt_fp16_enable=true") == ("trt_fp16_enable", True)
    assert parse_provider_option("arena=kNextPowerOfTwo") == ("arena", "kNextPowerOfTwo")
    with pytest.raises(ProfilerError):
        parse_provider_option("novalue")


@pytest.mark.parametrize("field, value", [("graph_optimization", "max"), ("threads", -1), ("target_relative_ci", 0.0),
                                          ("precision", "fp64"), ("quiet_timeout_s", -5.0)])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ProfilerError):
        ProfileConfig(**{field: value})


def test_provider_aliases():
    assert ProfileConfig(provider="cuda").provider == "CUDAExecutionProvider"
    assert ProfileConfig(provider="TRT").provider == "TensorrtExecutionProvider"


def test_cpu_time_is_recorded_beside_wall_time(tmp_path):
    stats = measure(str(tiny_mlp(tmp_path / "m.onnx", width=64)), ProfileConfig(threads=1, warmup=1, min_repeats=5, max_time_s=0.05))["stats"]
    assert stats["cpu_time_per_run_s"] > 0


def test_parse_input_shape_keeps_tensorflow_colons():
    assert parse_input_shape("input_1:0=1x3") == ("input_1:0", [1, 3])


def test_ci_cannot_stop_a_measurement_before_min_time(monkeypatch):
    _fake_clock(monkeypatch, [1.0])
    config = ProfileConfig(min_repeats=10, target_relative_ci=0.01, max_time_s=1e9, min_time_s=20.0)
    samples, reason = time_runs(lambda: None, config)
    assert reason == "ci_target" and 20 <= len(samples) <= 24


def test_sessions_take_turns_in_bursts(monkeypatch):
    _fake_clock(monkeypatch, [1.0])
    calls = {"a": 0, "b": 0}

    def run(name):
        return lambda: calls.__setitem__(name, calls[name] + 1)

    replica_of = []
    config = ProfileConfig(min_repeats=12, max_repeats=12, target_relative_ci=1e-9, max_time_s=1e9, burst_s=2.5, min_time_s=0)
    samples, _ = time_runs([run("a"), run("b")], config, replica_of)
    assert replica_of == [0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1] and calls == {"a": 6, "b": 6} and len(samples) == 12


def test_measure_with_several_sessions_keeps_each_sessions_statistics(tmp_path):
    config = ProfileConfig(threads=1, warmup=1, min_repeats=5, max_time_s=0.1, min_time_s=0.05, sessions=2, burst_s=0.005)
    stats = measure(str(tiny_mlp(tmp_path / "m.onnx")), config)["stats"]
    assert stats["sessions"] == 2 and len(stats["session_min_s"]) == 2 and len(stats["session_median_s"]) == 2
    assert stats["min_s"] == min(stats["session_min_s"])


@pytest.mark.parametrize("field, value, message", [
    ("sessions", 17, "--sessions"), ("min_time_s", -1.0, "--min-time"), ("burst_s", 0.0, "burst_s"),
])
def test_bad_session_and_time_settings_are_refused(field, value, message):
    with pytest.raises(ProfilerError, match=message):
        ProfileConfig(**{field: value})


def test_auto_sessions_are_three_on_one_cpu_thread_and_one_elsewhere():
    assert ProfileConfig(threads=1).session_count == 3
    assert ProfileConfig(threads=2).session_count == 1  # sessions with worker threads slow each other
    assert ProfileConfig().session_count == 1  # threads 0: onnxruntime uses every core
    assert ProfileConfig(provider="cuda").session_count == 1
    assert ProfileConfig(sessions=2, provider="cuda").session_count == 2


def test_several_sessions_with_cpu_worker_threads_are_refused():
    with pytest.raises(ProfilerError, match="--sessions 3 with --threads 2: .* use --sessions 1"):
        ProfileConfig(threads=2, sessions=3)
    assert ProfileConfig(threads=2, sessions=1).session_count == 1


def test_max_repeats_does_not_end_a_microsecond_model_before_min_time_and_every_session_s_turn():
    replica_of: list = []
    config = ProfileConfig(min_repeats=5, max_repeats=10, min_time_s=0.05, max_time_s=5, burst_s=0.01,
                           target_relative_ci=1e-12)
    began = time.perf_counter()
    samples, reason = time_runs([lambda: None, lambda: None, lambda: None], config, replica_of)
    assert reason == "max_repeats" and len(samples) > 10 and time.perf_counter() - began >= 0.05
    assert set(replica_of) == {0, 1, 2}
