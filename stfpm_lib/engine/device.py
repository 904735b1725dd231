"""Device, seeding, precision and memory-format choices: the one place they are made.

Training and inference call :func:`resolve_device`, :func:`seed_everything`,
:func:`autocast` and :func:`prepare_model` / :func:`prepare_input`, so a change of
policy (e.g. a new precision mode) is made here only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import random
import resource
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.utils.deterministic as det

from ..config import PRECISIONS, ConfigError
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "peak_memory",
    "resolve_device", "seed_everything", "rng_state", "set_rng_state", "autocast", "amp_dtype",
    "effective_precision", "cpu_has_fast_bf16", "cpu_description", "grad_scaler", "prepare_model", "prepare_input",
    "normalize_uint8", "deterministic", "kernel_policy", "synchronize", "tune_cpu_allocator",
]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The torch device of a config's ``device``.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}, torch.device or None, default="auto"
        ``auto``/``None``: CUDA when available, else CPU (``cuda:N`` accepted).

    Returns
    -------
    torch.device

    Raises
    ------
    ConfigError
        ``cuda`` without CUDA.
    """
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} was requested but CUDA is not available")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (all devices).

    Parameters
    ----------
    seed : int
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Global RNG states of Python, NumPy, torch CPU and CUDA (for resumable checkpoints).

    Returns
    -------
    dict of str to object
        Keys ``python``, ``numpy``, ``torch`` and, with CUDA, ``cuda``.
    """
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the global RNG states; inverse of :func:`rng_state`.

    Parameters
    ----------
    state : dict of str to object
        As :func:`rng_state` returns it (a ``cuda`` entry is ignored without CUDA).
    """
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def cpu_has_fast_bf16() -> bool:
    """Whether bfloat16 convolutions run natively, and so faster than fp32, on this CPU.

    Needs native bfloat16 matrix instructions (AVX512-BF16 or AMX), oneDNN (PyTorch's CPU
    convolution library) and no ``ONEDNN_MAX_CPU_ISA``/``DNNL_MAX_CPU_ISA`` limit below them. On
    such CPUs oneDNN runs bf16 convolutions 2-3x as fast as fp32; elsewhere bf16 is emulated and
    much slower (measured on an AVX2-only AMD EPYC: training 0.17x, inference 0.4x the official
    fp32 loop), so ``precision="auto"`` stays in fp32 there.

    Returns
    -------
    bool
    """
    if not torch.backends.mkldnn.is_available() or _onednn_isa_limited():
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in checks:
        probe = getattr(torch.cpu, name, None)
        try:
            if probe is not None and bool(probe()):
                return True
        except Exception:  # noqa: BLE001 - a probe that fails means "not known to be fast"
            continue
    return False


# oneDNN ISA names (ONEDNN_MAX_CPU_ISA values) without native bfloat16 arithmetic
_NO_BF16_ISAS = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"})


def _onednn_isa_limited() -> bool:
    """True when the environment caps oneDNN at an instruction set without native bf16."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        if os.environ.get(name, "").strip().upper() in _NO_BF16_ISAS:
            return True
    return False


_CPUINFO = "/proc/cpuinfo"


def cpu_description() -> dict[str, Any]:
    """What the CPU figures of a benchmark depend on.

    Returns
    -------
    dict of str to object
        ``model``: the CPU's model name (``/proc/cpuinfo`` on Linux, else
        :func:`platform.processor`); ``capability``: the vector instruction set PyTorch's own
        kernels use (``torch.backends.cpu.get_cpu_capability()``: ``AVX2``, ``AVX512``, ...) with
        ``+AMX`` when AMX tiles are present; ``native_bf16``: :func:`cpu_has_fast_bf16`.
    """
    model = ""
    with contextlib.suppress(OSError):
        with open(_CPUINFO) as handle:
            for line in handle:
                if line.split(":")[0].strip() in ("model name", "Processor", "cpu model"):
                    model = line.split(":", 1)[1].strip()
                    break
    model = " ".join((model or platform.processor() or platform.machine() or "unknown CPU").split())
    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001 - older torch or an unknown platform
        capability = "unknown"
    with contextlib.suppress(Exception):
        if torch.cpu._is_amx_tile_supported() and not _onednn_isa_limited():
            capability += "+AMX"
    return {"model": model, "capability": capability, "native_bf16": cpu_has_fast_bf16()}


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``.

    * ``fp32``: none (the faithful default).
    * ``bf16``: bfloat16 autocast (CPU or CUDA; raises on a CUDA GPU without bf16).
    * ``fp16``: float16 autocast with gradient scaling, CUDA only (CPU fp16 autocast is slow).
    * ``auto``: CUDA: bf16 when the GPU supports it (Ampere and newer), else fp16;
      CPU: bf16 when :func:`cpu_has_fast_bf16` (AVX512-BF16 or AMX), else fp32.

    Parameters
    ----------
    precision : {"fp32", "bf16", "fp16", "auto"}
    device : torch.device or str

    Returns
    -------
    torch.dtype or None
        ``None``: plain fp32.

    Raises
    ------
    ConfigError
        An unknown precision, bf16 on a CUDA GPU without it, or fp16 off CUDA.
    """
    device = torch.device(device)
    if precision == "fp32":
        return None
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("precision='bf16' needs a GPU with bfloat16 support; use 'fp16' or 'auto'")
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ConfigError("precision='fp16' needs a CUDA device; use 'bf16' or 'fp32' on CPU")
        return torch.float16
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_has_fast_bf16():
            return torch.bfloat16
        return None
    raise ConfigError(f"precision={precision!r} is not one of {list(PRECISIONS)}")


