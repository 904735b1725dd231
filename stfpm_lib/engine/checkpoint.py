"""The checkpoint format: ``checkpoint.pt`` (a finished run) and ``last.pt`` (an interrupted one).

Both are ``torch.save`` dicts with a ``format`` marker (``stfpm-checkpoint`` / ``stfpm-last``) and a
``version``. Written by :func:`save_checkpoint` (atomically, through :func:`stfpm_lib.io.atomic_save`),
which seals each file with ``student_sha256`` (:func:`stfpm_lib.method.weights.state_dict_sha256` of the
student tensors) and ``content_sha256`` (:func:`checkpoint_sha256`: every tensor and every other value
in the file). :func:`read_checkpoint` verifies both whenever a file is read, so a damaged file raises
:class:`CheckpointError` naming it instead of being used. :func:`load_checkpoint` rebuilds the trained
model of a finished run. What goes into the files is decided by :func:`stfpm_lib.engine.training.fit`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..config import STFPMConfig
from ..io import atomic_save
from ..method.model import STFPM, build_stfpm
from ..method.weights import TeacherWeights, state_dict_sha256
from .device import prepare_model, resolve_device

__all__ = ["CHECKPOINT_NAME", "LAST_NAME", "CHECKPOINT_FORMAT", "LAST_FORMAT", "FORMAT_VERSION", "CheckpointError",
           "checkpoint_sha256", "save_checkpoint", "read_checkpoint", "load_checkpoint"]

CHECKPOINT_NAME = "checkpoint.pt"
LAST_NAME = "last.pt"
CHECKPOINT_FORMAT = "stfpm-checkpoint"
LAST_FORMAT = "stfpm-last"
FORMAT_VERSION = 2  # 2: student_sha256 / content_sha256 recorded and verified on load


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or does not match what was expected."""


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor], values: list[str]) -> None:
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
    elif isinstance(obj, Mapping):
        for key in sorted(obj, key=lambda k: (type(k).__name__, str(k))):
            _flatten(obj[key], f"{prefix}/{type(key).__name__}:{key}", tensors, values)
    elif isinstance(obj, (list, tuple)):
        values.append(f"{prefix}={type(obj).__name__}[{len(obj)}]")
        for i, item in enumerate(obj):
            _flatten(item, f"{prefix}[{i}]", tensors, values)
    else:  # str, int, float (repr is exact), bool, None
        values.append(f"{prefix}={type(obj).__name__}:{obj!r}")


def checkpoint_sha256(obj: Mapping[str, Any]) -> str:
    """sha256 of everything in a checkpoint dict except its ``content_sha256`` entry.

    Tensors by :func:`stfpm_lib.method.weights.state_dict_sha256` of the flattened ``{path: tensor}``
    dict, the other values by their exact ``repr``; keys sorted, so it does not depend on the file
    format or the insertion order.

    Parameters
    ----------
    obj : mapping of str to object
        A checkpoint or resume dict.

    Returns
    -------
    str
        64 hex digits.
    """
    tensors: dict[str, torch.Tensor] = {}
    values: list[str] = []
    _flatten({k: v for k, v in obj.items() if k != "content_sha256"}, "", tensors, values)
    return hashlib.sha256(f"{state_dict_sha256(tensors)}\n{chr(10).join(values)}".encode()).hexdigest()


def save_checkpoint(path: Path, obj: dict[str, Any]) -> None:
    """Seal ``obj`` with its hashes and write it atomically.

    Written through a Python file object, so a full disk is an ``OSError`` ENOSPC, which
    :mod:`stfpm_lib.io` reports in words.

    Parameters
    ----------
    path : Path
    obj : dict of str to object
        The checkpoint; its hash entries are added in place.

    Raises
    ------
    OutputError
        The file cannot be written (disk full, read-only, no permission).
    """
    obj = {**obj, "student_sha256": state_dict_sha256(obj["student"])}
    obj["content_sha256"] = checkpoint_sha256(obj)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)

    atomic_save(path, write)


