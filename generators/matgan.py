"""MatGAN (Dan et al., npj Comput. Mater. 6, 84, 2020): a WGAN-GP on the 85 x 8 one-hot composition
matrix, and its companion autoencoder used to check whether a formula is reachable.

* Generator: latent (128) -> FC -> transposed convolutions -> sigmoid, one value per (element,
  count) cell of the :class:`~alcore.composition.CompositionEncoder` matrix (``"matgan85"``, counts
  1..8). A sample is decoded with ``decode_counts`` (an element is present when its largest cell
  exceeds 0.5; its count is that cell's column + 1) and canonicalised with
  :class:`generators.fast_formula.FastFormula`.
* Critic: two strided convolutions + FC, no normalisation (the gradient penalty needs none).
* Autoencoder: convolutional encoder to a 128-d code and a decoder with exactly the generator's
  architecture, trained with the negative Dice loss. The paper's argument: if the AE decoder cannot
  reproduce a formula, a generator of the same architecture is unlikely to generate it, so
  :meth:`MatGANSampler.reachable` = "the AE reconstructs the formula exactly".

Training data: MP formulas (``data/known/mp_formulas_spacegroups.csv``), canonical, deduplicated,
representable under matgan85 / max count 8, single-element entries removed (as in the paper).
Weights are committed as ``data/weights/matgan_generator.safetensors`` and
``data/weights/matgan_autoencoder.safetensors`` with JSON metadata (data hash, epochs, metrics).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from alcore.composition import CompositionEncoder, reduced_counts
from alcore.errors import CorruptModelError, InvalidFormulaError
from alcore.paths import WEIGHTS_DIR, data_file
from generators.fast_formula import FastFormula

log = logging.getLogger(__name__)

ELEMENTS = "matgan85"
MAX_COUNT = 8
LATENT_DIM = 128
GENERATOR_NAME = "matgan_generator"
AUTOENCODER_NAME = "matgan_autoencoder"
OUTPUT_BIAS_INIT = -4.0


@lru_cache(maxsize=1)
def encoder() -> CompositionEncoder:
    """The MatGAN composition encoder: 85 elements x counts 1..8 (max 8 elements)."""
    return CompositionEncoder(ELEMENTS, max_count=MAX_COUNT, max_elements=8)


@lru_cache(maxsize=1)
def fast_formula() -> FastFormula:
    """A shared :class:`FastFormula` over the MatGAN element list (its cache is reused)."""
    return FastFormula(encoder().symbols)


# ---------------------------------------------------------------------------------------------- data
@lru_cache(maxsize=4)
def _known_formulas_cached(path: str) -> frozenset[str]:
    import pandas as pd

    from alcore.composition import Z103, reduced_counts

    index = {s: i for i, s in enumerate(Z103)}
    raw = pd.read_csv(path, usecols=["pretty_formula"])["pretty_formula"].astype(str).unique()
    rows = []
    for f in raw:
        try:
            rc = reduced_counts(f)
        except InvalidFormulaError:
            continue
        row = np.zeros(len(Z103), dtype=np.int64)
        for s, c in rc:
            row[index[s]] = c
        rows.append(row)
    return frozenset(f for f in FastFormula(Z103).formulas(np.stack(rows)) if f is not None)


def known_formulas(path: str | Path | None = None) -> frozenset[str]:
    """Every canonical formula of the known-materials table (MP ``pretty_formula``); a frozenset.

    Used for novelty. Formulas pymatgen cannot parse are skipped. Canonicalised with
    :class:`FastFormula` (equal to :func:`canonical_formula`, see the tests); cached per path.
    """
    path = Path(path) if path else data_file("known", "mp_formulas_spacegroups.csv")
    return _known_formulas_cached(str(path))


def training_formulas(path: str | Path | None = None, min_elements: int = 2, valid_only: bool = False) -> list[str]:
    """MatGAN training set: sorted canonical MP formulas that fit matgan85 / max count 8 and have at
    least ``min_elements`` elements (the paper drops single-element compounds); with ``valid_only``
    only those that pass SMACT charge neutrality and electronegativity balance (73 % of the MP
    ones). Returns a list of str."""
    enc = encoder()
    out = []
    for f in sorted(known_formulas(path)):
        ok, _ = enc.representable(f)
        if ok and len(enc.counts(f)) >= min_elements:
            out.append(f)
    if valid_only:
        from alcore.validity import ValidityRules, check_validity_batch

        out = [v.formula for v in check_validity_batch(out, ValidityRules()) if v.valid]
    return out


def training_formulas_of(metadata: dict[str, Any]) -> list[str] | None:
    """The training formulas of a saved model, found by the ``data_sha256`` in its ``metadata``
    among the two training sets (all MP / SMACT-valid MP); None if neither matches."""
    for valid_only in (False, True):
        forms = training_formulas(valid_only=valid_only)
        if data_hash(forms) == metadata.get("data_sha256"):
            return forms
    return None


def data_hash(formulas: Sequence[str]) -> str:
    """sha256 (hex) of the newline-joined formula list: identifies a training set."""
    return hashlib.sha256("\n".join(formulas).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------- models
class Generator(nn.Module):
    """Latent ``(B, latent_dim)`` -> probabilities ``(B, 85, 8)`` in [0, 1] (transposed convs + sigmoid)."""

    def __init__(self, latent_dim: int = LATENT_DIM, ch: int = 8) -> None:
        super().__init__()
        self.latent_dim, self.ch = latent_dim, ch
        self.fc = nn.Sequential(nn.Linear(latent_dim, 2 * ch * 21 * 2), nn.BatchNorm1d(2 * ch * 21 * 2), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * ch, ch, kernel_size=(5, 4), stride=2, padding=1),  # (43, 4)
            nn.BatchNorm2d(ch),
            nn.ReLU(),
            nn.ConvTranspose2d(ch, ch // 2, kernel_size=3, stride=1, padding=1),  # (43, 4)
            nn.BatchNorm2d(ch // 2),
            nn.ReLU(),
            nn.ConvTranspose2d(ch // 2, 1, kernel_size=(3, 4), stride=2, padding=1),  # (85, 8)
            nn.Sigmoid(),
        )
        # sparse prior: a formula fills ~3 of the 680 cells, so start every cell near sigmoid(-4) = 0.02
        # (otherwise early training is spent pushing 677 cells below the 0.5 decode threshold)
        nn.init.constant_(self.deconv[-2].bias, OUTPUT_BIAS_INIT)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` (B, latent_dim) -> (B, 85, 8) cell probabilities."""
        h = self.fc(z).view(-1, 2 * self.ch, 21, 2)
        return self.deconv(h).squeeze(1)


