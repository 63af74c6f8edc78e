"""How times are written for people (sniper_profiler.units)."""

import pytest

from sniper_profiler.units import milliseconds


@pytest.mark.parametrize("seconds, shown", [(4.013e-3, "4.013"), (7.6e-6, "0.007600"), (5.664e-9, "0.000005664"),
                                            (12.34, "12340"), (0.0, "0"), (9.9996e-3, "10.00"), (0.99996e-3, "1.000")])
def test_predicted_times_are_shown_in_fixed_notation(seconds, shown):
    assert milliseconds(seconds) == shown
