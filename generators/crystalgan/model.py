"""CrystalGAN networks and losses (PyTorch).

* :class:`Generator` / :class:`Discriminator`: MLPs with 5 hidden layers x 100 units, ReLU (paper §IV.B).
  A generator maps one encoded structure to another (lattice and coordinates linear, occupancy sigmoid).
* :class:`CrossDomainGAN`: two generators ``G_AB``/``G_BA`` and two discriminators ``D_A``/``D_B`` with
  the losses of eqs. (1)-(11) (step 1) or (15)-(26) (step 2, with the geometric terms of eq. 25).
* :func:`feature_transfer`: fills each step-1 sample's empty metal placeholder with the other domain's
  generated metal features (paper §III.B.2).
* :class:`NoiseGAN`: the "standard GAN" baseline of Table II (Gaussian noise in, a structure out).
* Diversity remedies against the step-2 mode collapse (ours, not in the paper): a diversity-sensitive
  / mode-seeking term (``LossWeights.div``, :func:`diversity_ratio`) and noise injection into the
  cross-domain generators (``noise_dim`` > 0: each generator sees ``concat(x, z)``, ``z ~ N(0, I)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from generators.crystalgan.data import ATOM_DIM, SLOTS, feature_dim, group_slice
from generators.crystalgan.geometry import D1, D2, geo_loss


def occupancy_index(slots: int = SLOTS) -> torch.Tensor:
    """Indices of the occupancy columns inside a feature vector, shape ``(3 * slots,)``."""
    start = 9
    n = 3 * slots
    return torch.arange(n) * ATOM_DIM + start + 3


def mlp(in_dim: int, out_dim: int, hidden: int = 100, layers: int = 5) -> nn.Sequential:
    """``layers`` hidden Linear+ReLU layers of width ``hidden``, then a Linear to ``out_dim``."""
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    mods.append(nn.Linear(d, out_dim))
    return nn.Sequential(*mods)


class Generator(nn.Module):
    """Maps ``(N, in_dim)`` to encoded structures ``(N, feature_dim)``; occupancies through a sigmoid."""

    def __init__(self, in_dim: int | None = None, slots: int = SLOTS, hidden: int = 100, layers: int = 5) -> None:
        super().__init__()
        self.slots = slots
        out = feature_dim(slots)
        self.net = mlp(in_dim or out, out, hidden, layers)
        mask = torch.zeros(out, dtype=torch.bool)
        mask[occupancy_index(slots)] = True
        self.register_buffer("occ_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns ``(N, feature_dim)``: linear lattice/coordinates, sigmoid occupancies."""
        raw = self.net(x)
        return torch.where(self.occ_mask, torch.sigmoid(raw), raw)


