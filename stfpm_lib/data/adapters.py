"""Dataset adapters: one interface over MVTec AD, VisA, folders of images and PIPED.

Every adapter is selected by name through :func:`get_adapter` and offers

* ``categories() -> list[str]``: the categories (classes) it finds;
* ``index(category) -> AdapterIndex``: the files of one category, with the rule that
  reads its masks correctly (:class:`MaskEncoding`: which value means *defect*);
* ``params() -> dict``: its JSON-safe parameters (recorded in a converted dataset's manifest).

The runner and the notebooks read only the MVTec AD layout; :func:`stfpm_lib.data.convert.convert_to_mvtec`
writes any adapter's dataset into it (the MVTec adapter can also be used in place).

Names: ``mvtec`` (:class:`MVTecAdapter`), ``visa`` (:class:`~stfpm_lib.data.visa.VisAAdapter`),
``folder`` (:class:`~stfpm_lib.data.folder.FolderAdapter`) and ``piped``
(:func:`~stfpm_lib.data.folder.piped_adapter`, the folder adapter with PIPED's parameter set).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .imageio import read_mask_values
from .mvtec import DataError, Sample, index_category, list_categories, resolve_data_root

__all__ = [
    "MaskEncoding", "AdapterIndex", "DatasetAdapter", "MVTecAdapter", "ADAPTER_NAMES", "get_adapter",
    "read_mask_values", "binarize_mask",
]

ADAPTER_NAMES = ("mvtec", "visa", "folder", "piped")


@dataclass(frozen=True)
class MaskEncoding:
    """How a dataset's mask files encode defects.

    A mask file is read as integer values 0–255 by :func:`read_mask_values` (1-bit images
    give 0/255, palette images their palette indices). Then a pixel is a defect when

    * ``polarity="high"``: ``value > threshold`` (MVTec AD: 0/255 masks, 255 = defect;
      VisA: 0/1 or 0/255 masks, so ``threshold=0``);
    * ``polarity="low"``: ``value <= threshold`` (PIPED: 1-bit masks with 0 = defect).

    For a given threshold the two polarities are exact complements.

    Parameters
    ----------
    polarity : {"high", "low"}
        ``"high"``: bright = defect; ``"low"``: dark = defect.
    threshold : int
        Mask value in [0, 254] the rule compares against.
    """

    polarity: Literal["high", "low"] = "high"
    threshold: int = 0

    def __post_init__(self) -> None:
        if self.polarity not in ("high", "low"):
            raise ValueError(f"mask polarity={self.polarity!r} must be 'high' (bright = defect) or 'low' (dark = defect)")
        if not isinstance(self.threshold, (int, np.integer)) or not 0 <= int(self.threshold) <= 254:
            raise ValueError(f"mask threshold={self.threshold!r} must be an integer in [0, 254]")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"polarity": self.polarity, "threshold": int(self.threshold)}

    def describe(self) -> str:
        """The rule in words, e.g. ``defect where value > 0``."""
        op = ">" if self.polarity == "high" else "<="
        return f"defect where value {op} {self.threshold}"


MVTEC_MASK_ENCODING = MaskEncoding("high", 0)


def binarize_mask(values: np.ndarray, rule: MaskEncoding) -> np.ndarray:
    """Boolean defect mask (H, W) of mask values (H, W) under ``rule``.

    Parameters
    ----------
    values : np.ndarray
        Integer mask values 0–255, shape (H, W).
    rule : MaskEncoding
        How the dataset encodes defects.

    Returns
    -------
    np.ndarray
        Boolean defect mask, shape (H, W).
    """
    if rule.polarity == "high":
        return values > rule.threshold
    return values <= rule.threshold


@dataclass(frozen=True)
class AdapterIndex:
    """The files of one category as an adapter found them.

    Attributes
    ----------
    adapter : str
        Adapter name (``mvtec``, ``visa``, ``folder``, ``piped``).
    root : Path
        The dataset root the adapter read.
    category : str
        Category name.
    train : tuple of Path
        Normal images of the official training split (sorted; empty without one).
    test : tuple of Sample
        Official test samples: normals (``defect_type="good"``) first, then defects
        sorted by path; and, for datasets without an official split, the defects only.
    pool : tuple of Path
        Normal images with no official split (folder datasets); a converter splits
        them into train and test (sorted; empty when the dataset has an official split).
    mask_encoding : MaskEncoding
        How to read this dataset's masks.
    notes : tuple of str
        Things found while indexing that a manifest should record (e.g. which of
        several candidate folders was used).
    """

    adapter: str
    root: Path
    category: str
    train: tuple[Path, ...]
    test: tuple[Sample, ...]
    pool: tuple[Path, ...] = ()
    mask_encoding: MaskEncoding = MVTEC_MASK_ENCODING
    notes: tuple[str, ...] = field(default=())

    @property
    def defects(self) -> tuple[Sample, ...]:
        """The anomalous test samples."""
        return tuple(s for s in self.test if s.label == 1)

    @property
    def test_good(self) -> tuple[Path, ...]:
        """Normal images of the official test split."""
        return tuple(s.image_path for s in self.test if s.label == 0)

    @property
    def defect_types(self) -> tuple[str, ...]:
        """Sorted defect types."""
        return tuple(sorted({s.defect_type for s in self.defects}))

    @property
    def has_official_split(self) -> bool:
        """True when the normals come split into train and test (MVTec AD, VisA)."""
        return not self.pool

    def counts(self) -> dict[str, int]:
        """``{"train_good": n, "test_good": n, "pool_good": n (unsplit only), "test_<type>": n, ...}``."""
        counts = {"train_good": len(self.train), "test_good": len(self.test_good)}
        if self.pool:
            counts["pool_good"] = len(self.pool)
        for sample in self.defects:
            key = f"test_{sample.defect_type}"
            counts[key] = counts.get(key, 0) + 1
        return counts


class DatasetAdapter:
    """Base class: subclasses set ``name`` and implement :meth:`categories`, :meth:`index`, :meth:`params`.

    Attributes
    ----------
    name : str
        Adapter name (a key of :data:`ADAPTER_NAMES`).
    root : Path
        The dataset root.
    """

    name: str = ""
    root: Path

    def categories(self) -> list[str]:  # pragma: no cover - interface
        raise NotImplementedError

    def index(self, category: str) -> AdapterIndex:  # pragma: no cover - interface
        """The files of ``category`` (interface; subclasses implement it).

        Parameters
        ----------
        category : str
            Category name, one of :meth:`categories`.

        Returns
        -------
        AdapterIndex
            The category's train, test and pool files.
        """
        raise NotImplementedError

    def params(self) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """``{"adapter": name, "root": last two parts of the root, "params": params()}`` (no absolute paths)."""
        return {"adapter": self.name, "root": "/".join(self.root.parts[-2:]), "params": self.params()}

    def _check_category(self, category: str) -> None:
        found = self.categories()
        if category not in found:
            raise DataError(f"{self.name} dataset at {self.root}: category {category!r} not found; "
                            f"categories found: {found or 'none'}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, params={self.params()!r})"


class MVTecAdapter(DatasetAdapter):
    """MVTec AD (or any dataset already in its layout), indexed in place by :func:`index_category`.

    Masks are 0/255 PNGs with 255 = defect (rule: ``value > 0``).

    Parameters
    ----------
    root : str or os.PathLike, optional
        Dataset root; ``None`` resolves it with :func:`resolve_data_root`.
    """

    name = "mvtec"

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = resolve_data_root(root)

    def categories(self) -> list[str]:
        return list_categories(self.root)

    def index(self, category: str) -> AdapterIndex:
        """The files of ``category`` as :func:`index_category` finds them (no pool).

        Parameters
        ----------
        category : str
            Category name.

        Returns
        -------
        AdapterIndex
            Official train and test files with the MVTec mask encoding.
        """
        idx = index_category(self.root, category)
        return AdapterIndex(adapter=self.name, root=self.root, category=category, train=idx.train,
                            test=idx.test, pool=(), mask_encoding=MVTEC_MASK_ENCODING)

    def params(self) -> dict[str, Any]:
        return {}


def _factories() -> dict[str, Callable[..., DatasetAdapter]]:
    from .folder import FolderAdapter, piped_adapter  # here, not at the top: both modules import this one
    from .visa import VisAAdapter

    return {"mvtec": MVTecAdapter, "visa": VisAAdapter, "folder": FolderAdapter, "piped": piped_adapter}


def get_adapter(name: str, **params: Any) -> DatasetAdapter:
    """The adapter called ``name`` (one of :data:`ADAPTER_NAMES`) built with ``params``.

    Examples::

        get_adapter("mvtec", root="/data/mvtec_ad")
        get_adapter("visa", root="/data/VisA_20220922")              # uses split_csv/1cls.csv
        get_adapter("folder", root="my_data", normal_dir="ok", defect_dirs={"crack": "nok"},
                    mask_dir="masks", mask_template="{stem}.png")
        get_adapter("piped")                                          # finds ../shared/data/PIPED or $PIPED_ROOT

    Parameters
    ----------
    name : str
        Adapter name (case-insensitive), one of :data:`ADAPTER_NAMES`.
    **params : Any
        Keyword arguments of that adapter's constructor.

    Returns
    -------
    DatasetAdapter
        The built adapter.

    Raises
    ------
    ValueError
        For an unknown name or parameters the adapter does not take.
    """
    factories = _factories()
    key = str(name).lower()
    if key not in factories:
        raise ValueError(f"unknown dataset adapter {name!r}; choose one of {list(ADAPTER_NAMES)}")
    factory = factories[key]
    try:
        inspect.signature(factory).bind(**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for dataset adapter {name!r}: {exc}; "
                         f"signature: {key}{inspect.signature(factory)}") from exc
    return factory(**params)
