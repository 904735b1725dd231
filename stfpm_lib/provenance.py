"""What every result file records: package versions, platform and the time; and the lock check.

The lock (``requirements-lock.txt`` beside ``pyproject.toml``, made by ``make lock`` with
pip-tools) pins every package ``make install`` installs. :func:`lock_mismatches` compares versions
(installed, or recorded in a ``metrics.json``) with it for :data:`RESULT_PACKAGES`, the packages
whose version can move a number in ``results/``.
"""

from __future__ import annotations

import datetime as _dt
import platform
import re
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

import torch

__all__ = ["package_versions", "environment_info", "LOCK_FILE", "RESULT_PACKAGES", "read_lock", "lock_mismatches",
           "lock_summary"]

#: The lock in a checkout (absent when the library was installed from a wheel).
LOCK_FILE = Path(__file__).resolve().parents[1] / "requirements-lock.txt"
#: Packages whose version can change a metric, a map or a table; the lock check covers these.
RESULT_PACKAGES = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "scikit-image", "pillow", "pandas")
#: What to run when the environment differs from the lock.
LOCK_FIX = "make install (or: pip install -r requirements-lock.txt && pip install --no-deps -e .)"

_PACKAGES = (
    "stfpm-lib", "torch", "torchvision", "numpy", "scipy", "pandas", "scikit-learn",
    "scikit-image", "matplotlib", "seaborn", "pillow", "papermill",
)
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def package_versions(packages: tuple[str, ...] = _PACKAGES) -> dict[str, str]:
    """Installed version of each distribution.

    Parameters
    ----------
    packages : tuple of str
        Distribution names (default: the project's dependencies).

    Returns
    -------
    dict of str to str
        ``"not installed"`` for an absent one.
    """
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def environment_info() -> dict[str, object]:
    """Package versions plus Python, platform, CPU/GPU and a UTC timestamp.

    Returns
    -------
    dict of str to object
        ``python``, ``platform``, ``packages``, ``lock`` (whether the packages match the lock,
        :func:`lock_summary`), ``cuda_available``, ``torch_threads``, ``utc_time`` (ISO 8601) and,
        with CUDA, ``gpu``.
    """
    info: dict[str, object] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "lock": "",
        "cuda_available": torch.cuda.is_available(),
        "torch_threads": torch.get_num_threads(),
        "utc_time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    info["lock"] = lock_summary(info["packages"], LOCK_FILE)  # type: ignore[arg-type]
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _canonical(name: str) -> str:
    """PEP 503 name: ``Scikit_Learn`` -> ``scikit-learn``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: str | Path = LOCK_FILE) -> dict[str, str]:
    """The ``name==version`` pins of a pip-compile lock file.

    Parameters
    ----------
    path : str or Path
        The lock (default :data:`LOCK_FILE`).

    Returns
    -------
    dict of str to str
        Canonical package name to pinned version.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"lock file not found: {path}")
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line.strip())
        if match:
            pins[_canonical(match.group(1))] = match.group(2)
    return pins


def lock_mismatches(versions: Mapping[str, str], lock: Mapping[str, str],
                    packages: tuple[str, ...] = RESULT_PACKAGES) -> dict[str, tuple[str, str]]:
    """The packages whose version differs from the lock.

    A local version label is a build of the same release (``2.14.1+cpu``, PyTorch's CPU wheel,
    matches ``2.14.1``).

    Parameters
    ----------
    versions : mapping of str to str
        Package name to version (installed, or as a ``metrics.json`` recorded it).
    lock : mapping of str to str
        As :func:`read_lock` returns.
    packages : tuple of str
        The packages to compare (default :data:`RESULT_PACKAGES`).

    Returns
    -------
    dict of str to (str, str)
        ``{name: (version, locked version)}``; ``"not recorded"`` / ``"not locked"`` for an absent one.
    """
    have = {_canonical(k): str(v) for k, v in versions.items()}
    out = {}
    for name in packages:
        key = _canonical(name)
        got, want = have.get(key, "not recorded"), lock.get(key, "not locked")
        if got.split("+")[0] != want:
            out[name] = (got, want)
    return out


def lock_summary(versions: Mapping[str, str], lock_path: str | Path = LOCK_FILE) -> str:
    """One sentence: whether ``versions`` match the lock for :data:`RESULT_PACKAGES`.

    Parameters
    ----------
    versions : mapping of str to str
        Package name to version.
    lock_path : str or Path
        The lock (default :data:`LOCK_FILE`).

    Returns
    -------
    str
        ``"matches the lock ..."``, ``"differs from the lock ...: numpy 2.3.0 (lock 2.4.6), ..."`` or
        ``"no lock file to compare with ..."``.
    """
    lock_path = Path(lock_path)
    try:
        lock = read_lock(lock_path)
    except FileNotFoundError:
        return f"no lock file to compare with ({lock_path.name} not found beside the library)"
    bad = lock_mismatches(versions, lock)
    if not bad:
        return f"matches the lock ({lock_path.name}) for {', '.join(RESULT_PACKAGES)}"
    listed = ", ".join(f"{name} {got} (lock {want})" for name, (got, want) in bad.items())
    return f"differs from the lock ({lock_path.name}): {listed}"
