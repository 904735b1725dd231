"""VisA (Zou et al. 2022) through its official one-class split ``split_csv/1cls.csv``.

The CSV has the columns ``object,split,label,image,mask``: ``split`` is ``train``/``test``,
``label`` is ``normal``/``anomaly``, ``image`` and ``mask`` are paths relative to the VisA
root (``mask`` empty for normal images). Images are JPEGs; masks are PNGs whose defect
pixels are non-zero (0/1 in some releases, 0/255 in others), hence the rule ``value > 0``.
VisA has no defect-type labels, so every anomaly gets the type ``defect_type`` (``anomaly``).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from .adapters import AdapterIndex, DatasetAdapter, MaskEncoding
from .mvtec import DataError, Sample

__all__ = ["VisAAdapter", "VISA_COLUMNS"]

VISA_COLUMNS = ("object", "split", "label", "image", "mask")


class VisAAdapter(DatasetAdapter):
    """VisA by its split CSV.

    Parameters
    ----------
    root : str or os.PathLike, optional
        The VisA root (holds ``split_csv/`` and one folder per object), else ``$VISA_ROOT``.
    split_csv : str or os.PathLike
        The split file, relative to ``root`` or absolute.
    defect_type : str
        The defect-type name given to every anomalous image.
    mask_polarity, mask_threshold : str, int
        :class:`MaskEncoding` of the masks (default: value > 0).
    """

    name = "visa"

    def __init__(self, root: str | os.PathLike | None = None, *, split_csv: str | os.PathLike = "split_csv/1cls.csv",
                 defect_type: str = "anomaly", mask_polarity: str = "high", mask_threshold: int = 0) -> None:
        if root in (None, ""):
            root = os.environ.get("VISA_ROOT") or None
            if root is None:
                raise DataError("no VisA root given: pass root= / --root or set VISA_ROOT")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"VisA root {self.root} does not exist or is not a directory")
        csv_path = Path(split_csv)
        self.split_csv = csv_path if csv_path.is_absolute() else self.root / csv_path
        self._split_csv_arg = str(split_csv)
        if not self.split_csv.is_file():
            raise DataError(f"VisA split file {self.split_csv} not found (expected split_csv/1cls.csv under the root)")
        if not defect_type or defect_type == "good" or "/" in defect_type:
            raise ValueError(f"defect_type={defect_type!r} must be a plain name other than 'good'")
        self.defect_type = defect_type
        self.mask_encoding = MaskEncoding(mask_polarity, int(mask_threshold))  # type: ignore[arg-type]
        self._rows: list[tuple[int, dict[str, str]]] | None = None

    def rows(self) -> list[tuple[int, dict[str, str]]]:
        """(line number, row) of every data row of the split CSV, validated field by field."""
        if self._rows is not None:
            return self._rows
        with open(self.split_csv, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = tuple(h.strip() for h in (reader.fieldnames or ()))
            missing = [c for c in VISA_COLUMNS if c not in header]
            if missing:
                raise DataError(f"{self.split_csv}: missing columns {missing}; header is {list(header)}, "
                                f"expected {list(VISA_COLUMNS)}")
            rows = []
            for row in reader:
                line = reader.line_num
                row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
                if not any(row.values()):
                    continue
                where = f"{self.split_csv}:{line}"
                if row["split"] not in ("train", "test"):
                    raise DataError(f"{where}: split {row['split']!r} is not 'train' or 'test'")
                if row["label"] not in ("normal", "anomaly"):
                    raise DataError(f"{where}: label {row['label']!r} is not 'normal' or 'anomaly'")
                if not row["object"] or not row["image"]:
                    raise DataError(f"{where}: empty object or image field")
                if row["label"] == "anomaly" and row["split"] == "train":
                    raise DataError(f"{where}: anomalous image {row['image']} in the train split")
                if row["label"] == "anomaly" and not row["mask"]:
                    raise DataError(f"{where}: anomalous image {row['image']} has no mask")
                if row["label"] == "normal" and row["mask"]:
                    raise DataError(f"{where}: normal image {row['image']} has a mask {row['mask']}")
                rows.append((line, row))
        if not rows:
            raise DataError(f"{self.split_csv}: no data rows")
        self._rows = rows
        return rows

    def categories(self) -> list[str]:
        """Sorted object names of the split CSV."""
        return sorted({row["object"] for _, row in self.rows()})

    def _file(self, rel: str, line: int, what: str) -> Path:
        path = self.root / rel
        if not path.is_file():
            raise DataError(f"{self.split_csv}:{line} names a missing {what} file: {path}")
        return path

    def index(self, category: str) -> AdapterIndex:
        """Train normals, test normals then anomalies (sorted by path) with masks; every file must exist.

        Parameters
        ----------
        category : str
            VisA object name.

        Returns
        -------
        AdapterIndex
            The category's files by the split CSV.
        """
        self._check_category(category)
        train, good, defects = [], [], []
        for line, row in self.rows():
            if row["object"] != category:
                continue
            image = self._file(row["image"], line, "image")
            if row["split"] == "train":
                train.append(image)
            elif row["label"] == "normal":
                good.append(Sample(image, 0, "good", None))
            else:
                defects.append(Sample(image, 1, self.defect_type, self._file(row["mask"], line, "mask")))
        if not train:
            raise DataError(f"{self.split_csv}: object {category!r} has no training images")
        seen: dict[Path, int] = {}
        for path in train + [s.image_path for s in good + defects]:
            seen[path] = seen.get(path, 0) + 1
        twice = [p for p, n in seen.items() if n > 1]
        if twice:
            raise DataError(f"{self.split_csv}: image {twice[0]} is listed more than once for {category!r}")
        good.sort(key=lambda s: str(s.image_path))
        defects.sort(key=lambda s: str(s.image_path))
        return AdapterIndex(adapter=self.name, root=self.root, category=category, train=tuple(sorted(train)),
                            test=tuple(good + defects), pool=(), mask_encoding=self.mask_encoding,
                            notes=(f"split from {self._split_csv_arg}",))

    def params(self) -> dict[str, Any]:
        """JSON-safe parameters."""
        return {"split_csv": self._split_csv_arg, "defect_type": self.defect_type,
                "mask_polarity": self.mask_encoding.polarity, "mask_threshold": self.mask_encoding.threshold}
