"""Training the composition LM: next-token cross-entropy with condition dropout (so one model samples
both conditioned and unconditioned), resumable from checkpoints, with checkpoint selection on a
criterion fixed before training: the share of evaluation samples that are SMACT-valid (>= 2
elements), not a training formula, and distinct within the sample ("VNU"), the samples drawn the way
the generator is used (``eval_sampler``: ``"distinct"``, the ``complm-distinct`` sampler that
redraws known and already-drawn formulas; ``"plain"``, unconditioned sampling without redraws, the
criterion of the first shipped weights)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from alcore.weights import load_checkpoint, save_checkpoint
from generators.complm.model import CompositionLM, LMConfig
from generators.complm.tokens import EF_NULL, GAP_NULL, PAD, FormulaTokenizer, condition_tokens

log = logging.getLogger(__name__)
CHECKPOINT_VERSION = 1
#: TrainConfig fields that may change between a checkpoint and its resumption.
RESUMABLE_FIELDS = ("time_budget_s",)


@dataclass
class TrainConfig:
    """Hyper-parameters. ``steps`` is the total target (the cosine schedule spans it);
    ``cond_drop`` the probability of replacing each condition token by its null token (so the
    model learns the unconditioned distribution too: classifier-free guidance); evaluation every
    ``eval_every`` steps on ``eval_samples`` samples (seed ``eval_seed``, temperature 1) drawn with
    ``eval_sampler`` (``"distinct"``: known formulas and formulas already drawn are redrawn, up to 4
    times, as ``complm-distinct`` does; ``"plain"``: no redraws), validity checked on at most
    ``eval_check`` distinct novel formulas; ``eval_cond_samples`` draws conditioned on ``> 5`` eV
    (``complm-cond``'s settings) have their validity recorded (used for selection only with
    ``min_cond_validity``; 0 = off);
    ``wide_gap_repeat``: rows labelled ``> 5`` eV appear this many times in every epoch's shuffle
    (1 = each row once; the rarest bin: 2.6 % of the labelled training formulas); with
    ``repeats_keep_condition`` the extra copies always keep their gap token (condition dropout
    applies to the originals only), so that the repeats teach the conditional distribution without
    shifting the unconditioned one; ``min_cond_validity`` (0 = off): only checkpoints whose ``> 5``
    conditioned draws are at least this share SMACT-valid compete on VNU
    (:func:`selection_criterion`)."""

    steps: int = 3000
    batch_size: int = 256
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup: int = 200
    weight_decay: float = 0.1
    cond_drop: float = 0.2
    d: int = 128
    layers: int = 3
    heads: int = 4
    ff: int = 512
    dropout: float = 0.1
    eval_every: int = 300
    eval_samples: int = 20000
    eval_seed: int = 777
    eval_sampler: str = "distinct"
    eval_check: int = 5000
    eval_cond_samples: int = 2000
    seed: int = 0
    time_budget_s: float | None = None
    wide_gap_repeat: int = 1
    repeats_keep_condition: bool = False
    min_cond_validity: float = 0.0


#: Recipe of the conditioned-sampling weights ``data/weights/complm_cond`` (the v5 run of
#: docs/complm.md): wide-gap rows repeated 4x with their condition, checkpoints selected among those
#: whose ``> 5`` conditioned draws are >= 88 % valid, training seed 1 (time budget set per run).
CONDITIONED_RECIPE = {"wide_gap_repeat": 4, "repeats_keep_condition": True, "min_cond_validity": 0.88, "seed": 1}


def selection_criterion(row: dict[str, float], cfg: TrainConfig) -> float:
    """The value checkpoint selection maximises for one evaluation ``row``: its VNU share, minus 1
    when ``cfg.min_cond_validity`` is set and the row's ``> 5`` conditioned validity is below it (a
    checkpoint under the bar ranks below every checkpoint over it, and among its peers by VNU)."""
    below = cfg.min_cond_validity > 0 and row.get("cond_gt5_validity", 0.0) < cfg.min_cond_validity
    return row["vnu"] - (1.0 if below else 0.0)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of update ``step`` (0-based): linear warm-up, then cosine to ``min_lr_ratio * lr``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def lm_loss(model: CompositionLM, tokens: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the pair/EOS tokens of ``tokens`` (B, L) given their prefixes (the
    condition tokens are inputs only)."""
    logits = model(tokens[:, :-1])
    target = tokens[:, 1:].clone()
    target[:, 0] = PAD  # position 0 predicts the E_form token: a given condition, not learned
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=PAD)


