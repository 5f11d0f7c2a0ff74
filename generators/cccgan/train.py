"""Training of the composition-conditioned crystal GAN (WGAN-GP + composition classifier), generation,
and safetensors weights with JSON metadata.

Losses per step (``n_critic`` critic/classifier steps per generator step):

* critic: ``D(fake) - D(real) + 10 * GP``;
* classifier (on lightly noised real images): ``lambda_occ * CE_rows + CE_counts``;
* generator: ``-D(fake) + lambda_cls * (CE_counts(fake, requested) + lambda_occ * CE_rows(fake))
  + lambda_pad * padding_loss + lambda_cell * cell_moment_loss + lambda_dist * distance_penalty``.
  The last three terms are our additions, not the paper's: a direct penalty that padding rows be 0
  and atom rows be >= 0.2, feature matching of the cell rows' batch mean/std, and a differentiable
  minimum-image hinge on interatomic distances below 1.6 Å (cation-anion) / 2.0 Å (same kind);
  they make a CPU-minutes run produce decodable cells with separated atoms.

Fake compositions are drawn from the training compositions with probability ``p_train_comp`` and
uniformly from the whole 8 x 8 x 12 grid otherwise, so the generator also sees unseen compositions.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from copy import deepcopy
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from alcore import weights as weights_io
from alcore.paths import WEIGHTS_DIR
from alcore.weights import load_checkpoint, load_state_dicts, save_checkpoint, state_dicts
from generators.cccgan.augment import augment
from generators.cccgan.model import (
    Classifier,
    Critic,
    Generator,
    cell_moment_loss,
    classifier_losses,
    condition_vector,
    distance_penalty,
    gradient_penalty,
    padding_loss,
)
from generators.cccgan.representation import MAX_COUNTS, image_counts, parse_counts

log = logging.getLogger(__name__)

DEFAULT_NAME = "cccgan_mgmno"


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (all serialised into the weights' metadata)."""

    latent_dim: int = 64
    g_channels: int = 32
    d_channels: int = 32
    q_channels: int = 16
    per_composition: int = 100  # augmentation target per composition (paper: 1,000)
    batch_size: int = 64
    epochs: int = 8
    max_steps: int | None = 300  # stop after this many critic steps (None: full epochs)
    n_critic: int = 1  # generator step every n_critic critic steps (WGAN-GP papers: 5; 1 for CPU-minutes)
    lr_d: float = 2e-4
    lr_g: float = 1e-3
    lr_q: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.9)
    gp_weight: float = 10.0
    lambda_cls: float = 1.0
    lambda_occ: float = 1.0
    lambda_pad: float = 10.0  # direct occupancy penalty (not in the paper; see model.padding_loss)
    lambda_cell: float = 10.0  # cell feature matching (not in the paper; see model.cell_moment_loss)
    lambda_dist: float = 1.0  # short-distance hinge (not in the paper; see model.distance_penalty)
    d_cation_anion: float = 1.6  # Å, hinge threshold for Mg/Mn-O pairs
    d_same_kind: float = 2.0  # Å, hinge threshold for cation-cation and O-O pairs
    p_train_comp: float = 0.5
    seed: int = 0
    holdout: list[str] = field(default_factory=list)  # cell formulas left out of training


@dataclass
class TrainResult:
    """A trained generator and classifier, the config, and training metrics (JSON-able)."""

    generator: Generator
    classifier: Classifier
    config: TrainConfig
    metrics: dict


def _sample_counts(n: int, train_comps: np.ndarray, p_train: float, rng: np.random.Generator) -> np.ndarray:
    """Counts ``(n, 3)``: training compositions with probability ``p_train``, else uniform on the grid."""
    pick = rng.random(n) < p_train
    out = np.stack([rng.integers(1, m + 1, n) for m in MAX_COUNTS], 1)
    idx = rng.integers(0, len(train_comps), n)
    out[pick] = train_comps[idx[pick]]
    return out


