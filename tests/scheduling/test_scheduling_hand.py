"""Small schedules worked out by hand, one per policy.

Platform: device 0 is "fast", device 1 is "slow". Model A runs 1 s on fast and 5 s on slow; model B
2 s on fast and 6 s on slow (unless a test says otherwise). Every task has noise 1, so it runs
exactly its model's true time.
"""

import pytest

from sniper_onnx.scheduling.platform import platform_from_dict
from sniper_onnx.scheduling.policies import SniperLLF, make_policy
from sniper_onnx.scheduling.simulator import simulate
from sniper_onnx.scheduling.timesource import FeedbackTimes
from sniper_onnx.scheduling.workload import Task

A, B = 0, 1


def two_devices(predicted=None, slow_a=5.0):
    true = {"A": {"fast": 1.0, "slow": slow_a}, "B": {"fast": 2.0, "slow": 6.0}}
    return platform_from_dict(
        {"name": "two", "devices": {"fast": 1, "slow": 1}, "true_times": true, "predicted_times": predicted or true},
        source="two-device test platform",
    )


def tasks(*specs):
    """(model, arrival, deadline) -> tasks numbered in order."""
    return [Task(i, model, arrival, deadline) for i, (model, arrival, deadline) in enumerate(specs)]


def placed(result):
    """task index -> (device, start, end), rounded so hand arithmetic compares exactly."""
    s = result.schedule
    return {i: (int(s.device[i]), round(float(s.start[i]), 6), round(float(s.end[i]), 6)) for i in range(len(s.device))}


def test_polling_round_robin_fifo():
    # t0->fast, t1->slow, t2->fast, t3->slow, whatever the times.
    # fast: t0 A 0-1, then t2 B 1-3.  slow: t1 A 0.1-5.1, then t3 A 5.1-10.1.
    result = simulate(two_devices(), "polling", tasks((A, 0, 9), (A, 0.1, 9), (B, 0.2, 9), (A, 0.3, 9)))
    assert placed(result) == {0: (0, 0, 1), 1: (1, 0.1, 5.1), 2: (0, 1, 3), 3: (1, 5.1, 10.1)}
    m = result.metrics
    # waits 0, 0, 0.8, 4.8; makespan 10.1 - 0; busy fast 3 s, slow 10 s
    assert m.awt == pytest.approx(5.6 / 4)
    assert m.tps == pytest.approx(4 / 10.1)
    assert m.utilization == pytest.approx((3 / 10.1, 10 / 10.1))
    assert m.utilization_std == pytest.approx(3.5 / 10.1)
    # backlog (fast, slow) each arrival finds, before it is placed: t0 (0, 0); t1 (0.9, 0);
    # t2 (0.8, 4.9); t3 (0.7 + 2 queued, 4.8). std of two values = half their difference:
    # 0, 0.45, 2.05, 1.05 -> mean 3.55 / 4
    assert m.load_std == pytest.approx(3.55 / 4)
    assert m.deadline_miss_rate == pytest.approx(1 / 4)  # only t3 (ends 10.1 > 9)


def test_edf_round_robin_then_earliest_deadline():
    # Round robin: t0,t2,t4 -> fast; t1,t3 -> slow. Fast runs t0 0-1; at t=1 its queue holds
    # t2 (deadline 9) and t4 (deadline 5): t4 first 1-2, then t2 (B) 2-4. FIFO would run t2 first.
    result = simulate(two_devices(), "edf", tasks((A, 0, 50), (A, 0.1, 50), (B, 0.2, 9), (A, 0.3, 50), (A, 0.4, 5)))
    p = placed(result)
    assert p[4] == (0, 1, 2) and p[2] == (0, 2, 4)
    assert p[1] == (1, 0.1, 5.1) and p[3] == (1, 5.1, 10.1)


def test_jsq_counts_tasks_not_seconds():
    # t0: counts 0,0 -> fast. t1: 1,0 -> slow. t2: 1,1 -> fast (tie: lowest index). t3: 2,1 -> slow.
    # t4 at 1.5: fast finished t0 at 1 (count 1: t2 running 1-3), slow has 2 -> fast, runs 3-4.
    result = simulate(two_devices(), "jsq", tasks((A, 0, 50), (A, 0.1, 50), (B, 0.2, 50), (A, 0.3, 50), (A, 1.5, 50)))
    assert placed(result) == {
        0: (0, 0, 1), 1: (1, 0.1, 5.1), 2: (0, 1, 3), 3: (1, 5.1, 10.1), 4: (0, 3, 4),
    }