class Discriminator(nn.Module):
    """Maps encoded structures ``(N, feature_dim)`` to one logit each ``(N,)``."""

    def __init__(self, slots: int = SLOTS, hidden: int = 100, layers: int = 5) -> None:
        super().__init__()
        self.net = mlp(feature_dim(slots), 1, hidden, layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N,)`` (the paper's sigmoid is folded into the BCE-with-logits loss)."""
        return self.net(x).squeeze(-1)


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


@dataclass(frozen=True)
class LossWeights:
    """lambda_1..lambda_6 of eqs. (10) and (25): adversarial BH, recon AH, adversarial AH, recon BH,
    geo_1, geo_2. The paper found all close to 1 work well."""

    gan_b: float = 1.0
    rec_a: float = 1.0
    gan_a: float = 1.0
    rec_b: float = 1.0
    geo1: float = 1.0
    geo2: float = 1.0
    #: weight of the diversity-sensitive (mode-seeking) term; 0 = the paper's loss
    div: float = 0.0
    #: the per-pair diversity ratio is clipped at this value (DSGAN's tau), so the term is bounded
    div_tau: float = 1.0


def structure_features(v: torch.Tensor, slots: int = SLOTS) -> torch.Tensor:
    """What makes two encoded structures different: ``(N, 9 + 3 * slots * 4)`` with the coordinates of
    each slot multiplied by its occupancy (coordinates of empty slots do not count), the lattice and the
    occupancies as they are. Used by the diversity term so it cannot be met by moving empty slots."""
    lat = v[:, :9]
    rows = v[:, 9:].reshape(len(v), 3 * slots, ATOM_DIM)
    occ = rows[..., 3:4]
    return torch.cat([lat, (rows[..., :3] * occ).flatten(1), occ.flatten(1)], dim=1)


def diversity_ratio(
    out1: torch.Tensor, out2: torch.Tensor, in1: torch.Tensor, in2: torch.Tensor, tau: float, slots: int = SLOTS
) -> torch.Tensor:
    """Mode-seeking / diversity-sensitive ratio (Mao et al. 2019; Yang et al. 2019), a scalar to maximise.

    ``mean_k min(tau, |f(out1_k) - f(out2_k)|_1 / |in1_k - in2_k|_1)`` with ``f`` =
    :func:`structure_features` and both L1 distances averaged over their features. ``out*``:
    ``(N, feature_dim)`` outputs for the paired inputs ``in*`` (structures ``(N, feature_dim)`` or noise
    ``(N, noise_dim)``). A collapsed generator (same output for different inputs) scores 0.
    """
    d_out = (structure_features(out1, slots) - structure_features(out2, slots)).abs().mean(dim=1)
    d_in = (in1 - in2).abs().mean(dim=1).clamp_min(1e-6)
    return torch.clamp(d_out / d_in, max=tau).mean()


class CrossDomainGAN(nn.Module):
    """One CrystalGAN step: ``G_AB`` translates domain A to B, ``G_BA`` B to A; ``D_A``, ``D_B`` judge.

    Step 1: A = AH, B = BH. Step 2: A = AHB_g, B = BHA_g (with the geometric terms switched on).
    """

    def __init__(self, slots: int = SLOTS, hidden: int = 100, layers: int = 5, noise_dim: int = 0) -> None:
        super().__init__()
        self.slots = slots
        self.noise_dim = noise_dim
        in_dim = feature_dim(slots) + noise_dim
        self.g_ab = Generator(in_dim=in_dim, slots=slots, hidden=hidden, layers=layers)
        self.g_ba = Generator(in_dim=in_dim, slots=slots, hidden=hidden, layers=layers)
        self.d_a = Discriminator(slots, hidden, layers)
        self.d_b = Discriminator(slots, hidden, layers)

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(n, noise_dim)`` standard-normal noise (``(n, 0)`` without noise injection)."""
        return torch.randn(n, self.noise_dim, generator=generator)

    def ab(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """``G_AB(x)`` (or ``G_AB(concat(x, z))`` with noise injection; fresh noise when ``z`` is None)."""
        if self.noise_dim == 0:
            return self.g_ab(x)
        return self.g_ab(torch.cat([x, self.noise(len(x)) if z is None else z], dim=1))

    def ba(self, y: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """``G_BA(y)`` (or ``G_BA(concat(y, z))``), as :meth:`ab`."""
        if self.noise_dim == 0:
            return self.g_ba(y)
        return self.g_ba(torch.cat([y, self.noise(len(y)) if z is None else z], dim=1))

    def generator_loss(
        self, x_a: torch.Tensor, y_b: torch.Tensor, w: LossWeights, use_geo: bool, d1: float = D1, d2: float = D2
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Eq. (10) (``use_geo=False``) or eq. (25): returns the total loss and its parts as floats.

        ``x_a``, ``y_b``: ``(N, feature_dim)`` batches of the two domains (unpaired).
        """
        za, zb = self.noise(len(x_a)), self.noise(len(y_b))
        x_ab = self.ab(x_a, za)  # eq. (1)/(15)
        x_aba = self.ba(x_ab)
        y_ba = self.ba(y_b, zb)  # eq. (2)/(16)
        y_bab = self.ab(y_ba)
        rec_a = F.mse_loss(x_aba, x_a)  # eq. (3)/(17), d = mean squared error
        rec_b = F.mse_loss(y_bab, y_b)  # eq. (4)/(18)
        gan_b = _bce(self.d_b(x_ab), 1.0)  # eq. (5)/(19)
        gan_a = _bce(self.d_a(y_ba), 1.0)  # eq. (6)/(20)
        total = w.gan_b * gan_b + w.rec_a * rec_a + w.gan_a * gan_a + w.rec_b * rec_b
        parts = {"gan_b": gan_b.item(), "rec_a": rec_a.item(), "gan_a": gan_a.item(), "rec_b": rec_b.item()}
        if use_geo:
            g1a, g2a = geo_loss(x_ab, d1, d2, self.slots)
            g1b, g2b = geo_loss(y_ba, d1, d2, self.slots)
            geo1, geo2 = g1a + g1b, g2a + g2b
            total = total + w.geo1 * geo1 + w.geo2 * geo2
            parts |= {"geo1": geo1.item(), "geo2": geo2.item()}
        if w.div > 0:
            if self.noise_dim > 0:  # mode seeking: two noise draws for the same input
                za2, zb2 = self.noise(len(x_a)), self.noise(len(y_b))
                div_a = diversity_ratio(x_ab, self.ab(x_a, za2), za, za2, w.div_tau, self.slots)
                div_b = diversity_ratio(y_ba, self.ba(y_b, zb2), zb, zb2, w.div_tau, self.slots)
            else:  # diversity-sensitive: two different inputs of the batch
                div_a = diversity_ratio(x_ab, x_ab.roll(1, 0), x_a, x_a.roll(1, 0), w.div_tau, self.slots)
                div_b = diversity_ratio(y_ba, y_ba.roll(1, 0), y_b, y_b.roll(1, 0), w.div_tau, self.slots)
            total = total - w.div * (div_a + div_b)
            parts["div"] = (div_a + div_b).item()
        return total, parts

    def discriminator_loss(self, x_a: torch.Tensor, y_b: torch.Tensor) -> torch.Tensor:
        """Eqs. (8)+(9) / (23)+(24): BCE of real vs translated samples for both discriminators."""
        with torch.no_grad():
            x_ab = self.ab(x_a)
            y_ba = self.ba(y_b)
        l_db = _bce(self.d_b(y_b), 1.0) + _bce(self.d_b(x_ab), 0.0)
        l_da = _bce(self.d_a(x_a), 1.0) + _bce(self.d_a(y_ba), 0.0)
        return l_da + l_db

    @torch.no_grad()
    def translate(
        self, x_a: torch.Tensor, y_b: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(G_AB(x_a), G_BA(y_b))`` without gradients (generation); with noise injection the noise is
        drawn from ``generator`` (seeded generation)."""
        if self.noise_dim == 0:
            return self.g_ab(x_a), self.g_ba(y_b)
        return self.ab(x_a, self.noise(len(x_a), generator)), self.ba(y_b, self.noise(len(y_b), generator))


def feature_transfer(
    x_ahb1: torch.Tensor, y_bha1: torch.Tensor, pair_a: torch.Tensor, pair_b: torch.Tensor, slots: int = SLOTS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Build the step-2 inputs ``AHB_g`` and ``BHA_g`` from the step-1 outputs.

    ``x_ahb1 = G_AHB1(x_AH)`` lives in the BH domain (its A group is the empty placeholder) and
    ``y_bha1 = G_BHA1(y_BH)`` in the AH domain (empty B group). ``AHB_g[k]`` is ``x_ahb1[k]`` with its
    A group replaced by the A group of ``y_bha1[pair_a[k]]``; ``BHA_g[k]`` is ``y_bha1[k]`` with its
    B group replaced by the B group of ``x_ahb1[pair_b[k]]``. Metal positions are fractional, so they
    are meaningful in the receiving cell. Returns two ``(K, feature_dim)`` tensors.
    """
    a, b = group_slice("A", slots), group_slice("B", slots)
    ahb_g = x_ahb1.clone()
    ahb_g[:, a] = y_bha1[pair_a][:, a]
    bha_g = y_bha1.clone()
    bha_g[:, b] = x_ahb1[pair_b][:, b]
    return ahb_g, bha_g


def derangement(n: int, generator: torch.Generator) -> torch.Tensor:
    """A random permutation of ``range(n)`` with no fixed point (for n > 1), shape ``(n,)``."""
    if n < 2:
        return torch.arange(n)
    while True:
        p = torch.randperm(n, generator=generator)
        if not bool((p == torch.arange(n)).any()):
            return p


class NoiseGAN(nn.Module):
    """Standard GAN baseline: ``G(z)``, ``z ~ N(0, I)``, trained on the union of both binary domains."""

    def __init__(self, latent_dim: int = 64, slots: int = SLOTS, hidden: int = 100, layers: int = 5) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.g = Generator(in_dim=latent_dim, slots=slots, hidden=hidden, layers=layers)
        self.d = Discriminator(slots, hidden, layers)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` generated structures ``(n, feature_dim)`` (no gradients)."""
        with torch.no_grad():
            z = torch.randn(n, self.latent_dim, generator=generator)
            return self.g(z)