def epoch_rows(tokens: torch.Tensor, wide_gap_repeat: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One epoch of ``tokens`` (N, L): row indices (M,), every row once and rows whose gap token is
    the ``> 5`` eV bin ``wide_gap_repeat`` times in all (M = N when it is 1), and a bool mask (M,)
    marking the extra copies."""
    rows = torch.arange(tokens.shape[0])
    if wide_gap_repeat <= 1:
        return rows, torch.zeros(len(rows), dtype=torch.bool)
    wide = rows[tokens[:, 0] == condition_tokens(">5", None)[0]].repeat(wide_gap_repeat - 1)
    copy = torch.cat([torch.zeros(len(rows), dtype=torch.bool), torch.ones(len(wide), dtype=torch.bool)])
    return torch.cat([rows, wide]), copy


def drop_conditions(
    tokens: torch.Tensor, p: float, gen: torch.Generator, keep_gap: torch.Tensor | None = None
) -> torch.Tensor:
    """A copy of ``tokens`` (B, L) whose gap and E_form tokens are each replaced by the null token
    with probability ``p`` (independently); rows where ``keep_gap`` (B,) is true keep their gap token."""
    out = tokens.clone()
    u = torch.rand(tokens.shape[0], 2, generator=gen)
    drop_gap = u[:, 0] < p if keep_gap is None else (u[:, 0] < p) & ~keep_gap
    out[:, 0] = torch.where(drop_gap, torch.full_like(out[:, 0], GAP_NULL), out[:, 0])
    out[:, 1] = torch.where(u[:, 1] < p, torch.full_like(out[:, 1], EF_NULL), out[:, 1])
    return out


@torch.no_grad()
def val_loss(model: CompositionLM, tokens: torch.Tensor, batch: int = 2048) -> float:
    """Mean per-token validation loss over ``tokens`` (N, L), evaluated with the null conditions."""
    model.eval()
    toks = tokens.clone()
    toks[:, 0], toks[:, 1] = GAP_NULL, EF_NULL
    total, n = 0.0, 0
    for s in range(0, len(toks), batch):
        x = toks[s : s + batch]
        k = int((x[:, 2:] >= 1).sum())
        total += float(lm_loss(model, x)) * k
        n += k
    return total / max(n, 1)


def model_config(tokenizer: FormulaTokenizer, cfg: TrainConfig) -> LMConfig:
    """The :class:`LMConfig` of a training configuration."""
    return LMConfig(tokenizer.vocab_size, tokenizer.seq_len, cfg.d, cfg.layers, cfg.heads, cfg.ff, cfg.dropout)


def train_lm(
    tokenizer: FormulaTokenizer,
    train_tokens: np.ndarray,
    val_tokens: np.ndarray,
    config: TrainConfig | None = None,
    evaluate: Callable[[CompositionLM], dict[str, float]] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every_s: float = 120.0,
    progress: Callable[[int, dict[str, float]], None] | None = None,
    snapshots: str | Path | None = None,
) -> tuple[CompositionLM, dict[str, Any]]:
    """Train a :class:`CompositionLM` on token rows ``train_tokens`` (N, L), resumably.

    Every ``eval_every`` steps (and at the end) the validation loss on ``val_tokens`` and
    ``evaluate(model)`` (a dict with a ``"criterion"`` to maximise, e.g. the VNU share) are
    recorded; the weights with the best criterion so far are kept (the validation loss decides
    without ``evaluate``). Returns ``(best model in eval mode, history)``; history has ``steps``,
    ``seconds`` (over all runs), ``evals`` (list of dicts), ``best`` (the chosen eval).

    With ``checkpoint`` the model, optimiser, random states, data position, history and the best
    weights are written atomically every ``checkpoint_every_s`` seconds, at each evaluation and at
    the end; an existing checkpoint is resumed (only ``time_budget_s`` may change) and a resumed
    run equals an uninterrupted one (tested). Raises ``ValueError`` for a checkpoint of other data
    or settings and :class:`CorruptModelError` for an unreadable one. With ``snapshots`` (a folder)
    the weights of every evaluation are also written there as ``step_<n>.pt`` (for later study;
    the selection stays the criterion's).
    """
    cfg = config or TrainConfig()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = CompositionLM(model_config(tokenizer, cfg))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "pos" not in n]
    other = [p for n, p in model.named_parameters() if p.dim() < 2 or "pos" in n]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
    )
    data = torch.from_numpy(np.ascontiguousarray(train_tokens))
    val = torch.from_numpy(np.ascontiguousarray(val_tokens))
    import hashlib

    data_sha = hashlib.sha256(train_tokens.tobytes() + val_tokens.tobytes()).hexdigest()
    rows, copies = epoch_rows(data, cfg.wide_gap_repeat)
    per_epoch = max(1, len(rows) // cfg.batch_size)
    ckpt = Path(checkpoint) if checkpoint else None
    history: dict[str, Any] = {"steps": 0, "seconds": 0.0, "runs": 0, "evals": [], "best": None, "train_loss": []}
    best_state: dict[str, torch.Tensor] | None = None
    perm: torch.Tensor | None = None
    if ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt, "complm", CHECKPOINT_VERSION, data_sha, asdict(cfg), RESUMABLE_FIELDS)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        history, perm, best_state = state["history"], state["perm"], state["best_model"]
        log.info("resuming complm training from %s at step %d", ckpt, history["steps"])
    history["runs"] += 1
    seconds_before = history["seconds"]
    t0 = last_save = time.perf_counter()

    def save() -> None:
        history["seconds"] = seconds_before + time.perf_counter() - t0
        if ckpt is not None:
            save_checkpoint(
                ckpt,
                {
                    "version": CHECKPOINT_VERSION,
                    "config": asdict(cfg),
                    "data_sha256": data_sha,
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "rng": gen.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "perm": perm,
                    "history": history,
                    "best_model": best_state,
                },
            )

    def run_eval() -> None:
        nonlocal best_state
        rng_state = torch.get_rng_state()
        row: dict[str, float] = {"step": history["steps"], "val_loss": val_loss(model, val)}
        if evaluate is not None:
            row.update(evaluate(model))
        torch.set_rng_state(rng_state)
        model.train()
        row["seconds"] = seconds_before + time.perf_counter() - t0
        key = "criterion" if "criterion" in row else None
        best = history["best"]
        better = best is None or (row[key] > best[key] if key else row["val_loss"] < best["val_loss"])
        if better:
            history["best"] = row
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        history["evals"].append(row)
        if snapshots is not None:
            snap = Path(snapshots)
            snap.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), snap / f"step_{history['steps']}.pt")
        log.info("complm eval %s", row)
        if progress:
            progress(history["steps"], row)

    model.train()
    loss_sum, loss_n = 0.0, 0
    while history["steps"] < cfg.steps:
        step = history["steps"]
        pos = step % per_epoch
        if perm is None or pos == 0 and history.get("perm_step") != step:
            perm = torch.randperm(len(rows), generator=gen)
            history["perm_step"] = step
        batch = perm[pos * cfg.batch_size : (pos + 1) * cfg.batch_size]
        keep = copies[batch] if cfg.repeats_keep_condition else None
        x = drop_conditions(data[rows[batch]], cfg.cond_drop, gen, keep)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        loss = lm_loss(model, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        history["steps"] = step + 1
        loss_sum += float(loss.detach())
        loss_n += 1
        if history["steps"] % 100 == 0:
            history["train_loss"].append([history["steps"], loss_sum / loss_n])
            loss_sum, loss_n = 0.0, 0
        if history["steps"] % cfg.eval_every == 0 or history["steps"] == cfg.steps:
            run_eval()
            save()
            last_save = time.perf_counter()
        now = time.perf_counter()
        if cfg.time_budget_s is not None and now - t0 > cfg.time_budget_s:
            break
        if now - last_save > checkpoint_every_s:
            save()
            last_save = now
    history["epochs"] = history["steps"] / per_epoch
    save()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model, history


__all__ = [
    "CONDITIONED_RECIPE",
    "TrainConfig",
    "drop_conditions",
    "epoch_rows",
    "lm_loss",
    "lr_at",
    "model_config",
    "train_lm",
    "val_loss",
]


# ---------------------------------------------------------------------------------------------- end to end
def train_complm(
    weights: str | Path | None = None,
    config: TrainConfig | None = None,
    checkpoint: str | Path | None = None,
    log_fn: Callable[[str], None] | None = None,
    formulas: list[str] | None = None,
    snapshots: bool = False,
) -> dict[str, Any]:
    """Train the composition LM on the SMACT-valid MP formulas (or ``formulas``), keep the
    checkpoint with the best validation criterion and save it with :func:`save_lm` to ``weights``
    (a stem; default ``data/weights/complm``). The checkpoint (default
    ``<weights folder>/checkpoints/complm.pt``, ignored by git) is resumed, so repeated calls with
    a time budget continue one training (``config.steps`` is the total).

    The criterion, fixed before any training: VNU = share of ``eval_samples`` unconditioned samples
    (temperature 1, seed ``eval_seed``) that are SMACT-valid with >= 2 elements, not a training
    formula and distinct (:func:`generators.complm.metrics.vnu`), the samples drawn with
    ``config.eval_sampler`` (default ``"distinct"``: as ``complm-distinct``, redrawing the known
    formulas, i.e. all MP formulas or, with ``formulas``, those given, and formulas already drawn).
    With ``snapshots`` every evaluated model is also kept in ``<checkpoint>.snapshots/``.
    Returns the metadata dict."""
    from alcore.paths import WEIGHTS_DIR
    from alcore.validity import check_validity
    from generators.complm.data import lm_data
    from generators.complm.metrics import vnu
    from generators.complm.model import n_params, save_lm
    from generators.complm.sample import CompLMSampler, SamplingSettings

    say = log_fn or log.info
    cfg = config or TrainConfig()
    if cfg.eval_sampler not in ("plain", "distinct"):
        raise ValueError(f"eval_sampler must be 'plain' or 'distinct', not {cfg.eval_sampler!r}")
    tok = FormulaTokenizer()
    data = lm_data(tok, formulas)
    train_set = frozenset(data.train_formulas)
    say(f"complm: {len(data.train_formulas)} training, {len(data.val_formulas)} validation formulas")
    stem = Path(weights) if weights else WEIGHTS_DIR / "complm"
    ckpt = Path(checkpoint) if checkpoint else stem.parent / "checkpoints" / f"{stem.name}.pt"

    known = criterion_exclusion(cfg, data, formulas is None)
    plain = SamplingSettings()
    distinct = SamplingSettings(reject_tries=4, reject_seen=True)
    g5, eneg = condition_tokens(">5", None)
    cond = SamplingSettings(gap=g5, eform=eneg, reject_tries=4)

    def evaluate(model: CompositionLM) -> dict[str, float]:
        if known is None:
            forms = CompLMSampler(model, tok, plain).sample(cfg.eval_samples, cfg.eval_seed)
        else:
            forms = CompLMSampler(model, tok, distinct, exclude=known).sample(cfg.eval_samples, cfg.eval_seed)
        m = vnu(forms, train_set, check_max=cfg.eval_check, seed=cfg.eval_seed)
        val_hit = len(set(forms) & set(data.val_formulas)) / max(len(data.val_formulas), 1)
        row = {**m, "uniqueness": len(set(forms)) / max(len(forms), 1)}
        row["val_formulas_rediscovered"] = val_hit
        if cfg.eval_cond_samples:
            cforms = CompLMSampler(model, tok, cond, exclude=known).sample(cfg.eval_cond_samples, cfg.eval_seed)
            row["cond_gt5_validity"] = float(np.mean([check_validity(f).valid for f in cforms]))
        return {"criterion": selection_criterion(row, cfg), **row}

    model, hist = train_lm(
        tok,
        data.train,
        data.val,
        cfg,
        evaluate,
        ckpt,
        progress=lambda s, r: say(f"step {s}: {r}"),
        snapshots=ckpt.with_suffix(".snapshots") if snapshots else None,
    )
    if hist["best"] is None:  # stopped by the time budget before the first evaluation
        final = {"step": hist["steps"], "val_loss": val_loss(model, torch.from_numpy(data.val))}
        hist["best"] = {**final, **evaluate(model)}
    meta = {
        "kind": "complm",
        "data": "data/known/mp_formulas_spacegroups.csv (SMACT-valid, matgan85/max 8, >= 2 elements) "
        "+ MP DFT gaps (matbench_mp_gap, median per formula) and E_form (matbench_mp_e_form, min)",
        "data_sha256": data.data_sha256,
        "n_train": len(data.train_formulas),
        "n_val": len(data.val_formulas),
        "label_counts": data.label_counts,
        "elements": "matgan85",
        "max_count": tok.max_count,
        "max_elements": tok.max_elements,
        "config": asdict(cfg),
        "n_params": n_params(model),
        "steps": hist["steps"],
        "epochs": hist.get("epochs"),
        "seconds": hist["seconds"],
        "runs": hist["runs"],
        "best": hist["best"],
        "evals": hist["evals"],
        "train_loss": hist["train_loss"],
        "selection": _selection_text(cfg),
        "torch": torch.__version__,
    }
    sha = save_lm(stem, model, meta)
    say(f"complm saved to {stem} (sha256 {sha[:12]}); best eval {hist['best']}")
    return {**meta, "weights_sha256": sha}


def criterion_exclusion(cfg: TrainConfig, data: Any, all_mp: bool) -> frozenset[str] | None:
    """The formulas the criterion's ``complm-distinct`` sampler redraws: None for
    ``eval_sampler="plain"``; all known MP formulas when training on the default MP set
    (``all_mp``, as the shipped ``complm-distinct`` does); else only the given training and
    validation formulas of ``data`` (an :class:`LMData`), so that a hold-out split never sees its
    held-out formulas through the exclusion set."""
    if cfg.eval_sampler == "plain":
        return None
    if all_mp:
        from generators.matgan.data import known_formulas

        return frozenset(known_formulas())
    return frozenset(data.train_formulas + data.val_formulas)


def _selection_text(cfg: TrainConfig) -> str:
    """The checkpoint-selection criterion of ``cfg`` in words (weights metadata)."""
    how = (
        "drawn with the complm-distinct sampler (known formulas and formulas already drawn in the call "
        "redrawn up to 4 times)"
        if cfg.eval_sampler == "distinct"
        else "drawn unconditioned without redraws"
    )
    bar = (
        f" among the checkpoints whose {cfg.eval_cond_samples:,} '> 5' conditioned draws are >= "
        f"{100 * cfg.min_cond_validity:.0f} % SMACT-valid (else among all)"
        if cfg.min_cond_validity > 0
        else ""
    )
    return (
        f"best VNU{bar} (SMACT-valid with >= 2 elements AND not a training formula AND distinct, divided by the "
        f"samples; validity checked on <= {cfg.eval_check:,} distinct novel formulas) of {cfg.eval_samples:,} "
        f"unconditioned samples (temperature 1, seed {cfg.eval_seed}) {how}, every {cfg.eval_every} steps; "
        "fixed before training"
    )


__all__ += ["criterion_exclusion", "selection_criterion", "train_complm"]
