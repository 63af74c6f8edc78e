"""Which known names a user's part of a name points to: `predict -d "t1 opt-all"`, `db export
--device t1`. One rule for every command that takes a part of a device name."""

from __future__ import annotations

import re
from typing import Sequence


def names_holding(wanted: str, names: Sequence[str]) -> list[str]:
    """The ``names`` holding ``wanted`` (case-insensitive), only those holding it as a whole word
    when any does: "t1" is in "... t16 opt-all" too, but names only the t1 configurations."""
    text = wanted.lower()
    holders = [name for name in names if text in name.lower()]
    word = re.compile(rf"(?<![\w-]){re.escape(text)}(?![\w-])")
    return [name for name in holders if word.search(name.lower())] or holders
