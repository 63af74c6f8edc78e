"""YAML for platform and fleet files: safe, strict about repeated keys, errors on one line.

PyYAML's safe loader lets a repeated mapping key silently replace the first (``{A: 1, A: 3}`` is
``{A: 3}``): a typo'd or pasted line would change a platform or a fleet without a word.

PyYAML also follows YAML 1.1, where a float needs a dot: ``2e-3`` (a millisecond time as many write
it) is the *string* "2e-3" there, and ``1e300`` too. Our loader reads floats as YAML 1.2 does
(``2e-3``, ``1E3``, ``+5e-1`` are numbers). The resolver is registered on our loader class only, so
``yaml.safe_load`` elsewhere is unchanged.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sniper_onnx.errors import SniperError, read_text


# YAML 1.2 core schema floats (plus YAML 1.1's sexagesimal-free forms PyYAML already reads): the
# exponent no longer needs a dot in the mantissa; .inf/.nan stay as YAML spells them.
YAML12_FLOAT = re.compile(
    r"""^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_STRICT_LOADER: type | None = None


def _strict_loader() -> type:
    global _STRICT_LOADER
    if _STRICT_LOADER is None:
        _STRICT_LOADER = _make_strict_loader()
    return _STRICT_LOADER


def _make_strict_loader() -> type:
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict:
            seen: set = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, float, bool)) or key is None:
                    if key in seen:
                        line = key_node.start_mark.line + 1
                        raise SniperError(f"line {line}: key {key!r} appears twice in one mapping; keep one")
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    # a copy of the resolver table, so the float rule below changes this class only, not SafeLoader
    StrictLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", YAML12_FLOAT, list("-+0123456789."))
    return StrictLoader


def load_yaml(path: Path, what: str) -> Any:
    """The document in ``path``; a syntax error or a repeated key is one :class:`SniperError` line."""
    import yaml

    text = read_text(path, f"a YAML {what}")  # its error names the file already
    try:
        return yaml.load(text, Loader=_strict_loader())  # noqa: S506 - a SafeLoader subclass
    except SniperError as error:
        raise SniperError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise SniperError(f"{path}: cannot parse the {what} ({_first_line(error)}); fix its YAML") from None


def _first_line(error: Exception) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"{problem} at line {mark.line + 1}" if mark is not None else problem


def refuse_unknown_keys(data: dict, known: "tuple[str, ...] | list[str]", where: str, what: str) -> None:
    """One line naming every key of ``data`` not in ``known`` and the keys ``what`` takes (a typo
    such as ``resolutoin`` was read as the key missing, and its default used without a word).
    Shared by the simulator's platform files and the dispatcher's fleet files."""
    unknown = [str(key) for key in data if key not in known]
    if unknown:
        raise SniperError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; {what} has {', '.join(known)}")
