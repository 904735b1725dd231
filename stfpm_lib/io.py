"""Atomic file writing and hashing: nothing half-written ever looks complete.

Every writer here writes to a temporary name in the target's directory and renames
it into place (``os.replace`` is atomic on POSIX), so an interrupted run leaves
either the previous file or no file, never a truncated one.

Temporary names are ``.<stem>.tmp<pid><suffix>`` (the writer's process id): a killed
writer leaves one behind, and :func:`clean_stale_tmp` (called by training, prediction and
the notebook runner at the start of their next run) removes those whose writer is gone.
A write that fails because the disk is full, the file system is read-only or access is
denied raises :class:`OutputError` naming the file and the reason in words;
:func:`check_writable` probes an output folder before long work starts.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_save", "atomic_write_text", "atomic_write_bytes", "sha256_file", "OutputError",
           "check_writable", "clean_stale_tmp", "tmp_name", "relative_posix", "SAFE_NAME", "UnsafeNameError",
           "check_safe_name"]

#: errno of a failed write -> the reason in words.
_WRITE_ERRORS = {
    errno.ENOSPC: "disk full (no space left on device)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a parent of it is a file, not a folder",
    errno.EEXIST: "a file of that name is in the way of the folder",
}
_TMP_NAME = re.compile(r"^\..+\.tmp(?P<pid>\d+)(\.[A-Za-z0-9]+)?$")


class OutputError(RuntimeError):
    """An output file or folder that cannot be written (disk full, read-only, no permission...)."""


#: A name that becomes one folder, never a path: letters, digits and ``._+-``, starting with a letter or a
#: digit, at most 100 characters (no ``/``, no ``..``, no hidden folder).
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")


class UnsafeNameError(ValueError):
    """A name (run, study, variant, category) that would not stay one folder inside its parent."""


def check_safe_name(name: object, what: str) -> str:
    """``name`` if it is a safe folder name (:data:`SAFE_NAME`), else :class:`UnsafeNameError` naming ``what``.

    The one rule for every name that becomes a folder: ``--run-name ../../escaped`` or ``/abs/path``
    would write outside the results folder.

    Parameters
    ----------
    name : object
        The name to check.
    what : str
        Where it came from, for the message (e.g. ``"--run-name"``).

    Returns
    -------
    str
        ``name``.

    Examples
    --------
    >>> check_safe_name("mvtec_official", "--run-name")
    'mvtec_official'
    >>> check_safe_name("../escaped", "--run-name")
    Traceback (most recent call last):
    ...
    stfpm_lib.io.UnsafeNameError: --run-name: '../escaped' is not a safe folder name (letters, digits and . _ + -, starting with a letter or digit, at most 100 characters)
    """
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise UnsafeNameError(f"{what}: {name!r} is not a safe folder name (letters, digits and . _ + -, "
                              "starting with a letter or digit, at most 100 characters)")
    return name


def _reason(exc: OSError) -> str:
    return _WRITE_ERRORS.get(exc.errno, exc.strerror or str(exc))


def tmp_name(path: str | os.PathLike) -> Path:
    """The temporary name beside ``path`` used by this process.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    Path
        ``.<stem>.tmp<pid><suffix>`` in ``path``'s folder.
    """
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed to ``path`` on success.

    The temporary file keeps ``path``'s suffix (NumPy and torch writers care). On an exception it is
    removed and ``path`` is left untouched.

    Parameters
    ----------
    path : str or path-like

    Yields
    ------
    Path

    Raises
    ------
    OutputError
        The write failed for lack of space, a read-only file system or permissions.
    """
    path = Path(path)
    tmp = tmp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        # a write that failed for lack of space or permission: said in words, naming the file
        if exc.errno in _WRITE_ERRORS and (exc.filename is None or Path(exc.filename) in (tmp, path, *path.parents)):
            raise OutputError(f"cannot write {path}: {_reason(exc)}") from exc
        raise
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:class:`OutputError` as :func:`atomic_path`).

    Parameters
    ----------
    path : str or path-like
    text : str

    Returns
    -------
    Path
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:class:`OutputError` as :func:`atomic_path`).

    Parameters
    ----------
    path : str or path-like
    data : bytes

    Returns
    -------
    Path
    """
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_save(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` and rename the result to ``path`` (:class:`OutputError` as :func:`atomic_path`).

    Parameters
    ----------
    path : str or path-like
    writer : callable
        ``writer(tmp_path)`` writes the file.

    Returns
    -------
    Path
    """
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes.

    Parameters
    ----------
    path : str or path-like
    chunk_size : int, default=1 MiB
        Bytes read at a time.

    Returns
    -------
    str
        64 hex digits.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def relative_posix(path: str | os.PathLike, base: str | os.PathLike, default: str | None = None) -> str:
    """``path`` relative to ``base`` in POSIX form (``good/000.png``), both resolved first.

    Parameters
    ----------
    path, base : str or path-like
        The file and the folder it is expected under.
    default : str, optional
        What to return when ``path`` is not under ``base``; default: ``path`` resolved, absolute.

    Returns
    -------
    str
        The relative path with ``/`` separators, or ``default`` / the absolute path.
    """
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(Path(base).resolve()).as_posix()
    except ValueError:
        return str(resolved) if default is None else default


def check_writable(directory: str | os.PathLike) -> Path:
    """Create ``directory`` if needed and write (then delete) a small probe file in it.

    Parameters
    ----------
    directory : str or path-like

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    OutputError
        Naming the folder and the reason (read-only, no permission, disk full, a file in the way),
        before any long work starts.
    """
    directory = Path(directory)
    probe = directory / tmp_name(directory / ".write-probe").name
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as handle:
            handle.write(b"\0" * 4096)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise OutputError(f"output folder {directory} is not writable: {_reason(exc)}") from exc
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return directory


def _process_start_time(pid: int) -> float | None:
    """Start time (epoch seconds) of process ``pid`` from ``/proc`` (Linux), else ``None``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        ticks = float(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime, in clock ticks
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _writer_gone(pid: int, mtime: float) -> bool:
    """Whether the process that wrote a temporary file last modified at ``mtime`` has ended.

    Gone: no process ``pid``, or a process ``pid`` that started after the file was last
    written (the id was reused, e.g. in a container where every run gets the same pid).
    """
    if pid != os.getpid():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # alive, another user's
    started = _process_start_time(pid)
    return started is not None and started > mtime + 2.0  # /proc's boot time is whole seconds


def clean_stale_tmp(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of killed writes in ``directory`` (not recursive).

    Only files named like :func:`tmp_name` (``.<stem>.tmp<pid><suffix>``, also the notebook runner's
    ``.<nb>.tmp<pid>.ipynb``) whose writer is gone (see :func:`_writer_gone`); a write in progress in
    another live process is left alone.

    Parameters
    ----------
    directory : str or path-like

    Returns
    -------
    list of Path
        The files removed.
    """
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    for path in directory.iterdir():
        match = _TMP_NAME.match(path.name)
        if not match or not path.is_file():
            continue
        try:
            if _writer_gone(int(match["pid"]), path.stat().st_mtime):
                path.unlink()
                removed.append(path)
        except OSError:
            continue  # vanished meanwhile, or not ours to remove
    return removed