def effective_precision(precision: str, device: torch.device) -> str:
    """``precision`` with ``auto`` resolved on ``device``.

    Parameters
    ----------
    precision, device : str and torch.device (or str), as in :func:`amp_dtype`

    Returns
    -------
    {"fp32", "bf16", "fp16"}
    """
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype(precision, device)]


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """Gradient scaler, enabled only for float16 autocast (bf16 and fp32 need none).

    Parameters
    ----------
    precision, device : str and torch.device (or str), as in :func:`amp_dtype`

    Returns
    -------
    torch.amp.GradScaler
    """
    device = torch.device(device)
    return torch.amp.GradScaler(device.type, enabled=amp_dtype(precision, device) == torch.float16)


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """Autocast context for the network forward passes (a no-op for fp32).

    Losses and maps are computed in float32 whatever the precision (the feature maps are cast up
    in :func:`stfpm_lib.method.loss.normalized_sq_dist`).

    Parameters
    ----------
    precision, device : str and torch.device (or str), as in :func:`amp_dtype`

    Yields
    ------
    None
    """
    dtype = amp_dtype(precision, device)
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def prepare_model(model: torch.nn.Module, device: torch.device, channels_last: bool = False) -> torch.nn.Module:
    """Move ``model`` to ``device`` (and to the channels-last memory format if asked).

    Parameters
    ----------
    model : torch.nn.Module
    device : torch.device or str
    channels_last : bool, default=False

    Returns
    -------
    torch.nn.Module
        ``model`` itself, moved.
    """
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def prepare_input(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """Network input on ``device`` in the chosen memory format.

    The uint8 path normalises after the transfer (4× fewer bytes to move; on the GPU the arithmetic
    runs there) and gives bit-identical values to :func:`stfpm_lib.data.transforms.normalize`
    (same float32 operations: ``/255``, ``-mean``, ``/std``).

    Parameters
    ----------
    x : torch.Tensor of shape (B, 3, H, W) float, or (B, H, W, 3) uint8
        A normalised float batch, or a uint8 RGB batch (normalised here).
    device : torch.device or str
    channels_last : bool, default=False
        Channels-last memory format; otherwise the result is contiguous NCHW.

    Returns
    -------
    torch.Tensor of shape (B, 3, H, W), float
    """
    if x.dtype == torch.uint8:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"uint8 images must have shape (B, H, W, 3), got {tuple(x.shape)}")
        x = normalize_uint8(x.to(device, non_blocking=True))  # (B,3,H,W), channels-last strides
        return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    x = x.to(device, non_blocking=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def normalize_uint8(images: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of a uint8 RGB batch on its own device.

    The same float32 operations as :func:`stfpm_lib.data.transforms.normalize`.

    Parameters
    ----------
    images : torch.Tensor of shape (B, H, W, 3), uint8

    Returns
    -------
    torch.Tensor of shape (B, 3, H, W), float32
        A permuted view, i.e. already in the channels-last memory layout.
    """

    x = images.float().div_(255.0).movedim(-1, -3)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
    return (x - mean) / std


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels while inside (restored afterwards).

    CPU: ``torch.use_deterministic_algorithms(True, warn_only=True)``, without its filling of every
    new uninitialised tensor with NaN (``torch.utils.deterministic.fill_uninitialized_memory =
    False``): correct kernels never read that memory, so results are the same, and the filling cost
    5–7% of a training or inference step. CUDA: cuDNN in deterministic mode without benchmarking
    (the official code set neither).

    Parameters
    ----------
    device : torch.device or str

    Yields
    ------
    None
    """
    prev_alg = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_fill = det.fill_uninitialized_memory
    prev_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
            det.fill_uninitialized_memory = False
        else:
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        yield
    finally:
        torch.use_deterministic_algorithms(prev_alg, warn_only=prev_warn)
        det.fill_uninitialized_memory = prev_fill
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev_cudnn


@contextlib.contextmanager
def kernel_policy(device: torch.device, precision: str) -> Iterator[None]:
    """Kernel selection for a run: faithful for ``fp32``, fastest for the mixed precisions.

    ``fp32`` (and ``auto`` resolving to it): :func:`deterministic`, so a seed gives the same bits run
    after run. ``bf16``/``fp16``: CPU unchanged (deterministic; it costs nothing measurable there);
    CUDA: ``torch.backends.cudnn.benchmark = True`` (cuDNN times the candidate kernels of each new
    input shape and keeps the fastest; results then agree between runs to rounding, not bit for
    bit). Settings are restored afterwards.

    Parameters
    ----------
    device, precision : torch.device (or str) and str, as in :func:`amp_dtype`

    Yields
    ------
    None
    """
    device = torch.device(device)
    if device.type != "cuda" or amp_dtype(precision, device) is None:
        with deterministic(device):
            yield
        return
    prev = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work on ``device`` (no-op on CPU); call before reading a timer.

    Parameters
    ----------
    device : torch.device or str
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


_ALLOCATOR_ENV = "STFPM_CPU_ALLOCATOR"
_allocator_tuned: bool | None = None


def tune_cpu_allocator() -> bool:
    """Let glibc keep freed memory for reuse instead of handing it back to the kernel.

    CPU tensors come from ``malloc``. glibc serves large blocks (the activations of a 256² batch
    are tens of MiB) with fresh ``mmap`` pages and unmaps them on ``free``, so every step
    page-faults and zero-fills all its activations again. On a 2-core VM this made memory-bound
    kernels 4–8× slower (BatchNorm 23 → 5.5 ms, ReLU 22 → 2.9 ms on a (32,64,128,128) bf16 tensor)
    and training steps 20–35% slower. Setting ``M_MMAP_MAX=0`` (heap only) and a 2 GiB
    ``M_TRIM_THRESHOLD`` keeps freed blocks in the heap for the next step. Results are unchanged;
    the cost is that the process keeps its peak heap until it exits. Called by ``fit`` and
    ``predict`` on CPU; Linux/glibc only (a no-op elsewhere); ``STFPM_CPU_ALLOCATOR=default`` in the
    environment opts out.

    Returns
    -------
    bool
        Whether the setting is active.
    """
    global _allocator_tuned
    if _allocator_tuned is not None:
        return _allocator_tuned
    _allocator_tuned = False
    if os.environ.get(_ALLOCATOR_ENV, "").lower() == "default" or not sys.platform.startswith("linux") \
            or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        _allocator_tuned = bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        _allocator_tuned = False
    return _allocator_tuned


def peak_memory(device: torch.device) -> dict[str, Any]:
    """Peak memory of this process so far, for the records of a training run.

    Parameters
    ----------
    device : torch.device

    Returns
    -------
    dict
        ``{"mib": float, "kind": str}``: on CUDA the peak of ``torch.cuda.max_memory_allocated``
        (``kind="cuda_allocated"``), else the process's peak resident set size (``"process_rss"``,
        the interpreter, torch and the data included), MiB.
    """
    if device.type == "cuda":
        return {"mib": torch.cuda.max_memory_allocated(device) / 2**20, "kind": "cuda_allocated"}
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"mib": rss_kib / 1024, "kind": "process_rss"}
