"""Data augmentation of Mg-Mn-O images (Kim et al. 2020): 2 x 2 supercells, random translations and
axis swaps, towards a target number of images per cell composition.

All operations map a crystal onto the same periodic crystal (or a supercell of it): translations
shift every fractional coordinate by one random vector; an axis swap relabels two lattice vectors
(lengths, the matching angles and coordinate columns permuted together; a mirror image, which
StructureMatcher treats as the same structure).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from generators.cccgan.representation import (
    MAX_COUNTS,
    image_counts,
    image_to_structure,
    occupancy,
    scale_frac,
    structure_to_image,
    unscale_frac,
)

#: The three 2 x 2 supercells: doubling along (a, b), (b, c) and (a, c).
PAIR_SUPERCELLS: tuple[tuple[int, int, int], ...] = ((2, 2, 1), (1, 2, 2), (2, 1, 2))


def translate(image: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Shift every atom of one ``(30, 3)`` image by the fractional vector ``shift`` (3,); returns a new image."""
    out = np.array(image, dtype=float, copy=True)
    occ = occupancy(out)
    rows = np.nonzero(occ)[0] + 2
    out[rows] = scale_frac(np.mod(unscale_frac(out[rows]) + np.asarray(shift), 1.0))
    return out


def permute_axes(image: np.ndarray, perm: Sequence[int]) -> np.ndarray:
    """Relabel the lattice axes of one image by ``perm`` (a permutation of 0, 1, 2); returns a new image.

    Lengths, angles (alpha is opposite a, etc.) and coordinate columns move together, so the
    crystal is unchanged up to a mirror.
    """
    perm = list(perm)
    if sorted(perm) != [0, 1, 2]:
        raise ValueError(f"perm must be a permutation of 0, 1, 2, got {perm}")
    out = np.array(image, dtype=float, copy=True)
    occ = occupancy(out)
    out[0] = out[0, perm]
    out[1] = out[1, perm]
    rows = np.nonzero(occ)[0] + 2
    out[rows] = out[rows][:, perm]
    return out


def supercells(image: np.ndarray, scalings: Sequence[tuple[int, int, int]] = PAIR_SUPERCELLS) -> list[np.ndarray]:
    """The supercells of one image that still fit 8 Mg / 8 Mn / 12 O atoms; returns a list of images."""
    counts = image_counts(image)
    structure = None
    out = []
    for scale in scalings:
        factor = int(np.prod(scale))
        if any(c * factor > m for c, m in zip(counts, MAX_COUNTS, strict=True)):
            continue
        structure = structure if structure is not None else image_to_structure(image)
        sc = structure.copy()
        sc.make_supercell(scale)
        out.append(structure_to_image(sc))
    return out


def random_variant(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random translation (uniform in the cell) followed by a random axis permutation."""
    shifted = translate(image, rng.random(3))
    return permute_axes(shifted, rng.permutation(3))


def augment(
    images: np.ndarray, per_composition: int = 1000, seed: int = 0, with_supercells: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Augment images ``(N, 30, 3)`` towards ``per_composition`` images per cell composition.

    Keeps every input image, adds the fitting 2 x 2 supercells (when ``with_supercells``), then fills
    each composition with random translations + axis swaps of its members. Compositions that already
    have more images are left as they are. Returns ``(images (M, 30, 3) float32, counts (M, 3) int)``.
    Deterministic for a given ``seed``.
    """
    rng = np.random.default_rng(seed)
    base = [np.asarray(im, dtype=float) for im in images]
    if with_supercells:
        extra = []
        for im in base:
            extra.extend(supercells(im))
        base += extra
    groups: dict[tuple[int, ...], list[np.ndarray]] = defaultdict(list)
    for im in base:
        groups[tuple(int(x) for x in image_counts(im))].append(im)
    out: list[np.ndarray] = []
    for comp in sorted(groups):
        members = groups[comp]
        out.extend(members)
        for k in range(per_composition - len(members)):
            out.append(random_variant(members[k % len(members)], rng))
    arr = np.stack(out).astype(np.float32)
    return arr, image_counts(arr)
