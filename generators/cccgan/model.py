"""Networks of the composition-conditioned crystal GAN (Kim et al. 2020) in PyTorch.

Images are tensors ``(B, 1, 30, 3)``: rows 0-1 the scaled cell, rows 2-29 the scaled coordinates of
8 Mg, 8 Mn, 12 O (see :mod:`generators.cccgan.representation`). A composition is conditioned as a
one-hot of each element count (8 + 8 + 12 = 28 values) plus the total atom count / 28.

* :class:`Generator`: noise + condition -> FC -> 3 transposed conv + BatchNorm (ReLU) -> transposed
  conv -> sigmoid coordinates (28 x 3); the pre-sigmoid coordinate map is flattened -> FC/BN/ReLU ->
  FC -> sigmoid for the 6 cell values.
* :class:`Critic`: 3 convolutions (Leaky ReLU) shared over rows, the cell rows kept and each element
  block average-pooled, then 3 FC layers to one Wasserstein score (no BatchNorm: WGAN-GP).
* :class:`Classifier`: per element block 4 convolutions with BatchNorm (Leaky ReLU); heads for the
  occupancy of every row (atom or padding, 2 logits per row: the reference code's per-row
  "real/fake" softmax) and for the composition (logits over 1..8 Mg, 1..8 Mn, 1..12 O).
"""

from __future__ import annotations

import torch
from torch import nn

from generators.cccgan.representation import ANGLE_SCALE, LENGTH_SCALE, MAX_COUNTS

N_COND = sum(MAX_COUNTS) + 1  # 28 one-hot + total atoms / 28


def condition_vector(counts: torch.Tensor) -> torch.Tensor:
    """Condition ``(B, 29)`` float from integer counts ``(B, 3)`` (each >= 1): three one-hots + n/28."""
    counts = counts.long()
    parts = [nn.functional.one_hot(counts[:, i] - 1, m).float() for i, m in enumerate(MAX_COUNTS)]
    total = counts.sum(1, keepdim=True).float() / float(sum(MAX_COUNTS))
    return torch.cat(parts + [total], 1)


