"""Where a command writes: checked before the work, so a bad path costs nothing.

A training, a report or a study read that ends in "cannot write there" wastes the user's time;
each command that writes a file or a folder checks the place first and names the option.
Writability is tried for real (a temporary file is created and removed): permission bits say
nothing to root, and a read-only file system shows only on a write.

Example:
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> check_output_file(os.path.join(folder, "x.json"), option="-o").name
    'x.json'
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lrsearch.exceptions import UsageError

__all__ = ["check_output_file", "check_output_folder"]


def _writable_folder(folder: Path, option: str, path: Path) -> None:
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".lrsearch-write-test-"):
            pass
    except OSError as exc:
        raise UsageError(
            f"{option} {str(path)!r}: cannot write in {str(folder)!r} "
            f"({exc.strerror or exc}); choose a writable place."
        ) from None


def check_output_file(path: str | os.PathLike[str], *, option: str) -> Path:
    """``path`` as a file to write: its folder exists and is writable, it is not a folder.

    Raises:
        UsageError: naming ``option`` and the problem.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise UsageError(f"{option} {str(p)!r} is a folder; give a file name inside it.")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(
            f"{option} {str(p)!r}: the folder {str(folder)!r} does not exist; create it first."
        )
    _writable_folder(folder, option, p)
    return p


def check_output_folder(path: str | os.PathLike[str], *, option: str) -> Path:
    """``path`` as a folder to write into (created later if missing): not a file, and the
    nearest existing folder on its way is writable.

    Raises:
        UsageError: naming ``option`` and the problem.
    """
    p = Path(path).expanduser()
    existing = p
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        what = "is a file" if existing == p else f"has a file on its way ({str(existing)!r})"
        raise UsageError(
            f"{option} {str(p)!r} {what}; give a folder, or a path ending in .html for one page."
        )
    _writable_folder(existing, option, p)
    return p
