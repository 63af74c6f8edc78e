"""Real cloud-edge dispatch (issue 8): the scheduling policies driving real device agents.

    from sniper_onnx.dispatch import DispatchTask, dispatch, load_fleet
    report = dispatch(load_fleet("fleet.yaml"), [DispatchTask("resnet50-64", arrival=0.0)], policy="sniper")

Engines: ``embedded`` (a local worker process per device, the default) and ``dask`` (each device
a named Dask worker). See docs/dispatch.md.
"""

from __future__ import annotations

from sniper_onnx.dispatch.dispatcher import (Counts, DispatchInterrupted, DispatchReport, DispatchStopped, Kill,
                                             StoppedRun, TaskOutcome, check_hang_timeout, check_policy,
                                             dispatch)
from sniper_onnx.dispatch.fleet import Fleet, FleetDevice, ModelSource, fleet_from_dict, load_fleet
from sniper_onnx.dispatch.workload import DispatchTask, poisson_workload, read_workload, write_workload

__all__ = [
    "Counts", "DispatchInterrupted", "DispatchReport", "DispatchStopped", "DispatchTask", "Fleet", "FleetDevice",
    "Kill", "ModelSource", "StoppedRun", "TaskOutcome", "check_hang_timeout", "check_policy", "dispatch",
    "fleet_from_dict", "load_fleet", "poisson_workload", "read_workload", "write_workload",
]
