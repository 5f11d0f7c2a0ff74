"""Training, generation and weights I/O for CrystalGAN and the noise-GAN baseline.

``train_crystalgan(cfg)`` runs step 1 (AH <-> BH), the feature transfer, and step 2 (AHB_g <-> BHA_g,
with the geometric loss when ``cfg.use_geo``). One epoch is one pass over the 35 + 35 structures in
mini-batches of ``cfg.batch_size`` (35: one discriminator update and ``cfg.gen_steps`` generator
updates per epoch). Everything is seeded by ``cfg.seed``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alcore import weights as weights_io
from alcore.errors import CorruptModelError
from generators.crystalgan.data import (
    SLOTS,
    BinaryDomain,
    data_hash,
    encode_domain,
    load_domain,
)
from generators.crystalgan.geometry import D1, D2
from generators.crystalgan.model import (
    CrossDomainGAN,
    LossWeights,
    NoiseGAN,
    derangement,
    feature_transfer,
)

Progress = Callable[[str, int, int], None]


@dataclass
class CrystalGANConfig:
    """Hyper-parameters (paper defaults: 5 x 100 ReLU MLPs, Adam lr 1e-4 beta1 0.5, batch 35, lambdas 1).

    ``gen_steps``: generator updates per discriminator update; 5 as in the authors' reference code.
    ``noise_dim``: noise injection into the step-2 generators (0 = the paper: deterministic maps);
    ``weights.div``: the diversity-sensitive / mode-seeking term of step 2 (0 = the paper);
    ``select_every``: keep the step-2 snapshot (scored every that many epochs) with the most distinct
    good structures on a held-apart feature-transfer pairing (0 = off: the paper's last epoch). All
    three are the diversity remedies of docs/crystalgan.md.
    """

    domain_a: str = "PdH"
    domain_b: str = "NiH"
    epochs1: int = 1000
    epochs2: int = 1000
    batch_size: int = 35
    lr: float = 1e-4
    beta1: float = 0.5
    hidden: int = 100
    layers: int = 5
    gen_steps: int = 5
    weights: LossWeights = field(default_factory=LossWeights)
    use_geo: bool = True
    d1: float = D1
    d2: float = D2
    slots: int = SLOTS
    seed: int = 0
    noise_dim: int = 0
    select_every: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the config."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CrystalGANConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["weights"] = LossWeights(**d.get("weights", {}))
        return cls(**d)


@dataclass
class CrystalGANModel:
    """A trained (or loaded) CrystalGAN with the data it was trained on.

    ``x_ah``, ``y_bh``: encoded training domains ``(N, feature_dim)``; ``ahb_g``, ``bha_g``: the
    step-2 inputs built by the feature transfer; ``history``: per-epoch losses of each step.
    """

    config: CrystalGANConfig
    metal_a: str
    metal_b: str
    x_ah: torch.Tensor
    y_bh: torch.Tensor
    step1: CrossDomainGAN
    step2: CrossDomainGAN | None = None
    ahb_g: torch.Tensor | None = None
    bha_g: torch.Tensor | None = None
    history: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    wall_s: dict[str, float] = field(default_factory=dict)
    data_sha256: str = ""


def load_domains(cfg: CrystalGANConfig) -> tuple[BinaryDomain, BinaryDomain, torch.Tensor, torch.Tensor]:
    """Read both domains of ``cfg`` and encode them: returns ``(dom_a, dom_b, x_ah, y_bh)``."""
    dom_a, dom_b = load_domain(cfg.domain_a), load_domain(cfg.domain_b)
    x = torch.from_numpy(encode_domain(dom_a, dom_a.metal, dom_b.metal, cfg.slots))
    y = torch.from_numpy(encode_domain(dom_b, dom_a.metal, dom_b.metal, cfg.slots))
    return dom_a, dom_b, x, y


def _adam(params: Any, cfg: CrystalGANConfig) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, 0.999))


def train_cross_domain(
    model: CrossDomainGAN,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    cfg: CrystalGANConfig,
    use_geo: bool,
    gen: torch.Generator,
    progress: Progress | None = None,
    label: str = "step",
    on_epoch: Callable[[int, CrossDomainGAN], None] | None = None,
) -> list[dict[str, float]]:
    """Train one cross-domain step for ``epochs`` on unpaired ``x`` (domain A) and ``y`` (domain B).

    ``on_epoch(epoch, model)`` is called after every epoch (1-based; it must not touch ``gen``).
    Returns a per-epoch history of the generator-loss parts and the discriminator loss.
    """
    opt_g = _adam(list(model.g_ab.parameters()) + list(model.g_ba.parameters()), cfg)
    opt_d = _adam(list(model.d_a.parameters()) + list(model.d_b.parameters()), cfg)
    n = min(len(x), len(y))
    bs = min(cfg.batch_size, n)
    history: list[dict[str, float]] = []
    for epoch in range(epochs):
        px = torch.randperm(len(x), generator=gen)[:n]
        py = torch.randperm(len(y), generator=gen)[:n]
        for start in range(0, n - bs + 1, bs):
            xb, yb = x[px[start : start + bs]], y[py[start : start + bs]]
            opt_d.zero_grad()
            d_loss = model.discriminator_loss(xb, yb)
            d_loss.backward()
            opt_d.step()
            for _ in range(cfg.gen_steps):
                opt_g.zero_grad()
                g_loss, parts = model.generator_loss(xb, yb, cfg.weights, use_geo, cfg.d1, cfg.d2)
                g_loss.backward()
                opt_g.step()
        history.append({"epoch": epoch + 1, "d": d_loss.item(), "g": g_loss.item(), **parts})
        if progress is not None:
            progress(label, epoch + 1, epochs)
        if on_epoch is not None:
            on_epoch(epoch + 1, model)
    return history


def pairings(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The feature-transfer partners ``(pair_a, pair_b)`` for ``n`` samples: two seeded derangements."""
    g = torch.Generator().manual_seed(10_007 + seed)
    return derangement(n, g), derangement(n, g)


def train_step1(cfg: CrystalGANConfig, progress: Progress | None = None) -> CrystalGANModel:
    """Step 1 (cross-domain GAN AH <-> BH, eqs. 1-11) and the feature transfer; no step 2 yet."""
    torch.manual_seed(cfg.seed)
    dom_a, dom_b, x, y = load_domains(cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    step1 = CrossDomainGAN(cfg.slots, cfg.hidden, cfg.layers)
    t0 = time.perf_counter()
    hist1 = train_cross_domain(step1, x, y, cfg.epochs1, cfg, False, gen, progress, "step 1")
    wall1 = time.perf_counter() - t0
    model = CrystalGANModel(
        cfg,
        dom_a.metal,
        dom_b.metal,
        x,
        y,
        step1,
        history={"step1": hist1},
        wall_s={"step1": wall1},
        data_sha256=data_hash([dom_a, dom_b]),
    )
    model.ahb_g, model.bha_g = transfer_inputs(model, cfg.seed)
    return model


def transfer_inputs(model: CrystalGANModel, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Step-1 translation of the training data followed by the feature transfer with seeded pairings.

    Returns ``(AHB_g, BHA_g)``, each ``(N, feature_dim)``.
    """
    x_ahb1, y_bha1 = model.step1.translate(model.x_ah, model.y_bh)
    n = min(len(x_ahb1), len(y_bha1))
    pa, pb = pairings(n, seed)
    return feature_transfer(x_ahb1[:n], y_bha1[:n], pa, pb, model.config.slots)


def train_step2(
    model: CrystalGANModel,
    use_geo: bool,
    progress: Progress | None = None,
    *,
    div: float | None = None,
    noise_dim: int | None = None,
    geo: float | None = None,
    window: tuple[float, float] | None = None,
    select_every: int | None = None,
    select: Callable[[CrossDomainGAN], float] | None = None,
) -> CrystalGANModel:
    """Step 2 (eqs. 15-26) on the model's ``AHB_g``/``BHA_g``; returns a new model sharing step 1.

    The step-2 networks are initialised from ``seed`` alone, so runs with and without the geometric
    loss differ only in that loss. ``div`` / ``noise_dim`` override the config's diversity remedies
    (``weights.div``, ``noise_dim``), ``geo`` both geometric-loss weights (``weights.geo1``,
    ``geo2``) and ``window`` the training window ``(d1, d2)`` in Å for this step-2 run (the ablation
    of docs/crystalgan.md); acceptance is judged by the caller's window. ``select_every`` overrides
    ``config.select_every``: when > 0 the step-2 networks are scored every that many epochs and at
    the last one by ``select(step2)`` (default: the distinct good structures of a held-apart pairing,
    :func:`generators.crystalgan.compare.distinct_good_selector`) and the best-scoring snapshot (the
    earliest of equal scores) is returned (``history["select"]``: epoch, score, selected 1/0);
    training itself is unchanged.
    """
    d = {**model.config.to_dict(), "use_geo": use_geo}
    if div is not None:
        d["weights"] = {**d["weights"], "div": float(div)}
    if geo is not None:
        d["weights"] = {**d["weights"], "geo1": float(geo), "geo2": float(geo)}
    if window is not None:
        d["d1"], d["d2"] = float(window[0]), float(window[1])
    if noise_dim is not None:
        d["noise_dim"] = int(noise_dim)
    if select_every is not None:
        d["select_every"] = int(select_every)
    cfg = CrystalGANConfig.from_dict(d)
    if cfg.select_every > 0 and select is None:
        from generators.crystalgan.compare import distinct_good_selector  # compare imports this module

        select = distinct_good_selector(model)
    torch.manual_seed(cfg.seed + 1)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    step2 = CrossDomainGAN(cfg.slots, cfg.hidden, cfg.layers, cfg.noise_dim)
    t0 = time.perf_counter()
    scores: list[dict[str, float]] = []
    best: dict[str, Any] = {}

    def checkpoint(epoch: int, net: CrossDomainGAN) -> None:
        if select is None or cfg.select_every < 1 or (epoch % cfg.select_every and epoch != cfg.epochs2):
            return
        net.eval()
        with torch.no_grad():
            score = float(select(net))
        net.train()
        scores.append({"epoch": epoch, "score": score})
        if not best or score > best["score"]:
            best.update(score=score, epoch=epoch, state=copy.deepcopy(net.state_dict()))

    hist2 = train_cross_domain(
        step2, model.ahb_g, model.bha_g, cfg.epochs2, cfg, use_geo, gen, progress, "step 2", checkpoint
    )
    if best:
        step2.load_state_dict(best["state"])
    wall2 = time.perf_counter() - t0
    for row in scores:
        row["selected"] = float(row["epoch"] == best.get("epoch"))
    extra = {"select": scores} if best else {}
    return CrystalGANModel(
        cfg,
        model.metal_a,
        model.metal_b,
        model.x_ah,
        model.y_bh,
        model.step1,
        step2,
        model.ahb_g,
        model.bha_g,
        {**model.history, "step2": hist2, **extra},
        {**model.wall_s, "step2": wall2},
        model.data_sha256,
    )


def train_crystalgan(cfg: CrystalGANConfig, progress: Progress | None = None) -> CrystalGANModel:
    """Full CrystalGAN: step 1, feature transfer, step 2 (geometric loss if ``cfg.use_geo``)."""
    torch.set_num_threads(1)
    return train_step2(train_step1(cfg, progress), cfg.use_geo, progress)


def train_noise_gan(
    x: torch.Tensor, epochs: int, cfg: CrystalGANConfig, latent_dim: int = 64, progress: Progress | None = None
) -> tuple[NoiseGAN, list[dict[str, float]]]:
    """Standard GAN baseline on the encoded structures ``x`` ``(N, feature_dim)`` (both domains).

    Same optimiser, batch size and network sizes as CrystalGAN. Returns the model and its history.
    """
    torch.manual_seed(cfg.seed + 2)
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    gan = NoiseGAN(latent_dim, cfg.slots, cfg.hidden, cfg.layers)
    opt_g, opt_d = _adam(gan.g.parameters(), cfg), _adam(gan.d.parameters(), cfg)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    bs = min(cfg.batch_size, len(x))
    history = []
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x) - bs + 1, bs):
            real = x[perm[start : start + bs]]
            z = torch.randn(bs, latent_dim, generator=gen)
            opt_d.zero_grad()
            lr_, lf_ = gan.d(real), gan.d(gan.g(z).detach())
            d_loss = bce(lr_, torch.ones_like(lr_)) + bce(lf_, torch.zeros_like(lf_))
            d_loss.backward()
            opt_d.step()
            for _ in range(cfg.gen_steps):
                opt_g.zero_grad()
                lf = gan.d(gan.g(torch.randn(bs, latent_dim, generator=gen)))
                g_loss = bce(lf, torch.ones_like(lf))
                g_loss.backward()
                opt_g.step()
        history.append({"epoch": epoch + 1, "d": d_loss.item(), "g": g_loss.item()})
        if progress is not None:
            progress("gan", epoch + 1, epochs)
    return gan, history


# ----------------------------------------------------------------------------- generation
def generate(model: CrystalGANModel, seed: int | None = None) -> tuple[torch.Tensor, list[str]]:
    """Generated ternary feature vectors and their ids.

    With ``seed=None`` the step-2 translations of the model's own ``AHB_g``/``BHA_g`` (the set the
    paper counts); with a seed, fresh feature-transfer pairings drawn from that seed, so each seed
    gives a new batch. With noise injection (``config.noise_dim`` > 0) the step-2 noise is drawn from a
    generator seeded by the same tag, so generation stays deterministic. Returns
    ``(vectors (2N, feature_dim), ids)`` with ids
    ``"crystalgan-<seed>-<index>"`` (indices < N from ``G_AHB2``, the rest from ``G_BHA2``).
    """
    if model.step2 is None:
        raise CorruptModelError("this CrystalGAN has no step-2 generators; train it fully or load full weights")
    if seed is None:
        ahb_g, bha_g = model.ahb_g, model.bha_g
        tag = model.config.seed
    else:
        ahb_g, bha_g = transfer_inputs(model, seed)
        tag = seed
    x2, y2 = model.step2.translate(ahb_g, bha_g, torch.Generator().manual_seed(20_011 + tag))
    vecs = torch.cat([x2, y2])
    return vecs, [f"crystalgan-{tag}-{i}" for i in range(len(vecs))]


# ----------------------------------------------------------------------------- weights I/O
def save_weights(model: CrystalGANModel, stem: str | Path, metrics: dict[str, Any] | None = None) -> Path:
    """Write the four generators to ``<stem>.safetensors`` and metadata to ``<stem>.json``.

    Discriminators are not kept (generation does not need them). Returns the safetensors path.
    """
    tensors: dict[str, torch.Tensor] = {}
    nets = {"step1.g_ab": model.step1.g_ab, "step1.g_ba": model.step1.g_ba}
    if model.step2 is not None:
        nets |= {"step2.g_ab": model.step2.g_ab, "step2.g_ba": model.step2.g_ba}
    for prefix, net in nets.items():
        for k, v in net.state_dict().items():
            tensors[f"{prefix}.{k}"] = v
    last = {k: (h[-1] if h else {}) for k, h in model.history.items()}
    meta = {
        "name": Path(stem).name,
        "model": "CrystalGAN (Nouira et al. 2018), PyTorch re-implementation",
        "metal_a": model.metal_a,
        "metal_b": model.metal_b,
        "data": {
            "domain_a": model.config.domain_a,
            "domain_b": model.config.domain_b,
            "sha256": model.data_sha256,
            "n_a": len(model.x_ah),
            "n_b": len(model.y_bh),
            "split": "all structures used for training (unsupervised; no held-out split)",
        },
        "params": model.config.to_dict(),
        "final_losses": last,
        "wall_s": {k: round(v, 2) for k, v in model.wall_s.items()},
        "metrics": metrics or {},
        "torch": torch.__version__,
    }
    weights_io.save_weights(stem, tensors, meta)
    return weights_io.weights_paths(stem)[0]


def load_weights(stem: str | Path) -> CrystalGANModel:
    """Load a model written by :func:`save_weights` (safetensors, no pickle); rebuilds the data and
    the feature-transfer inputs from the metadata. Raises :class:`CorruptModelError` if files are
    missing or do not fit the architecture, or if the data hash differs."""
    tensors, meta = weights_io.load_weights(stem, "run `alflow crystalgan train` to create them")
    st = weights_io.weights_paths(stem)[0]
    cfg = CrystalGANConfig.from_dict(meta["params"])
    dom_a, dom_b, x, y = load_domains(cfg)
    sha = data_hash([dom_a, dom_b])
    if sha != meta["data"]["sha256"]:
        raise CorruptModelError(f"{st}: trained on data {meta['data']['sha256'][:12]}, found {sha[:12]}; retrain")
    step1 = CrossDomainGAN(cfg.slots, cfg.hidden, cfg.layers)
    has2 = any(k.startswith("step2.") for k in tensors)
    step2 = CrossDomainGAN(cfg.slots, cfg.hidden, cfg.layers, cfg.noise_dim) if has2 else None
    nets = {"step1.g_ab": step1.g_ab, "step1.g_ba": step1.g_ba}
    if step2 is not None:
        nets |= {"step2.g_ab": step2.g_ab, "step2.g_ba": step2.g_ba}
    for prefix, net in nets.items():
        weights_io.load_into(
            net, {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}, st
        )
    model = CrystalGANModel(
        cfg, dom_a.metal, dom_b.metal, x, y, step1, step2, data_sha256=sha, wall_s=meta.get("wall_s", {})
    )
    model.ahb_g, model.bha_g = transfer_inputs(model, cfg.seed)
    return model


def vectors_to_numpy(v: torch.Tensor) -> np.ndarray:
    """Detached float64 numpy copy of generated vectors ``(K, feature_dim)``."""
    return v.detach().cpu().double().numpy()
