"""Output paths are checked before a command works, so a typo costs nothing measured, trained or
simulated. Commands that could overwrite measurements add their own checks on top (db export,
the predictor commands). Tables go through :func:`output_console`, so piped output keeps one row a line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from sniper_onnx.errors import SniperError

if TYPE_CHECKING:
    from rich.console import Console


def is_same_file(output: "str | Path", given: "str | Path | None") -> bool:
    """Whether writing ``output`` would overwrite ``given``, however either is spelled (relative,
    absolute, through a link or a hard link)."""
    if not given:
        return False
    output, given = Path(output), Path(given)
    if output.exists() and given.exists():
        return output.samefile(given)
    return output.resolve() == given.resolve()


def check_output_file(path: "str | Path", option: str) -> Path:
    """``path`` as given, once it is a file that can be written: its folder exists and is writable."""
    path = Path(path)
    if path.is_dir():
        raise SniperError(f"{option} {path}: is a folder; give a file path")
    folder = path.parent
    if not folder.is_dir():
        raise SniperError(f"{option} {path}: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise SniperError(f"{option} {path}: not writable; choose another path")
    return path


# rich lays a table out to the width it is given and pads nothing beyond the table's own width, so a
# width no row reaches costs nothing: it only stops rich from folding node names, wrapping device
# names and cutting network names with "…" at 80 columns, its default for a pipe
PIPED_WIDTH = 10_000


def output_console(stderr: bool = False) -> "Console":
    """A rich Console for tables and messages: a terminal's own width, COLUMNS when set, and
    otherwise (a pipe, a file) one wide enough that no row wraps, as grep, awk and diff need."""
    from rich.console import Console

    console = Console(stderr=stderr)
    if console.is_terminal or os.environ.get("COLUMNS", "").isdigit():
        return console
    return Console(stderr=stderr, width=PIPED_WIDTH)


DEFAULT_PLOT_SUFFIX = ".png"


def plot_path(path: str | Path) -> Path:
    """Where ``--plot`` will write, checked before any simulation: a name without a suffix gets .png
    (as matplotlib would write it), and the suffix must be a format matplotlib writes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backend_bases import FigureCanvasBase

    path = check_output_file(path, "--plot")  # a folder ('.', '..', /tmp) is refused before a suffix is added
    if not path.suffix:
        path = path.with_name(path.name + DEFAULT_PLOT_SUFFIX)
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        raise SniperError(f"--plot {path}: {path.suffix} is not an image format matplotlib writes; "
                          f"use one of {', '.join('.' + f for f in sorted(formats))}")
    return check_output_file(path, "--plot")
