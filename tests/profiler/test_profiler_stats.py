import numpy as np
import pytest

from sniper_profiler.stats import median_interval, relative_half_width, summarize


def test_median_interval_brackets_the_median_and_uses_order_statistics():
    samples = np.arange(1, 101, dtype=float)  # n = 100, z = 1.96: j = floor(40.2) = 40, k = ceil(60.8) = 61
    low, high = median_interval(samples, 0.95)
    assert (low, high) == (40.0, 61.0)
    assert low <= np.median(samples) <= high


def test_interval_shrinks_with_more_samples():
    rng = np.random.default_rng(0)
    few = np.sort(1.0 + 0.1 * rng.random(20))
    many = np.sort(1.0 + 0.1 * rng.random(2000))
    assert relative_half_width(many) < relative_half_width(few)


def test_interval_covers_true_median_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    true_median = np.log(2.0)  # of Exp(1): skewed, like latencies
    hits = 0
    for _ in range(400):
        low, high = median_interval(np.sort(rng.exponential(size=50)))
        hits += low <= true_median <= high
    assert 0.90 <= hits / 400 <= 0.995


def test_summarize_matches_numpy():
    samples = [0.003, 0.001, 0.002, 0.010, 0.004]
    stats = summarize(samples)
    assert stats["median_s"] == pytest.approx(np.median(samples))
    assert stats["mean_s"] == pytest.approx(np.mean(samples))
    assert stats["std_s"] == pytest.approx(np.std(samples, ddof=1))
    assert stats["min_s"] == 0.001 and stats["count"] == 5
    assert stats["p10_s"] == pytest.approx(np.percentile(samples, 10))
    assert stats["p90_s"] == pytest.approx(np.percentile(samples, 90))
    assert stats["ci_low_s"] <= stats["median_s"] <= stats["ci_high_s"]


def test_no_samples_is_an_error():
    with pytest.raises(ValueError):
        median_interval([])
