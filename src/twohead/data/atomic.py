"""Atomic writes (temp file + rename), with no heavy import: a stage never leaves a half-written file.

Each writer goes to a temp path in the same directory and is renamed into place only once complete; on an
exception (Ctrl-C included) the temp path is removed. A full disk, a read-only folder or a missing permission is an
:class:`~twohead.config.errors.OutputError` naming the output.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from ..config.errors import OutputError, ParamsError

#: OS errors that say the output cannot be written (as opposed to a bug): full disk or quota, no permission,
#: read-only file system
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


def _cannot_write(path: Path, exc: OSError) -> OutputError:
    why = exc.strerror or str(exc)
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):  # mkdir met a file where a folder of the path should be
        blocker = next((p for p in [path.parent, *path.parent.parents] if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker is not None else why
    return OutputError(f"{path}: cannot write it ({why}); nothing was written there")


#: Set by a stage while it runs (:func:`guarded`): the params file it read, that file's bytes then, and the outputs
#: this run has written so far. Every atomic write checks the file first.
_guard: dict | None = None

#: What to do instead of running two experiments at once in one workspace.
PARALLEL_HINT = ("run experiments side by side with `dvc exp run --queue` then `dvc queue start`, or one at a time in"
                 " a workspace")


@contextlib.contextmanager
def guarded(params_path: str | Path) -> Iterator[None]:
    """While the block runs, every :func:`atomic_path` write first checks that ``params_path`` still holds the bytes
    it held when the block began. Two ``dvc exp run`` in one workspace edit one params.yaml: a stage that started
    with one set of params must not write outputs beside another's. If the file changed, this run's outputs so far
    are removed and the write is refused (a :class:`~twohead.config.errors.ParamsError`, one line)."""
    global _guard
    path = Path(params_path)
    previous, _guard = _guard, {"path": path, "bytes": path.read_bytes() if path.is_file() else None,
                                "written": []}
    try:
        yield
    finally:
        _guard = previous


def _check_params_unchanged(target: Path) -> None:
    if _guard is None:
        return
    path = _guard["path"]
    now = path.read_bytes() if path.is_file() else None
    if now == _guard["bytes"]:
        return
    for done in _guard["written"]:
        shutil.rmtree(done, ignore_errors=True) if done.is_dir() else done.unlink(missing_ok=True)
    raise ParamsError(f"{path} changed while this stage ran (another `dvc exp run` in this workspace?): {target} and"
                      f" the {len(_guard['written'])} output(s) it wrote before were not kept; {PARALLEL_HINT}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's live process
        return True
    return True


def remove_stale_temps(path: Path) -> None:
    """Remove temp siblings of ``path`` left by a writer that died (``kill -9`` mid-write): each temp name carries
    its writer's pid (``.NAME.PID.XXXX.tmp``); one whose process is gone goes, and so does the older pid-less form
    (``.NAME.XXXXXXXX.tmp``, tempfile's 8 random characters). Other ``.NAME.*.tmp`` names (a resume state's
    ``.saving.tmp`` staging folder) are not this writer's and are kept."""
    for tmp in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
        middle = tmp.name[len(path.name) + 2:-len(".tmp")]
        pid, _, rest = middle.partition(".")
        dead = pid.isdigit() and bool(rest) and not _alive(int(pid))
        if dead or (len(middle) == 8 and "." not in middle):
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


@contextlib.contextmanager
def atomic_path(path: str | Path, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; on success it replaces ``path``, on error it is removed.
    A full disk, a read-only folder or a missing permission is an :class:`OutputError` naming ``path``."""
    path = Path(path)
    umask = os.umask(0)
    os.umask(umask)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        prefix = f".{path.name}.{os.getpid()}."
        if is_dir:
            tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=path.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
            os.close(fd)
            tmp = Path(name)
    except OSError as exc:
        raise _cannot_write(path, exc) from exc
    try:
        yield tmp
        os.chmod(tmp, (0o777 if is_dir else 0o666) & ~umask)
        _check_params_unchanged(path)   # a stage's params changed under it: nothing of this run is kept
        if is_dir:
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        else:
            os.replace(tmp, path)
        if _guard is not None:
            _guard["written"].append(path)
    except BaseException as exc:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError) and exc.errno in _WRITE_ERRNOS:
            raise _cannot_write(path, exc) from exc
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
