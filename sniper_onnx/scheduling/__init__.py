"""Time-aware scheduling of inference tasks on heterogeneous devices, and its simulator (issue 6).

``simulate_platform`` is what ``sniper-onnx simulate`` calls. Policies implement
:class:`~sniper_onnx.scheduling.policies.Policy` against a
:class:`~sniper_onnx.scheduling.policies.SchedulerView`, the interface shared with a real
dispatcher. numpy only: no torch, no scikit-learn, matplotlib only when plotting.
"""

from sniper_onnx.scheduling.api import SimulationReport, simulate_platform
from sniper_onnx.scheduling.experiment import SweepResult, parse_rates, run_sweep, run_trace
from sniper_onnx.scheduling.metrics import Metrics
from sniper_onnx.scheduling.platform import Platform, load_platform, platform_from_dict
from sniper_onnx.scheduling.policies import PAPER_POLICIES, POLICIES, Policy, SchedulerView, make_policy
from sniper_onnx.scheduling.simulator import SimulationResult, schedule_violations, simulate
from sniper_onnx.scheduling.state import DispatchState
from sniper_onnx.scheduling.workload import Task, poisson_tasks, read_trace

__all__ = [
    "DispatchState", "Metrics", "PAPER_POLICIES", "POLICIES", "Platform", "Policy", "SchedulerView", "SimulationReport",
    "SimulationResult", "SweepResult", "Task", "load_platform", "make_policy", "parse_rates",
    "platform_from_dict", "poisson_tasks", "read_trace", "run_sweep", "run_trace", "schedule_violations",
    "simulate", "simulate_platform",
]
