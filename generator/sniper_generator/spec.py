"""Network specs: a net is (generator version, family, config, seed), re-materialized on demand.

Datasets store specs, never weight files: ``materialize`` rebuilds the same bytes from a spec, drawing
the random weights from ``numpy.random.default_rng(spec.seed)`` at that moment.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial

import numpy as np
import onnx

from sniper_onnx.errors import SniperError

# Bump when a config can build a different graph or weights than before: manifests record it and
# ``materialize`` refuses specs from another version instead of silently building another net.
GENERATOR_VERSION = "2"
MIXED_TRANSFORMER_SHARE = 0.25


@dataclass(frozen=True)
class NetSpec:
    """Everything needed to rebuild one generated network (JSON-serialisable)."""

    net_id: str
    seed: int
    family: str
    config: dict = field(hash=False)
    generator_version: str = GENERATOR_VERSION

    def to_json_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json_dict(cls, data: dict) -> NetSpec:
        try:
            return cls(net_id=str(data["net_id"]), seed=int(data["seed"]), family=str(data["family"]),
                       config=dict(data["config"]), generator_version=str(data["generator_version"]))
        except (KeyError, TypeError, ValueError) as error:
            raise SniperError(f"net spec {str(data)[:80]}...: missing or bad field {error}; "
                              "a spec needs net_id, seed, family, config and generator_version") from None


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def make_net_id(family: str, config: dict, seed: int, version: str = GENERATOR_VERSION) -> str:
    digest = hashlib.sha256(_canonical([version, family, config, seed]).encode()).hexdigest()
    return f"{family}-{digest[:12]}"


# ------------------------------------------------------------------------------------ families
@dataclass(frozen=True)
class Family:
    """How one family samples configs and turns a config into a model."""

    sample: Callable[[np.random.Generator, float | None], dict]
    build: Callable[[dict, int, bool], onnx.ModelProto]


def _build_with(builder_fn: Callable) -> Callable[[dict, int, bool], onnx.ModelProto]:
    def build(config: dict, seed: int, weights: bool) -> onnx.ModelProto:
        from sniper_generator.builder import GraphBuilder

        builder = GraphBuilder("generated", np.random.default_rng(seed), weights)
        builder.output(builder_fn(builder, config), "logits")
        return builder.build()
    return build


def _cnn() -> Family:
    from sniper_generator.cnn import build_cnn, sample_cnn_config

    return Family(sample_cnn_config, _build_with(build_cnn))


def _cnn_strided() -> Family:
    from sniper_generator.cnn import build_cnn, sample_cnn_config

    return Family(partial(sample_cnn_config, strided=True), _build_with(build_cnn))


def _cnn_wide() -> Family:
    from sniper_generator.cnn import build_cnn, sample_wide_cnn_config

    return Family(sample_wide_cnn_config, _build_with(build_cnn))


def _transformer() -> Family:
    from sniper_generator.transformer import build_transformer, sample_transformer_config

    return Family(sample_transformer_config, _build_with(build_transformer))


def _transformer_torch() -> Family:
    from sniper_generator.transformer_torch import build_transformer_torch, sample_transformer_torch_config

    return Family(sample_transformer_torch_config, _build_with(build_transformer_torch))


def _tiny() -> Family:
    from sniper_generator.tiny import build_tiny, sample_tiny_config

    return Family(sample_tiny_config, _build_with(build_tiny))


def _nasbench201() -> Family:
    try:
        from sniper_generator import nasbench201
    except ImportError as error:  # pragma: no cover - the module ships with the package
        raise SniperError(f"family nasbench201: {error}; reinstall sniper-onnx") from None

    def build(config: dict, seed: int, weights: bool) -> onnx.ModelProto:
        return nasbench201.build_nasbench201(config["arch"], weights=weights, resolution=config["resolution"],
                                             batch=config["batch"], num_classes=config["num_classes"], seed=seed)

    def sample(rng: np.random.Generator, max_macs: float | None) -> dict:
        return {"arch": _nasbench201_arch(rng, max_macs), "resolution": 32, "batch": 1, "num_classes": 10}

    return Family(sample, build)


# draws of the uncapped stream tried before picking among the archs that fit (a tight cap leaves few)
NASBENCH201_REJECTION_DRAWS = 64


def _nasbench201_arch(rng: np.random.Generator, max_macs: float | None) -> str:
    """A uniformly random arch, or one uniformly among those within ``max_macs``. Rejection first,
    so that a cap every draw meets leaves the specs of an uncapped run unchanged."""
    from sniper_generator.nasbench201 import random_arch

    arch = random_arch(rng)
    if max_macs is None:
        return arch
    macs = _nasbench201_macs()
    smallest = min(macs, key=macs.get)
    if max_macs < macs[smallest]:
        raise SniperError(f"--max-macs {max_macs:g}: the smallest NAS-Bench-201 net ({smallest}) has "
                          f"{macs[smallest]:,} MACs; use --max-macs {macs[smallest]} or more")
    for _ in range(NASBENCH201_REJECTION_DRAWS):
        if macs[arch] <= max_macs:
            return arch
        arch = random_arch(rng)
    fitting = [name for name, count in macs.items() if count <= max_macs]
    return fitting[int(rng.integers(len(fitting)))]


@functools.lru_cache(maxsize=1)
def _nasbench201_macs() -> dict[str, int]:
    """Total MACs of every arch as the family samples it (32x32, batch 1, 10 classes: the settings
    of the committed feature table, so its total_macs column is exactly the analyzer's count)."""
    from sniper_generator.nasbench201 import load_feature_table

    archs, features, names = load_feature_table()
    column = features[:, names.index("total_macs")]
    return {arch: int(count) for arch, count in zip(archs, column)}


FAMILIES: dict[str, Callable[[], Family]] = {"cnn": _cnn, "cnn-strided": _cnn_strided, "cnn-wide": _cnn_wide,
                                             "transformer": _transformer, "transformer-torch": _transformer_torch,
                                             "tiny": _tiny, "nasbench201": _nasbench201}
SAMPLED_FAMILIES = ("cnn", "cnn-strided", "cnn-wide", "transformer", "transformer-torch", "tiny", "mixed",
                    "nasbench201")


def _family(name: str) -> Family:
    try:
        return FAMILIES[name]()
    except KeyError:
        raise SniperError(f"family {name!r}: unknown; use one of {', '.join(SAMPLED_FAMILIES)}") from None


# the smallest --max-macs accepted: the cnn, cnn-strided, cnn-wide and transformer families sample nets
# under it (checked: 30 of 30 draws each); nasbench201's smallest net is larger (7.9e6 MACs), so its
# sampler refuses a cap below that with its own message
SMALLEST_MACS_CAP = 1e6
# the tiny family's: most of its draws are over a smaller cap, and a cap of a few MACs would redraw for ever
SMALLEST_TINY_MACS_CAP = 1e3


def spec_seed(seed: int, index: int) -> int:
    """The seed of the ``index``-th spec of a run: depends on (seed, index) only, so prefixes agree."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint32)[0])


def check_seed(seed: int) -> None:
    """numpy seeds are non-negative integers; a negative one would fail deep inside numpy."""
    if seed < 0:
        raise SniperError(f"--seed {seed}: must be a non-negative integer")


def check_max_macs(family: str, max_macs: float | None) -> None:
    """Refuse a cap that is no count of MACs (NaN compares false with every size, infinity would
    silently mean no cap) or one below the family's floor, where the sampler would redraw for ever."""
    if max_macs is None:
        return
    floor = SMALLEST_TINY_MACS_CAP if family == "tiny" else SMALLEST_MACS_CAP
    if not (math.isfinite(max_macs) and max_macs > 0):
        tiny = "" if family == "tiny" else f" (--family tiny: {_as_typed(SMALLEST_TINY_MACS_CAP)} or more)"
        raise SniperError(f"--max-macs {max_macs:g}: a cap must be a positive finite number of MACs; "
                          f"use {_as_typed(floor)} or more{tiny}")
    if family == "tiny" and max_macs < floor:
        raise SniperError(f"--max-macs {max_macs:g}: too small for the tiny family (few of its nets fit, "
                          f"so drawing them would take long); use {_as_typed(floor)} or more")
    if max_macs < floor:
        raise SniperError(f"--max-macs {max_macs:g}: the generator's smallest nets have about 1e6 MACs "
                          "(--family tiny: under 1e6); use 1e6 or more")


def _as_typed(value: float) -> str:
    """1e6 as a user types it, not as :g prints it (1e+06)."""
    return f"{value:g}".replace("e+0", "e").replace("e+", "e")


def sample_spec(seed: int, index: int, family: str = "cnn", max_macs: float | None = None) -> NetSpec:
    check_seed(seed)
    if family not in SAMPLED_FAMILIES:
        raise SniperError(f"family {family!r}: unknown; use one of {', '.join(SAMPLED_FAMILIES)}")
    check_max_macs(family, max_macs)
    net_seed = spec_seed(seed, index)
    rng = np.random.default_rng(net_seed)
    if family == "mixed":
        family = "transformer" if rng.random() < MIXED_TRANSFORMER_SHARE else "cnn"
    config = _family(family).sample(rng, max_macs)
    return NetSpec(make_net_id(family, config, net_seed), net_seed, family, config)


def sample_specs(count: int, seed: int, family: str = "cnn", max_macs: float | None = None) -> list[NetSpec]:
    """``count`` random specs; ``sample_specs(n, s)`` is a prefix of ``sample_specs(n + k, s)``.

    ``max_macs`` truncates the MACs distribution (about: a net may exceed it by up to 2x).
    """
    if count < 0:
        raise SniperError(f"count {count}: must be >= 0")
    return [sample_spec(seed, index, family, max_macs) for index in range(count)]


def materialize(spec: NetSpec, weights: bool = True) -> onnx.ModelProto:
    """The ONNX model of ``spec``; ``weights=False`` gives a weightless skeleton for the analyzer."""
    if spec.generator_version != GENERATOR_VERSION:
        raise SniperError(
            f"net {spec.net_id}: made by generator version {spec.generator_version}, this is version "
            f"{GENERATOR_VERSION}; install the sniper-onnx release that made it, or sample new specs")
    model = _family(spec.family).build(spec.config, spec.seed, weights)
    model.doc_string = f"sniper_generator v{GENERATOR_VERSION} {spec.net_id} seed={spec.seed}"
    onnx.helper.set_model_props(model, {"sniper_net_id": spec.net_id, "sniper_generator_version": GENERATOR_VERSION})
    return model