CHECKPOINT_VERSION = 1
#: TrainConfig fields that may change between a checkpoint and its continuation.
RESUMABLE_FIELDS = ("max_steps", "epochs")


def train(
    images: np.ndarray,
    config: TrainConfig | None = None,
    progress: Callable[[int, int, dict], None] | None = None,
    *,
    checkpoint: str | Path | None = None,
    time_budget_s: float | None = None,
    snapshot_every: int | None = None,
    on_snapshot: Callable[[int, TrainResult], None] | None = None,
) -> TrainResult:
    """Train on real images ``(N, 30, 3)`` (augmented here by ``config.per_composition``), resumably.

    Images whose cell formula is in ``config.holdout`` are dropped first. ``progress(step, total,
    metrics)`` is called after every generator step. Returns a :class:`TrainResult` whose metrics
    hold the final losses, the classifier's count accuracy on real images, seconds, steps (total over
    all runs of a checkpoint), and the number of training images and compositions.

    With ``checkpoint`` (a file path) the three networks, their optimisers, all random states, the
    position inside the epoch and the loss history are written there atomically when the run stops
    (target ``max_steps`` reached or ``time_budget_s`` seconds used) and at every snapshot; an
    existing checkpoint is resumed, so repeated time-budgeted runs continue one training and
    ``max_steps`` is the total target. A resumed run equals an uninterrupted one (tested). Only
    ``max_steps`` / ``epochs`` may differ from the checkpoint's settings (``ValueError`` otherwise;
    :class:`CorruptModelError` for an unreadable file). Every ``snapshot_every`` steps
    ``on_snapshot(step, result)`` gets the current generator (eval mode, a copy) for per-checkpoint
    metrics.
    """
    cfg = config or TrainConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    images = np.asarray(images)
    if cfg.holdout:
        held = {parse_counts(f) for f in cfg.holdout}
        keep = np.array([tuple(int(x) for x in c) not in held for c in image_counts(images)])
        images = images[keep]
    aug, counts = augment(images, cfg.per_composition, seed=cfg.seed)
    train_comps = np.array(sorted({tuple(int(x) for x in c) for c in counts}))
    x_all = torch.from_numpy(aug).float().unsqueeze(1)
    c_all = torch.from_numpy(counts).long()
    g = Generator(cfg.latent_dim, cfg.g_channels)
    d = Critic(cfg.d_channels)
    q = Classifier(cfg.q_channels)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr_g, betas=cfg.betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=cfg.betas)
    opt_q = torch.optim.Adam(q.parameters(), lr=cfg.lr_q, betas=cfg.betas)
    parts = {"g": g, "d": d, "q": q, "opt_g": opt_g, "opt_d": opt_d, "opt_q": opt_q}  # the checkpoint's keys
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(x_all)
    steps_per_epoch = max(1, n // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs if cfg.max_steps is None else cfg.max_steps
    hist: dict[str, list[float]] = {"w_dist": [], "gp": [], "q_real": [], "g_cls": [], "g_dist": []}
    step, b_start, perm, seconds_before, runs = 0, 0, None, 0.0, 0
    ckpt = Path(checkpoint) if checkpoint else None
    data_sha = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()
    if ckpt is not None and ckpt.exists():
        st = load_checkpoint(ckpt, "cccgan", CHECKPOINT_VERSION, data_sha, asdict(cfg), RESUMABLE_FIELDS)
        load_state_dicts(parts, st)
        gen.set_state(st["rng_torch"])
        torch.set_rng_state(st["rng_global"])
        rng.bit_generator.state = st["rng_numpy"]
        hist = st["history"]
        step, b_start, perm = st["step"], st["next_batch"], st["perm"]
        seconds_before, runs = st["seconds"], st["runs"]
        log.info("resuming cccgan training from %s at step %d", ckpt, step)
    t0 = time.perf_counter()

    def result(at_step: int, copy: bool) -> TrainResult:
        wall = seconds_before + time.perf_counter() - t0
        return _result(g, q, cfg, hist, at_step, wall, n, train_comps, images, x_all, c_all, copy=copy)

    def save(next_batch: int, perm_now: torch.Tensor | None) -> None:
        if ckpt is None:
            return
        save_checkpoint(
            ckpt,
            {
                "version": CHECKPOINT_VERSION,
                "config": asdict(cfg),
                "data_sha256": data_sha,
                **state_dicts(parts),
                "rng_torch": gen.get_state(),
                "rng_global": torch.get_rng_state(),
                "rng_numpy": rng.bit_generator.state,
                "history": hist,
                "step": step,
                "next_batch": next_batch,
                "perm": perm_now,
                "seconds": seconds_before + time.perf_counter() - t0,
                "runs": runs + 1,
            },
        )

    stopped = False
    while step < total and not stopped:
        if perm is None:
            perm = torch.randperm(n, generator=gen)
        for b in range(b_start, steps_per_epoch):
            if step >= total:
                save(b, perm)
                stopped = True
                break
            idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            real, real_c = x_all[idx], c_all[idx]
            bs = len(idx)
            fake_c = torch.from_numpy(_sample_counts(bs, train_comps, cfg.p_train_comp, rng)).long()
            z = torch.randn(bs, cfg.latent_dim, generator=gen)
            with torch.no_grad():
                fake = g(z, condition_vector(fake_c))
            # critic
            opt_d.zero_grad()
            w = d(real).mean() - d(fake).mean()
            gp = gradient_penalty(d, real, fake, gen, cfg.gp_weight)
            (gp - w).backward()
            opt_d.step()
            # classifier on (lightly noised) real images
            opt_q.zero_grad()
            noisy = real + (real < 0.01).float() * torch.rand(real.shape, generator=gen) * 0.01
            occ_l, comp_l = classifier_losses(q, noisy, real_c)
            (cfg.lambda_occ * occ_l + comp_l).backward()
            opt_q.step()
            hist["w_dist"].append(float(w.detach()))
            hist["gp"].append(float(gp.detach()))
            hist["q_real"].append(float(comp_l.detach()))
            if step % cfg.n_critic == 0:
                opt_g.zero_grad()
                z = torch.randn(bs, cfg.latent_dim, generator=gen)
                fake = g(z, condition_vector(fake_c))
                q.eval()
                occ_f, comp_f = classifier_losses(q, fake, fake_c)
                q.train()
                g_loss = (
                    -d(fake).mean()
                    + cfg.lambda_cls * (comp_f + cfg.lambda_occ * occ_f)
                    + cfg.lambda_pad * padding_loss(fake, fake_c)
                    + cfg.lambda_cell * cell_moment_loss(fake, real)
                )
                if cfg.lambda_dist > 0:
                    dist_l = distance_penalty(fake, fake_c, cfg.d_cation_anion, cfg.d_same_kind)
                    g_loss = g_loss + cfg.lambda_dist * dist_l
                    hist["g_dist"].append(float(dist_l.detach()))
                g_loss.backward()
                opt_g.step()
                hist["g_cls"].append(float(comp_f.detach()))
                if progress is not None:
                    progress(
                        step,
                        total,
                        {
                            "w": float(w.detach()),
                            "g_cls": float(comp_f.detach()),
                            "g_dist": hist["g_dist"][-1] if hist["g_dist"] else 0.0,
                        },
                    )
            step += 1
            if snapshot_every and step % snapshot_every == 0:
                save(b + 1, perm)
                if on_snapshot is not None:
                    on_snapshot(step, result(step, copy=True))
            if time_budget_s is not None and time.perf_counter() - t0 > time_budget_s and step < total:
                save(b + 1, perm)
                stopped = True
                break
        else:
            b_start, perm = 0, None
            continue
        break
    if not stopped:
        save(0, None)
    return result(step, copy=False)


def _result(
    g: Generator,
    q: Classifier,
    cfg: TrainConfig,
    hist: dict[str, list[float]],
    step: int,
    seconds: float,
    n: int,
    train_comps: np.ndarray,
    images: np.ndarray,
    x_all: torch.Tensor,
    c_all: torch.Tensor,
    copy: bool,
) -> TrainResult:
    """Metrics of the current networks; with ``copy`` the networks are deep copies (training goes on)."""
    if copy:
        g, q = deepcopy(g), deepcopy(q)
    q.eval()
    with torch.no_grad():
        sub = torch.arange(0, n, max(1, n // 2000))
        _, cats = q(x_all[sub])
        acc = float(np.mean([(cat.argmax(1) + 1 == c_all[sub, i]).float().mean().item() for i, cat in enumerate(cats)]))
    g.eval()

    def tail(key: str) -> float:
        vals = hist[key][-50:]
        return float(np.mean(vals)) if vals else float("nan")

    metrics = {
        "steps": step,
        "epochs_done": round(step / max(1, n // cfg.batch_size), 3),
        "seconds": round(seconds, 1),
        "n_train_images": int(n),
        "n_train_compositions": len(train_comps),
        "n_real_images": int(len(images)),
        "w_dist_last50": tail("w_dist"),
        "gp_last50": tail("gp"),
        "classifier_ce_real_last50": tail("q_real"),
        "generator_cls_ce_last50": tail("g_cls"),
        "generator_distance_penalty_last50": tail("g_dist"),
        "classifier_count_accuracy_real": round(acc, 4),
    }
    return TrainResult(g, q, cfg, metrics)


def generate(generator: Generator, counts: Sequence[int], n: int, seed: int = 0) -> np.ndarray:
    """Generate ``n`` images ``(n, 30, 3)`` float64 for the cell composition ``counts`` (Mg, Mn, O)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    generator.eval()
    c = torch.tensor([list(parse_counts(counts))] * n)
    z = torch.randn(n, generator.latent_dim, generator=gen)
    with torch.no_grad():
        out = generator(z, condition_vector(c))
    return out.squeeze(1).double().numpy()


def save_weights(
    result: TrainResult,
    data_sha256: str,
    name: str = DEFAULT_NAME,
    directory: Path | None = None,
    extra: dict | None = None,
) -> Path:
    """Write ``<name>.safetensors`` (generator ``g.*`` and classifier ``q.*`` tensors) and ``<name>.json``.

    Returns the safetensors path. Metadata: data hash, config, metrics, ``extra``.
    """
    directory = Path(directory or WEIGHTS_DIR)
    tensors = {f"g.{k}": v for k, v in result.generator.state_dict().items()}
    tensors.update({f"q.{k}": v for k, v in result.classifier.state_dict().items()})
    meta = {
        "model": "cccgan",
        "paper": "Kim et al., ACS Cent. Sci. 2020 (composition-conditioned crystal GAN)",
        "data": "data/cccgan/mgmno_unique_sc.npy",
        "data_sha256": data_sha256,
        "epochs": result.config.epochs,
        "params": asdict(result.config),
        "metrics": result.metrics,
        **(extra or {}),
    }
    weights_io.save_weights(directory / name, tensors, meta)
    return weights_io.weights_paths(directory / name)[0]


def load_generator(name: str = DEFAULT_NAME, directory: Path | None = None) -> tuple[Generator, dict]:
    """Load a generator saved by :func:`save_weights`; returns ``(generator in eval mode, metadata)``.

    Raises :class:`CorruptModelError` if the files are missing or do not fit the recorded params.
    """
    stem = Path(directory or WEIGHTS_DIR) / name
    tensors, meta = weights_io.load_weights(stem, "train first (alflow cccgan train)")
    params = meta["params"]
    g = Generator(params["latent_dim"], params["g_channels"])
    weights_io.load_into(g, {k[2:]: v for k, v in tensors.items() if k.startswith("g.")}, stem)
    return g, meta