def test_edf_jsq_orders_by_deadline():
    # Same placement as JSQ for t0..t2 (fast, slow, fast); t3 at 0.3: counts 2,1 -> slow.
    # t4 at 0.4: counts 2,2 -> fast. Fast queue at t=1: t2 (deadline 40), t4 (deadline 3) -> t4 1-2, t2 2-4.
    result = simulate(two_devices(), "edf-jsq", tasks((A, 0, 50), (A, 0.1, 50), (B, 0.2, 40), (A, 0.3, 50), (A, 0.4, 3)))
    p = placed(result)
    assert p[4] == (0, 1, 2) and p[2] == (0, 2, 4)


def test_mct_oracle_least_completion():
    # t0 A: fast 0+1=1 vs slow 5 -> fast (free 1). t1 A at 0.1: fast 1+1=2 vs slow 5.1 -> fast (free 2).
    # t2 B at 0.2: fast 2+2=4 vs slow 0.2+6=6.2 -> fast (free 4). t3 A at 0.3 with noise 5 (runs 5 s
    # on fast, 25 s on slow): fast 4+5=9 vs slow 0.3+25 -> fast, 4-9.
    specs = tasks((A, 0, 50), (A, 0.1, 50), (B, 0.2, 50), (A, 0.3, 50))
    specs[3].noise = 5.0
    assert placed(simulate(two_devices(), "mct-oracle", specs)) == {
        0: (0, 0, 1), 1: (0, 1, 2), 2: (0, 2, 4), 3: (0, 4, 9),
    }


def test_mct_oracle_sees_noise_that_predictions_do_not():
    # One A task at 0 with noise 4: fast would take 4 s. A second A task at 0.1 with noise 1:
    # oracle: fast 4+1=5 vs slow 0.1+5=5.1 -> fast. Predicted (noise-blind, 1 s): same choice here,
    # so make the slow device 4.5 s: oracle fast 5 vs slow 4.6 -> slow; mct-pred fast 1+1=2 -> fast.
    platform = two_devices(slow_a=4.5)
    specs = tasks((A, 0, 50), (A, 0.1, 50))
    specs[0].noise = 4.0
    assert placed(simulate(platform, "mct-oracle", specs))[1][0] == 1
    specs = tasks((A, 0, 50), (A, 0.1, 50))
    specs[0].noise = 4.0
    assert placed(simulate(platform, "mct-pred", specs))[1][0] == 0


def test_mct_pred_follows_wrong_predictions():
    # Predicted: A takes 0.5 s on slow (truly 5 s). t0 -> slow (0.5 < 1), really 0-5.
    # t1 at 0.1: fast 0.1+1=1.1 vs slow 0.5+0.5=1.0 -> slow again, runs 5-10.
    wrong = {"A": {"fast": 1.0, "slow": 0.5}, "B": {"fast": 2.0, "slow": 6.0}}
    result = simulate(two_devices(predicted=wrong), "mct-pred", tasks((A, 0, 50), (A, 0.1, 50)))
    assert placed(result) == {0: (1, 0, 5), 1: (1, 5, 10)}


def test_sniper_feedback_corrects_a_wrong_prediction():
    # Same wrong prediction. t0 -> slow, runs 0-5; feedback learns slow A = 5 s. t1 at 6: fast 6+1=7
    # vs slow 6+5=11 -> fast. sniper-static keeps believing 0.5 s and sends t1 to slow.
    wrong = {"A": {"fast": 1.0, "slow": 0.5}, "B": {"fast": 2.0, "slow": 6.0}}
    specs = ((A, 0, 50), (A, 6, 50))
    assert placed(simulate(two_devices(predicted=wrong), "sniper", tasks(*specs))) == {0: (1, 0, 5), 1: (0, 6, 7)}
    assert placed(simulate(two_devices(predicted=wrong), "sniper-static", tasks(*specs)))[1][0] == 1


