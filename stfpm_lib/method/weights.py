"""Teacher weights: torchvision ImageNet weights, a random init, or a local ``.pth`` file.

``resolve_teacher_weights(spec, backbone)`` turns ``cfg.teacher_weights`` into a
:class:`TeacherWeights` record that carries the state dict (not serialised) and a
JSON-safe description (source, torchvision enum name, file path and sha256) that every
checkpoint and prediction file stores. There is no silent fallback: weights that cannot
be found or verified raise.

Specs
    ``"imagenet"``  torchvision ``<Backbone>_Weights.IMAGENET1K_V1`` (what the official code's
        ``pretrained=True`` loads). ``"imagenet:IMAGENET1K_V2"`` picks another enum member.
        The file is taken from the torch hub cache (``torch.hub.get_dir()/checkpoints``) and
        downloaded there through the torchvision weights API when absent. Its sha256 must
        start with the hash embedded in the file name.
    ``"random"``  torchvision's default initialisation, drawn from the seeded RNG stream
        of :func:`stfpm_lib.method.model.build_stfpm` (the seed is recorded).
    a path  a ``.pth`` state dict (optionally nested under ``"state_dict"`` or ``"model"``;
        a ``"module."`` prefix is stripped). A file named like a torch hub file
        (``<name>-<hex>.pth``, e.g. ``resnet18-f37072fd.pth``) must have a sha256 starting
        with that hex. Keys and shapes are checked against the torchvision backbone.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import BACKBONES
from ..io import sha256_file

__all__ = [
    "RANDOM_TEACHER_LABEL",
    "TeacherWeights",
    "WeightsError",
    "WeightsUnavailableError",
    "WeightsFileError",
    "resolve_teacher_weights",
    "imagenet_weights_enum",
    "state_dict_sha256",
]

# torch.hub's convention: "<name>-<first 8+ hex digits of the sha256>.<ext>".
_HUB_NAME = re.compile(r"^(?P<stem>.+)-(?P<hash>[0-9a-f]{8,64})\.pth$")


#: The label for every table and figure title of a random-teacher run.
RANDOM_TEACHER_LABEL = "random teacher (not comparable with the paper)"

class WeightsError(RuntimeError):
    """Teacher weights that cannot be used (base class)."""


class WeightsUnavailableError(WeightsError):
    """ImageNet weights are neither cached nor downloadable (offline)."""


class WeightsFileError(WeightsError, ValueError):
    """A weights file that is missing, unreadable, corrupt or for another backbone."""


@dataclass
class TeacherWeights:
    """Where the teacher's weights come from.

    Attributes
    ----------
    source : {"imagenet", "random", "file"}
    name : str
        torchvision enum name (``"ResNet18_Weights.IMAGENET1K_V1"``), ``"random"`` or the file name.
    path : str or None
        The file that was loaded (``None`` for ``random``).
    sha256 : str or None
        sha256 of that file's bytes, hex (``None`` for ``random``).
    backbone : str
        torchvision model name.
    seed : int or None
        RNG seed of a ``random`` teacher (``None`` otherwise; set by ``build_stfpm``).
    url : str or None
        Download URL of ImageNet weights.
    state_dict : mapping of str to torch.Tensor, or None
        The tensors (``None`` for ``random``); never serialised.
    """

    source: str
    name: str
    backbone: str
    path: str | None = None
    sha256: str | None = None
    seed: int | None = None
    url: str | None = None
    state_dict: dict[str, torch.Tensor] | None = field(default=None, repr=False, compare=False)

    def describe(self) -> dict[str, Any]:
        """JSON-safe description: every attribute but the tensors.

        Returns
        -------
        dict of str to object
        """
        return {
            "source": self.source,
            "name": self.name,
            "backbone": self.backbone,
            "path": self.path,
            "sha256": self.sha256,
            "seed": self.seed,
            "url": self.url,
        }


def imagenet_weights_enum(backbone: str, member: str = "IMAGENET1K_V1"):
    """The torchvision weights enum member for ``backbone``.

    Parameters
    ----------
    backbone : str
        torchvision model name.
    member : str, default="IMAGENET1K_V1"
        Enum member name.

    Returns
    -------
    torchvision.models.WeightsEnum
        E.g. ``ResNet18_Weights.IMAGENET1K_V1``.

    Raises
    ------
    WeightsFileError
        An unknown backbone or member.
    """
    from torchvision.models import get_model_weights  # heavy (~3 s): only when ImageNet weights are asked for

    _check_backbone(backbone)
    enum = get_model_weights(backbone)
    try:
        return enum[member]
    except KeyError:
        raise WeightsFileError(
            f"teacher_weights: {enum.__name__} has no member {member!r}; choose from {[m.name for m in enum]}"
        ) from None


def resolve_teacher_weights(spec: str, backbone: str, *, progress: bool = False) -> TeacherWeights:
    """Resolve the teacher weights ``spec`` for ``backbone``.

    Parameters
    ----------
    spec : str
        ``"imagenet"`` or ``"imagenet:MEMBER"`` (torchvision weights API), ``"random"``, or the path
        of a ``.pth`` state dict.
    backbone : str
        torchvision model name.
    progress : bool, default=False
        Show the download progress of ImageNet weights.

    Returns
    -------
    TeacherWeights

    Raises
    ------
    WeightsUnavailableError
        ImageNet weights neither cached nor downloadable.
    WeightsFileError
        A bad file (missing, unreadable, wrong hash, wrong keys or shapes).
    """
    _check_backbone(backbone)
    spec = str(spec)
    if spec == "random":
        return TeacherWeights(source="random", name="random", backbone=backbone)
    if spec == "imagenet" or spec.startswith("imagenet:"):
        member = spec.partition(":")[2] or "IMAGENET1K_V1"
        return _resolve_imagenet(backbone, member, progress=progress)
    return _resolve_file(Path(spec).expanduser(), backbone)


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a state dict's tensors (sorted by name).

    A fingerprint of the actual teacher tensors, independent of the file format; used to check that
    a checkpoint is evaluated with the teacher it was trained with.

    Parameters
    ----------
    state_dict : mapping of str to torch.Tensor

    Returns
    -------
    str
        64 hex digits.
    """
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


