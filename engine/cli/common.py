"""What the commands share: checking a folder argument and an output file before any work, a
tqdm progress bar on stderr, and the stderr list of files a folder command skipped."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import UserError

if TYPE_CHECKING:
    import argparse

    from engine.store import Store



def existing_folder(argument: str | Path) -> Path:
    """The folder named on the command line, resolved; UserError when it is not a folder."""
    folder = Path(argument).expanduser()
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder.")
    return folder.resolve()


def output_file(argument: str | Path) -> Path:
    """An output file name whose folder exists and that is not itself a folder (checked before
    any work, so a typo does not cost a whole run)."""
    out = Path(argument).expanduser()
    if out.is_dir():
        raise UserError(f"{out} is a folder; give a file name.")
    if not out.absolute().parent.is_dir():
        raise UserError(f"The folder of {out} does not exist.")
    return out


@contextlib.contextmanager
def progress_bar(description: str, unit: str = "img") -> Iterator[Callable[[int, int], None]]:
    """A `progress(done, total)` callable drawing a tqdm bar on stderr (only on a terminal; the bar
    is created on the first call, so nothing is drawn when nothing runs)."""
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, unit=unit, desc=description, file=sys.stderr, leave=False,
                       disable=None, dynamic_ncols=True)
        if total != bar.total:
            bar.total = total
        bar.n = done
        bar.refresh()

    try:
        yield progress
    finally:
        if bar is not None:
            bar.close()


def print_skipped(items: Iterable[tuple[Path, str]], folder: Path) -> None:
    """One stderr line per unreadable file a folder command skipped, path relative to `folder`."""
    for path, reason in sorted(set(items)):
        try:
            shown = Path(path).relative_to(folder).as_posix()
        except ValueError:
            shown = str(path)
        print(f"mlic: skipped unreadable file {shown}: {reason}", file=sys.stderr)


def open_store(args: argparse.Namespace, create: bool = False) -> Store:
    """The store named by the global options; use it as `with open_store(args) as store:` so the
    database connections close when the command ends. Only `create` (the `init` command) makes a
    new project folder: a mistyped `--project` is an error, never a new empty project (the
    default project is made on first use)."""
    from engine.store import Store

    if not create and args.project and not args.db_url:
        folder = Path(args.project).expanduser()
        if not (folder / "project.sqlite").is_file():
            raise UserError(f"{folder} is not a project; create it with "
                            f"`mlic --project {folder} init`.")

    return Store.open(project_dir=args.project, db_url=args.db_url)
