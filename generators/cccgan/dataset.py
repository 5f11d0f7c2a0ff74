"""Loading the committed Mg-Mn-O image data set (data/cccgan) and its SHA-256."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from alcore.paths import data_file
from generators.cccgan.representation import image_counts

IMAGES_FILE = ("cccgan", "mgmno_unique_sc.npy")
NAMES_FILE = ("cccgan", "mgmno_unique_sc_names.txt")


@dataclass(frozen=True)
class MgMnODataset:
    """The committed data: ``images`` (N, 30, 3) float64, ``names`` (N,), ``counts`` (N, 3) int."""

    images: np.ndarray
    names: list[str]
    counts: np.ndarray
    sha256: str

    def compositions(self) -> list[tuple[int, int, int]]:
        """Distinct cell compositions ``(n_Mg, n_Mn, n_O)``, sorted."""
        return sorted({tuple(int(x) for x in c) for c in self.counts})


def load_dataset() -> MgMnODataset:
    """Read data/cccgan/mgmno_unique_sc.npy (2,627 images) and the row names; returns the data set."""
    path = data_file(*IMAGES_FILE)
    blob = path.read_bytes()
    images = np.load(path, allow_pickle=False)
    names = data_file(*NAMES_FILE).read_text().split()
    if len(names) != len(images):
        raise ValueError(f"{len(images)} images but {len(names)} names in data/cccgan; re-checkout the data")
    return MgMnODataset(
        images=images, names=names, counts=image_counts(images), sha256=hashlib.sha256(blob).hexdigest()
    )