# ---------------------------------------------------------------------- internals
def _check_backbone(backbone: str) -> None:
    if backbone not in BACKBONES:
        raise WeightsFileError(f"backbone={backbone!r} is not one of {list(BACKBONES)}")


def _resolve_imagenet(backbone: str, member: str, *, progress: bool) -> TeacherWeights:
    weights = imagenet_weights_enum(backbone, member)
    file_name = os.path.basename(weights.url)
    directory = Path(torch.hub.get_dir()) / "checkpoints"
    cached = directory / file_name
    if not cached.is_file():
        try:
            weights.get_state_dict(progress=progress, check_hash=True)
        except (urllib.error.URLError, OSError, ConnectionError, TimeoutError) as exc:
            raise WeightsUnavailableError(
                f"ImageNet weights for {backbone} ({type(weights).__name__}.{weights.name}) are not cached "
                f"and could not be downloaded ({type(exc).__name__}: {exc}). Put the file {file_name} "
                f"(from {weights.url}) into {directory} (torch.hub.get_dir()/checkpoints; set TORCH_HOME to move "
                f"it), or pass teacher_weights=<path to a .pth state dict>. To check the pipeline without them: "
                f"teacher_weights=random (-p teacher_weights random; results are not comparable with the paper)."
            ) from exc
        except RuntimeError as exc:  # torch.hub's hash check of a fresh download
            raise WeightsFileError(f"downloaded {file_name} failed its integrity check: {exc}") from exc
        if not cached.is_file():
            raise WeightsUnavailableError(
                f"torchvision did not leave {file_name} in {directory}; put it there or pass teacher_weights=<path>."
            )
    sha = _verify_hub_hash(cached)
    state = _load_state_dict(cached)
    _check_state_dict(state, backbone, cached)
    return TeacherWeights(
        source="imagenet",
        name=f"{type(weights).__name__}.{weights.name}",
        backbone=backbone,
        path=str(cached),
        sha256=sha,
        url=weights.url,
        state_dict=state,
    )


def _resolve_file(path: Path, backbone: str) -> TeacherWeights:
    if not path.exists():
        raise WeightsFileError(
            f"teacher_weights file not found: {path} (use 'imagenet', 'random' or a path to a .pth state dict)"
        )
    if not path.is_file():
        raise WeightsFileError(f"teacher_weights is not a file: {path}")
    sha = _verify_hub_hash(path)
    state = _load_state_dict(path)
    _check_state_dict(state, backbone, path)
    return TeacherWeights(source="file", name=path.name, backbone=backbone, path=str(path.resolve()),
                          sha256=sha, state_dict=state)


def _verify_hub_hash(path: Path) -> str:
    """sha256 of ``path``; if its name is a torch hub name, the hash prefix must match."""
    try:
        sha = sha256_file(path)
    except OSError as exc:
        raise WeightsFileError(f"cannot read teacher weights file {path}: {exc}") from exc
    match = _HUB_NAME.match(path.name)
    if match and not sha.startswith(match["hash"]):
        raise WeightsFileError(
            f"{path}: sha256 {sha[:16]}... does not start with {match['hash']!r}, the hash in its file name; "
            f"the file is corrupt or not the torchvision file it claims to be (delete it and fetch it again)"
        )
    return sha


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise WeightsFileError(f"cannot load teacher weights file {path}: {type(exc).__name__}: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsFileError(f"{path}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _check_state_dict(state: Mapping[str, torch.Tensor], backbone: str, path: Path) -> None:
    """Keys and shapes must match torchvision's ``backbone`` (the ``fc`` head may be absent)."""
    import torchvision  # heavy (~3 s): only when a .pth file is checked

    with torch.device("meta"):
        reference = torchvision.models.get_model(backbone, weights=None).state_dict()
    needed = {k: v.shape for k, v in reference.items() if not k.startswith("fc.")}
    missing = sorted(set(needed) - set(state))
    unexpected = sorted(set(state) - set(reference))
    wrong = sorted(k for k in needed if k in state and tuple(state[k].shape) != tuple(needed[k]))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) e.g. {unexpected[:3]}")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} shape mismatch(es) e.g. {k}: file {tuple(state[k].shape)} vs "
                         f"{backbone} {tuple(needed[k])}")
        raise WeightsFileError(f"{path} is not a {backbone} state dict: " + "; ".join(parts))
