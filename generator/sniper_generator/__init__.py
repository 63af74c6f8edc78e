"""Random ONNX network generator and reference model zoo for sniper-onnx."""

__version__ = "0.1.0"