def read_checkpoint(path: Path, kind: str) -> dict[str, Any]:
    """Read a checkpoint or resume file and verify its recorded hashes (version >= 2).

    Parameters
    ----------
    path : Path
    kind : str
        What the file is, for error messages (e.g. ``"checkpoint"``).

    Returns
    -------
    dict of str to object

    Raises
    ------
    CheckpointError
        A missing, unreadable or damaged file, or one of an unknown format or version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{kind} not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means an unusable file
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"{kind} {path} is damaged or not a checkpoint: torch.load failed "
                              f"({type(exc).__name__}: {first})") from exc
    if not isinstance(obj, dict) or obj.get("format") not in (CHECKPOINT_FORMAT, LAST_FORMAT):
        raise CheckpointError(f"{path} is not an STFPM {kind} (no 'format' marker)")
    if obj.get("version") not in (1, FORMAT_VERSION):
        raise CheckpointError(f"{kind} {path} has unknown version {obj.get('version')!r} (damaged, or written by "
                              f"a newer stfpm_lib; this one reads versions 1 and {FORMAT_VERSION})")
    if obj["version"] >= 2:
        _verify(path, kind, obj)
    return obj


def _verify(path: Path, kind: str, obj: Mapping[str, Any]) -> None:
    damaged = f"{kind} {path} is damaged (contents differ from when it was written): "
    student = obj.get("student")
    if not isinstance(student, Mapping) or not all(isinstance(v, torch.Tensor) for v in student.values()):
        raise CheckpointError(damaged + "no student tensors")
    if obj.get("student_sha256") != state_dict_sha256(student):
        raise CheckpointError(damaged + f"the student tensors' sha256 is {state_dict_sha256(student)[:12]}, "
                                        f"{str(obj.get('student_sha256'))[:12]!r} was recorded")
    if obj.get("content_sha256") != checkpoint_sha256(obj):
        raise CheckpointError(damaged + "the sha256 of its contents does not match the recorded one")


def load_checkpoint(path, *, expect: STFPMConfig | None = None, device: str | torch.device = "cpu",
                    weights: TeacherWeights | None = None) -> tuple[STFPM, STFPMConfig, dict[str, Any]]:
    """Rebuild the trained model from a checkpoint file.

    The teacher is rebuilt from the recorded ``teacher_weights`` spec (or ``weights``) and must have
    the recorded tensor fingerprint.

    Parameters
    ----------
    path : str or path-like
        A ``checkpoint.pt``.
    expect : STFPMConfig, optional
        A config whose backbone, layers and teacher weights the checkpoint must match.
    device : str or torch.device, default="cpu"
    weights : TeacherWeights, optional
        Teacher weights to use instead of resolving the recorded spec.

    Returns
    -------
    (STFPM, STFPMConfig, dict)
        The model in eval mode, its config, and ``meta``: everything in the file except the student
        tensors.

    Raises
    ------
    CheckpointError
        A bad file, a teacher with another fingerprint, or a mismatch with ``expect`` (both named).
    """
    path = Path(path)
    ckpt = read_checkpoint(path, "checkpoint")
    if ckpt["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is a resume file of an unfinished run, not a finished checkpoint")
    try:
        cfg = STFPMConfig.from_dict(ckpt["config"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: its config is not valid here: {exc}") from exc
    if expect is not None:
        have = (cfg.backbone, list(cfg.ordered_layers), cfg.teacher_weights)
        want = (expect.backbone, list(expect.ordered_layers), expect.teacher_weights)
        if have != want:
            raise CheckpointError(
                f"{path} was built with backbone={have[0]} layers={have[1]} teacher_weights={have[2]!r}, "
                f"but backbone={want[0]} layers={want[1]} teacher_weights={want[2]!r} was expected")
    model = build_stfpm(cfg, weights)
    try:
        model.student.load_state_dict(ckpt["student"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: student tensors do not fit {cfg.backbone} {list(cfg.layers)}: {exc}") from exc
    recorded = ckpt["teacher_weights"].get("state_sha256")
    if recorded is not None and recorded != model.teacher_fingerprint():
        raise CheckpointError(
            f"{path}: the teacher rebuilt from teacher_weights={cfg.teacher_weights!r} is not the one used in "
            f"training (tensor fingerprint {model.teacher_fingerprint()[:12]} vs recorded {recorded[:12]}; "
            f"recorded weights: {ckpt['teacher_weights']})")
    model = prepare_model(model, resolve_device(device), cfg.channels_last).eval()
    meta = {k: v for k, v in ckpt.items() if k != "student"}
    meta["path"] = str(path)
    return model, cfg, meta
