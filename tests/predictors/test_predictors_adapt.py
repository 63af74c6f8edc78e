"""Few-shot adaptation and the Time Trimmer improve error on a device the PCN never saw."""

import numpy as np

from predictors_testkit import HELD_OUT, device_spec, latency, synthetic_networks
from sniper_onnx.predictors.adapt import adaptation_candidates, adapt_predictor, fit_trimmer, nonnegative_rates
from sniper_onnx.predictors.metrics import accuracy_metrics


def _features(names, nets):
    return [dict(zip(names, row)) for row in nets]


def test_adapt_improves_a_held_out_device(trained):
    _, predictor, _, data = trained
    names = data.network_feature_names
    samples, held = synthetic_networks(10, 11), synthetic_networks(200, 12)
    spec = device_spec("newboard", HELD_OUT)
    before = predictor.run(held, np.tile(np.append(spec.features(), 0.0), (len(held), 1)))["seconds"]
    adapted, report = adapt_predictor(predictor, "newboard", _features(names, samples),
                                      latency(samples, HELD_OUT, 5), spec_features=spec.features())
    after = adapted.predict(_features(names, held), ["newboard"]).seconds()
    truth = latency(held, HELD_OUT, 6)
    mape_before = accuracy_metrics(before, truth)["mape_pct"]
    mape_after = accuracy_metrics(after, truth)["mape_pct"]
    assert mape_after < mape_before / 2
    assert mape_after < 25
    assert report.slot == 1 and "newboard" in adapted.devices
    # the other devices are untouched
    first = _features(names, held[:5])
    assert np.allclose(adapted.predict(first, ["phone"]).seconds(), predictor.predict(first, ["phone"]).seconds())


def test_adapt_without_spec_relies_on_samples(trained):
    _, predictor, _, data = trained
    samples = synthetic_networks(10, 21)
    adapted, report = adapt_predictor(predictor, "mystery", _features(data.network_feature_names, samples),
                                      latency(samples, HELD_OUT, 7))
    assert report.sample_mape_before is None  # a placeholder vector predicted it: no figure (it read ~100 %)
    assert report.sample_mape_after < 0.5
    assert adapted.device_table["mystery"][-1] == 1.0


def test_trimmer_picks_the_residual_feature():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(30, 5))
    residual = 0.3 * z[:, 2] + 0.1
    trimmer = fit_trimmer(z, residual, top_k=1, ridge=0.0)
    assert trimmer.features == [2]
    assert np.allclose(trimmer.apply(z), residual, atol=1e-9)


def test_nonnegative_rates_recover_four_rates_and_stay_non_negative():
    rng = np.random.default_rng(3)
    work = rng.uniform(1.0, 10.0, size=(12, 4))
    np.testing.assert_allclose(nonnegative_rates(work, work @ np.array([0.5, 0.0, 2.0, 0.1])), [0.5, 0.0, 2.0, 0.1],
                               atol=1e-9)
    seconds = work @ np.array([1.0, -0.3, 0.0, 0.0]) + 5.0  # no non-negative rates fit it exactly
    rates = nonnegative_rates(work, seconds)
    loss = lambda r: np.sum((work @ r / seconds - 1) ** 2)
    alone = [nonnegative_rates(work[:, [i]], seconds)[0] * np.eye(4)[i] for i in range(4)]
    assert np.all(rates >= 0) and all(loss(rates) <= loss(r) + 1e-12 for r in alone)


def test_feedback_trims_a_biased_device(trained):
    _, predictor, _, data = trained
    names = data.network_feature_names
    nets = synthetic_networks(40, 31)
    from predictors_testkit import DEVICES

    biased = latency(nets, DEVICES["phone"], 9) * np.exp(0.3 * np.log(nets[:, 3] / 20))  # a conv3x3-dependent drift
    corrected, report = adapt_predictor(predictor, "phone", _features(names, nets[:30]), biased[:30],
                                        solve_embedding=False, trimmer_top_k=2)
    test = _features(names, nets[30:])
    err_before = accuracy_metrics(predictor.predict(test, ["phone"]).seconds(), biased[30:])["mape_pct"]
    err_after = accuracy_metrics(corrected.predict(test, ["phone"]).seconds(), biased[30:])["mape_pct"]
    assert err_after < err_before
    assert report.trimmer_features


def test_readapting_a_device_reuses_its_slot_and_keeps_old_measurements(trained):
    _, predictor, _, data = trained
    names = data.network_feature_names
    first, second = synthetic_networks(8, 51), synthetic_networks(8, 52)
    once, _ = adapt_predictor(predictor, "again", _features(names, first), latency(first, HELD_OUT, 1))
    twice, report = adapt_predictor(once, "again", _features(names, second), latency(second, HELD_OUT, 2))
    assert report.slot == 1 and twice.device_table["again"][-1] == 1.0
    assert [len(c["measurements"]) for c in twice.meta["corrections"]] == [8, 8]


