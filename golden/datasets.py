"""Data sets the golden model is evaluated on: scikit-learn's digits with the project's fixed split.

The split is made once by ``models/make_digits_models.py`` and committed as ``models/digits_split.json``
(index lists into ``sklearn.datasets.load_digits()``), so every user (tests, the CLI, RTL benches) evaluates the
very same held-out images without depending on a random generator's version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

__all__ = ["MODELS_DIR", "DIGITS_SPLIT", "DigitsSplit", "digits_images", "make_digits_split", "load_digits_split",
           "DATASETS", "load_dataset"]

#: The committed model fixtures: the folder of the package ``cimforge.models`` (``models/`` of the source tree
#: in an editable install, ``site-packages/cimforge/models`` in a wheel install; see pyproject's package-dir).
#: The one name for that folder: code that reads a model or the split joins paths onto it.
MODELS_DIR = Path(str(files("cimforge.models")))
#: The committed split of the digits data set.
DIGITS_SPLIT = MODELS_DIR / "digits_split.json"


@dataclass(frozen=True)
class DigitsSplit:
    """Images ``(n, 1, 8, 8)`` float32 in ``[0, 1]`` (pixel / 16) and labels ``(n,)`` int64, per split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_cal: np.ndarray
    y_cal: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as ``(1797, 1, 8, 8)`` float32 in ``[0, 1]`` and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images.astype(np.float32) / 16.0)[:, None], d.target.astype(np.int64)


def make_digits_split(seed: int = 0, n_test: int = 450, n_cal: int = 150) -> dict:
    """A stratified split into train / calibration / test index lists (the one committed was made with the
    defaults). Stratified so each class keeps its share; test first, then calibration from the rest."""
    from sklearn.model_selection import train_test_split

    _, y = digits_images()
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=n_test, random_state=seed, stratify=y)
    train, cal = train_test_split(rest, test_size=n_cal, random_state=seed, stratify=y[rest])
    return {"seed": seed, "train": sorted(map(int, train)), "calibration": sorted(map(int, cal)),
            "test": sorted(map(int, test))}


def load_digits_split(path: Path = DIGITS_SPLIT) -> DigitsSplit:
    """The committed split as arrays."""
    split = json.loads(Path(path).read_text())
    x, y = digits_images()
    parts = [np.asarray(split[k], dtype=np.int64) for k in ("train", "calibration", "test")]
    return DigitsSplit(x[parts[0]], y[parts[0]], x[parts[1]], y[parts[1]], x[parts[2]], y[parts[2]])


#: name -> loader returning the held-out ``(images, labels)``
DATASETS = {"digits": lambda: (lambda s: (s.x_test, s.y_test))(load_digits_split())}


def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Held-out images and labels of a named data set (ValueError naming the allowed ones)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: allowed {sorted(DATASETS)}")
    return DATASETS[name]()
