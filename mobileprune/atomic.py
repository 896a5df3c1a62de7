"""Write a whole file or folder or nothing: build it in a temporary sibling, then swap it in by rename.

`--out` rules, checked before any work (`prepare_output_dir`) and again at the swap (`atomic_folder`):
- a symlink is followed: the folder it points to is what gets written;
- an empty or missing folder is written; a non-empty one only with `--force`, and then only if it is a
  previous mobileprune output of the same kind (the caller says how to recognise one), never a folder
  holding other files, never the current directory or one of its parents;
- without `--force` the final rename never replaces anything: if another run filled `--out` meanwhile,
  this run's result is kept under a new name and the user is told.
Temporary siblings carry the writing process's id, so a later run can remove those whose process died.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import UserError

STALE_LEGACY_S = 24 * 3600  # temp folders of versions that did not name their process: removed after a day


def prepare_output_dir(out: str | Path, force: bool, is_ours: Callable[[Path], bool], kind: str) -> Path:
    """The folder to write (symlinks followed), after every check that can fail before any work."""
    given = Path(out)
    folder = given.resolve() if given.is_symlink() else Path(os.path.abspath(given))
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out '{given}' exists and is a file; choose a folder path")
    cwd = Path.cwd().resolve()
    if folder.exists() and (folder.resolve() == cwd or folder.resolve() in cwd.parents):
        raise UserError(f"--out '{given}' is the current folder or contains it; choose a new folder name")
    if folder.is_dir() and any(folder.iterdir()):
        if not force:
            raise UserError(f"--out '{given}' exists and is not empty; pass --force to replace it")
        if not is_ours(folder):
            raise UserError(
                f"--out '{given}' holds files mobileprune did not write: --force only replaces an empty folder "
                f"or a previous {kind}; choose another folder"
            )
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder.parent):
            pass
    except OSError as exc:
        raise UserError(f"--out '{given}' is not writable ({exc.strerror or exc}); choose another folder") from exc
    remove_stale_temporaries(folder)
    return folder


@contextmanager
def atomic_folder(out: Path, replace: bool = False, is_ours: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yields a temporary folder that becomes `out` on success (and is removed on any error).

    `replace`: a non-empty `out` that `is_ours` recognises is swapped out (the --force case); otherwise a
    non-empty `out` is never touched.
    """
    out = Path(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        _permissions_from_umask(tmp)
        if replace and out.is_dir() and any(out.iterdir()) and (is_ours is None or is_ours(out)):
            old = out.with_name(f".{out.name}.{os.getpid()}.old")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
            return
        try:
            os.rename(tmp, out)  # replaces only an empty folder; fails on a non-empty one
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            kept = out.with_name(f"{out.name}.{time.strftime('%Y%m%d-%H%M%S')}.{os.getpid()}")
            os.rename(tmp, kept)
            raise UserError(
                f"--out '{out}' was filled by another run while this one worked; nothing was replaced and "
                f"this run's result is in '{kept}'"
            ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Remove `out`'s temporary siblings left by runs that were killed (their process is gone)."""
    removed = []
    for sibling in out.parent.glob(f".{out.name}.*"):
        if not sibling.is_dir() or sibling.is_symlink() or not sibling.name.endswith((".tmp", ".old")):
            continue
        if _abandoned(sibling, sibling.name[len(out.name) + 2 :]):
            shutil.rmtree(sibling, ignore_errors=True)
            removed.append(sibling)
    return removed


def scratch_folder(owner: object, prefix: str) -> Path:
    """A private folder in the system's temp dir, removed when `owner` is garbage-collected or the process
    exits. The process id is in its name, so folders of `prefix` that killed processes left behind (no exit
    handler runs on SIGKILL or a crash) are removed here, when the next one is made."""
    root = Path(tempfile.gettempdir())
    for left in root.glob(f"{prefix}*"):
        if left.is_symlink() or not left.is_dir():
            continue
        if _abandoned(left, left.name[len(prefix) :]):
            shutil.rmtree(left, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}."))
    weakref.finalize(owner, shutil.rmtree, folder, ignore_errors=True)
    return folder


def _abandoned(folder: Path, rest_of_name: str) -> bool:
    """Whether a temporary folder was left by a process that is gone: its name goes on with the writer's
    process id (older versions' names did not; theirs count as abandoned after STALE_LEGACY_S)."""
    middle = rest_of_name.split(".")[0]
    if middle.isdigit():
        return not _process_alive(int(middle))
    return time.time() - folder.stat().st_mtime > STALE_LEGACY_S


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _permissions_from_umask(root: Path) -> None:
    """What a plain mkdir/open would have given: mkdtemp makes 0700 and some writers 0600 files."""
    umask = os.umask(0)
    os.umask(umask)
    root.chmod(0o777 & ~umask)
    for path in root.rglob("*"):
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def write_json(path: Path, data: Any) -> None:
    """JSON written to a temporary sibling and renamed over `path`: a kill leaves the old file or the new."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