def test_sniper_least_laxity_queue_order():
    # t0 A -> fast (1 vs 5). t1 B at 0.1: fast 1+2=3 vs slow 6.1 -> fast. t2 A at 0.2, deadline 4:
    # fast 3+1=4 vs slow 5.2 -> fast. At t=1 the fast queue holds t1 (laxity key 50-2=48) and t2
    # (4-1=3): t2 runs 1-2 and meets its deadline, t1 runs 2-4. FIFO (mct-pred) runs t1 1-3, t2 3-4.
    specs = ((A, 0, 50), (B, 0.1, 50), (A, 0.2, 4))
    p = placed(simulate(two_devices(), SniperLLF(queue_bound=4), tasks(*specs)))
    assert p == {0: (0, 0, 1), 1: (0, 2, 4), 2: (0, 1, 2)}
    assert placed(simulate(two_devices(), "mct-pred", tasks(*specs)))[2] == (0, 3, 4)


def test_sniper_default_prefers_an_idle_device():
    # Default bound 1: t0 A -> fast (both idle; 1 < 5). t1 A at 0.1: the only idle device is slow,
    # so slow (0.1+5 = 5.1) although fast would finish it at 2: it starts now instead of waiting.
    # t2 A at 0.2: nothing idle -> least completion overall: fast 1+1 = 2 vs slow 5.1 -> fast, 1-2.
    p = placed(simulate(two_devices(), "sniper", tasks((A, 0, 50), (A, 0.1, 50), (A, 0.2, 50))))
    assert p == {0: (0, 0, 1), 1: (1, 0.1, 5.1), 2: (0, 1, 2)}


def test_sniper_queue_bound():
    # Bound 2. t0, t1 (A) -> fast (completions 1, 2 vs slow 5, 5.1). t2 A at 0.2: fast is full
    # (2 outstanding), so slow (5.2) although fast would finish it at 3. Unbounded: fast, 2-3.
    specs = ((A, 0, 50), (A, 0.1, 50), (A, 0.2, 50))
    bounded = SniperLLF(queue_bound=2, time_source="predicted")
    assert placed(simulate(two_devices(), bounded, tasks(*specs)))[2] == (1, 0.2, 5.2)
    unbounded = SniperLLF(queue_bound=99, time_source="predicted")
    assert placed(simulate(two_devices(), unbounded, tasks(*specs)))[2] == (0, 2, 3)


def test_sniper_waits_for_a_busy_fast_device_rather_than_a_much_slower_idle_one():
    # Model A: 1 s on fast, 10 s on slow. t0 A at 0 -> fast (both idle; 1 < 10), runs 0-1.
    # t1 A at 0.1: slow is idle and would finish it at 0.1+10 = 10.1, i.e. 10 s from now; fast is
    # busy until 1 and would finish it at 1+1 = 2, i.e. 1.9 s from now. 10 > 4 x 1.9 = 7.6 (the
    # default idle factor 4), so sniper queues it on fast (runs 1-2, waits 0.9 s, done at 2); the
    # old idle-first rule (sniper-idle) runs it on slow at once, 0.1-10.1, done 8.1 s later.
    specs = ((A, 0, 50), (A, 0.1, 50))
    new = placed(simulate(two_devices(slow_a=10.0), "sniper", tasks(*specs)))
    assert new == {0: (0, 0, 1), 1: (0, 1, 2)}
    old = placed(simulate(two_devices(slow_a=10.0), "sniper-idle", tasks(*specs)))
    assert old == {0: (0, 0, 1), 1: (1, 0.1, 10.1)}
    # The boundary: slow taking 7 s is within 4 x 1.9 = 7.6, so the idle device still takes it.
    assert placed(simulate(two_devices(slow_a=7.0), "sniper", tasks(*specs)))[1] == (1, 0.1, 7.1)
    # The factor is the rule's one parameter: 10 > 5 x 1.9 = 9.5 -> fast; 10 <= 6 x 1.9 = 11.4 -> slow.
    assert placed(simulate(two_devices(slow_a=10.0), SniperLLF(idle_factor=5), tasks(*specs)))[1][0] == 0
    assert placed(simulate(two_devices(slow_a=10.0), SniperLLF(idle_factor=6), tasks(*specs)))[1][0] == 1