class _ConvTrunk(nn.Module):
    """(B, 85, 8) -> (B, 2*ch*21*2) features: two strided convolutions with LeakyReLU."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, ch, kernel_size=4, stride=2, padding=1),  # (42, 4)
            nn.LeakyReLU(0.2),
            nn.Conv2d(ch, 2 * ch, kernel_size=4, stride=2, padding=1),  # (21, 2)
            nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        self.out_dim = 2 * ch * 21 * 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.unsqueeze(1))


class Critic(nn.Module):
    """WGAN critic: ``(B, 85, 8)`` -> ``(B,)`` unbounded scores (no normalisation layers)."""

    def __init__(self, ch: int = 8) -> None:
        super().__init__()
        self.trunk = _ConvTrunk(ch)
        self.head = nn.Sequential(nn.Linear(self.trunk.out_dim, 256), nn.LeakyReLU(0.2), nn.Linear(256, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of shape (B,)."""
        return self.head(self.trunk(x)).squeeze(-1)


class Autoencoder(nn.Module):
    """Conv encoder -> 128-d code -> :class:`Generator`-architecture decoder; ``forward`` returns (B, 85, 8)."""

    def __init__(self, latent_dim: int = LATENT_DIM, ch: int = 8) -> None:
        super().__init__()
        self.trunk = _ConvTrunk(ch)
        self.to_code = nn.Linear(self.trunk.out_dim, latent_dim)
        self.decoder = Generator(latent_dim, ch)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 85, 8) -> (B, latent_dim) codes."""
        return self.to_code(self.trunk(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction probabilities (B, 85, 8)."""
        return self.decoder(self.encode(x))


def neg_dice_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Negative Dice coefficient, mean over the batch: ``-2 A.B / (sum A + sum B)`` (scalar tensor)."""
    dims = tuple(range(1, pred.dim()))
    inter = (pred * target).sum(dims)
    return -(2 * inter / (pred.sum(dims) + target.sum(dims) + eps)).mean()


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """WGAN-GP penalty ``E[(||grad critic(x_hat)|| - 1)^2]`` on random interpolates (scalar tensor)."""
    alpha = torch.rand(real.shape[0], 1, 1, generator=gen)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    score = critic(x_hat)
    (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


# ---------------------------------------------------------------------------------------------- training
@dataclass
class GANConfig:
    """WGAN-GP hyper-parameters; ``time_budget_s`` stops training early (whole epochs are not required)."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.9)
    n_critic: int = 2
    gp_lambda: float = 10.0
    ch: int = 8
    latent_dim: int = LATENT_DIM
    seed: int = 0
    time_budget_s: float | None = None


@dataclass
class AEConfig:
    """Autoencoder hyper-parameters (paper: Adam lr 1e-3, batch 1024; smaller batches here because
    the CPU budget allows few epochs)."""

    epochs: int = 30
    batch_size: int = 256
    lr: float = 3e-3
    ch: int = 8
    latent_dim: int = LATENT_DIM
    seed: int = 0
    time_budget_s: float | None = None


