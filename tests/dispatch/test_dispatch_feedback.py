"""Which fleet measurements the Time Trimmer may fit on a device answered by the kernel sum."""

from __future__ import annotations

import numpy as np

from sniper_onnx.analysis.kernels import KERNEL_FEATURE_NAMES, empty_kernel_table
from sniper_onnx.dispatch.feedback import TypeSamples, _kernel_timed


def test_control_flow_and_unmade_networks_are_left_out_and_counted():
    row = np.ones((2, len(KERNEL_FEATURE_NAMES)), np.float32)
    sample = TypeSamples(ids=[1, 2, 3, 4, 5])
    tables = {1: row, 2: empty_kernel_table(), 4: row, 5: row}  # 2: control flow; 3: not re-made
    timed, note = _kernel_timed(sample, tables)
    assert timed == [0, 3, 4]
    assert note == (" (1 could not be re-made for the kernel sum; 1 hold control flow or no layer, which the "
                    "kernel sum does not time)")
    assert _kernel_timed(TypeSamples(ids=[1, 4]), tables) == ([0, 1], "")
