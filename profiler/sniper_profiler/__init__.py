"""Device-side latency profiler for sniper-onnx. Depends on numpy and onnxruntime only."""

__version__ = "0.1.0"