def encode_formulas(formulas: Sequence[str]) -> torch.Tensor:
    """One-hot matrices ``(N, 85, 8)`` float32 of formulas that must fit the MatGAN encoding."""
    return torch.from_numpy(encoder().encode_batch(list(formulas)).matrices)


#: Train with PyTorch's native CPU convolutions up to this channel width: at ch 8 a critic step
#: (batch 64, gradient penalty included) takes 50 ms vs 77 ms with oneDNN; at ch 32 oneDNN is faster
#: (137 ms vs 232 ms).
NATIVE_TRAIN_MAX_CH = 8
CHECKPOINT_VERSION = 1
#: GANConfig fields that may change between a checkpoint and its resumption (a new ``lr`` is applied
#: to both optimisers and recorded in the history's ``lr_schedule``).
RESUMABLE_FIELDS = ("epochs", "time_budget_s", "lr")


def _fixed_settings(config: dict[str, Any]) -> dict[str, Any]:
    """GANConfig fields a resumed run must keep (tuples as lists: a loaded checkpoint may hold either)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items() if k not in RESUMABLE_FIELDS}


def _checkpoint_state(
    G: Generator,
    D: Critic,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    gen_rng: torch.Generator,
    cfg: GANConfig,
    data_sha: str,
    epoch: int,
    next_batch: int,
    perm: torch.Tensor,
    history: dict[str, Any],
) -> dict[str, Any]:
    return {
        "version": CHECKPOINT_VERSION,
        "config": asdict(cfg),
        "data_sha256": data_sha,
        "generator": G.state_dict(),
        "critic": D.state_dict(),
        "opt_g": opt_g.state_dict(),
        "opt_d": opt_d.state_dict(),
        "rng": gen_rng.get_state(),
        "epoch": epoch,
        "next_batch": next_batch,
        "perm": perm,
        "history": history,
    }


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: a kill mid-write leaves the previous checkpoint intact


def _load_checkpoint(path: Path, cfg: GANConfig, data_sha: str) -> dict[str, Any]:
    try:
        state = torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise CorruptModelError(f"MatGAN checkpoint {path} cannot be read ({exc}); delete it to start over") from None
    if state.get("version") != CHECKPOINT_VERSION:
        raise CorruptModelError(
            f"MatGAN checkpoint {path} has version {state.get('version')}, expected "
            f"{CHECKPOINT_VERSION}; delete it to start over"
        )
    if state["data_sha256"] != data_sha:
        raise ValueError(
            f"MatGAN checkpoint {path} was trained on other formulas (sha256 "
            f"{state['data_sha256'][:12]} vs {data_sha[:12]}); use another checkpoint path or delete it"
        )
    stored, asked = _fixed_settings(state["config"]), _fixed_settings(asdict(cfg))
    if stored != asked:
        diff = {k: (stored.get(k), asked.get(k)) for k in asked if stored.get(k) != asked.get(k)}
        raise ValueError(
            f"MatGAN checkpoint {path} was trained with other settings {diff} (stored, asked); "
            "resume with the stored settings, or use another checkpoint path"
        )
    return state


def train_gan(
    data: torch.Tensor,
    config: GANConfig | None = None,
    progress: Callable[[int, dict[str, float]], None] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every_s: float = 300.0,
) -> tuple[Generator, dict[str, Any]]:
    """Train a WGAN-GP on one-hot matrices ``data`` (N, 85, 8), resumably.

    Returns ``(generator in eval mode, history)``; history has ``epochs`` (completed, fractional,
    over all runs of a checkpoint), ``steps`` (generator updates), ``seconds`` (summed over runs)
    and per-epoch ``w_distance`` estimates. ``progress(epoch, stats)`` is called after each epoch.

    With ``checkpoint`` (a file path) the generator, critic, both optimisers, the random state and the
    position inside the epoch are written there atomically every ``checkpoint_every_s`` seconds, at
    each epoch's end and when training stops; an existing checkpoint is resumed, so a killed or
    time-limited run continues where it stopped and ``config.epochs`` is the total target.
    A resumed run equals an uninterrupted one (same weights; tested). A resumed run may lower ``lr``
    (fine-tuning; recorded in ``history["lr_schedule"]`` as ``[from epoch, lr]`` pairs). Raises
    ``ValueError`` for a checkpoint of other data or other settings (only ``epochs``,
    ``time_budget_s`` and ``lr`` may change) and
    :class:`CorruptModelError` for an unreadable one.
    """
    cfg = config or GANConfig()
    torch.manual_seed(cfg.seed)
    gen_rng = torch.Generator().manual_seed(cfg.seed)
    G, D = Generator(cfg.latent_dim, cfg.ch), Critic(cfg.ch)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=cfg.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=cfg.betas)
    n = data.shape[0]
    n_batches = max(1, n // cfg.batch_size)
    data_sha = hashlib.sha256(data.numpy().tobytes()).hexdigest()
    ckpt = Path(checkpoint) if checkpoint else None
    history: dict[str, Any] = {"w_distance": [], "steps": 0, "epochs": 0.0, "seconds": 0.0, "runs": 0}
    start_epoch, start_batch, perm, first_lr = 0, 0, None, cfg.lr
    if ckpt is not None and ckpt.exists():
        state = _load_checkpoint(ckpt, cfg, data_sha)
        G.load_state_dict(state["generator"])
        D.load_state_dict(state["critic"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        gen_rng.set_state(state["rng"])
        history = state["history"]
        start_epoch, start_batch, perm = state["epoch"], state["next_batch"], state["perm"]
        first_lr = state["config"]["lr"]
        for opt in (opt_g, opt_d):
            for group in opt.param_groups:
                group["lr"] = cfg.lr
        log.info("resuming MatGAN training from %s at epoch %.2f", ckpt, history["epochs"])
    schedule = history.setdefault("lr_schedule", [[0.0, first_lr]])
    if schedule[-1][1] != cfg.lr:
        schedule.append([history["epochs"], cfg.lr])  # [from epoch, learning rate]
    history["runs"] += 1
    seconds_before = history["seconds"]
    t0 = last_save = time.perf_counter()

    def save(
        epoch: int, next_batch: int, perm_now: torch.Tensor | None, w_partial: tuple[float, int] | None = None
    ) -> None:
        """Checkpoint; mid-epoch (``w_partial`` given) also the epoch's running w-distance sum."""
        history["seconds"] = seconds_before + time.perf_counter() - t0
        if ckpt is not None:
            state_history = history if w_partial is None else {**history, "w_partial": w_partial}
            _save_checkpoint(
                ckpt,
                _checkpoint_state(
                    G, D, opt_g, opt_d, gen_rng, cfg, data_sha, epoch, next_batch, perm_now, state_history
                ),
            )

    stop = False
    with _conv_kernels(native=cfg.ch <= NATIVE_TRAIN_MAX_CH):
        for epoch in range(start_epoch, cfg.epochs):
            if perm is None:
                perm = torch.randperm(n, generator=gen_rng)
            w_sum, w_n = history.pop("w_partial", (0.0, 0))
            for b in range(start_batch, n_batches):
                real = data[perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
                z = torch.randn(real.shape[0], cfg.latent_dim, generator=gen_rng)
                with torch.no_grad():
                    fake = G(z)
                d_real, d_fake = D(real).mean(), D(fake).mean()
                gp = gradient_penalty(D, real, fake, gen_rng)
                loss_d = d_fake - d_real + cfg.gp_lambda * gp
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
                w_sum += float((d_real - d_fake).detach())
                w_n += 1
                if (b + 1) % cfg.n_critic == 0:
                    z = torch.randn(cfg.batch_size, cfg.latent_dim, generator=gen_rng)
                    loss_g = -D(G(z)).mean()
                    opt_g.zero_grad(set_to_none=True)
                    loss_g.backward()
                    opt_g.step()
                    history["steps"] += 1
                now = time.perf_counter()
                history["epochs"] = epoch + (b + 1) / n_batches
                if cfg.time_budget_s is not None and now - t0 > cfg.time_budget_s and b + 1 < n_batches:
                    save(epoch, b + 1, perm, (w_sum, w_n))
                    stop = True
                    break
                if now - last_save > checkpoint_every_s and b + 1 < n_batches:
                    save(epoch, b + 1, perm, (w_sum, w_n))
                    last_save = now
            start_batch, perm = 0, None
            if stop:
                break
            history["w_distance"].append(w_sum / max(w_n, 1))
            save(epoch + 1, 0, None)
            last_save = time.perf_counter()
            if progress:
                progress(epoch, {"w_distance": history["w_distance"][-1], "seconds": history["seconds"]})
            if cfg.time_budget_s is not None and time.perf_counter() - t0 > cfg.time_budget_s:
                break
    history["seconds"] = seconds_before + time.perf_counter() - t0
    G.eval()
    return G, history


def train_autoencoder(
    data: torch.Tensor,
    config: AEConfig | None = None,
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[Autoencoder, dict[str, Any]]:
    """Train the Dice-loss autoencoder on one-hot matrices ``data`` (N, 85, 8).

    Returns ``(autoencoder in eval mode, history)`` with ``epochs``, ``seconds`` and per-epoch ``loss``.
    """
    cfg = config or AEConfig()
    torch.manual_seed(cfg.seed)
    rng = torch.Generator().manual_seed(cfg.seed)
    ae = Autoencoder(cfg.latent_dim, cfg.ch)
    opt = torch.optim.Adam(ae.parameters(), lr=cfg.lr)
    n = data.shape[0]
    t0 = time.perf_counter()
    history: dict[str, Any] = {"loss": [], "epochs": 0.0}
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=rng)
        total, count = 0.0, 0
        n_batches = max(1, math.ceil(n / cfg.batch_size))
        stop = False
        for b in range(n_batches):
            x = data[perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
            loss = neg_dice_loss(ae(x), x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * x.shape[0]
            count += x.shape[0]
            if cfg.time_budget_s is not None and time.perf_counter() - t0 > cfg.time_budget_s:
                history["epochs"] = epoch + (b + 1) / n_batches
                stop = True
                break
        else:
            history["epochs"] = epoch + 1
        history["loss"].append(total / max(count, 1))
        if progress:
            progress(epoch, {"loss": history["loss"][-1], "seconds": time.perf_counter() - t0})
        if stop:
            break
    history["seconds"] = time.perf_counter() - t0
    ae.eval()
    return ae, history


# ---------------------------------------------------------------------------------------------- sampling
@dataclass
class SampleBatch:
    """Decoded samples: ``counts`` (N, 85) uint8, ``formulas`` (N,) canonical or None (empty decode),
    ``ok`` (N,) bool = non-empty and at most 8 elements (representable)."""

    counts: np.ndarray
    formulas: list[str | None]
    ok: np.ndarray


#: Latent rows per generator forward pass (outputs do not depend on it, tested).
SAMPLE_CHUNK = 512
#: Sample with PyTorch's native CPU convolution kernels instead of oneDNN: for these small-channel
#: transposed convolutions on one thread they are ~2x faster (16 k vs 7.7 k draws/s here), and the
#: decoded counts equal the oneDNN path's (400,000 of 400,000 draws measured; tested on 5,000).
NATIVE_CONV = True


def _chunked_randn(n: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(n, dim, generator=g)


def reduced_sizes(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Atoms and elements of the reduced formulas of ``(N, E)`` integer count rows.

    Returns ``(n_atoms, n_elements)``, two (N,) int64 arrays: the row sum divided by the gcd of the
    row (0 for an all-zero row) and the number of non-zero entries. Equal to counting
    :func:`alcore.composition.reduced_counts` of the row's canonical formula (tested), without
    parsing a string.
    """
    c = np.asarray(counts).astype(np.int64, copy=False)
    g = np.gcd.reduce(c, axis=1) if c.shape[1] else np.zeros(len(c), dtype=np.int64)
    total = c.sum(axis=1)
    n_atoms = np.where(g > 0, total // np.maximum(g, 1), 0)
    return n_atoms.astype(np.int64), (c > 0).sum(axis=1).astype(np.int64)


@contextlib.contextmanager
def _conv_kernels(native: bool | None = None) -> Iterator[None]:
    """Within the block, CPU convolutions use PyTorch's native kernels if ``native`` (default
    :data:`NATIVE_CONV`), else the defaults (oneDNN). The switch is process-wide while the block runs."""
    if not (NATIVE_CONV if native is None else native):
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a TF32 notice about Intel GPUs
        with torch.backends.mkldnn.flags(enabled=False):
            yield


@torch.no_grad()
def iter_sample_batches(
    generator: Generator, n: int, seed: int, chunk: int = SAMPLE_CHUNK, part: int = 16 * SAMPLE_CHUNK
) -> Iterator[SampleBatch]:
    """The ``n`` draws of :func:`sample_batch` (same seed, same order, same results), yielded as
    consecutive :class:`SampleBatch` parts of at most ``part`` rows, so a caller can store one part
    while the next is computed. ``chunk`` rows go through the generator per forward pass."""
    enc = encoder()
    ff = fast_formula()
    generator.eval()
    z = _chunked_randn(n, generator.latent_dim, seed)
    for p0 in range(0, n, part):
        p1 = min(n, p0 + part)
        counts = np.empty((p1 - p0, len(enc.symbols)), dtype=np.uint8)
        with _conv_kernels():  # not held across the yield: the caller's torch work keeps the defaults
            for s in range(p0, p1, chunk):
                e = min(p1, s + chunk)
                counts[s - p0 : e - p0] = enc.decode_counts(generator(z[s:e]).numpy())
        n_el = (counts > 0).sum(1)
        ok = (n_el > 0) & (n_el <= enc.max_elements)
        yield SampleBatch(counts, ff.formulas(counts), ok)


def sample_batch(generator: Generator, n: int, seed: int, chunk: int = SAMPLE_CHUNK) -> SampleBatch:
    """Draw ``n`` samples from ``generator`` with latent noise from ``seed`` (deterministic).

    Returns a :class:`SampleBatch`; decoding and canonicalisation are vectorised (``decode_counts``
    on whole chunks, :class:`FastFormula` with ``np.unique`` dedup).
    """
    parts = list(iter_sample_batches(generator, n, seed, chunk=chunk, part=max(int(n), 1)))
    if not parts:
        return SampleBatch(np.zeros((0, len(encoder().symbols)), dtype=np.uint8), [], np.zeros(0, dtype=bool))
    return parts[0]


class MatGANSampler:
    """A trained MatGAN behind the :class:`generators.base.CompositionGenerator` interface.

    ``sample(n, seed)`` returns canonical formulas of the representable samples among ``n`` draws;
    ``reachable(formulas)`` says which formulas the companion autoencoder reconstructs exactly
    (needs an autoencoder; raises ``RuntimeError`` without one).
    """

    def __init__(
        self,
        generator: Generator,
        autoencoder: Autoencoder | None = None,
        metadata: dict[str, Any] | None = None,
        name: str = "matgan",
    ) -> None:
        self.name = name
        self.generator = generator.eval()
        self.autoencoder = autoencoder.eval() if autoencoder is not None else None
        self.metadata = metadata or {}

    @classmethod
    def pretrained(
        cls, weights_dir: str | Path | None = None, with_autoencoder: bool = True, name: str = "matgan"
    ) -> MatGANSampler:
        """Load the committed weights from ``data/weights`` (or ``weights_dir``); ``name`` is the
        generator name recorded with pool members.

        Raises :class:`CorruptModelError` if the files are missing or do not match the architecture
        (retrain with ``alflow pools train-matgan``).
        """
        wdir = Path(weights_dir) if weights_dir else WEIGHTS_DIR
        gen, meta = load_trained(wdir, GENERATOR_NAME)
        ae = None
        if with_autoencoder and (wdir / f"{AUTOENCODER_NAME}.safetensors").exists():
            ae, _ = load_trained(wdir, AUTOENCODER_NAME)
        return cls(gen, ae, meta, name)

    def sample_batch(self, n: int, seed: int) -> SampleBatch:
        """All ``n`` decoded draws for ``seed`` (see :func:`sample_batch`)."""
        return sample_batch(self.generator, n, seed)

    def sample(self, n: int, seed: int) -> list[str]:
        """``n`` draws for ``seed``; returns the canonical formulas of the representable ones (<= n)."""
        b = self.sample_batch(n, seed)
        return [f for f, ok in zip(b.formulas, b.ok, strict=True) if ok]

    def sample_sized(
        self,
        n: int,
        seed: int,
        part: int = 16 * SAMPLE_CHUNK,
    ) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
        """The formulas of :meth:`sample` ``(n, seed)`` (same list, same order) in consecutive parts,
        each with the reduced formulas' atom and element counts taken from the decoded count matrix:
        yields ``(formulas, n_atoms (k,) int64, n_elements (k,) int64)``. Pool generation stores one
        part while the next is sampled, without re-parsing the strings."""
        for b in iter_sample_batches(self.generator, n, seed, part=part):
            idx = np.flatnonzero(b.ok)
            atoms, elems = reduced_sizes(b.counts[idx])
            yield [b.formulas[i] for i in idx], atoms, elems

    @torch.no_grad()
    def reachable(self, formulas: Sequence[str]) -> np.ndarray:
        """(N,) bool: True where the autoencoder (decoder = generator architecture) reconstructs the
        formula exactly; formulas outside the matgan85 / max-8 encoding are False."""
        if self.autoencoder is None:
            raise RuntimeError("this MatGAN has no autoencoder; load one (train-matgan trains both)")
        enc = encoder()
        res = enc.encode_batch(list(formulas), errors="mask")
        out = np.zeros(len(formulas), dtype=bool)
        idx = np.flatnonzero(res.valid)
        for s in range(0, len(idx), 8192):
            part = idx[s : s + 8192]
            x = torch.from_numpy(res.matrices[part])
            rec = enc.decode_counts(self.autoencoder(x).numpy())
            out[part] = (rec == enc.decode_counts(res.matrices[part])).all(1)
        return out


# ---------------------------------------------------------------------------------------------- weights
def save_module(weights_dir: str | Path, name: str, module: nn.Module, metadata: dict[str, Any]) -> Path:
    """Write ``<name>.safetensors`` and ``<name>.json`` (metadata + sha256 of the weights file); returns the
    weights path."""
    wdir = Path(weights_dir)
    wdir.mkdir(parents=True, exist_ok=True)
    path = wdir / f"{name}.safetensors"
    save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, str(path))
    meta = {**metadata, "weights_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    (wdir / f"{name}.json").write_text(json.dumps(meta, indent=2, default=_jsonable) + "\n")
    return path


def load_module(
    weights_dir: str | Path, name: str, build: Callable[[dict[str, Any]], nn.Module]
) -> tuple[nn.Module, dict]:
    """Load ``<name>.safetensors`` into ``build(metadata)``; returns ``(module in eval mode, metadata)``.

    Raises :class:`CorruptModelError` for missing files, a sha256 mismatch or a shape mismatch.
    """
    wdir = Path(weights_dir)
    path, meta_path = wdir / f"{name}.safetensors", wdir / f"{name}.json"
    if not path.exists() or not meta_path.exists():
        raise CorruptModelError(f"{path} or its .json is missing; train it with `alflow pools train-matgan`")
    meta = json.loads(meta_path.read_text())
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    if meta.get("weights_sha256") not in (None, sha):
        raise CorruptModelError(f"{path} does not match the sha256 in {meta_path.name}; retrain or restore it")
    module = build(meta)
    try:
        module.load_state_dict(load_file(str(path)))
    except (RuntimeError, KeyError) as exc:
        raise CorruptModelError(f"{path} does not fit the {type(module).__name__} architecture: {exc}") from None
    return module.eval(), meta


def load_trained(weights_dir: str | Path, name: str) -> tuple[nn.Module, dict]:
    """Load the saved ``matgan_generator`` or ``matgan_autoencoder`` (``name``) of ``weights_dir``,
    sized by its metadata; returns ``(module in eval mode, metadata)`` (errors as :func:`load_module`)."""
    cls = {GENERATOR_NAME: Generator, AUTOENCODER_NAME: Autoencoder}[name]
    return load_module(weights_dir, name, lambda m: cls(m["params"]["latent_dim"], m["params"]["ch"]))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    return str(obj)


# ---------------------------------------------------------------------------------------------- metrics
def generation_metrics(
    batch: SampleBatch,
    known: set[str] | frozenset[str],
    validity_sample: int | None = None,
    seed: int = 0,
    training: set[str] | frozenset[str] | None = None,
) -> dict[str, Any]:
    """Validity, novelty and uniqueness of a :class:`SampleBatch` (fractions in [0, 1]).

    * ``uniqueness``: distinct representable formulas / samples.
    * ``novelty_samples``: share of representable samples whose formula is not in ``known``;
      ``novelty_unique``: the same over distinct formulas. With ``training`` (the model's training
      formulas), ``novelty_vs_training_samples`` is the share not in the training set (MatGAN's
      definition: new with respect to the training data).
    * ``validity``: share of all samples that are representable and pass
      :func:`alcore.validity.check_validity` (SMACT charge neutrality + electronegativity, default
      :class:`~alcore.validity.ValidityRules`). Evaluated once per distinct formula and weighted by
      its count; with ``validity_sample`` set, on that many samples drawn uniformly (seeded), with a
      binomial standard error ``validity_se``. SMACT counts single-element formulas as valid;
      ``validity_multi_element`` counts only valid formulas with >= 2 elements (the training set
      has none with one element) and ``single_element_share`` says how many samples are elemental.
    """
    from alcore.validity import ValidityRules, check_validity

    n = len(batch.formulas)
    forms = np.asarray(batch.formulas, dtype=object)
    okf = forms[batch.ok]
    uniq, counts = np.unique(okf.astype(str), return_counts=True) if len(okf) else (np.array([]), np.array([]))
    novel_u = np.array([u not in known for u in uniq], dtype=bool)
    out: dict[str, Any] = {
        "samples": n,
        "representable": float(batch.ok.mean()) if n else 0.0,
        "unique_formulas": len(uniq),
        "uniqueness": len(uniq) / n if n else 0.0,
        "novelty_samples": float((novel_u * counts).sum() / max(counts.sum(), 1)),
        "novelty_unique": float(novel_u.mean()) if len(uniq) else 0.0,
    }
    if training is not None:
        new_u = np.array([u not in training for u in uniq], dtype=bool)
        out["novelty_vs_training_samples"] = float((new_u * counts).sum() / max(counts.sum(), 1))
    rules = ValidityRules()
    n_el = (np.asarray(batch.counts) > 0).sum(1)
    out["single_element_share"] = float((batch.ok & (n_el == 1)).mean()) if n else 0.0
    t0 = time.perf_counter()
    if validity_sample is None or validity_sample >= n:
        valid_u = np.array([check_validity(u, rules).valid for u in uniq], dtype=bool)
        multi_u = np.array([len(reduced_counts(u)) >= 2 for u in uniq], dtype=bool)
        out["validity"] = float((valid_u * counts).sum() / n) if n else 0.0
        out["validity_multi_element"] = float(((valid_u & multi_u) * counts).sum() / n) if n else 0.0
        out["validity_method"] = "all samples (each distinct formula checked once, weighted by count)"
        out["validity_se"] = 0.0
        out["valid_novel_unique"] = int((valid_u & novel_u).sum())
    else:
        rng = np.random.default_rng(seed)
        pick = rng.choice(n, size=validity_sample, replace=False)
        hits = np.array([bool(batch.ok[i]) and check_validity(forms[i], rules).valid for i in pick])
        p = float(hits.mean())
        out["validity"] = p
        out["validity_multi_element"] = float((hits & (n_el[pick] >= 2)).mean())
        out["validity_se"] = math.sqrt(p * (1 - p) / validity_sample)
        out["validity_method"] = f"uniform random subsample of {validity_sample} samples (seed {seed})"
    out["validity_seconds"] = time.perf_counter() - t0
    return out


# ---------------------------------------------------------------------------------------------- end to end
def train_matgan(
    weights_dir: str | Path | None = None,
    gan: GANConfig | None = None,
    ae: AEConfig | None = None,
    holdout: float = 0.05,
    eval_samples: int = 5000,
    log_fn: Callable[[str], None] | None = None,
    valid_only: bool = False,
    checkpoint: str | Path | None = None,
) -> dict[str, Any]:
    """Train the MatGAN generator and its autoencoder on the MP training formulas (only the
    SMACT-valid ones with ``valid_only``, see :func:`training_formulas`) and save both.

    The WGAN-GP resumes from and writes ``checkpoint`` (default
    ``<weights_dir>/checkpoints/matgan_gan.pt``, ignored by git; see :func:`train_gan`), so repeated
    calls with a time budget continue one training; the autoencoder is retrained each call.

    Writes ``matgan_generator`` and ``matgan_autoencoder`` (``.safetensors`` + ``.json``) into
    ``weights_dir`` (default ``data/weights``). The AE is fit on ``1 - holdout`` of the formulas and
    its exact-reconstruction rate is reported on the held-out rest. Returns the metadata dict
    (data hash, sizes, configs, histories, metrics).
    """
    say = log_fn or log.info
    gan, ae = gan or GANConfig(), ae or AEConfig()
    forms = training_formulas(valid_only=valid_only)
    data = encode_formulas(forms)
    dh = data_hash(forms)
    say(f"training formulas: {len(forms)} (sha256 {dh[:12]})")
    wdir = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    ckpt = Path(checkpoint) if checkpoint else wdir / "checkpoints" / "matgan_gan.pt"
    G, gh = train_gan(data, gan, progress=lambda e, s: say(f"gan epoch {e}: {s}"), checkpoint=ckpt)
    rng = np.random.default_rng(ae.seed)
    perm = rng.permutation(len(forms))
    n_hold = int(round(holdout * len(forms)))
    hold, fit = perm[:n_hold], perm[n_hold:]
    A, ah = train_autoencoder(data[torch.from_numpy(fit)], ae, progress=lambda e, s: say(f"ae epoch {e}: {s}"))
    sampler = MatGANSampler(G, A)
    hold_forms = [forms[i] for i in hold]
    fit_forms = [forms[i] for i in fit[:5000]]
    batch = sampler.sample_batch(eval_samples, seed=12345)
    gm = generation_metrics(batch, known_formulas())
    samples_ok = [f for f, ok in zip(batch.formulas, batch.ok, strict=True) if ok]
    metrics = {
        **{f"gen_{k}": v for k, v in gm.items() if not isinstance(v, str)},
        "ae_exact_reconstruction_heldout": float(sampler.reachable(hold_forms).mean()) if hold_forms else None,
        "ae_exact_reconstruction_train": float(sampler.reachable(fit_forms).mean()),
        "reachable_share_of_generated": float(sampler.reachable(samples_ok).mean()) if samples_ok else 0.0,
    }
    say(f"metrics: {metrics}")
    common = {
        "data": "data/known/mp_formulas_spacegroups.csv "
        "(pretty_formula; canonical, dedup, matgan85/max 8, >= 2 elements"
        + (", SMACT-valid only)" if valid_only else ")"),
        "data_sha256": dh,
        "n_formulas": len(forms),
        "elements": ELEMENTS,
        "max_count": MAX_COUNT,
        "torch": torch.__version__,
        "metrics": metrics,
    }
    save_module(
        wdir,
        GENERATOR_NAME,
        G,
        {
            **common,
            "kind": "matgan_generator",
            "params": {"latent_dim": gan.latent_dim, "ch": gan.ch},
            "config": asdict(gan),
            "epochs": gh["epochs"],
            "generator_steps": gh["steps"],
            "seconds": gh["seconds"],
            "runs": gh["runs"],
            "lr_schedule": gh["lr_schedule"],
            "w_distance": gh["w_distance"],
        },
    )
    save_module(
        wdir,
        AUTOENCODER_NAME,
        A,
        {
            **common,
            "kind": "matgan_autoencoder",
            "params": {"latent_dim": ae.latent_dim, "ch": ae.ch},
            "config": asdict(ae),
            "epochs": ah["epochs"],
            "seconds": ah["seconds"],
            "loss": ah["loss"],
            "split": {"holdout": holdout, "n_fit": len(fit), "n_heldout": n_hold, "seed": ae.seed},
        },
    )
    return {**common, "gan_history": gh, "ae_history": ah}
