"""`sniper-onnx analyze`: placeholder until the analyzer lands (issue 2)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    return None