def test_sniper_does_not_queue_behind_a_device_running_over_its_prediction():
    # fast is predicted 1 s for A but really takes 8 s (throttled or mis-predicted); slow is 6 s,
    # predicted 6 s. t0 A at 0 -> fast (both idle; 0+1 = 1 < 0+6 = 6), really runs 0-8.
    # t1 A at 5: fast is busy and was predicted free at 1 < 5, so it is overdue; max(free_at, now)
    # + est counts it as finishing t1 at 5+1 = 6 (1 s from now) against slow's 5+6 = 11 (6 s from
    # now), and 6 > 4 x 1 would queue t1 on fast: it would wait 8-5 = 3 s and run 8-16 (AWT 1.5,
    # makespan 16). An overdue device's completion is unknown, so sniper takes idle slow: 5-11,
    # no wait (AWT 0, makespan 11), as sniper-idle does.
    platform = platform_from_dict({
        "name": "overrun", "devices": {"fast": 1, "slow": 1},
        "true_times": {"A": {"fast": 8.0, "slow": 6.0}},
        "predicted_times": {"A": {"fast": 1.0, "slow": 6.0}},
    }, source="overrun test platform")
    result = simulate(platform, "sniper", tasks((A, 0, 100), (A, 5, 105)))
    assert placed(result) == {0: (0, 0, 8), 1: (1, 5, 11)}
    assert result.metrics.awt == pytest.approx(0.0)
    assert placed(simulate(platform, "sniper-idle", tasks((A, 0, 100), (A, 5, 105))))[1] == (1, 5, 11)
    # Not yet overdue, the rule still trusts the prediction: t1 at 0.9 sees fast free at 1 > 0.9,
    # finishing t1 at 1+1 = 2 (1.1 s from now); slow 0.9+6 = 6.9 is 6 s from now > 4 x 1.1 = 4.4,
    # so t1 queues on fast and (really) runs 8-16.
    assert placed(simulate(platform, "sniper", tasks((A, 0, 100), (A, 0.9, 100))))[1] == (0, 8, 16)


def test_sniper_idle_factor_one_is_least_completion_time():
    # Factor 1: an idle device only if it finishes no later than the best device would, i.e. the
    # same device as least completion time. With A 1 s fast / 5 s slow, t1 at 0.1 goes to fast
    # (1.9 s from now vs 5 s) under factor 1 and under mct-pred alike; factor inf keeps idle-first.
    specs = ((A, 0, 50), (A, 0.1, 50), (B, 0.2, 50))
    least = placed(simulate(two_devices(), SniperLLF(idle_factor=1, time_source="predicted"), tasks(*specs)))
    assert {i: d for i, (d, _, _) in least.items()} == \
        {i: d for i, (d, _, _) in placed(simulate(two_devices(), "mct-pred", tasks(*specs))).items()}
    assert least[1][0] == 0
    assert placed(simulate(two_devices(), SniperLLF(idle_factor=float("inf")), tasks(*specs)))[1][0] == 1


def test_sniper_idle_factor_one_breaks_a_tie_towards_the_idle_device():
    # A: 1 s on fast, 2 s on slow. t0 A at 0 -> fast (1 < 2), runs 0-1. t1 A at 0: fast would finish
    # it at 1+1 = 2, idle slow at 0+2 = 2, a tie. Least completion time (mct-pred) takes the lowest
    # index, fast (runs 1-2, waits 1 s); factor 1 takes the idle device, slow (0-2, no wait), since
    # 2 <= 1 x 2. Same finish, different wait: factor 1 is least completion time up to ties.
    specs = ((A, 0, 50), (A, 0, 50))
    assert placed(simulate(two_devices(slow_a=2.0), "mct-pred", tasks(*specs)))[1] == (0, 1, 2)
    one = SniperLLF(idle_factor=1, time_source="predicted")
    assert placed(simulate(two_devices(slow_a=2.0), one, tasks(*specs)))[1] == (1, 0, 2)


@pytest.mark.parametrize("factor", [0.5, 0.0, -1, float("nan"), "x", None])
def test_sniper_idle_factor_below_one_is_refused(factor):
    from sniper_onnx.errors import SniperError

    with pytest.raises(SniperError, match="idle factor"):
        SniperLLF(idle_factor=factor)


def test_mvsp_pays_one_measurement_per_model_and_device_type():
    # t0 (A at 0): A unmeasured -> one run on fast (0-1) and one on slow (0-5); t0 waits for the
    # straggler, then goes to fast: 5+1=6 vs slow 5+5=10 -> fast, runs 5-6 (wait 5).
    # t1 (A at 5.5): measured already -> fast 6+1=7 vs slow 10.5 -> fast, 6-7. No new measurement.
    result = simulate(two_devices(), "mvsp", tasks((A, 0, 50), (A, 5.5, 50)))
    assert placed(result) == {0: (0, 5, 6), 1: (0, 6, 7)}
    assert result.metrics.measurement_runs == 2
    assert sorted((d, s, e) for d, _, s, e in result.schedule.probes) == [(0, 0, 1), (1, 0, 5)]
    assert result.metrics.awt == pytest.approx((5 + 0.5) / 2)


