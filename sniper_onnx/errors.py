"""The one exception type that reaches users as a one-line message, and the reading of user text
files that turns bytes which are not UTF-8 into one."""

from __future__ import annotations

from pathlib import Path


class SniperError(Exception):
    """A problem with the user's input or environment.

    The CLI prints ``str(error)`` on one line and exits non-zero without a traceback, so the message
    must name the file or value at fault and, where possible, what to do about it.
    """


GZIP_MAGIC = b"\x1f\x8b"


def read_text(path: "str | Path", hint: str, gzip_ok: bool = False) -> str:
    """The text of a file the user gave, decoded as UTF-8 (a leading BOM, as spreadsheets write,
    dropped); a file that is not UTF-8 text (a binary, a Latin-1 export) is one line naming the
    file and ``hint``: what to give instead, such as "a CSV with columns arrival,model". With
    ``gzip_ok``, gzipped text reads too, told by its magic bytes rather than a .gz suffix."""
    data = Path(path).read_bytes()
    if gzip_ok and data[:2] == GZIP_MAGIC:
        import gzip
        import zlib

        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            raise SniperError(f"{path}: a broken gzip file ({error}); give {hint}") from None
    return decode_text(data, path, hint)


def decode_text(data: bytes, path: "str | Path", hint: str) -> str:
    """``data`` read from ``path`` (after gunzip, say) as UTF-8 text, or one line saying what to give."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SniperError(f"{path}: not UTF-8 text; give {hint}") from None


def files_in_folder(folder: "str | Path", suffixes: "tuple[str, ...]", shown: int = 3) -> str:
    """Up to ``shown`` files of ``folder`` with one of ``suffixes``, joined ('' when none or
    unreadable): the hint for an option given a folder where it wants one of those files."""
    folder = Path(folder)
    try:
        found = sorted(str(f) for f in folder.iterdir() if f.suffix.lower() in suffixes and f.is_file())
    except OSError:  # unreadable: the hint only helps, the error stands without it
        return ""
    return ", ".join(found[:shown]) + (", ..." if len(found) > shown else "")

