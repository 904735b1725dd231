"""Device, seeding, precision and memory-format choices: the one place they are made.

Training and inference call :func:`resolve_device`, :func:`seed_everything`,
:func:`autocast` and :func:`prepare_model` / :func:`prepare_input`, so a change of
policy (e.g. a new precision mode) is made here only.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any, Iterator

import numpy as np
import torch

from .config import ConfigError

__all__ = [
    "resolve_device", "seed_everything", "rng_state", "set_rng_state", "autocast", "amp_dtype",
    "prepare_model", "prepare_input", "deterministic",
]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto``/``None``: CUDA when available, else CPU; ``cuda`` without CUDA raises ``ConfigError``."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} was requested but CUDA is not available")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Global RNG states of Python, NumPy, torch CPU and CUDA (for resumable checkpoints)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (``None``: plain fp32).

    ``fp32``: none. ``bf16`` / ``fp16``: that dtype. ``auto``: bf16 on a CUDA device that
    supports it, else fp32. fp16 is only offered on CUDA (CPU autocast fp16 is slow).
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ConfigError("precision='fp16' needs a CUDA device; use 'bf16' or 'fp32' on CPU")
        return torch.float16
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    raise ConfigError(f"precision={precision!r} is not one of ['fp32', 'bf16', 'fp16', 'auto']")


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """Autocast context for the network forward passes (a no-op for fp32).

    Losses and maps are computed in float32 whatever the precision (the feature maps are
    cast up in :func:`stfpm_lib.loss.normalized_sq_dist`).
    """
    dtype = amp_dtype(precision, device)
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def prepare_model(model: torch.nn.Module, device: torch.device, channels_last: bool = False) -> torch.nn.Module:
    """Move ``model`` to ``device`` (and to the channels-last memory format if asked)."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def prepare_input(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """Move a (B,3,H,W) batch to ``device`` (non-blocking) in the chosen memory format."""
    x = x.to(device, non_blocking=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels while inside (restored afterwards).

    CPU: ``torch.use_deterministic_algorithms(True, warn_only=True)``. CUDA: cuDNN in
    deterministic mode without benchmarking (the official code set neither).
    """
    prev_alg = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        else:
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        yield
    finally:
        torch.use_deterministic_algorithms(prev_alg, warn_only=prev_warn)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev_cudnn
