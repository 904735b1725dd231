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
    """Installed version of each distribution (``"not installed"`` when absent)."""
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def environment_info() -> dict[str, object]:
    """Package versions plus Python, platform, CPU/GPU and a UTC timestamp."""
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
