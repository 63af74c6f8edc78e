"""YAML for platform and fleet files: safe, strict about repeated keys, errors on one line.

PyYAML's safe loader lets a repeated mapping key silently replace the first (``{A: 1, A: 3}`` is
``{A: 3}``): a typo'd or pasted line would change a platform or a fleet without a word.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sniper_onnx.errors import SniperError, read_text


def _strict_loader() -> type:
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
