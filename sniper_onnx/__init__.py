"""sniper-onnx: non-invasive DNN inference-time prediction and time-aware scheduling.

Heavy dependencies (torch, scikit-learn, onnxruntime) are imported lazily by the modules that need
them, so ``import sniper_onnx`` and ``sniper_onnx.analyze`` stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sniper_onnx.errors import SniperError

__version__ = "0.1.0"
__all__ = ["SniperError", "analyze", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from sniper_onnx.analysis import analyze


def __getattr__(name: str) -> Any:
    if name == "analyze":
        from sniper_onnx.analysis import analyze

        return analyze
    raise AttributeError(f"module 'sniper_onnx' has no attribute {name!r}")
