"""What every result file records: package versions, platform and the time."""

from __future__ import annotations

import datetime as _dt
import platform
from importlib import metadata

import torch

__all__ = ["package_versions", "environment_info"]

_PACKAGES = (
    "stfpm-lib", "torch", "torchvision", "numpy", "scipy", "pandas", "scikit-learn",
    "scikit-image", "matplotlib", "seaborn", "pillow", "papermill",
)


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
        ``python``, ``platform``, ``packages``, ``cuda_available``, ``torch_threads``, ``utc_time``
        (ISO 8601) and, with CUDA, ``gpu``.
    """
    info: dict[str, object] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "cuda_available": torch.cuda.is_available(),
        "torch_threads": torch.get_num_threads(),
        "utc_time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
