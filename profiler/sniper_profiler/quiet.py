"""Is anything else using the CPUs? Checked between models, while the profiler itself is idle.

The load average would count the profiler's own runs, so this samples /proc/stat over a short
window instead: the fraction of all CPU time spent busy while nothing of ours runs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Optional, Tuple


def _cpu_times() -> Optional[Tuple[int, int]]:
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]), idle


def cpu_busy_fraction(window_s: float = 1.0) -> Optional[float]:
    """Busy share of all CPUs over ``window_s`` seconds; None where /proc/stat is missing."""
    first = _cpu_times()
    time.sleep(window_s)
    second = _cpu_times()
    if first is None or second is None or second[0] == first[0]:
        return None
    total, idle = second[0] - first[0], second[1] - first[1]
    return max(0.0, min(1.0, 1.0 - idle / total))


class OthersBusyMeter:
    """Share of all CPUs that *other* work used while this process timed runs: all CPUs' busy time
    from /proc/stat minus this process's own CPU time, over wall time x CPUs. The check before a
    model cannot see work that starts during it; this one can. None where /proc/stat is missing."""

    def __init__(self) -> None:
        self._cpus = os.cpu_count() or 1
        self._ticks_per_s = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._start = (_cpu_times(), time.process_time(), time.perf_counter())

    def share(self) -> Optional[float]:
        (first, own0, wall0), second = self._start, _cpu_times()
        wall = time.perf_counter() - wall0
        if first is None or second is None or wall <= 0:
            return None
        busy_ticks = (second[0] - second[1]) - (first[0] - first[1])
        return others_share(busy_ticks, time.process_time() - own0, wall, self._cpus, self._ticks_per_s)


def others_share(busy_ticks: int, own_s: float, wall_s: float, cpus: int, ticks_per_s: float) -> float:
    """Share of ``cpus`` x ``wall_s`` that other work used: the busy ticks beyond our own CPU time,
    less one tick per CPU. /proc/stat counts in ticks (10 ms), so a reading is up to a tick off on
    each CPU: over the 20 ms a microsecond net is timed for, that read as 10-25 % of a 2-CPU machine
    and flagged quiet runs machine_busy. The tick taken off is 50 % of such a window (1 % of a
    second's): a run that short sees only heavy other work, and the check before it the rest."""
    others = busy_ticks / ticks_per_s - own_s - cpus / ticks_per_s
    return max(0.0, min(1.0, others / (wall_s * cpus)))


@dataclass
class QuietCheck:
    busy: Optional[float]
    waited_s: float
    quiet: bool


def wait_until_quiet(max_busy: float, timeout_s: float, window_s: float = 0.5) -> QuietCheck:
    began = time.monotonic()
    while True:
        busy = cpu_busy_fraction(window_s)
        waited = time.monotonic() - began
        if busy is None or busy <= max_busy:
            return QuietCheck(busy, waited, True)
        if waited >= timeout_s:
            return QuietCheck(busy, waited, False)
        time.sleep(min(10.0, max(0.0, timeout_s - waited)))