class Generator(nn.Module):
    """Noise ``(B, latent_dim)`` + condition ``(B, 29)`` -> image ``(B, 1, 30, 3)`` in [0, 1]."""

    def __init__(self, latent_dim: int = 64, channels: int = 64) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.channels = channels
        c = channels
        self.fc = nn.Sequential(nn.Linear(latent_dim + N_COND, c * 28), nn.ReLU(True))
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(c, 2 * c, (1, 3)),
            nn.BatchNorm2d(2 * c),
            nn.ReLU(True),  # (28, 3)
            nn.ConvTranspose2d(2 * c, 2 * c, (1, 1)),
            nn.BatchNorm2d(2 * c),
            nn.ReLU(True),
            nn.ConvTranspose2d(2 * c, c, (1, 1)),
            nn.BatchNorm2d(c),
            nn.ReLU(True),
            nn.ConvTranspose2d(c, 1, (1, 1)),
        )
        self.cell = nn.Sequential(nn.Linear(84, 32), nn.BatchNorm1d(32), nn.ReLU(True), nn.Linear(32, 6), nn.Sigmoid())

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Generate images ``(B, 1, 30, 3)`` from noise and condition."""
        h = self.fc(torch.cat([z, cond], 1)).view(-1, self.channels, 28, 1)
        logits = self.deconv(h)  # (B, 1, 28, 3)
        coords = torch.sigmoid(logits)
        cell = self.cell(logits.flatten(1)).view(-1, 1, 2, 3)
        return torch.cat([cell, coords], 2)


def _blocks(x: torch.Tensor) -> list[torch.Tensor]:
    """Split images ``(B, C, 30, W)`` into cell, Mg, Mn, O row blocks."""
    return [x[:, :, :2], x[:, :, 2:10], x[:, :, 10:18], x[:, :, 18:30]]


class Critic(nn.Module):
    """Image ``(B, 1, 30, 3)`` -> Wasserstein score ``(B,)``."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        c = channels
        self.conv = nn.Sequential(
            nn.Conv2d(1, 2 * c, (1, 3)),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * c, 2 * c, (1, 1)),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * c, c, (1, 1)),
            nn.LeakyReLU(0.2, True),
        )
        self.fc = nn.Sequential(
            nn.Linear(5 * c, 256),
            nn.LeakyReLU(0.2, True),
            nn.Linear(256, 64),
            nn.LeakyReLU(0.2, True),
            nn.Linear(64, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Critic score per image."""
        h = self.conv(x)  # (B, c, 30, 1)
        cell, mg, mn, o = _blocks(h)
        pooled = torch.cat([cell, mg.mean(2, keepdim=True), mn.mean(2, keepdim=True), o.mean(2, keepdim=True)], 2)
        return self.fc(pooled.flatten(1)).squeeze(1)


class _ElementBranch(nn.Module):
    """4 conv/BN layers over the rows of one element block -> per-row features and occupancy logits."""

    def __init__(self, rows: int, channels: int, classes: int) -> None:
        super().__init__()
        c = channels
        self.conv = nn.Sequential(
            nn.Conv2d(1, 2 * c, (1, 3)),
            nn.BatchNorm2d(2 * c),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * c, c, (1, 1)),
            nn.BatchNorm2d(c),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(c, c, (1, 1)),
            nn.BatchNorm2d(c),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(c, 2, (1, 1)),
        )
        self.head = nn.Sequential(
            nn.Linear(2 * rows, 128),
            nn.BatchNorm1d(128),
            nn.LeakyReLU(0.2, True),
            nn.Linear(128, 64),
            nn.BatchNorm1d(64),
            nn.LeakyReLU(0.2, True),
            nn.Linear(64, classes),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        occ = self.conv(x)  # (B, 2, rows, 1)
        return occ.squeeze(3), self.head(occ.flatten(1))


class Classifier(nn.Module):
    """Image ``(B, 1, 30, 3)`` -> occupancy logits ``(B, 2, 28)`` and count logits per element."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.branches = nn.ModuleList([_ElementBranch(rows, channels, rows) for rows in MAX_COUNTS])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Returns ``(occupancy_logits (B, 2, 28), [mg (B, 8), mn (B, 8), o (B, 12)] count logits)``."""
        _, mg, mn, o = _blocks(x)
        occs, cats = [], []
        for branch, block in zip(self.branches, (mg, mn, o), strict=True):
            occ, cat = branch(block)
            occs.append(occ)
            cats.append(cat)
        return torch.cat(occs, 2), cats


def gradient_penalty(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,
    weight: float = 10.0,
) -> torch.Tensor:
    """WGAN-GP term ``weight * E[(||grad_x D(x_hat)||_2 - 1)^2]`` on random interpolates of real and fake.

    ``real`` and ``fake`` have the same shape ``(B, ...)``; the graph is kept so the term can be
    back-propagated into the critic. Returns a scalar tensor.
    """
    alpha = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), generator=generator, dtype=real.dtype)
    x_hat = (alpha * real + (1 - alpha) * fake).detach().requires_grad_(True)
    score = critic(x_hat)
    (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    norms = grad.flatten(1).norm(2, dim=1)
    return weight * ((norms - 1.0) ** 2).mean()


def classifier_losses(
    classifier: Classifier, images: torch.Tensor, counts: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the classifier on images ``(B, 1, 30, 3)`` whose true counts are ``(B, 3)``.

    Returns ``(occupancy CE over the 28 rows, composition CE summed over the three elements)``.
    """
    occ_logits, cats = classifier(images)
    target_occ = occupancy_target(counts)
    occ_loss = nn.functional.cross_entropy(occ_logits, target_occ)
    comp_loss = sum(nn.functional.cross_entropy(cat, counts[:, i].long() - 1) for i, cat in enumerate(cats))
    return occ_loss, comp_loss  # type: ignore[return-value]


def occupancy_target(counts: torch.Tensor) -> torch.Tensor:
    """Row occupancy ``(B, 28)`` long (1 = atom) implied by counts ``(B, 3)`` (blocks filled from the top)."""
    rows = []
    for i, m in enumerate(MAX_COUNTS):
        ar = torch.arange(m).unsqueeze(0)
        rows.append((ar < counts[:, i : i + 1]).long())
    return torch.cat(rows, 1)


def padding_loss(images: torch.Tensor, counts: torch.Tensor, floor: float = 0.2) -> torch.Tensor:
    """Direct occupancy penalty on generated images ``(B, 1, 30, 3)`` for requested counts ``(B, 3)``.

    Padding rows pay their row mean (L1: they should be 0); atom rows pay
    ``relu(floor - min coordinate)`` (real atoms have every value >= 1/6). Returns a scalar.
    """
    rows = images[:, 0, 2:, :]  # (B, 28, 3)
    target = occupancy_target(counts).float()
    pad = ((1 - target) * rows.mean(-1)).sum(1)
    atom = (target * torch.relu(floor - rows.min(-1).values)).sum(1)
    return (pad + atom).mean()


def cell_moment_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Feature matching on the 6 cell values: squared differences of the batch means and standard
    deviations of rows 0-1 of fake and real images ``(B, 1, 30, 3)``. Returns a scalar."""
    f, r = fake[:, 0, :2, :].flatten(1), real[:, 0, :2, :].flatten(1)
    return ((f.mean(0) - r.mean(0)) ** 2).sum() + ((f.std(0) - r.std(0)) ** 2).sum()


def lattice_matrix(cell: torch.Tensor) -> torch.Tensor:
    """Lattice vectors ``(B, 3, 3)`` in Å (rows a, b, c) from scaled cell rows ``(B, 2, 3)`` (image rows 0-1).

    Differentiable; lengths are ``row 0 * 30 Å``, angles ``row 1 * 180 degrees``. Cells whose angles
    form no cell get a tiny (clamped) c component instead of NaN.
    """
    abc = cell[:, 0] * LENGTH_SCALE
    ang = torch.deg2rad(cell[:, 1] * ANGLE_SCALE)
    ca, cb, cg = torch.cos(ang[:, 0]), torch.cos(ang[:, 1]), torch.cos(ang[:, 2])
    sg = torch.sin(ang[:, 2]).clamp_min(1e-3)
    zero = torch.zeros_like(ca)
    cy = (ca - cb * cg) / sg
    cz = torch.sqrt((1 - cb**2 - cy**2).clamp_min(1e-6))
    a = torch.stack([abc[:, 0], zero, zero], 1)
    b = abc[:, 1:2] * torch.stack([cg, sg, zero], 1)
    c = abc[:, 2:3] * torch.stack([cb, cy, cz], 1)
    return torch.stack([a, b, c], 1)


#: Element index (0 Mg, 1 Mn, 2 O) of each of the 28 coordinate rows.
ROW_ELEMENT = torch.cat([torch.full((m,), i) for i, m in enumerate(MAX_COUNTS)])
#: The 13 lattice translations up to sign (self-image distances).
_SHIFTS = torch.tensor(
    [[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1) if (i, j, k) > (0, 0, 0)],
    dtype=torch.float32,
)


def pair_distances(images: torch.Tensor) -> torch.Tensor:
    """Periodic distances ``(B, 28, 28)`` in Å between the decoded coordinate rows of images
    ``(B, 1, 30, 3)`` (fractional ``P = 1.5 (P' - 0.5) + 0.5``, the inverse of the image scaling).

    Off-diagonal: the fractional difference wrapped into [-0.5, 0.5] (exact minimum image for
    near-orthogonal cells, an upper bound for strongly skewed ones; the validity check itself uses
    pymatgen's exact distance). Diagonal: each atom's distance to its own nearest periodic image
    (shortest of the 13 lattice translations with components in -1..1). Padding rows are not masked.
    """
    lat = lattice_matrix(images[:, 0, :2, :])  # (B, 3, 3)
    frac = 1.5 * (images[:, 0, 2:, :] - 0.5) + 0.5  # (B, 28, 3)
    df = frac.unsqueeze(2) - frac.unsqueeze(1)  # (B, 28, 28, 3)
    df = df - torch.round(df).detach()
    cart = torch.einsum("bijk,bkl->bijl", df, lat)
    d2 = (cart**2).sum(-1)  # (B, 28, 28)
    self_d2 = (torch.einsum("sk,bkl->bsl", _SHIFTS.to(images.dtype), lat) ** 2).sum(-1).min(1).values  # (B,)
    eye = torch.eye(28, dtype=images.dtype)
    d2 = d2 * (1 - eye) + self_d2.view(-1, 1, 1) * eye
    return torch.sqrt(d2 + 1e-8)


def distance_penalty(
    images: torch.Tensor, counts: torch.Tensor, cation_anion: float = 1.6, same_kind: float = 2.0
) -> torch.Tensor:
    """Hinge penalty on too-short interatomic distances of generated images ``(B, 1, 30, 3)`` whose
    requested counts are ``(B, 3)`` (padding rows ignored). **Not in the paper** (our addition).

    Each pair of atoms (and each atom with its own periodic image) pays ``relu(d_min - d)^2`` (Å^2),
    ``d_min = cation_anion`` for Mg/Mn-O pairs and ``same_kind`` for cation-cation and O-O pairs.
    Returns the mean over the batch of the sum over pairs (scalar).
    """
    d = pair_distances(images)
    occ = occupancy_target(counts).float()  # (B, 28)
    mask = occ.unsqueeze(2) * occ.unsqueeze(1)
    mask = mask * torch.triu(torch.ones(28, 28, dtype=mask.dtype))
    anion = ROW_ELEMENT == 2
    mixed = anion.unsqueeze(0) ^ anion.unsqueeze(1)
    thr = torch.where(mixed, torch.tensor(cation_anion), torch.tensor(same_kind)).to(images.dtype)
    return (mask * torch.relu(thr - d) ** 2).sum((1, 2)).mean()
