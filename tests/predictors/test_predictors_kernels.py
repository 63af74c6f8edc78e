"""The kernel-sum path: graph against numpy, padding, which path answers, training end to end."""

import copy

import numpy as np
import pytest

from sniper_onnx.analysis.kernels import KERNEL_FEATURE_NAMES
from sniper_onnx.errors import SniperError
from sniper_onnx.predictors.dataset import TrainingData
from sniper_onnx.predictors.graph import distinct_rows, pad_tables
from sniper_onnx.predictors.kernelnet import KernelNetConfig, kernel_log_seconds_numpy
from sniper_onnx.predictors.pcn import PCNConfig
from sniper_onnx.predictors.runtime import PATH_KERNELS, PATH_PCN, params_of
from sniper_onnx.predictors.training import train_predictor

WIDTH = len(KERNEL_FEATURE_NAMES)
DRAWN = 31
DEVICE_SCALE = {"cpu_a": 1.0, "cpu_b": 3.0}


def _tables(count: int, seed: int) -> list:
    """Random tables, a third of whose rows repeat others, as a real network's repeated blocks do."""
    rng = np.random.default_rng(seed)
    tables = []
    for _ in range(count):
        # drawn over the first layout's 31 columns, the appended ones 0: the same tables as before they were appended
        rows = rng.normal(0.0, 1.0, (int(rng.integers(3, 30)), DRAWN)).astype(np.float32)
        rows = np.hstack([rows, np.zeros((len(rows), WIDTH - DRAWN), np.float32)])
        tables.append(np.vstack([rows, rows[rng.integers(0, len(rows), len(rows) // 3 + 1)]]))
    return tables


def _node_seconds(table: np.ndarray) -> np.ndarray:
    """A made-up per-kernel cost that whole-graph sums cannot express: it depends on each row."""
    return 1e-5 * np.exp(1.2 * table[:, 0])


@pytest.fixture(scope="module")
def kernel_trained():
    tables = _tables(120, 0)
    base = np.array([_node_seconds(t).sum() for t in tables])
    # The network features see only sizes, not the per-row structure the time depends on.
    network_matrix = np.array([[len(t), float(np.abs(t[:, 1]).sum())] for t in tables])
    names = list(DEVICE_SCALE)
    pair_network = np.repeat(np.arange(len(tables)), len(names))
    pair_device = np.tile(np.arange(len(names)), len(tables))
    seconds = base[pair_network] * np.array([DEVICE_SCALE[n] for n in names])[pair_device]
    data = TrainingData([f"net{i}" for i in range(len(tables))], network_matrix, ["num_layers", "total_macs"],
                        names, np.array([[1.0, 0.0], [2.0, 1.0]]), ["threads", "other"], pair_network, pair_device, seconds)
    predictor, report = train_predictor(
        data, PCNConfig(attention_dim=4, hidden=(16,), embedding=4, epochs=5, min_steps=200),
        kernel_config=KernelNetConfig(hidden=32, steps=1000, learning_rate=1e-2), kernel_tables=tables)
    return predictor, report, tables, base


def test_training_records_the_fewest_layers_of_each_device_s_training_nets(kernel_trained):
    """Held-out pairs do not count: they taught the call nothing."""
    predictor, _, tables, _ = kernel_trained
    lengths = np.array([len(t) for t in tables])
    for facts in predictor.kernel_path["devices"].values():
        assert lengths.min() <= facts["fewest_layers"] <= np.sort(lengths)[len(lengths) // 5 + 1]


def test_the_graph_computes_the_sum_the_numpy_reference_does(kernel_trained):
    predictor, _, tables, _ = kernel_trained
    params = params_of(predictor)
    device = predictor.device_vector("cpu_b")
    chosen = tables[:5]
    assert any(len(distinct_rows(t)) < len(t) for t in chosen)  # the graph sees merged rows, numpy every row
    nets = np.zeros((len(chosen), 2))
    graph = predictor.run(nets, np.tile(device, (len(chosen), 1)), chosen)["kernel_seconds"]
    reference = [np.exp(kernel_log_seconds_numpy(params, t, device[:-1])) for t in chosen]
    np.testing.assert_allclose(graph, reference, rtol=2e-4)


def test_identical_rows_are_merged_with_their_counts():
    table = _tables(1, 5)[0]
    merged = distinct_rows(table)
    assert len(merged) < len(table) and merged.counts.sum() == len(table)
    assert {row.tobytes() for row in merged.rows} == {row.tobytes() for row in table}
    for row, count in zip(merged.rows, merged.counts):
        assert count == np.all(table == row, axis=1).sum()
    assert distinct_rows(merged) is merged
    padded = pad_tables([table, table[:0]], WIDTH)
    assert padded.shape == (2, len(merged), 1 + WIDTH) and padded[1].sum() == 0
    np.testing.assert_array_equal(padded[0, :, 0], merged.counts)


def test_merged_tables_give_the_answers_of_whole_ones(kernel_trained):
    predictor, _, tables, _ = kernel_trained
    features = [{"num_layers": float(len(t)), "total_macs": float(np.abs(t[:, 1]).sum())} for t in tables[:4]]
    whole = predictor.predict(features, kernel_tables=tables[:4])
    merged = predictor.predict(features, kernel_tables=[distinct_rows(t) for t in tables[:4]])
    assert [r.seconds for r in merged.rows] == [r.seconds for r in whole.rows]
    with pytest.raises(SniperError, match="kernel table has shape"):
        predictor.predict(features[:1], kernel_tables=[distinct_rows(np.zeros((3, WIDTH - 1)))])


def test_padding_does_not_change_a_network_s_time(kernel_trained):
    predictor, _, tables, _ = kernel_trained
    device = predictor.device_vector("cpu_a")
    short = min(tables, key=len)
    alone = predictor.run(np.zeros((1, 2)), device[None, :], [short])["kernel_seconds"][0]
    batched = predictor.run(np.zeros((2, 2)), np.tile(device, (2, 1)), [max(tables, key=len), short])["kernel_seconds"][1]
    assert alone == pytest.approx(batched, rel=1e-5)


def test_training_reports_both_paths_and_the_kernel_sum_wins_on_per_kernel_costs(kernel_trained):
    _, report, _, _ = kernel_trained
    devices = report.kernel_path["devices"]
    assert set(devices) == set(DEVICE_SCALE)
    for facts in devices.values():
        assert facts["held_out_pairs"] > 0 and facts["interval"][0] < facts["interval"][1]
        assert facts["kernel_mape"] < facts["pcn_mape"] and facts["path"] == PATH_KERNELS


def test_predict_uses_the_kernel_sum_only_where_a_table_is_given(kernel_trained):
    predictor, _, tables, base = kernel_trained
    features = [{"num_layers": float(len(t)), "total_macs": float(np.abs(t[:, 1]).sum())} for t in tables[:3]]
    table = predictor.predict(features, ["cpu_a"], kernel_tables=[tables[0], None, tables[2]])
    assert [row.path for row in table.rows] in ([PATH_KERNELS, PATH_PCN, PATH_KERNELS],
                                                [PATH_KERNELS, "regression", PATH_KERNELS])
    for row, truth in zip(table.rows[::2], base[[0, 2]]):
        assert row.low < row.seconds < row.high
        assert row.seconds == pytest.approx(truth, rel=0.3)  # the right scale, learned from the sum
    plain = predictor.predict(features, ["cpu_a"])  # no tables: never the kernel sum
    assert PATH_KERNELS not in {row.path for row in plain.rows}
    with pytest.raises(SniperError, match="kernel table has shape"):
        predictor.predict(features[:1], ["cpu_a"], kernel_tables=[np.zeros((3, WIDTH - 1))])
    with pytest.raises(SniperError, match="one per network"):
        predictor.predict(features[:2], ["cpu_a"], kernel_tables=[tables[0]])


def test_foreign_scheduler_feeds_kernel_tables_and_agrees_with_the_library(kernel_trained, tmp_path):
    import importlib.util
    from pathlib import Path

    from sniper_onnx.predictors.runtime import save_predictor

    predictor, _, tables, _ = kernel_trained
    path = save_predictor(predictor, tmp_path / "k.onnx")
    example = Path(__file__).resolve().parents[2] / "examples" / "foreign_scheduler.py"
    spec = importlib.util.spec_from_file_location("foreign_scheduler", example)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    session, meta = module.load(str(path))
    features = {"num_layers": float(len(tables[0])), "total_macs": float(np.abs(tables[0][:, 1]).sum())}
    written = {"columns": list(KERNEL_FEATURE_NAMES), "rows": tables[0].tolist()}
    empty = {"num_layers": 0.0, "total_macs": 0.0}
    no_rows = {"columns": list(KERNEL_FEATURE_NAMES), "rows": []}
    cases = ((features, written, [tables[0]]), (features, None, None),
             (empty, no_rows, [np.zeros((0, WIDTH), np.float32)]))  # a network of no layer: one call
    original = copy.deepcopy(predictor.meta["kernel_path"])
    try:
        for fewest in (1, 15, None):  # a small net seen on the device; none; a file that does not say
            for facts in meta["kernel_path"]["devices"].values():
                facts.pop("fewest_layers", None) if fewest is None else facts.update(fewest_layers=fewest)
            predictor.meta["kernel_path"] = meta["kernel_path"]
            for net, json_table, table in cases:
                seconds = module.predict_seconds(session, meta, net, json_table)
                library = predictor.predict([net], kernel_tables=table)
                for row in library.rows:
                    if row.path != "regression":  # the example leaves the small-network regression out
                        assert seconds[row.device] == pytest.approx(row.seconds, rel=1e-5)
            paths = {row.path for row in predictor.predict([empty], kernel_tables=cases[2][2]).rows}
            if fewest is not None:
                assert ("kernels" in paths) == (fewest == 1), (fewest, paths)
    finally:
        predictor.meta["kernel_path"] = original


def test_large_batches_run_in_length_sorted_chunks_with_the_same_answers(kernel_trained):
    from sniper_onnx.predictors import runtime

    predictor, _, tables, _ = kernel_trained
    many = tables * 2  # more than one chunk
    assert len(many) > runtime.KERNEL_CHUNK
    nets = np.array([[len(t), float(np.abs(t[:, 1]).sum())] for t in many])
    devices = np.tile(predictor.device_vector("cpu_b"), (len(many), 1))
    batched = predictor.run(nets, devices, many)
    one_by_one = [predictor.run(nets[i:i + 1], devices[i:i + 1], [many[i]]) for i in range(0, len(many), 37)]
    for k, single in zip(range(0, len(many), 37), one_by_one):
        for name in ("seconds", "kernel_seconds", "network_embedding"):
            np.testing.assert_allclose(batched[name][k], single[name][0], rtol=1e-4, atol=1e-6)


def _features_of(tables) -> list:
    return [{"num_layers": float(len(t)), "total_macs": float(np.abs(t[:, 1]).sum())} for t in tables]


def test_feedback_corrects_the_kernel_sum_where_it_answers(kernel_trained):
    from sniper_onnx.predictors.adapt import adapt_predictor

    predictor, _, tables, _ = kernel_trained
    samples, held = _tables(12, 7), _tables(6, 8)
    before = predictor.predict(_features_of(samples), ["cpu_a"], kernel_tables=samples)
    drifted = 1.5 * before.seconds()  # the device got 1.5x slower than the kernel sum says
    corrected, report = adapt_predictor(predictor, "cpu_a", _features_of(samples), drifted, solve_embedding=False,
                                        trimmer_top_k=0, kernel_tables=samples)
    assert report.sample_mape_before == pytest.approx(1 / 3, rel=1e-3) and report.sample_mape_after < 0.01
    old = predictor.predict(_features_of(held), ["cpu_a"], kernel_tables=held)
    new = corrected.predict(_features_of(held), ["cpu_a"], kernel_tables=held)
    assert {row.path for row in new.rows} == {PATH_KERNELS}
    assert np.allclose(new.seconds() / old.seconds(), 1.5, rtol=1e-3)
    with pytest.raises(SniperError, match="answered by the kernel sum"):
        adapt_predictor(predictor, "cpu_a", _features_of(samples), drifted, solve_embedding=False)


def test_a_new_device_like_a_trained_one_is_answered_by_its_kernel_sum_rescaled(kernel_trained):
    from sniper_onnx.predictors.adapt import adapt_predictor

    predictor, _, _, _ = kernel_trained
    samples, held = _tables(10, 9), _tables(40, 10)
    truth = lambda tables: np.array([2.0 * _node_seconds(t).sum() for t in tables])  # a 2x slower cpu_a
    spec = [1.5, 0.5]  # this predictor's two made-up device features
    adapted, report = adapt_predictor(predictor, "cpu_c", _features_of(samples), truth(samples), spec_features=spec,
                                      kernel_tables=samples)
    assert report.prior.startswith("kernels:")
    answer = adapted.predict(_features_of(held), ["cpu_c"], kernel_tables=held)
    assert {row.path for row in answer.rows} == {PATH_KERNELS}
    pcn_only, _ = adapt_predictor(predictor, "cpu_c", _features_of(samples), truth(samples), spec_features=spec)
    pcn_answer = pcn_only.predict(_features_of(held), ["cpu_c"], kernel_tables=held)
    error = lambda table: float(np.median(np.abs(table.seconds() / truth(held) - 1)))
    assert PATH_KERNELS not in {row.path for row in pcn_answer.rows}
    assert error(answer) < 0.3 and error(answer) < error(pcn_answer)
    same = predictor.predict(_features_of(held[:3]), ["cpu_b"], kernel_tables=held[:3]).seconds()
    assert np.allclose(adapted.predict(_features_of(held[:3]), ["cpu_b"], kernel_tables=held[:3]).seconds(), same)


def test_a_transfer_whose_speed_up_grows_with_size_fits_a_power_that_survives_saving(kernel_trained, tmp_path):
    from sniper_onnx.predictors.adapt import adapt_predictor
    from sniper_onnx.predictors.runtime import load_predictor, save_predictor

    predictor, _, _, _ = kernel_trained
    samples, held = _tables(12, 11), _tables(40, 12)
    vector = predictor.device_vector("cpu_a")
    reference = lambda tables: predictor.run(np.zeros((len(tables), 2)), np.tile(vector, (len(tables), 1)),
                                             tables)["kernel_seconds"].astype(np.float64)  # cpu_a's kernel sum
    truth = lambda tables: 0.5 * reference(tables) ** 1.15  # log t = 1.15 log t_cpu_a + log 0.5
    adapted, report = adapt_predictor(predictor, "wide", _features_of(samples), truth(samples), spec_features=[3.0, 0.0],
                                      kernel_tables=samples)
    assert report.prior.startswith("kernels:cpu_a") and report.power == pytest.approx(0.15, abs=0.03)
    answer = adapted.predict(_features_of(held), ["wide"], kernel_tables=held).seconds()
    assert np.allclose(answer, truth(held), rtol=0.05)
    save_predictor(adapted, tmp_path / "wide.onnx")
    reloaded = load_predictor(str(tmp_path / "wide.onnx")).predict(_features_of(held), ["wide"], kernel_tables=held)
    assert np.allclose(reloaded.seconds(), answer, rtol=1e-5)


def test_expectile_loss_is_mse_at_half_and_leans_below_noisy_labels():
    torch = pytest.importorskip("torch")
    from sniper_onnx.predictors.kernelnet import expectile_loss

    residual = torch.tensor([0.3, -0.2, 0.1])
    assert float(expectile_loss(residual, 0.5)) == pytest.approx(float(torch.mean(residual ** 2)))
    over, under = torch.tensor([-0.1]), torch.tensor([0.1])  # residual = label - prediction
    assert float(expectile_loss(over, 0.3)) > float(expectile_loss(under, 0.3))
    # labels that are a quiet time plus one-sided slow episodes: the 0.3 expectile sits nearer the
    # quiet time than the mean does
    labels = torch.tensor([0.0] * 8 + [0.5, 1.0])
    grid = torch.linspace(0.0, 0.5, 501)
    best = grid[int(torch.argmin(torch.stack([expectile_loss(labels - c, 0.3) for c in grid])))]
    assert 0.0 < float(best) < float(labels.mean())


def _sized_tables(count: int, seed: int) -> list:
    """Tables whose nodes span 2^10 to 2^30 MACs, so a node power has sizes to act on."""
    from sniper_onnx.predictors.kernelnet import MACS_COLUMN

    tables = _tables(count, seed)
    rng = np.random.default_rng(seed + 100)
    for table in tables:
        table[:, MACS_COLUMN] = rng.uniform(10.0, 30.0, len(table)).astype(np.float32)
    return tables


def test_a_transfer_whose_speed_up_grows_with_node_size_fits_a_node_power_that_survives_saving(kernel_trained, tmp_path):
    from sniper_onnx.predictors.adapt import adapt_predictor
    from sniper_onnx.predictors.kernelnet import node_log_seconds_numpy, node_size
    from sniper_onnx.predictors.runtime import load_predictor, save_predictor

    predictor, _, _, _ = kernel_trained
    params, vector = params_of(predictor), predictor.device_vector("cpu_a")[:-1]
    samples, held = _sized_tables(12, 13), _sized_tables(40, 14)
    # big nodes run 2^(0.6 * 2) faster per 2^10 more MACs than cpu_a's kernel sum says; small ones do not
    truth = lambda tables: np.array([0.7 * np.exp(node_log_seconds_numpy(params, t.astype(np.float64), vector)
                                                  + 0.6 * node_size(t)).sum() for t in tables])
    adapted, report = adapt_predictor(predictor, "wide", _features_of(samples), truth(samples), spec_features=[3.0, 0.0],
                                      kernel_tables=samples)
    assert report.prior.startswith("kernels:") and "node power" in report.prior
    assert report.node_power == pytest.approx(0.6, abs=0.05) and report.sample_mape_after < 0.02
    assert report.trimmer_features == []  # the exact transfer leaves nothing for the trimmer
    answer = adapted.predict(_features_of(held), ["wide"], kernel_tables=held)
    assert {row.path for row in answer.rows} == {PATH_KERNELS}
    assert np.allclose(answer.seconds(), truth(held), rtol=0.03)
    save_predictor(adapted, tmp_path / "wide.onnx")
    reloaded = load_predictor(str(tmp_path / "wide.onnx"))
    assert params_of(reloaded)["slot_node_power"] == pytest.approx([report.node_power], abs=1e-6)
    again = reloaded.predict(_features_of(held), ["wide"], kernel_tables=held).seconds()
    assert np.allclose(again, answer.seconds(), rtol=1e-5)
    # the graph's node power is the numpy sum's
    slot_vector = reloaded.device_vector("wide")
    graph = reloaded.run(np.zeros((3, 2)), np.tile(slot_vector, (3, 1)), held[:3])["kernel_seconds"]
    device = np.asarray(slot_vector[:-1], dtype=np.float64)
    trim_b = params_of(reloaded)["slot_trim_b"][-1]
    numpy_sum = [np.exp(kernel_log_seconds_numpy(params, t, device, report.node_power) + trim_b) for t in held[:3]]
    np.testing.assert_allclose(graph, numpy_sum, rtol=2e-4)


@pytest.fixture(scope="module")
def kinds_trained():
    """Two CPUs (one wider) and a GPU, with kind features; no phone."""
    tables = _tables(120, 20)
    base = np.array([_node_seconds(t).sum() for t in tables])
    names = ["cpu", "cpu_wide", "gpu"]
    pair_network, pair_device = np.repeat(np.arange(len(tables)), 3), np.tile(np.arange(3), len(tables))
    seconds = base[pair_network] * np.array([1.0, 0.5, 0.1])[pair_device]
    data = TrainingData([f"net{i}" for i in range(len(tables))], np.array([[len(t), 1.0] for t in tables]),
                        ["num_layers", "total_macs"], names,
                        np.array([[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 2.0], [0.0, 1.0, 0.0, 0.0]]),
                        ["kind_desktop_cpu", "kind_desktop_gpu", "kind_mobile", "threads"], pair_network, pair_device,
                        seconds)
    predictor, _ = train_predictor(
        data, PCNConfig(attention_dim=4, hidden=(16,), embedding=4, epochs=5, min_steps=100),
        kernel_config=KernelNetConfig(hidden=32, steps=1000, learning_rate=1e-2), kernel_tables=tables)
    assert {d["path"] for d in predictor.kernel_path["devices"].values()} == {PATH_KERNELS}
    return predictor


def test_a_new_device_takes_kernel_transfers_only_from_the_nearest_trained_devices_of_its_kind(kinds_trained):
    """And a device of a kind never trained gets the PCN or a roofline; one of no stated kind, every candidate."""
    from sniper_onnx.predictors.adapt import adapt_predictor, adaptation_candidates

    predictor = kinds_trained
    samples = _tables(10, 21)
    measured = np.array([0.1 * _node_seconds(t).sum() for t in samples])  # as fast as the trained gpu
    _, as_cpu = adapt_predictor(predictor, "new_cpu", _features_of(samples), measured, spec_features=[1.0, 0.0, 0.0, 0.5],
                                kernel_tables=samples)
    assert as_cpu.prior.split(" (")[0] == "kernels:cpu"  # however its times compare
    weighed = lambda spec: [prior for prior, _, _ in adaptation_candidates(
        predictor, "new", _features_of(samples), measured, spec_features=spec, kernel_tables=samples)]
    assert all(p.split(" (")[0] == "kernels:cpu" for p in weighed([1.0, 0.0, 0.0, 0.5]))  # nearer than cpu_wide
    assert all(p.split(" (")[0] == "kernels:cpu_wide" for p in weighed([1.0, 0.0, 0.0, 1.8]))
    phone = weighed([0.0, 0.0, 1.0, 0.0])  # no trained phone: no other kind's per-layer times
    assert not any(p.startswith("kernels:") for p in phone) and any(p.startswith("roofline") for p in phone)
    everything = weighed([0.0, 0.0, 0.0, 0.0])  # no kind stated: the PCN and every trained device's transfers
    assert {p.split(" (")[0] for p in everything if p.startswith("kernels:")} == {"kernels:cpu", "kernels:cpu_wide",
                                                                                 "kernels:gpu"}
    assert any(not p.startswith(("kernels:", "roofline")) for p in everything)


def test_a_device_of_a_new_kind_fits_a_roofline_that_the_graph_computes_and_saving_keeps(kinds_trained, tmp_path):
    from sniper_onnx.predictors.adapt import adapt_predictor
    from sniper_onnx.predictors.kernelnet import roofline_work
    from sniper_onnx.predictors.runtime import load_predictor, save_predictor

    predictor = kinds_trained
    samples, held = _sized_tables(12, 30), _sized_tables(30, 31)
    rates = np.array([2e-12, 0.0, 8e-6])  # per (1 + MAC), per (1 + byte), per node: a launch-bound phone
    call = 3e-5  # and per call
    truth = lambda tables: np.array([(roofline_work(t) @ rates).sum() + call for t in tables])
    adapted, report = adapt_predictor(predictor, "phone", _features_of(samples), truth(samples),
                                      spec_features=[0.0, 0.0, 1.0, 0.0], kernel_tables=samples)
    assert report.prior.startswith("roofline") and report.sample_mape_after < 1e-3
    answer = adapted.predict(_features_of(held), ["phone"], kernel_tables=held)
    assert {row.path for row in answer.rows} == {PATH_KERNELS}
    np.testing.assert_allclose(answer.seconds(), truth(held), rtol=1e-3)
    save_predictor(adapted, tmp_path / "phone.onnx")
    reloaded = load_predictor(str(tmp_path / "phone.onnx"))
    np.testing.assert_allclose(params_of(reloaded)["slot_roofline"][-1], rates, rtol=1e-3, atol=1e-15)
    assert params_of(reloaded)["slot_roofline_call"][-1] == pytest.approx(call, rel=1e-3)
    graph = reloaded.run(np.zeros((3, 2)), np.tile(reloaded.device_vector("phone"), (3, 1)), held[:3])["kernel_seconds"]
    device = reloaded.device_vector("phone")[:-1].astype(np.float64)
    fitted = params_of(reloaded)["slot_roofline"][-1]
    numpy_sum = [np.exp(kernel_log_seconds_numpy(params_of(reloaded), t, device, roofline_only=True, roofline=fitted,
                                                 roofline_call=params_of(reloaded)["slot_roofline_call"][-1]))
                 for t in held[:3]]
    np.testing.assert_allclose(graph, numpy_sum, rtol=2e-4)
    other = predictor.predict(_features_of(held[:3]), ["gpu"], kernel_tables=held[:3]).seconds()
    np.testing.assert_allclose(reloaded.predict(_features_of(held[:3]), ["gpu"], kernel_tables=held[:3]).seconds(), other)
    # the Time Trimmer on top: the phone got 1.2x slower; the roofline stays, a scale is added
    trimmed, _ = adapt_predictor(reloaded, "phone", _features_of(samples), 1.2 * truth(samples), solve_embedding=False,
                                 trimmer_top_k=0, kernel_tables=samples)
    again = trimmed.predict(_features_of(held), ["phone"], kernel_tables=held).seconds()
    np.testing.assert_allclose(again, 1.2 * answer.seconds(), rtol=1e-3)
    np.testing.assert_allclose(params_of(trimmed)["slot_roofline"][-1], fitted, rtol=1e-6)


def test_merged_members_give_the_mean_of_their_node_rates():
    from sniper_onnx.predictors.kernelnet import merge_members, node_log_seconds_numpy

    rng = np.random.default_rng(3)
    hidden, devices = 5, 2

    def member() -> dict:
        return {"kern_fc0_w": np.vstack([np.zeros((1, hidden)), rng.normal(size=(WIDTH, hidden))]),
                "kern_fc0_dev_w": rng.normal(size=(devices, hidden)), "kern_fc0_b": rng.normal(size=hidden),
                "kern_fc1_w": rng.normal(size=(hidden, hidden)), "kern_fc1_b": rng.normal(size=hidden),
                "kern_out_w": rng.normal(size=(hidden, 3)), "kern_out_b": rng.normal(size=3)}

    def rates(params: dict, table: np.ndarray, device: np.ndarray) -> np.ndarray:
        h = np.maximum(table @ params["kern_fc0_w"][1:] + device @ params["kern_fc0_dev_w"] + params["kern_fc0_b"], 0)
        h = np.maximum(h @ params["kern_fc1_w"] + params["kern_fc1_b"], 0)
        return h @ params["kern_out_w"] + params["kern_out_b"]

    members = [member() for _ in range(3)]
    merged = merge_members(members)
    table, device = rng.normal(size=(7, WIDTH)), rng.normal(size=devices)
    expected = np.mean([rates(m, table, device) for m in members], axis=0)
    np.testing.assert_allclose(rates(merged, table, device), expected, rtol=1e-12, atol=1e-12)
    assert merged["kern_fc1_w"].shape == (3 * hidden, 3 * hidden)
    assert np.isfinite(node_log_seconds_numpy(merged, table, device)).all()


def test_kernel_members_train_and_export_one_merged_net(kernel_trained):
    from sniper_onnx.predictors.kernelnet import train_kernel_net

    _, _, tables, base = kernel_trained
    device_matrix = np.array([[1.0, 0.0], [2.0, 1.0]])
    pair_network = np.arange(40)
    params = train_kernel_net(tables, device_matrix, pair_network, np.zeros(40, dtype=int), np.log(base[:40]),
                              KernelNetConfig(hidden=8, steps=50, members=2))
    assert params["kern_fc0_w"].shape == (1 + WIDTH, 16) and params["kern_out_w"].shape == (16, 3)
    assert np.all(params["kern_fc0_w"][0] == 0)  # the count column still meets zeros


def test_node_targets_average_identical_rows_and_skip_unknown_ones():
    from sniper_onnx.predictors.kernelnet import _distinct_node_targets

    table = np.array([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0], [5.0, 6.0]], dtype=np.float32)
    targets = _distinct_node_targets(table, np.log([1.0, 2.0, 3.0, np.nan]))
    merged = distinct_rows(table)  # the order the kernel net sees
    expected = {(1.0, 2.0): np.log(2.0), (3.0, 4.0): np.log(2.0)}
    for row, value in zip(merged.rows, targets):
        if tuple(row) in expected:
            assert value == pytest.approx(expected[tuple(row)])
        else:
            assert np.isnan(value)  # its only node had no profile


def test_node_targets_pull_each_node_toward_its_profiled_time():
    from sniper_onnx.predictors.kernelnet import node_log_seconds_numpy, train_kernel_net

    tables = _tables(40, 1)
    labels = np.log([_node_seconds(t).sum() for t in tables])
    truth = {(n, 0): np.log(_node_seconds(t)) for n, t in enumerate(tables)}
    device_matrix = np.array([[1.0, 0.0]])
    args = (tables, device_matrix, np.arange(40), np.zeros(40, dtype=int), labels)

    def node_error(params) -> float:
        return float(np.mean([np.abs(node_log_seconds_numpy(params, t, device_matrix[0]) - truth[(n, 0)]).mean()
                              for n, t in enumerate(tables)]))

    plain = train_kernel_net(*args, KernelNetConfig(hidden=16, steps=300, members=1))
    ignored = train_kernel_net(*args, KernelNetConfig(hidden=16, steps=300, members=1), node_targets=truth)
    supervised = train_kernel_net(*args, KernelNetConfig(hidden=16, steps=300, members=1, node_weight=1.0),
                                  node_targets=truth)
    assert all(np.array_equal(plain[k], ignored[k]) for k in plain)  # node_weight 0: targets unused
    assert node_error(supervised) < 0.8 * node_error(plain)


def test_shares_only_node_loss_ignores_each_networks_level():
    from sniper_onnx.predictors.kernelnet import train_kernel_net

    tables = _tables(20, 1)
    labels = np.log([_node_seconds(t).sum() for t in tables])
    truth = {(n, 0): np.log(_node_seconds(t)) for n, t in enumerate(tables)}
    shifted = {key: value + 3.0 for key, value in truth.items()}  # every node 20x slower: same shares
    args = (tables, np.array([[1.0, 0.0]]), np.arange(20), np.zeros(20, dtype=int), labels)

    def trained(targets, shares_only):
        config = KernelNetConfig(hidden=8, steps=60, members=1, node_weight=1.0, node_shares_only=shares_only)
        return train_kernel_net(*args, config, node_targets=targets)

    same, moved = trained(truth, True), trained(shifted, True)
    # float32 rounding over 60 steps moves weights by up to ~2e-4; a level the loss sees moves them by ~0.7
    assert all(np.allclose(same[k], moved[k], atol=1e-3) for k in same)
    plain, plain_moved = trained(truth, False), trained(shifted, False)
    assert not all(np.allclose(plain[k], plain_moved[k], atol=1e-2) for k in plain)


def test_network_context_reaches_every_node_in_graph_and_numpy_alike(tmp_path):
    """With KernelNetConfig.network_context, each node also sees its network's size; here a node's
    time doubles with a network-level feature no row shows: on networks never trained on, only the
    context can tell."""
    from sniper_onnx.predictors.kernelnet import NETWORK_CONTEXT_FEATURES
    from sniper_onnx.predictors.runtime import load_predictor, save_predictor

    tables = _tables(120, 3)
    rng = np.random.default_rng(4)
    cached = rng.integers(0, 2, len(tables))  # e.g. whether the weights fit in a cache
    base = np.array([_node_seconds(t).sum() for t in tables]) * (1.0 + cached)
    sizes = np.column_stack([1e6 * (1 + 9 * cached), 1e5 * np.ones(len(tables)), [len(t) for t in tables],
                             [float(np.abs(t[:, 1]).sum()) * 1e6 for t in tables]])
    names, trained = list(DEVICE_SCALE), 100  # the last 20 networks are never trained on
    pair_network = np.repeat(np.arange(trained), len(names))
    pair_device = np.tile(np.arange(len(names)), trained)
    seconds = base[pair_network] * np.array([DEVICE_SCALE[n] for n in names])[pair_device]
    data = TrainingData([f"net{i}" for i in range(len(tables))], sizes, list(NETWORK_CONTEXT_FEATURES),
                        names, np.array([[1.0, 0.0], [2.0, 1.0]]), ["threads", "other"], pair_network, pair_device, seconds)
    pcn = PCNConfig(attention_dim=4, hidden=(16,), embedding=4, epochs=5, min_steps=200)

    def kernel_error(context: bool):
        predictor, _ = train_predictor(data, pcn, kernel_tables=tables, kernel_config=KernelNetConfig(
            hidden=32, steps=1500, learning_rate=1e-2, members=2, network_context=context, network_context_gate=()))
        device = predictor.device_vector("cpu_a")
        held = slice(trained, None)
        kernel = predictor.run(sizes[held], np.tile(device, (len(tables) - trained, 1)), tables[held])["kernel_seconds"]
        return predictor, float(np.median(np.abs(kernel / (base[held] * DEVICE_SCALE["cpu_a"]) - 1)))

    with_context, error_with = kernel_error(True)
    _, error_without = kernel_error(False)
    assert error_with < 0.6 * error_without, (error_with, error_without)
    path = tmp_path / "context.onnx"
    save_predictor(with_context, str(path))
    reloaded = load_predictor(str(path))
    device = reloaded.device_vector("cpu_b")
    graph = reloaded.run(sizes[:5], np.tile(device, (5, 1)), tables[:5])["kernel_seconds"]
    reference = [np.exp(kernel_log_seconds_numpy(params_of(reloaded), t, device[:-1], network_vector=net))
                 for t, net in zip(tables[:5], sizes[:5])]
    np.testing.assert_allclose(graph, reference, rtol=2e-4)
    with pytest.raises(ValueError, match="network context"):
        kernel_log_seconds_numpy(params_of(reloaded), tables[0], device[:-1])


def test_the_context_gate_keeps_network_sizes_away_from_devices_outside_it(tmp_path):
    """Gated on a one-hot kind column: the CPU sees the network's size, the other device's node
    times do not move with it, and the graph computes what the numpy twin does on both."""
    from sniper_onnx.predictors.dataset import TrainingData
    from sniper_onnx.predictors.kernelnet import NETWORK_CONTEXT_FEATURES
    from sniper_onnx.predictors.pcn import PCNConfig
    from sniper_onnx.predictors.runtime import load_predictor, params_of, save_predictor
    from sniper_onnx.predictors.training import train_predictor

    tables = _tables(60, 5)
    sizes = np.abs(np.random.default_rng(5).normal(1e6, 3e5, (len(tables), len(NETWORK_CONTEXT_FEATURES))))
    base = np.array([_node_seconds(t).sum() for t in tables])
    pair_network = np.repeat(np.arange(len(tables)), 2)
    pair_device = np.tile(np.arange(2), len(tables))
    data = TrainingData([f"net{i}" for i in range(len(tables))], sizes, list(NETWORK_CONTEXT_FEATURES),
                        ["cpu", "gpu"], np.array([[1.0, 1.0], [0.0, 4.0]]), ["kind_desktop_cpu", "threads"],
                        pair_network, pair_device, base[pair_network] * np.array([1.0, 0.2])[pair_device])
    predictor, _ = train_predictor(data, PCNConfig(attention_dim=4, hidden=(16,), embedding=4, epochs=3, min_steps=100),
                                   kernel_tables=tables, kernel_config=KernelNetConfig(
                                       hidden=16, steps=300, members=2, network_context=True))
    save_predictor(predictor, str(tmp_path / "gated.onnx"))
    reloaded = load_predictor(str(tmp_path / "gated.onnx"))
    params = params_of(reloaded)
    assert params["kern_gate_columns"].tolist() == [0.0]
    for device in ("cpu", "gpu"):
        vector = reloaded.device_vector(device)
        graph = reloaded.run(sizes[:4], np.tile(vector, (4, 1)), tables[:4])["kernel_seconds"]
        twin = [np.exp(kernel_log_seconds_numpy(params, t, vector[:-1], network_vector=net)) for t, net in zip(tables[:4], sizes[:4])]
        np.testing.assert_allclose(graph, twin, rtol=2e-4)
        bigger = reloaded.run(sizes[:4] * 50, np.tile(vector, (4, 1)), tables[:4])["kernel_seconds"]
        assert np.allclose(bigger, graph, rtol=1e-6) == (device == "gpu")


def test_network_context_is_left_out_when_the_table_cannot_give_it():
    from types import SimpleNamespace

    from sniper_onnx.predictors.kernelnet import NETWORK_CONTEXT_FEATURES
    from sniper_onnx.predictors.training import _context_if_possible

    said = []
    full = SimpleNamespace(network_feature_names=list(NETWORK_CONTEXT_FEATURES), device_feature_names=["kind_desktop_cpu"])
    assert _context_if_possible(KernelNetConfig(), full, said.append).network_context and not said
    sizes_missing = SimpleNamespace(network_feature_names=["total_macs"], device_feature_names=["kind_desktop_cpu"])
    assert not _context_if_possible(KernelNetConfig(), sizes_missing, said.append).network_context
    no_kinds = SimpleNamespace(network_feature_names=list(NETWORK_CONTEXT_FEATURES), device_feature_names=["threads"])
    assert not _context_if_possible(KernelNetConfig(), no_kinds, said.append).network_context
    assert _context_if_possible(KernelNetConfig(network_context_gate=()), no_kinds, said.append).network_context
    assert len(said) == 2 and "no param_bytes" in said[0] and "kind_desktop_cpu" in said[1]


def test_no_context_is_learnt_when_no_trained_device_is_in_the_gate():
    from sniper_onnx.predictors.kernelnet import NETWORK_CONTEXT_FEATURES, train_kernel_net

    tables = _tables(20, 6)
    sizes = np.ones((len(tables), len(NETWORK_CONTEXT_FEATURES)))
    params = train_kernel_net(tables, np.array([[0.0, 1.0]]), np.arange(20), np.zeros(20, int),
                              np.log([_node_seconds(t).sum() for t in tables]), KernelNetConfig(hidden=8, steps=20, members=1),
                              network_context=sizes, context_columns=list(range(4)),
                              device_feature_names=["kind_desktop_cpu", "threads"])
    assert "kern_fc0_net_w" not in params and "kern_gate_columns" not in params


def test_a_predictor_of_the_earlier_layout_reads_the_first_columns_of_todays_tables():
    """Kernel columns are only appended: a file trained on 31 columns answers today's 32-column
    tables as it answered its own, instead of refusing every table."""
    tables = [t[:, : WIDTH - 1] for t in _tables(40, 3)]
    names = list(DEVICE_SCALE)
    pairs = len(tables) * len(names)
    seconds = np.repeat([_node_seconds(t).sum() for t in tables], len(names))
    data = TrainingData([f"net{i}" for i in range(len(tables))], np.array([[len(t), 1.0] for t in tables]),
                        ["num_layers", "total_macs"], names, np.array([[1.0, 0.0], [2.0, 1.0]]), ["threads", "other"],
                        np.repeat(np.arange(len(tables)), len(names)), np.tile(np.arange(len(names)), len(tables)),
                        seconds[:pairs])
    predictor, _ = train_predictor(data, PCNConfig(attention_dim=4, hidden=(8,), embedding=4, epochs=2, min_steps=20),
                                   kernel_config=KernelNetConfig(hidden=8, steps=50), kernel_tables=tables)
    assert predictor.kernel_width == WIDTH - 1 and predictor.kernel_path["feature_names"] == list(KERNEL_FEATURE_NAMES[:-1])
    today = [np.hstack([t, np.ones((len(t), 1), np.float32)]) for t in tables[:4]]
    nets, device = np.zeros((4, 2)), np.tile(predictor.device_vector("cpu_a"), (4, 1))
    ran = predictor.run(nets, device, today)["kernel_seconds"]
    assert np.array_equal(ran, predictor.run(nets, device, tables[:4])["kernel_seconds"])
    features = [{"num_layers": float(len(t)), "total_macs": 1.0} for t in tables[:4]]
    answered = predictor.predict(features, ["cpu_a"], kernel_tables=[distinct_rows(t) for t in today])
    before = predictor.predict(features, ["cpu_a"], kernel_tables=tables[:4])
    assert [r.seconds for r in answered.rows] == [r.seconds for r in before.rows]
    with pytest.raises(SniperError, match="kernel table has shape"):
        predictor.run(nets, device, [t[:, :5] for t in tables[:4]])
    renamed = dict(predictor.kernel_path, feature_names=["other"] * (WIDTH - 1))  # not a prefix of today's names
    predictor.meta["kernel_path"] = renamed
    with pytest.raises(SniperError, match="kernel table has shape"):  # refused, never cut by position alone
        predictor.run(nets, device, today)


CALL_SECONDS = {"cpu_a": 3e-5, "cpu_b": 1.5e-5}


def _calls_data(count: int, seed: int):
    """Networks of 1-30 nodes whose time is their nodes' sum plus a fixed cost per call on each
    device: what a runtime spends binding inputs and starting its executor."""
    rng = np.random.default_rng(seed)
    tables = [rng.normal(0.0, 1.0, (int(rng.integers(1, 30)), WIDTH)).astype(np.float32) for _ in range(count)]
    names = list(CALL_SECONDS)
    pair_network = np.repeat(np.arange(count), len(names))
    pair_device = np.tile(np.arange(len(names)), count)
    seconds = (np.array([_node_seconds(t).sum() for t in tables])[pair_network] * np.array([1.0, 3.0])[pair_device]
               + np.array([CALL_SECONDS[n] for n in names])[pair_device])
    return tables, names, pair_network, pair_device, seconds


@pytest.mark.parametrize("call_cost", [True, False])
def test_a_call_s_own_cost_is_learnt_apart_from_the_nodes(call_cost):
    from sniper_onnx.predictors.kernelnet import call_log_seconds_numpy, train_kernel_net

    tables, names, pair_network, pair_device, seconds = _calls_data(200, 5)
    device_matrix = np.array([[1.0, 0.0], [2.0, 1.0]])
    params = train_kernel_net(tables, device_matrix, pair_network, pair_device, np.log(seconds),
                              KernelNetConfig(hidden=16, steps=1500, members=1, call_cost=call_cost))
    # a one-node network whose node costs almost nothing takes about a call (here 100x its node)
    tiny = np.full((1, WIDTH), -4.0, np.float32)
    answered = np.array([np.exp(kernel_log_seconds_numpy(params, tiny, device_matrix[d])) for d in range(len(names))])
    truth = np.array([CALL_SECONDS[n] + _node_seconds(tiny).sum() * scale for n, scale in zip(names, (1.0, 3.0))])
    if call_cost:
        assert np.all(answered > truth / 4) and np.all(answered < truth * 1.5), (answered, truth)
        # cpu_a's call is learnt apart from its nodes; cpu_b's, 3x slower nodes beside a call half as
        # long, is partly taken into the nodes' fixed costs (4 against 15 us in one run)
        learnt = np.exp(call_log_seconds_numpy(params, device_matrix[0]))
        assert learnt == pytest.approx(CALL_SECONDS["cpu_a"], rel=0.35)
    else:  # the call hides in the nodes' fixed costs, and a tiny network is answered far below it
        assert "kern_percall_w" not in params and call_log_seconds_numpy(params, device_matrix[0]) == -np.inf
        assert np.all(answered < truth / 10), (answered, truth)


def test_a_device_whose_call_dwarfs_the_fastest_label_of_another_learns_its_own_call():
    """The H200 case: a CPU whose fastest nets take a few us, and a GPU whose calls dwarf its cheap
    nodes (60 us here; 20-25 us on the H200). A call started low for every device fell to 0.8 us on
    the GPU (0.02 us on the H200), since exp's gradient shrinks with the call's share of the time;
    started at half the GPU's fastest small net, it climbs to the truth."""
    from sniper_onnx.predictors.kernelnet import call_log_seconds_numpy, train_kernel_net

    calls, node_scale = np.array([1e-6, 6e-5]), np.array([1.0, 0.3])
    rng = np.random.default_rng(11)
    tables = [rng.normal(-1.0, 1.0, (int(rng.integers(1, 30)), WIDTH)).astype(np.float32) for _ in range(200)]
    # every net on the CPU, 40 on the GPU (the reference dataset: 261 H200 pairs beside 7,722 CPU pairs)
    pair_network = np.concatenate([np.arange(200), np.arange(40)])
    pair_device = np.concatenate([np.zeros(200, int), np.ones(40, int)])
    seconds = np.array([_node_seconds(t).sum() for t in tables])[pair_network] * node_scale[pair_device] + calls[pair_device]
    device_matrix = np.array([[1.0, 0.0], [2.0, 1.0]])
    params = train_kernel_net(tables, device_matrix, pair_network, pair_device, np.log(seconds),
                              KernelNetConfig(hidden=16, steps=1500, members=1))
    learnt = np.exp(call_log_seconds_numpy(params, device_matrix[1]))
    assert learnt == pytest.approx(calls[1], rel=0.3)  # 0.8 us, not 60, with the old start


def test_a_device_without_small_nets_starts_its_call_low_one_with_them_near_its_fastest_small_net():
    from sniper_onnx.predictors.kernelnet import _initial_call

    z_dev = np.array([[-1.0, 0.5], [1.0, -0.5]])
    pair_device = np.array([0, 0, 1, 1])
    log_seconds = np.log([4e-5, 1e-3, 2e-4, 3e-3])
    layers = np.array([2, 40, 15, 60])  # device 1 ran no net of 3 layers or fewer
    weight, bias = _initial_call(z_dev, pair_device, log_seconds, layers)
    starts = np.exp(z_dev @ weight + bias)
    np.testing.assert_allclose(starts, [2e-5, 4e-5 / 5], rtol=1e-9)


def test_graph_numpy_and_node_power_fits_add_the_call_alike_and_a_roofline_slot_replaces_it(kernel_trained):
    from sniper_onnx.predictors.adapt import _NodeSums
    from sniper_onnx.predictors.kernelnet import roofline_work
    from sniper_onnx.predictors.runtime import build_predictor

    predictor, _, tables, _ = kernel_trained
    params = dict(params_of(predictor))
    assert "kern_percall_w" in params and "call_seconds" in predictor.kernel_path["devices"]["cpu_a"]
    params["kern_percall_w"] = np.zeros_like(params["kern_percall_w"])
    params["kern_percall_b"] = np.log([5e-5])  # about half a network here: a term no check can miss
    width, slots = params["dev_fc_w"].shape[1], 2
    roofline = np.array([1e-11, 1e-10, 2e-7])
    params.update(slot_delta=np.zeros((slots, width)), slot_trim_w=np.zeros((params["net_mean"].shape[0], slots)),
                  slot_trim_b=np.zeros(slots), slot_power=np.zeros(slots), slot_node_power=np.array([0.3, 0.0]),
                  slot_roofline_only=np.array([0.0, 1.0]), slot_roofline=np.array([np.zeros(3), roofline]),
                  slot_roofline_call=np.array([0.0, 4e-5]))
    slotted = build_predictor(params, predictor.meta)
    chosen, nets = tables[:6], np.zeros((6, 2))
    device = predictor.device_vector("cpu_b")

    def graph(slot: int) -> np.ndarray:
        return slotted.run(nets, np.tile(np.append(device[:-1], slot), (len(chosen), 1)), chosen)["kernel_seconds"]

    plain = [np.exp(kernel_log_seconds_numpy(params, t, device[:-1])) for t in chosen]
    nodes_only = {k: v for k, v in params.items() if not k.startswith("kern_percall")}
    np.testing.assert_allclose(np.array(plain) - [np.exp(kernel_log_seconds_numpy(nodes_only, t, device[:-1]))
                                                  for t in chosen], 5e-5, rtol=1e-9)
    np.testing.assert_allclose(graph(0), plain, rtol=2e-4)
    powered = [np.exp(kernel_log_seconds_numpy(params, t, device[:-1], node_power=0.3)) for t in chosen]
    np.testing.assert_allclose(graph(1), powered, rtol=2e-4)
    sums = _NodeSums.of(params, chosen, device[:-1], nets)  # what a node-power fit in adapt sees
    np.testing.assert_allclose(np.exp(sums.log_seconds_and_slope(0.3, np.arange(len(chosen)))[0]), powered, rtol=1e-6)
    replaced = [np.exp(kernel_log_seconds_numpy(nodes_only, t, device[:-1], roofline_only=True, roofline=roofline,
                                                roofline_call=4e-5))
                for t in chosen]  # the roofline alone, its own call included: no learnt node and no learnt call
    np.testing.assert_allclose(graph(2), replaced, rtol=2e-4)
    np.testing.assert_allclose(replaced, [np.exp(kernel_log_seconds_numpy(params, t, device[:-1], roofline_only=True,
                                                                          roofline=roofline, roofline_call=4e-5))
                                          for t in chosen], rtol=1e-12)
    roofline_nodes = [np.sum(roofline_work(t) @ roofline) for t in chosen]
    np.testing.assert_allclose(np.array(replaced) - roofline_nodes, 4e-5, rtol=1e-6)


def test_kernel_members_share_the_first_member_s_cost_of_a_call():
    from sniper_onnx.predictors.kernelnet import train_kernel_net

    tables, _, pair_network, pair_device, seconds = _calls_data(60, 7)
    device_matrix = np.array([[1.0, 0.0], [2.0, 1.0]])
    args = (tables, device_matrix, pair_network, pair_device, np.log(seconds))
    alone = train_kernel_net(*args, KernelNetConfig(hidden=8, steps=150, members=1))
    merged = train_kernel_net(*args, KernelNetConfig(hidden=8, steps=150, members=3))
    # the first member is the net trained alone; the others kept its call
    np.testing.assert_allclose(merged["kern_percall_w"], alone["kern_percall_w"], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(merged["kern_percall_b"], alone["kern_percall_b"], rtol=1e-5, atol=1e-9)
    assert merged["kern_out_w"].shape[0] == 3 * alone["kern_out_w"].shape[0]


@pytest.mark.parametrize("held_out, path", [(5, PATH_KERNELS), (20, PATH_PCN)])
def test_the_pcn_takes_a_device_from_the_kernel_sum_only_on_enough_held_out_pairs(kernel_trained, held_out, path):
    from sniper_onnx.predictors.training import _choose_kernel_path

    predictor, _, tables, _ = kernel_trained
    names = list(DEVICE_SCALE)
    data = TrainingData([f"net{i}" for i in range(len(tables))], np.zeros((len(tables), 2)), ["num_layers", "total_macs"],
                        names, np.array([[1.0, 0.0], [2.0, 1.0]]), ["threads", "other"], np.arange(len(tables)),
                        np.zeros(len(tables), dtype=int), np.ones(len(tables)))
    rows = np.arange(held_out)
    nets = np.zeros((held_out, 2))
    devs = np.tile(predictor.device_vector("cpu_a"), (held_out, 1))
    pcn = predictor.run(nets, devs)["seconds"].astype(np.float64)
    meta, _ = _choose_kernel_path(predictor, data, tables, rows, nets, devs, pcn, measured=pcn.copy())  # the PCN exact
    assert meta["devices"]["cpu_a"]["pcn_mape"] == 0.0 and meta["devices"]["cpu_a"]["path"] == path
