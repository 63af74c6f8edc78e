"""The ``sniper-onnx`` command line: a thin typer layer over the library.

Each area registers its commands from its own module in this package; those modules import only
typer and the standard library at module level, so ``sniper-onnx analyze`` never pays for torch.
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import sys

import typer
from typer.core import TyperGroup

from sniper_onnx.errors import SniperError

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 70
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool killed by a closed pipe


def _framework_exceptions() -> tuple[type[BaseException], ...]:
    """Exceptions typer/click use for help, usage errors and exits: they must pass through untouched.

    typer up to 0.25 raises click's classes; later releases vendor click and raise their own.
    """
    found: list[type[BaseException]] = [typer.Exit, typer.Abort]
    vendored = getattr(typer, "TyperException", None)
    if vendored is not None:
        found.append(vendored)
    try:
        import click
    except ImportError:  # typer >= 0.26 no longer needs click
        pass
    else:
        found += [click.exceptions.Exit, click.exceptions.Abort, click.ClickException]
    return tuple(found)


_PASS_THROUGH = _framework_exceptions()


def _keep_argument_help() -> None:
    """typer < 0.25 stores a positional argument's help, then calls click's Argument.__init__,
    which in newer click (8.5 here) takes a help of its own and sets it to None: every argument's
    description vanished from -h (`analyze -h` showed `MODEL PATH` and nothing else). Passing the
    help on to click keeps it. Only for rich help (typer's default): without rich (TYPER_USE_RICH=0)
    typer writes its own "Arguments:" section beside click's, which would then list them twice."""
    import inspect

    import click
    from typer.core import HAS_RICH, TyperArgument

    if not HAS_RICH or "help" not in inspect.signature(click.Argument.__init__).parameters:
        return
    typer_init = TyperArgument.__init__

    def init_keeping_help(self, *args, help=None, **kwargs):  # noqa: A002 - click's name
        typer_init(self, *args, help=help, **kwargs)
        self.help = help

    TyperArgument.__init__ = init_keeping_help


_keep_argument_help()


# what the running command wants said if Ctrl-C stops it (set by on_interrupt)
_interrupt_hint: list[str] = []

# commands whose modules do not set a hint themselves: (group, command) -> what is kept on Ctrl-C
_KEPT_ON_INTERRUPT = {
    ("db", "import"): "the records imported so far are kept; running the same command again imports the rest "
                      "(nothing twice)",
}


def on_interrupt(hint: str) -> None:
    """Say ``hint`` after "interrupted" if Ctrl-C stops the running command: what was kept, and
    whether running the same command again resumes. Only a command that really resumes says so."""
    _interrupt_hint[:] = [hint]


def _interrupted(ctx: typer.Context) -> str:
    if _interrupt_hint:
        return f"; {_interrupt_hint[0]}"
    path = tuple(ctx.command_path.split()[1:]) + (ctx.invoked_subcommand or "",)
    hint = _KEPT_ON_INTERRUPT.get(path)
    return f"; {hint}" if hint else ""


class _OneLineErrors(TyperGroup):
    """Turns library errors into one line on stderr and a non-zero exit, never a traceback."""

    def invoke(self, ctx: typer.Context):  # type: ignore[override]
        if ctx.parent is None:  # a new command line: no hint from an earlier one (tests invoke many)
            _interrupt_hint.clear()
        try:
            return super().invoke(ctx)
        except SniperError as error:
            typer.echo(f"sniper-onnx: error: {error}", err=True)
            ctx.exit(EXIT_USER_ERROR)
        except _PASS_THROUGH as error:
            if _is_usage_error(error):
                typer.echo(f"sniper-onnx: error: {_usage_message(error, ctx)}", err=True)
                ctx.exit(EXIT_USER_ERROR)
            raise
        except KeyboardInterrupt:
            typer.echo(f"sniper-onnx: interrupted{_interrupted(ctx)}", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            _quiet_broken_pipe()
        except sqlite3.DatabaseError as error:
            if os.environ.get("SNIPER_ONNX_DEBUG"):
                raise
            # after it opened: a page corrupted since, or a lock held past the busy timeout
            typer.echo(f"sniper-onnx: error: the database failed: {error}; if it is locked, wait for the other "
                       "command; if malformed, import the results files again into a new --db", err=True)
            ctx.exit(EXIT_USER_ERROR)
        except OSError as error:
            if os.environ.get("SNIPER_ONNX_DEBUG"):
                raise
            if error.filename is None and error.errno in NO_ROOM_ERRNOS:  # the machine's limits, not the input's
                typer.echo(f"sniper-onnx: error: {error.strerror or error}; check free space and limits "
                           "(ulimit -f) where the output goes", err=True)
                ctx.exit(EXIT_USER_ERROR)
            if error.filename is None:
                _internal_error(ctx, error)
            # a path the command was given (or a file beside it) cannot be read or written
            typer.echo(f"sniper-onnx: error: {error.filename}: {error.strerror or error}; check the path exists "
                       "and is writable", err=True)
            ctx.exit(EXIT_USER_ERROR)
        except Exception as error:  # noqa: BLE001 - last line of defence against tracebacks
            if os.environ.get("SNIPER_ONNX_DEBUG"):
                raise
            _internal_error(ctx, error)


def _is_usage_error(error: BaseException) -> bool:
    """A command line the parser refused (unknown command or option, bad value, extra argument):
    click's UsageError, or typer's own copy of it in releases that vendor click (exit code 2). Not
    a bare command with no arguments, whose help the framework has printed (its message is empty)."""
    format_message = getattr(error, "format_message", None)
    return getattr(error, "exit_code", None) == 2 and callable(format_message) and bool(format_message().strip())


def _usage_message(error: BaseException, ctx: typer.Context) -> str:
    """The parser's message as one line (typer and click both add "Did you mean ...?" to an unknown
    command: said once), and where the refused command's help is."""
    sentences: list[str] = []
    for sentence in re.split(r"(?<=[.?!])\s+", " ".join(error.format_message().split())):
        if sentence not in sentences:
            sentences.append(sentence)
    refused = getattr(error, "ctx", None)
    if refused is not None:
        command = refused.command_path
    else:  # an option's value refused before its command's context was made
        command = " ".join(filter(None, (ctx.command_path, ctx.invoked_subcommand)))
    return f"{' '.join(sentences).rstrip('.')}; see '{command} -h'"


NO_ROOM_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


def _internal_error(ctx, error: BaseException) -> None:
    typer.echo(
        f"sniper-onnx: internal error: {type(error).__name__}: {error} "
        "(set SNIPER_ONNX_DEBUG=1 for the traceback, and please report it)",
        err=True,
    )
    ctx.exit(EXIT_INTERNAL_ERROR)


def _quiet_broken_pipe() -> None:
    """The reader of our stdout went away (`... | head`): stop quietly, as shell tools do, with the
    status a SIGPIPE would give. stdout is pointed at devnull so the interpreter's last flush does
    not raise again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor behind stdout (a test runner's buffer)
        pass
    raise SystemExit(EXIT_BROKEN_PIPE)


CONTEXT = {"help_option_names": ["-h", "--help"]}


def new_group(help_text: str) -> typer.Typer:
    """A sub-command group (``db``, ``zoo``, ...) with the same help options and error handling."""
    return typer.Typer(
        cls=_OneLineErrors,
        help=help_text,
        context_settings=CONTEXT,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )


app = typer.Typer(
    cls=_OneLineErrors,
    help="Predict DNN inference time on edge devices from ONNX structure, and schedule with it.",
    context_settings=CONTEXT,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version_callback(value: bool) -> None:
    if value:
        from sniper_onnx import __version__

        typer.echo(f"sniper-onnx {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Predict DNN inference time on edge devices from ONNX structure, and schedule with it."""


# Help lists commands in the order of the workflow: analyse, make nets, measure, predict, schedule.
_HELP_ORDER = ("analyze_cmd", "generate_cmd", "zoo_cmd", "profile_cmd", "db_cmd", "external_cmd",
               "predict_cmd", "simulate_cmd", "dispatch_cmd")


def _register_commands() -> None:
    """Every ``*_cmd`` module of this package adds its commands through ``register(app)``."""
    import importlib
    import pkgutil

    names = sorted(
        (m.name for m in pkgutil.iter_modules(__path__) if m.name.endswith("_cmd")),
        key=lambda name: (_HELP_ORDER.index(name) if name in _HELP_ORDER else len(_HELP_ORDER), name),
    )
    for name in names:
        importlib.import_module(f"{__name__}.{name}").register(app)


_register_commands()


def main() -> None:
    try:
        app(prog_name="sniper-onnx")
    except BrokenPipeError:
        _quiet_broken_pipe()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
