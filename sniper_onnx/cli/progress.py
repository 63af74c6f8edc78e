"""Progress bars on stderr, and only on a terminal.

stdout stays the command's output (a table, a summary or one JSON object), and a pipe or a log file
gets no bar frames: rich does not animate there, and what it writes on stopping (the last frame, or
a bare newline for a transient bar) would land before an error line or inside redirected output.
"""

from __future__ import annotations


def progress_bar(*columns, disable: bool = False, transient: bool = True):
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    return Progress(*columns, console=console, transient=transient, disable=disable or not console.is_terminal)
