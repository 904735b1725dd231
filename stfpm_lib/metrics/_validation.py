"""Input checking and conversion shared by all metrics (NumPy arrays or torch tensors in).

Conventions used everywhere in :mod:`stfpm_lib.metrics`:

* ``maps``: anomaly maps, float, shape ``(N, H, W)`` (``(N, 1, H, W)`` is squeezed), or a
  list of ``N`` 2-D arrays. Higher score = more anomalous.
* ``masks``: ground truth, shape ``(N, H, W)`` or a list of ``N`` 2-D arrays (sizes may differ
  per image when ``resize_maps=True``). Binarised by ``mask_binarization``:

  - ``"gt0"`` (default, the official STFPM code): a pixel is anomalous iff ``mask > 0``;
  - ``"gt0.5"`` (DFR code): anomalous iff ``mask > 0.5``.

  Boolean masks are used as they are under both rules.
* Score dtype: float32 stays float32 (float16 is widened to float32); float64 stays float64;
  integer and boolean maps become float64. Ties are ties in that dtype.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

import numpy as np

MaskBinarization = Literal["gt0", "gt0.5"]
MASK_BINARIZATIONS: tuple[str, ...] = get_args(MaskBinarization)

__all__ = [
    "MaskBinarization",
    "UndefinedMetricError",
    "to_numpy",
    "as_image_list",
    "score_dtype",
    "binarize",
    "check_mask_binarization",
    "check_finite_maps",
    "check_pairs",
    "as_scores",
    "as_labels",
    "Interval",
    "Options",
    "validate_params",
]

F = TypeVar("F", bound=Callable)


class UndefinedMetricError(ValueError):
    """The metric is undefined for this input (e.g. no defect pixels, or no normal images)."""


def to_numpy(x: Any) -> np.ndarray:
    """NumPy view of ``x``; torch tensors go through ``.detach().cpu().numpy()``."""
    if type(x).__module__.split(".")[0] == "torch":
        t = x.detach().cpu()
        if t.is_floating_point() and str(t.dtype) not in ("torch.float32", "torch.float64"):
            t = t.float()  # bfloat16 / float16 have no (exact) NumPy counterpart path
        return t.numpy()
    return np.asarray(x)


def as_image_list(x: Any, name: str) -> list[np.ndarray]:
    """Split ``x`` into a list of 2-D arrays (no copies).

    Accepts an array/tensor of shape ``(N, H, W)`` or ``(N, 1, H, W)``, or a sequence of
    ``N`` arrays/tensors of shape ``(H_i, W_i)`` or ``(1, H_i, W_i)``.
    """
    if isinstance(x, (list, tuple)):
        items = [to_numpy(v) for v in x]
        out = []
        for i, v in enumerate(items):
            if v.ndim == 3 and v.shape[0] == 1:
                v = v[0]
            if v.ndim != 2:
                raise ValueError(f"{name}[{i}] must be 2-D (H, W); got shape {v.shape}")
            out.append(v)
        if not out:
            raise ValueError(f"{name} is empty")
        return out
    a = to_numpy(x)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3:
        raise ValueError(
            f"{name} must have shape (N, H, W) (or (N, 1, H, W), or be a list of 2-D arrays); got shape {a.shape}"
        )
    if a.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    return list(a)


def score_dtype(arrays: Sequence[np.ndarray]) -> np.dtype:
    """Working dtype for scores: float32 if every array is float16/float32, else float64."""
    for a in arrays:
        if a.dtype.kind == "c":
            raise ValueError(f"complex scores are not supported (dtype {a.dtype})")
        if a.dtype.kind not in "biuf":
            raise ValueError(f"scores must be numeric; got dtype {a.dtype}")
    if all(a.dtype in (np.float16, np.float32) for a in arrays):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def check_mask_binarization(mask_binarization: str) -> None:
    if mask_binarization not in MASK_BINARIZATIONS:
        raise ValueError(f"mask_binarization must be one of {MASK_BINARIZATIONS}; got {mask_binarization!r}")


def binarize(mask: np.ndarray, mask_binarization: MaskBinarization) -> np.ndarray:
    """Boolean mask: ``mask > 0`` (``"gt0"``) or ``mask > 0.5`` (``"gt0.5"``); bool is kept."""
    if mask.dtype == np.bool_:
        return mask
    if mask.dtype.kind not in "biuf":
        raise ValueError(f"masks must be numeric or boolean; got dtype {mask.dtype}")
    return mask > (0 if mask_binarization == "gt0" else 0.5)


def check_finite_maps(maps: Sequence[np.ndarray], name: str = "maps") -> None:
    """Raise ``ValueError`` naming the count and the first position of NaN/inf scores."""
    bad = [i for i, m in enumerate(maps) if m.dtype.kind == "f" and not np.isfinite(m).all()]
    if not bad:
        return
    count = sum(int(np.count_nonzero(~np.isfinite(maps[i]))) for i in bad)
    first = bad[0]
    pos = tuple(int(p) for p in np.argwhere(~np.isfinite(maps[first]))[0])
    raise ValueError(
        f"{name} contain {count} non-finite value(s) (NaN or inf) in {len(bad)} image(s); "
        f"first at {name}[{first}][{', '.join(map(str, pos))}] = {maps[first][pos]}"
    )


def check_pairs(
    maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], resize_maps: bool
) -> None:
    """Same number of maps and masks; same (H, W) per image unless ``resize_maps``."""
    if len(maps) != len(masks):
        raise ValueError(f"got {len(maps)} maps but {len(masks)} masks")
    if resize_maps:
        return
    for i, (m, k) in enumerate(zip(maps, masks)):
        if m.shape != k.shape:
            raise ValueError(
                f"maps[{i}] has shape {m.shape} but masks[{i}] has shape {k.shape}; "
                "pass resize_maps=True to bilinearly resize each map to its mask's size"
            )


def as_scores(scores: Any, name: str = "scores") -> np.ndarray:
    """1-D image scores. Anything with more dims, e.g. maps ``(N, H, W)``, is reduced by max."""
    if isinstance(scores, (list, tuple)) and scores and np.ndim(to_numpy(scores[0])) >= 1:
        s = np.array([to_numpy(v).max() for v in scores])
    else:
        s = to_numpy(scores)
        if s.ndim > 1:
            s = s.reshape(s.shape[0], -1).max(axis=1)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array (or maps (N, H, W)); got shape {s.shape}")
    s = s.astype(score_dtype([s]), copy=False)
    if not np.isfinite(s).all():
        bad = np.flatnonzero(~np.isfinite(s))
        raise ValueError(
            f"{name} contain {bad.size} non-finite value(s) (NaN or inf); first at index {bad[0]} = {s[bad[0]]}"
        )
    return s


def as_labels(labels: Any, n: int, name: str = "labels") -> np.ndarray:
    """Boolean image labels (True = anomalous) of length ``n``; values must be 0/1 or bool."""
    y = to_numpy(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},); got {y.shape}")
    if y.dtype != np.bool_:
        if y.dtype.kind not in "iuf" or not np.isin(y, (0, 1)).all():
            raise ValueError(f"{name} must be binary (0/1 or bool); got values {np.unique(y)[:5]}")
        y = y.astype(bool)
    return y


# ------------------------------------------------------------------ declarative parameter checks
@dataclass(frozen=True)
class Interval:
    """A number of ``kind`` (``numbers.Integral`` or ``numbers.Real``) in ``[low, high]``.

    ``closed`` says which ends belong to the interval (``"both"``, ``"left"``, ``"right"``,
    ``"neither"``); ``None`` ends are unbounded. Booleans are never numbers here.
    """

    kind: type
    low: float | None
    high: float | None
    closed: str = "both"

    def check(self, name: str, value: Any) -> None:
        ok = isinstance(value, self.kind) and not isinstance(value, (bool, np.bool_))
        if ok and self.low is not None:
            ok = value >= self.low if self.closed in ("both", "left") else value > self.low
        if ok and self.high is not None:
            ok = value <= self.high if self.closed in ("both", "right") else value < self.high
        if not ok:
            lo = "-inf" if self.low is None else self.low
            hi = "inf" if self.high is None else self.high
            left = "[" if self.closed in ("both", "left") and self.low is not None else "("
            right = "]" if self.closed in ("both", "right") and self.high is not None else ")"
            what = "an integer" if self.kind is numbers.Integral else "a number"
            raise ValueError(f"{name} must be {what} in {left}{lo}, {hi}{right}; got {value!r}")


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values."""

    values: tuple

    def check(self, name: str, value: Any) -> None:
        if value not in self.values:
            raise ValueError(f"{name} must be one of {self.values}; got {value!r}")


def validate_params(constraints: Mapping[str, Interval | Options]) -> Callable[[F], F]:
    """Check the named arguments of every call against ``constraints`` before the body runs.

    The declarative pattern of ``sklearn.utils._param_validation.validate_params``: the allowed
    values sit beside the signature, and a bad value raises ``ValueError`` naming the parameter,
    the allowed range and the value.
    """

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn)
        unknown = set(constraints) - set(sig.parameters)
        if unknown:
            raise TypeError(f"{fn.__name__}: constraints for unknown parameters {sorted(unknown)}")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            for name, rule in constraints.items():
                rule.check(name, bound.arguments[name])
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
