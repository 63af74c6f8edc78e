"""Kernel tables of training networks, re-made from the source each database row records.

The training table holds whole-graph features; the kernel-sum path needs every layer node. The
generator spec or zoo name (or the file a network was measured from) re-makes the graph without
weights, and the analyzer gives its nodes. Networks that cannot be re-made get no table: the
kernel-sum path is trained without them and never answers for them.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np


def _model_of(source: dict):
    from sniper_onnx.database.importer import SOURCE_LOADERS

    loader = SOURCE_LOADERS.get(source.get("kind", ""))
    if loader is not None:
        return loader(source)
    path = source.get("path")
    if path and Path(path).is_file():
        return str(path)
    return None


# op types of each re-made network's layers, by source text: training records those its networks
# had (`predict` warns of others), and re-making 2,000 networks once for the tables is enough
_LAYER_OPS: dict = {}


def layer_ops_for(sources: Sequence[str]) -> List[Optional[set]]:
    """The layer op types of each source's network (None where it cannot be re-made); those
    ``kernel_tables_for`` re-made in this process are not re-made again."""
    from sniper_onnx.analysis import analyze

    found: List[Optional[set]] = []
    for text in sources:
        if text and text not in _LAYER_OPS:
            try:
                model = _model_of(json.loads(text))
                if model is not None:
                    _LAYER_OPS[text] = set(analyze(model).layer_ops)
            except Exception:  # noqa: BLE001 - as in kernel_tables_for: one network must not stop training
                pass
        found.append(_LAYER_OPS.get(text) if text else None)
    return found


def kernel_tables_for(
    sources: Sequence[str], progress: Optional[Callable[[int], None]] = None, control_flow_empty: bool = False
) -> tuple[List[Optional[np.ndarray]], Counter]:
    """One kernel table per source JSON (None where the network cannot be re-made) and a count of
    the reasons for the Nones. A network with control flow gets None too (no table times it), or
    with ``control_flow_empty`` a table of no row, which ``adapt_predictor`` sets aside."""
    from sniper_onnx.analysis import analyze
    from sniper_onnx.analysis.kernels import empty_kernel_table, kernel_table_for_prediction

    tables: List[Optional[np.ndarray]] = []
    missing: Counter = Counter()
    for i, text in enumerate(sources):
        table = None
        try:
            model = _model_of(json.loads(text)) if text else None
            if model is None:
                missing["no generator, zoo or file source"] += 1
            else:
                result = analyze(model)
                _LAYER_OPS[text] = set(result.layer_ops)
                table = kernel_table_for_prediction(result.nodes)  # None for control flow: no table
                if table is None and control_flow_empty:
                    table = empty_kernel_table()
        except Exception as error:  # noqa: BLE001 - one network that cannot be re-made must not stop training
            missing[f"re-making failed ({type(error).__name__})"] += 1
        tables.append(table)
        if progress is not None:
            progress(i + 1)
    return tables, missing