def test_mvsp_tasks_of_a_model_being_measured_wait_together():
    # t0 and t1 (both B) arrive while B is measured (fast 0-2, slow 0-6): no second measurement;
    # at 6 both dispatch: t0 fast 6+2=8 vs slow 12 -> fast 6-8; t1 fast 8+2=10 vs slow 12 -> fast 8-10.
    result = simulate(two_devices(), "mvsp", tasks((B, 0, 50), (B, 1, 50)))
    assert result.metrics.measurement_runs == 2
    assert placed(result) == {0: (0, 6, 8), 1: (0, 8, 10)}


def test_mvsp_free_knows_the_mean_true_times_from_the_start():
    # The paper's MVSP: no measurement run, mean true times known at once. Predictions are wrong
    # on purpose (A predicted 9 s on fast) to show mvsp-free does not read them.
    # t0 (A at 0): fast 0+1 vs slow 0+5 -> fast 0-1. t1 (A at 0.5): fast 1+1=2 vs slow 5.5 -> fast 1-2.
    wrong = {"A": {"fast": 9.0, "slow": 5.0}, "B": {"fast": 2.0, "slow": 6.0}}
    result = simulate(two_devices(predicted=wrong), "mvsp-free", tasks((A, 0, 50), (A, 0.5, 50)))
    assert placed(result) == {0: (0, 0, 1), 1: (0, 1, 2)}
    assert result.metrics.measurement_runs == 0
    assert result.metrics.awt == pytest.approx(0.5 / 2)


def test_no_tasks_is_an_empty_result_not_an_error():
    result = simulate(two_devices(), "sniper", [])
    assert result.metrics.tasks == 0
    assert result.metrics.measurement_runs == 0
    assert all(v != v for v in (result.metrics.tps, result.metrics.awt, result.metrics.load_std))  # NaN


def test_feedback_times_running_mean():
    platform = two_devices()
    source = FeedbackTimes(platform.predicted_times, platform.device_type_of(), memory=2)
    task = Task(0, A, 0.0, 9.0)
    source.observe(task, 0, 2.0)  # first observation replaces the prediction's scale
    assert list(source.estimates(task)) == [2.0, 5.0]
    source.observe(task, 0, 1.0)  # mean of 2 and 1
    assert source.estimates(task)[0] == pytest.approx(1.5)
    source.observe(task, 0, 1.0)  # memory 2: exponential beyond, 1.5 + (1 - 1.5) / 2
    assert source.estimates(task)[0] == pytest.approx(1.25)


def test_unknown_policy_is_a_sniper_error():
    from sniper_onnx.errors import SniperError

    with pytest.raises(SniperError, match="unknown; choose from"):
        make_policy("fifo-magic")


def test_dispatch_state_without_the_simulator():
    # A real dispatcher's view of the same bookkeeping: it sets now, submits, starts and finishes.
    from sniper_onnx.scheduling.policies import pick_next
    from sniper_onnx.scheduling.state import DispatchState

    state = DispatchState(two_devices(), SniperLLF(queue_bound=4, time_source="predicted"))
    t0, t1, t2 = tasks((A, 0, 50), (B, 0.1, 50), (A, 0.2, 4))
    assert state.submit(t0) == 0 and state.start_next(0) is t0  # fast: free_at 1
    state.now = 0.1
    assert state.submit(t1) == 0  # fast 1+2=3 vs slow 6.1; free_at 3
    state.now = 0.2
    assert state.submit(t2) == 0  # fast 3+1=4 vs slow 5.2
    assert list(state.free_at) == [4.0, 0.0] and list(state.outstanding) == [3, 0]
    assert pick_next(state.policy, 0, [t1, t2], state) is t2  # least laxity: 4-1 < 50-2
    state.now = 1.5  # t0 overran its 1 s estimate; free_at re-anchors to now
    state.finish(0, t0, 1.5)
    assert state.free_at[0] == pytest.approx(1.5 + 2 + 1)
    assert state.start_next(0) is t2
    state.now = 2.5
    state.finish(0, t2, 1.0)
    assert state.start_next(0) is t1 and not state.has_queued(0)
    assert state.free_at[0] == pytest.approx(2.5 + 2)
