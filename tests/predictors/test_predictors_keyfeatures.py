import numpy as np

from sniper_onnx.predictors.keyfeatures import extract_key_features, pearson_columns


def test_algorithm1_picks_the_generating_features_in_order():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6))
    x[:, 4] = x[:, 1] * 0.9 + rng.normal(scale=0.3, size=400)  # a decoy that tracks the strongest feature
    times = 5.0 * x[:, 1] + 2.0 * x[:, 3] + 0.5 + rng.normal(scale=0.01, size=400)
    keys = extract_key_features(x, times, [f"f{i}" for i in range(6)], max_features=2)
    assert keys.names == ["f1", "f3"]
    assert np.allclose(keys.coefficients, [5.0, 2.0], atol=0.02)
    assert abs(keys.intercept - 0.5) < 0.02


def test_residual_refit_skips_a_redundant_feature():
    # f0 correlates with time almost as much as f1 but only through f1: after fitting f1 the
    # residual is driven by f2, which alone is weakly correlated with time.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 3))
    x[:, 0] = x[:, 1] + rng.normal(scale=0.1, size=500)
    times = 3 * x[:, 1] + 0.5 * x[:, 2]
    assert extract_key_features(x, times, ["a", "b", "c"], max_features=2).names == ["b", "c"]


def test_constant_column_scores_zero_not_nan():
    x = np.column_stack([np.ones(10), np.arange(10.0)])
    r = pearson_columns(x, np.arange(10.0))
    assert r[0] == 0.0 and abs(r[1] - 1.0) < 1e-12
