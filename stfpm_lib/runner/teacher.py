"""The teacher policy of a run: which teacher weights it uses, and what it tells the user about them.

A demo run (the embedded dataset, no data root given) uses ImageNet weights when they are cached or
downloadable and otherwise falls back to a randomly initialised teacher, with a loud banner and the
label :data:`~stfpm_lib.method.weights.RANDOM_TEACHER_LABEL` on every table and figure
(:func:`demo_teacher_weights`). MVTec AD and VisA runs never fall back: :func:`check_teacher` stops
them before anything runs when the weights cannot be had. The demo's small settings
(:data:`DEMO_OVERRIDES`) live here too: the runner and the notebooks apply the same ones.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..config import STFPMConfig
from ..method.weights import RANDOM_TEACHER_LABEL, WeightsError, imagenet_weights_enum, resolve_teacher_weights
from .errors import BatchError

__all__ = ["DEMO_OVERRIDES", "demo_teacher_weights", "banner", "check_teacher",
           "teacher_note"]

#: Overrides of the embedded-demo run (``reproduce`` without a data root), chosen so that the whole
#: ``make reproduce`` (2 demo categories x (train + evaluate) + the report: 5 kernel start-ups)
#: stays well under 10 minutes on 2 CPU cores. image_size 128 is the demo images' native size;
#: batch_size 8 gives 4 SGD steps per epoch on the 26 training images (the official 32 would give
#: one), so 20 epochs = 80 steps. Measured on 2 cores (Python 3.11, torch 2.14.1 CPU): 3 min 39 s
#: and 4 min 47 s wall time with other jobs loading the machine (load average 3-4); one epoch takes
#: 0.42 s on an idle machine, so an idle run should take about 1.5 min (an estimate, not measured).
#: 60 epochs gave no better metrics (random teacher, PA_BRG03_TL).
DEMO_OVERRIDES: dict[str, Any] = {"epochs": 20, "image_size": 128, "batch_size": 8}


def _warning(backbone: str, reason: str) -> str:
    bar = "!" * 78
    return "\n".join([
        bar,
        f"!! WARNING: ImageNet weights for the {backbone} teacher are NOT available.",
        f"!! Reason: {reason}",
        "!! The DEMO falls back to a RANDOMLY INITIALISED teacher. Its features are not",
        "!! ImageNet features, so the metrics of this run are NOT comparable with the",
        "!! STFPM paper or with any published number. Tables and figures are labelled",
        f"!! '{RANDOM_TEACHER_LABEL}'.",
        "!! To use the real teacher, connect to the internet once or put the torchvision",
        "!! weights file into the torch hub cache (torch.hub.get_dir()/checkpoints), then rerun.",
        "!! (MVTec AD and VisA runs never fall back: they stop with an error instead.)",
        bar,
    ])


def _probe(url: str, timeout_s: float) -> str | None:
    """None if ``url`` answers a HEAD request within ``timeout_s``, else the reason it did not."""
    try:
        request = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - fixed https URL
            if 200 <= getattr(response, "status", 200) < 400:
                return None
            return f"HTTP {response.status} from {url}"
    except Exception as exc:  # noqa: BLE001 - any failure means "not downloadable now"
        return f"{url} is not reachable ({type(exc).__name__}: {exc})"


def demo_teacher_weights(backbone: str = "resnet18", *, probe_timeout_s: float = 3.0,
                         probe: Callable[[str, float], str | None] | None = None) -> tuple[str, str | None]:
    """``("imagenet", None)`` when ImageNet weights are obtainable, else ``("random", warning text)``.

    Obtainable: already in the torch hub cache (and verified by
    :func:`stfpm_lib.method.weights.resolve_teacher_weights`), or downloadable (the weights URL
    answers a HEAD request within ``probe_timeout_s`` seconds; the run downloads it).
    ``$STFPM_OFFLINE=1`` skips the network probe. ``probe(url, timeout_s) -> reason | None``
    replaces the probe (tests).

    Parameters
    ----------
    backbone : str
        Teacher backbone name.
    probe_timeout_s : float
        Seconds the weights URL has to answer.
    probe : callable, optional
        ``probe(url, timeout_s) -> reason | None`` in place of the HEAD request.

    Returns
    -------
    tuple of (str, str or None)
        The teacher weights to use and a warning text (``None`` with ImageNet weights).
    """
    weights = imagenet_weights_enum(backbone)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if cached.is_file():
        try:
            resolve_teacher_weights("imagenet", backbone)
            return "imagenet", None
        except WeightsError as exc:
            return "random", _warning(backbone, f"the cached file {cached} is unusable: {exc}")
    if os.environ.get("STFPM_OFFLINE", "") not in ("", "0"):
        return "random", _warning(backbone, f"{cached.name} is not in {cached.parent} and STFPM_OFFLINE is set")
    reason = (probe or _probe)(weights.url, probe_timeout_s)
    if reason is None:
        return "imagenet", None
    return "random", _warning(backbone, f"{cached.name} is not in {cached.parent} and {reason}")


def banner(text: str) -> str:
    """``text`` framed as a warning banner (rows of ``!``), unless it is one already.

    Parameters
    ----------
    text : str
        The warning.

    Returns
    -------
    str
        The banner.
    """
    if text.lstrip().startswith("!!!"):  # already a banner (demo_teacher_weights' warning)
        return text
    bar = "!" * 78
    return f"{bar}\n!! WARNING: {text}\n{bar}"


def check_teacher(cfg: STFPMConfig | None):
    """Fail fast when ImageNet (or file) teacher weights cannot be loaded (never fall back).

    Done before anything runs for notebooks that declare ``teacher_weights`` (those that build
    the model), so a missing weights file is one clear error, not one failed notebook per category.

    Parameters
    ----------
    cfg : STFPMConfig or None
        The run's config (``None``: no notebook builds a model).

    Returns
    -------
    TeacherWeights or None
        The resolved weights (``None`` for a random teacher).

    Raises
    ------
    BatchError
        The weights cannot be had (the message says why).
    """
    if cfg is None or cfg.teacher_weights == "random":
        return None
    try:
        return resolve_teacher_weights(cfg.teacher_weights, cfg.backbone)
    except WeightsError as exc:
        raise BatchError(f"teacher weights {cfg.teacher_weights!r} unavailable: {exc}") from exc


def teacher_note(cfg: STFPMConfig | None, weights) -> str | None:
    """The line that opens and closes a run with a non-random teacher: what it actually uses.

    Parameters
    ----------
    cfg : STFPMConfig or None
        The run's config.
    weights : TeacherWeights or None
        What :func:`check_teacher` resolved.

    Returns
    -------
    str or None
        ``None`` for a random teacher (the banner says it instead).
    """
    if cfg is None or cfg.teacher_weights == "random":
        return None
    if weights is None:
        return f"teacher weights: {cfg.teacher_weights} ({cfg.backbone}; resolved by the notebooks)"
    info = weights.describe()
    where = f" from {info['path']}" if info.get("path") else ""
    sha = f" (sha256 {info['sha256'][:16]}...)" if info.get("sha256") else ""
    return f"teacher weights: {info['source']} {info['name']}{where}{sha}"

