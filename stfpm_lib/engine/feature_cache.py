"""Cache of the frozen teacher's feature pyramids across epochs, within a memory budget.

Why it is exact: the teacher is frozen and always in eval mode (BatchNorm uses its running
statistics) and STFPM trains without augmentation, so the teacher's features of an image
are the same every epoch. They are computed in the first epoch, in the batches that epoch
draws (so the first epoch is bit-identical to a run without the cache), and read back
afterwards. The stored tensors are the teacher's raw outputs in the dtype the forward pass
produced (float32, or bfloat16/float16 under autocast) and in its memory format, so the
loss and maps are computed by the same code from the same numbers.

One caveat, measured on CPU (oneDNN): a convolution over a batch of **one** image can
round differently (~1e-5 relative) from the same image inside a larger batch. When the
number of training images leaves a last batch of one, the cached features of that image
can therefore differ by rounding from what a run without the cache would recompute in a
later epoch; with any other batch sizes the runs are bit-identical (see the tests).

Budget: ``budget_mb`` (MiB, 2**20 bytes) bounds the stored tensors. When the whole set
does not fit, the first ``capacity`` images (dataset order) are cached and the rest are
recomputed every epoch, only those, in a sub-batch; a warning is logged.

Memory per image (resnet18, layers 1–3, 256² input): 64·64² + 128·32² + 256·16² =
458,752 values = 1.75 MiB in float32, 0.875 MiB in bfloat16 (see :func:`bytes_per_image`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch

from ..method.model import feature_shapes

__all__ = ["TeacherFeatureCache", "bytes_per_image", "MIB"]

MIB = 2**20
log = logging.getLogger(__name__)


def bytes_per_image(backbone: str, layers: Sequence[str], input_size: int, dtype: torch.dtype = torch.float32) -> int:
    """Bytes the teacher pyramid of one image takes.

    Parameters
    ----------
    backbone : str
    layers : sequence of str
    input_size : int
        Side of the square input, pixels.
    dtype : torch.dtype, default=torch.float32

    Returns
    -------
    int
    """
    itemsize = torch.empty((), dtype=dtype).element_size()
    return sum(c * h * w for c, h, w in feature_shapes(backbone, layers, input_size)) * itemsize


class TeacherFeatureCache:
    """Teacher features of ``n_items`` dataset items, keyed by item index.

    Use :meth:`features` in place of the teacher's forward pass. Storage is allocated at the first
    call, from the shapes, dtype, memory format and device of the computed features; ``capacity`` is
    known from then on.

    Parameters
    ----------
    n_items : int
        Size of the dataset whose items are cached (indices ``0..n_items-1``).
    budget_mb : float
        Memory budget for the stored tensors, MiB (on the features' device).
    name : str, default="train"
        Label used in log messages.
    """

    def __init__(self, n_items: int, budget_mb: float, *, name: str = "train") -> None:
        if int(n_items) < 0:
            raise ValueError(f"n_items={n_items!r} must be >= 0")
        if not budget_mb >= 0:
            raise ValueError(f"cache_memory_mb={budget_mb!r} must be >= 0")
        self.n_items = int(n_items)
        self.budget_bytes = int(budget_mb * MIB)
        self.name = name
        self.capacity: int | None = None
        self.item_bytes: int | None = None
        self._store: list[torch.Tensor] = []
        self._filled: torch.Tensor | None = None  # bool (capacity,) on the CPU
        self._formats: list[torch.memory_format] = []
        self.hits = 0
        self.misses = 0

    # ------------------------------------------------------------------ info
    @property
    def nbytes(self) -> int:
        """Bytes allocated for the stored tensors."""
        return sum(t.numel() * t.element_size() for t in self._store)

    @property
    def n_cached(self) -> int:
        """Items stored so far."""
        return 0 if self._filled is None else int(self._filled.sum())

    def describe(self) -> dict[str, int | float | str | None]:
        """JSON-safe summary: name, sizes (bytes per image, MiB), capacity, hit and miss counts (images).

        Returns
        -------
        dict of str to int, float, str or None
        """
        return {"name": self.name, "n_items": self.n_items, "capacity": self.capacity,
                "bytes_per_image": self.item_bytes, "allocated_mb": self.nbytes / MIB,
                "budget_mb": self.budget_bytes / MIB, "hits": self.hits, "misses": self.misses}

    # ------------------------------------------------------------------ storage
    def _allocate(self, feats: Sequence[torch.Tensor]) -> None:
        self.item_bytes = sum(f[0].numel() * f.element_size() for f in feats)
        self.capacity = min(self.n_items, self.budget_bytes // max(self.item_bytes, 1))
        self._formats = [torch.channels_last if f.dim() == 4 and not f.is_contiguous()
                         and f.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
                         for f in feats]
        self._store = [torch.empty((self.capacity, *f.shape[1:]), dtype=f.dtype, device=f.device,
                                   memory_format=fmt) for f, fmt in zip(feats, self._formats)]
        self._filled = torch.zeros(self.capacity, dtype=torch.bool)
        mb, total = self.item_bytes / MIB, self.item_bytes * self.n_items / MIB
        if self.capacity < self.n_items:
            log.warning("teacher feature cache (%s): the budget of %.0f MiB holds %d of %d images (%.2f MiB each, "
                        "%.0f MiB for all); the other %d are recomputed every epoch. Raise cache_memory_mb to "
                        "cache them all.", self.name, self.budget_bytes / MIB, self.capacity, self.n_items, mb,
                        total, self.n_items - self.capacity)
        else:
            log.info("teacher feature cache (%s): %d images x %.2f MiB = %.1f MiB (budget %.0f MiB)",
                     self.name, self.n_items, mb, total, self.budget_bytes / MIB)

    # ------------------------------------------------------------------ use
    def features(self, indices: torch.Tensor | Sequence[int], x: torch.Tensor,
                 compute: Callable[[torch.Tensor], list[torch.Tensor]]) -> list[torch.Tensor]:
        """Teacher features of the batch ``x`` whose dataset indices are ``indices``.

        Cached items are read back; the others are computed with ``compute`` (the teacher's forward
        pass, e.g. under autocast) on the whole batch when none is cached, else on the missing rows
        only, and stored when they fit the budget.

        Parameters
        ----------
        indices : torch.Tensor of shape (B,) or sequence of int
            Dataset indices of the rows of ``x``.
        x : torch.Tensor of shape (B, 3, H, W)
        compute : callable
            ``compute(x_rows) -> list of (b, C_l, h_l, w_l)``.

        Returns
        -------
        list of torch.Tensor of shape (B, C_l, h_l, w_l)
            One per layer, rows in the order of ``x``.
        """
        idx = torch.as_tensor(indices, dtype=torch.long).cpu()
        if idx.ndim != 1 or idx.numel() != x.shape[0]:
            raise ValueError(f"need one index per image: {tuple(idx.shape)} indices for a batch of {x.shape[0]}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.n_items):
            raise ValueError(f"indices must lie in [0, {self.n_items}), got {idx.tolist()}")
        if self._filled is None:
            feats = compute(x)
            self._allocate(feats)
            self._put(idx, torch.arange(len(idx)), feats)
            self.misses += len(idx)
            return feats
        cap = self.capacity
        if cap:
            hit = (idx < cap) & self._filled[idx.clamp(max=cap - 1)]
        else:
            hit = torch.zeros_like(idx, dtype=torch.bool)
        n_hit = int(hit.sum())
        self.hits += n_hit
        self.misses += len(idx) - n_hit
        if n_hit == 0:
            feats = compute(x)
            self._put(idx, torch.arange(len(idx)), feats)
            return feats
        if n_hit == len(idx):
            return self._get(idx)
        rows_hit, rows_miss = hit.nonzero().flatten(), (~hit).nonzero().flatten()
        computed = compute(x[rows_miss.to(x.device)])
        self._put(idx[rows_miss], torch.arange(len(rows_miss)), computed)
        cached = self._get(idx[rows_hit])
        out = []
        for c, m, fmt in zip(cached, computed, self._formats):
            full = torch.empty((len(idx), *c.shape[1:]), dtype=c.dtype, device=c.device, memory_format=fmt)
            full[rows_hit.to(c.device)] = c
            full[rows_miss.to(c.device)] = m.to(c.dtype)
            out.append(full)
        return out

    def _get(self, idx: torch.Tensor) -> list[torch.Tensor]:
        slots = idx.to(self._store[0].device)
        return [s[slots].contiguous(memory_format=fmt) for s, fmt in zip(self._store, self._formats)]

    def _put(self, idx: torch.Tensor, rows: torch.Tensor, feats: Sequence[torch.Tensor]) -> None:
        keep = idx < self.capacity
        if not bool(keep.any()):
            return
        slots, rows = idx[keep], rows[keep]
        for store, f in zip(self._store, feats):
            if tuple(f.shape[1:]) != tuple(store.shape[1:]) or f.dtype != store.dtype:
                raise ValueError(f"teacher features changed shape/dtype: {tuple(f.shape[1:])} {f.dtype} vs the "
                                 f"cached {tuple(store.shape[1:])} {store.dtype}")
            store[slots.to(store.device)] = f[rows.to(f.device)].detach()
        self._filled[slots] = True