def test_adaptation_candidates_hold_the_one_adapt_keeps(trained):
    _, predictor, _, data = trained
    names = data.network_feature_names
    samples, held = synthetic_networks(10, 31), synthetic_networks(20, 32)
    spec = device_spec("newboard", HELD_OUT)
    seconds = latency(samples, HELD_OUT, 8)
    adapted, report = adapt_predictor(predictor, "newboard", _features(names, samples), seconds, spec_features=spec.features())
    candidates = adaptation_candidates(predictor, "newboard", _features(names, samples), seconds, spec_features=spec.features())
    prior, score, kept = min(candidates, key=lambda c: c[1])
    assert (prior, score) == (report.prior, report.loo_rmse_log)
    assert np.allclose(kept.predict(_features(names, held), ["newboard"]).seconds(),
                       adapted.predict(_features(names, held), ["newboard"]).seconds())


def test_a_sample_with_no_layer_row_is_set_aside_and_the_others_keep_the_kernel_fit(recwarn):
    from sniper_generator.zoo import export_zoo_model
    from sniper_onnx.analysis import analyze
    from sniper_onnx.analysis.kernels import kernel_table
    from sniper_onnx.predictors import load_predictor
    from sniper_onnx.predictors.runtime import shipped_predictor_path

    reference = load_predictor(str(shipped_predictor_path("pcn_reference.onnx")))
    results = [analyze(export_zoo_model("squeezenet1_1", resolution=r, weights=False)) for r in (32, 48, 64, 96)]
    tables = [kernel_table(r.nodes) for r in results]
    tables[0] = tables[0][:0]  # a network of custom ops only: no row for the kernel sum to add up
    adapted, report = adapt_predictor(reference, "board", [dict(r.features) for r in results], [1e-3, 2e-3, 3e-3, 4e-3],
                                      kernel_tables=tables)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert np.isfinite(report.sample_mape_after) and report.samples == 3 and report.set_aside == ["sample 1"]
    assert len(adapted.meta["corrections"][-1]["measurements"]) == 4  # the set-aside one is kept too
    # feedback on a device the kernel sum answers still corrects the kernel sum from the other samples
    device = "AMD EPYC | cpu fp32 t1 opt-all"
    fed, fed_report = adapt_predictor(reference, device, [dict(r.features) for r in results], [1e-3, 2e-3, 3e-3, 4e-3],
                                      solve_embedding=False, kernel_tables=tables)
    assert fed_report.set_aside == ["sample 1"] and fed_report.sample_mape_after < fed_report.sample_mape_before


def test_the_trimmer_keeps_the_simplest_fit_within_one_standard_error_of_the_best():
    from sniper_onnx.predictors.adapt import _Choice, simplest_within_one_se
    from sniper_onnx.predictors.adapt import Trimmer

    def choice(name, errors):
        return _Choice(float(np.sqrt(np.mean(np.square(errors)))), name, np.array(errors), Trimmer([], np.zeros(0), 0.0))

    scale = choice("k=0", [0.1] * 9 + [0.9])  # one sample far off, as one noisy label is
    one_sample_fitted = choice("k=2", [0.1] * 9 + [0.75])  # 28 % lower MSE, all of it from that sample
    assert simplest_within_one_se([scale, one_sample_fitted]).prior == "k=0"
    every_sample_fitted = choice("k=2", [0.02] * 10)
    assert simplest_within_one_se([scale, every_sample_fitted]).prior == "k=2"


def test_adapt_prefers_the_candidate_with_fewer_fitted_values_within_one_standard_error():
    """The H200 left out: leave-one-out on 10 samples picked the PCN's embedding offset (9 values)
    over the roofline (4 rates) by less than its noise, and missed the other nets by far more."""
    from sniper_onnx.predictors.adapt import Trimmer, _Choice, simplest_within_one_se

    none = Trimmer([], np.zeros(0), 0.0)
    pcn = _Choice(0.40, "train_mean", np.array([0.1] * 9 + [1.2]), none, delta=np.zeros(8))
    roofline = _Choice(0.43, "roofline", np.array([0.1] * 9 + [1.3]), none, roofline=np.array([3e-5, 7e-6, 0.0, 1e-13]))
    assert (pcn.parameters, roofline.parameters) == (9, 4)
    assert simplest_within_one_se(sorted([pcn, roofline], key=lambda c: c.parameters)).prior == "roofline"
    clearly_better = _Choice(0.1, "train_mean", np.array([0.1] * 10), none, delta=np.zeros(8))
    assert simplest_within_one_se(sorted([clearly_better, roofline], key=lambda c: c.parameters)).prior == "train_mean"
