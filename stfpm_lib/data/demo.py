"""The embedded demo dataset (a small real subset of PIPED) and the demo's teacher-weights choice.

``demo_root()`` is an MVTec-layout root shipped inside the package (``stfpm_lib/demo_data/piped``),
so a fresh clone runs the main job with no download. It was made by :func:`build_demo`
(``python -m stfpm_lib.data build-demo``) from PIPED (Bianconi et al. 2014, CC BY 4.0);
see ``demo_data/piped/README.md`` for the attribution and the list of changes.

``demo_teacher_weights()`` says which teacher the demo can use: ImageNet weights when they
are cached or downloadable, else a random teacher with a loud warning. Only the demo falls
back; MVTec AD and VisA runs never do (they use :func:`stfpm_lib.method.weights.resolve_teacher_weights`,
which raises).
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..method.weights import WeightsError, imagenet_weights_enum, resolve_teacher_weights
from .convert import MANIFEST_NAME, convert_to_mvtec, verify_mvtec_root
from .folder import piped_adapter
from .mvtec import DataError, list_categories

__all__ = [
    "DEMO_NAME", "DEMO_CATEGORIES", "DEMO_PARAMS", "RANDOM_TEACHER_LABEL", "demo_root", "demo_categories",
    "demo_teacher_weights", "build_demo", "check_demo",
]

DEMO_NAME = "piped"
#: PIPED classes in the demo, chosen for clearly visible impurities of two kinds:
#: PA_BFT01_TL (dark compact specks and spots) and PA_BRG03_TL (long dark fibres).
DEMO_CATEGORIES = ("PA_BFT01_TL", "PA_BRG03_TL")
#: The converter settings that made the demo (48 normals → 32 train + 16 test; all 48 defects).
DEMO_PARAMS = {"n_train": 32, "n_test_good": 16, "max_defects_per_type": None, "seed": 0,
               "image_format": "png", "compress_level": 9}
#: The label for every table and figure title of a random-teacher run.
RANDOM_TEACHER_LABEL = "random teacher (not comparable with the paper)"


def _package_demo_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "demo_data" / DEMO_NAME


def demo_root() -> Path:
    """Root of the embedded demo dataset (MVTec AD layout, categories :data:`DEMO_CATEGORIES`).

    It is package data beside this module (``stfpm_lib/demo_data/piped``), found from this
    file's location (works for a source checkout and for regular/editable installs).
    """
    root = _package_demo_dir()
    if not (root / DEMO_CATEGORIES[0] / "train" / "good").is_dir():
        raise DataError(f"the embedded demo dataset is missing at {root}: reinstall the package, or rebuild it "
                        f"with `python -m stfpm_lib.data build-demo` (needs PIPED, see stfpm_lib/demo_data/README)")
    return root


def demo_categories() -> list[str]:
    """The demo's categories, sorted."""
    return list_categories(demo_root())


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


def build_demo(out_root: str | os.PathLike | None = None, *, piped_root: str | os.PathLike | None = None,
               categories: Sequence[str] = DEMO_CATEGORIES, overwrite: bool = False,
               log: Callable[[str], None] | None = None) -> Path:
    """Rebuild the demo dataset from PIPED with the converter; return its root.

    Default ``out_root`` is the package's ``demo_data/piped`` (needs ``overwrite=True`` when it exists).
    The README and licence note beside the data are kept.

    Parameters
    ----------
    out_root : str or os.PathLike, optional
        Where to write; ``None``: the package's ``demo_data/piped``.
    piped_root : str or os.PathLike, optional
        PIPED's folder (see :func:`~stfpm_lib.data.folder.resolve_piped_root`).
    categories : sequence of str
        PIPED categories to convert.
    overwrite : bool
        Replace an existing ``out_root``.
    log : callable, optional
        Called with one line per category.

    Returns
    -------
    Path
        The demo dataset's root.
    """
    target = Path(out_root) if out_root is not None else _package_demo_dir()
    keep = {}
    for name in ("README.md", "LICENSE-DATA.md"):
        if (target / name).is_file():
            keep[name] = (target / name).read_bytes()
    convert_to_mvtec(piped_adapter(piped_root), target, categories=list(categories), overwrite=overwrite, log=log,
                     **DEMO_PARAMS)
    for name, data in keep.items():
        (target / name).write_bytes(data)
    return target


def check_demo(piped_root: str | os.PathLike | None = None, *, rebuild: bool = False) -> dict[str, dict[str, int]]:
    """Verify the shipped demo (counts, masks, sha256 against its manifest); with ``rebuild``, also
    rebuild it from PIPED into a temporary folder and require identical pixels and file lists.

    Parameters
    ----------
    piped_root : str or os.PathLike, optional
        PIPED's folder, for ``rebuild``.
    rebuild : bool
        Also rebuild the demo and compare.

    Returns
    -------
    dict of str to dict of str to int
        ``{category: counts}``.

    Raises
    ------
    DataError
        On any difference.
    """
    root = demo_root()
    counts = verify_mvtec_root(root)
    if rebuild:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = build_demo(Path(tmp) / "piped", piped_root=piped_root)
            shipped = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
            rebuilt = sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*.png"))
            if shipped != rebuilt:
                raise DataError(f"rebuilt demo has other files: {sorted(set(shipped) ^ set(rebuilt))[:5]}")
            for rel in shipped:
                with Image.open(root / rel) as a, Image.open(fresh / rel) as b:
                    if a.mode != b.mode or not np.array_equal(np.asarray(a), np.asarray(b)):
                        raise DataError(f"rebuilt demo differs in the pixels of {rel}")
            old = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
            new = json.loads((fresh / MANIFEST_NAME).read_text(encoding="utf-8"))
            if old["counts"] != new["counts"] or old["changes"] != new["changes"]:
                raise DataError("rebuilt demo's manifest differs in counts or changes")
    return counts
