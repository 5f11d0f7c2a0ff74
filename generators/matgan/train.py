"""Training MatGAN: the WGAN-GP (resumable from checkpoints) and the companion autoencoder, end to end."""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alcore.paths import WEIGHTS_DIR
from alcore.weights import load_checkpoint, load_state_dicts, save_checkpoint, state_dicts
from generators.matgan.data import (
    AUTOENCODER_NAME,
    ELEMENTS,
    GENERATOR_NAME,
    LATENT_DIM,
    MAX_COUNT,
    data_hash,
    encode_formulas,
    known_formulas,
    training_formulas,
)
from generators.matgan.model import Autoencoder, Critic, Generator, gradient_penalty, neg_dice_loss, save_module
from generators.matgan.sample import MatGANSampler, conv_kernels, generation_metrics

log = logging.getLogger(__name__)


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


NATIVE_TRAIN_MAX_CH = 8
CHECKPOINT_VERSION = 1
#: GANConfig fields that may change between a checkpoint and its resumption (a new ``lr`` is applied
#: to both optimisers and recorded in the history's ``lr_schedule``).
RESUMABLE_FIELDS = ("epochs", "time_budget_s", "lr")


def _checkpoint_state(
    parts: dict[str, Any],
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
        **state_dicts(parts),
        "rng": gen_rng.get_state(),
        "epoch": epoch,
        "next_batch": next_batch,
        "perm": perm,
        "history": history,
    }


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
    parts = {"generator": G, "critic": D, "opt_g": opt_g, "opt_d": opt_d}  # the checkpoint's keys
    n = data.shape[0]
    n_batches = max(1, n // cfg.batch_size)
    data_sha = hashlib.sha256(data.numpy().tobytes()).hexdigest()
    ckpt = Path(checkpoint) if checkpoint else None
    history: dict[str, Any] = {"w_distance": [], "steps": 0, "epochs": 0.0, "seconds": 0.0, "runs": 0}
    start_epoch, start_batch, perm, first_lr = 0, 0, None, cfg.lr
    if ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt, "MatGAN", CHECKPOINT_VERSION, data_sha, asdict(cfg), RESUMABLE_FIELDS)
        load_state_dicts(parts, state)
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
            save_checkpoint(
                ckpt,
                _checkpoint_state(parts, gen_rng, cfg, data_sha, epoch, next_batch, perm_now, state_history),
            )

    stop = False
    with conv_kernels(native=cfg.ch <= NATIVE_TRAIN_MAX_CH):
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


__all__ = ["AEConfig", "GANConfig", "train_autoencoder", "train_gan", "train_matgan"]
