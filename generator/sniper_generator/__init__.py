"""Random ONNX network generator and reference model zoo for sniper-onnx.

``sample_specs`` draws network specs (family, config, seed); ``materialize`` turns a spec into an
ONNX model, with random weights that look trained or as a weightless skeleton. The zoo
(``sniper_generator.zoo``) holds reference networks in torchvision's layouts.
"""

from sniper_generator.spec import GENERATOR_VERSION, NetSpec, materialize, sample_spec, sample_specs

__version__ = "0.1.0"
__all__ = ["GENERATOR_VERSION", "NetSpec", "materialize", "sample_spec", "sample_specs", "__version__"]
