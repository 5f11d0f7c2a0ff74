"""Roost (Goodall & Lee, Nat. Commun. 11, 6280, 2020) through ``aviary-models``' own model class.

We use aviary's :class:`aviary.roost.model.Roost` network unchanged (element embedding ->
message passing over the dense, stoichiometry-weighted element graph with weighted soft-attention
-> weighted attention pooling -> residual output network with a robust (mean, log-std) head) and
write our own batching and training loop: aviary's trainer pulls in wandb/tensorboard logging,
which we keep disabled and offline. ``predict`` returns the mean and the aleatoric std
``exp(log_std)`` (combined with the member spread when several seeds are trained).

Roost at its default size trains at ~230 s/epoch on 20k formulas on this 2-core machine, so the
defaults here are a reduced width; the shipped default band-gap oracle is the ResNet ensemble.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alcore.composition import parse_amounts
from alcore.errors import ConfigError, CorruptModelError, InvalidFormulaError, InvalidLabelError
from alcore.weights import load_into, load_weights, save_weights
from oracles.base import Prediction

#: Small Roost (the paper's defaults: elem_fea_len 64, gates/msgs (256,), trunk (1024, 512),
#: out (256, 128, 64)); these keep the graph structure and heads and shrink only widths.
SMALL_ROOST: dict[str, Any] = {
    "elem_embedding": "matscholar200",
    "elem_fea_len": 32,
    "n_graph": 3,
    "elem_heads": 3,
    "elem_gate": (64,),
    "elem_msg": (64,),
    "cry_heads": 3,
    "cry_gate": (64,),
    "cry_msg": (64,),
    "trunk_hidden": (128, 64),
    "out_hidden": (64, 32),
}


def _import_roost() -> type:
    """Import aviary's Roost with wandb/tensorboard kept offline and quiet."""
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from aviary.roost.model import Roost

    return Roost


def roost_inputs(formulas: Sequence[str]) -> tuple[tuple[torch.Tensor, ...], list[str | None]]:
    """Batch Roost inputs for N formulas (dense element graph per formula, self-edges included).

    Returns ``((elem_weights (n_nodes, 1), elem_Z (n_nodes,), self_idx, nbr_idx, cry_idx), reasons)``;
    unparsable formulas (or Z > 103) are left out of the graph and get a reason.
    """
    from pymatgen.core import Element

    w: list[float] = []
    z: list[int] = []
    s_idx: list[int] = []
    n_idx: list[int] = []
    cry: list[int] = []
    reasons: list[str | None] = [None] * len(formulas)
    base = 0
    k = 0
    for i, f in enumerate(formulas):
        try:
            amounts = parse_amounts(f)
            zs = [Element(s).Z for s in amounts]
            if max(zs) > 103:
                raise InvalidFormulaError(f, "element beyond Lr has no Roost embedding")
        except InvalidFormulaError as exc:
            reasons[i] = exc.reason
            continue
        tot = sum(amounts.values())
        n = len(zs)
        w += [a / tot for a in amounts.values()]
        z += zs
        for a in range(n):
            s_idx += [base + a] * n
            n_idx += [base + b for b in range(n)]
        cry += [k] * n
        base += n
        k += 1
    t = (
        torch.tensor(w, dtype=torch.float32).unsqueeze(1),
        torch.tensor(z, dtype=torch.long),
        torch.tensor(s_idx, dtype=torch.long),
        torch.tensor(n_idx, dtype=torch.long),
        torch.tensor(cry, dtype=torch.long),
    )
    return t, reasons


class RoostOracle:
    """Roost ensemble (``len(models)`` seeds) behind the Oracle interface."""

    def __init__(
        self,
        name: str,
        property: str,
        models: list[torch.nn.Module],
        y_mean: float,
        y_std: float,
        params: dict[str, Any],
        info: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.property = property
        self.models = [m.eval() for m in models]
        self.y_mean, self.y_std = float(y_mean), float(y_std)
        self.params = params
        self.info = dict(info or {})

    def save(self, stem: str | Path) -> str:
        """Write ``<stem>.safetensors`` + ``<stem>.json`` (:mod:`alcore.weights`); returns the sha256."""
        tensors = {f"m{i}.{k}": v for i, m in enumerate(self.models) for k, v in m.state_dict().items()}
        meta = {
            "format": "alflow-roost-ensemble/v1",
            "name": self.name,
            "property": self.property,
            "n_models": len(self.models),
            "y_mean": self.y_mean,
            "y_std": self.y_std,
            "params": self.params,
            "info": self.info,
        }
        return save_weights(stem, tensors, meta)

    @classmethod
    def load(cls, stem: str | Path, name: str | None = None) -> RoostOracle:
        """Inverse of :meth:`save`; raises :class:`CorruptModelError` for missing or mismatched files."""
        tensors, meta = load_weights(stem, "train a Roost with oracles.roost.train_roost and RoostOracle.save")
        if meta.get("format") != "alflow-roost-ensemble/v1":
            raise CorruptModelError(f"{stem} is not a Roost ensemble (format {meta.get('format')!r})")
        Roost = _import_roost()
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["params"].items()}
        models = []
        for i in range(int(meta["n_models"])):
            model = Roost(robust=True, n_targets=[1], task_dict={"y": "regression"}, **params)
            prefix = f"m{i}."
            state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            models.append(load_into(model, state, stem))
        return cls(name or meta["name"], meta["property"], models, meta["y_mean"], meta["y_std"], params, meta["info"])

    def predict(self, formulas: Sequence[str], batch: int = 2048) -> Prediction:
        """Mean and std (aleatoric exp(log_std) combined with the seed spread) in property units."""
        formulas = list(formulas)
        mean = np.full(len(formulas), np.nan)
        std = np.full(len(formulas), np.nan)
        reasons: list[str | None] = [None] * len(formulas)
        for s in range(0, len(formulas), batch):
            part = formulas[s : s + batch]
            inputs, rs = roost_inputs(part)
            reasons[s : s + batch] = rs
            ok = np.array([r is None for r in rs])
            if not ok.any():
                continue
            mus, sig2 = [], []
            with torch.inference_mode():
                for m in self.models:
                    mu, log_std = m(*inputs)[0].unbind(-1)
                    mu = mu.numpy() * self.y_std + self.y_mean
                    if self.property == "band_gap":
                        mu = np.maximum(mu, 0.0)
                    mus.append(mu)
                    sig2.append((np.exp(log_std.numpy()) * self.y_std) ** 2)
            mus_a = np.array(mus)
            idx = np.flatnonzero(ok) + s
            mean[idx] = mus_a.mean(0)
            std[idx] = np.sqrt(np.mean(sig2, axis=0) + (mus_a.var(0) if len(mus) > 1 else 0.0))
        return Prediction(mean, std, reasons)


def train_roost(
    formulas: Sequence[str],
    values: Sequence[float],
    *,
    property: str = "band_gap",
    name: str = "roost",
    seeds: Sequence[int] = (0,),
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 3e-4,
    params: dict[str, Any] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> RoostOracle:
    """Train Roost (aviary's network, robust L1 loss = Lorentzian NLL) on N formulas/labels.

    ``params`` overrides :data:`SMALL_ROOST` (pass aviary's defaults for the paper-size model).
    ``progress(seed, epoch, loss)`` after each epoch. Returns a :class:`RoostOracle`.
    """
    from aviary.losses import robust_l1_loss

    if property not in {"band_gap", "e_form"}:
        raise ConfigError(f"unknown property {property!r}")
    y = np.asarray(values, dtype=np.float64)
    if not np.isfinite(y).all():
        raise InvalidLabelError("labels contain NaN/inf")
    Roost = _import_roost()
    p = {**SMALL_ROOST, **(params or {})}
    inputs_ok = [r is None for r in roost_inputs(list(formulas))[1]]
    f = [x for x, ok in zip(formulas, inputs_ok, strict=True) if ok]
    y = y[np.array(inputs_ok)]
    ym, ys = float(y.mean()), float(y.std() or 1.0)
    yt = torch.tensor((y - ym) / ys, dtype=torch.float32)
    t0 = time.perf_counter()
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        model = Roost(robust=True, n_targets=[1], task_dict={"y": "regression"}, **p)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-6)
        rng = np.random.default_rng(seed)
        for epoch in range(epochs):
            order = rng.permutation(len(f))
            total = 0.0
            nb = 0
            model.train()
            for s in range(0, len(f), batch_size):
                idx = order[s : s + batch_size]
                inputs, _ = roost_inputs([f[i] for i in idx])
                mu, log_std = model(*inputs)[0].unbind(-1)
                loss = robust_l1_loss(mu, log_std, yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
                nb += 1
            if progress is not None:
                progress(seed, epoch, total / max(nb, 1))
        models.append(model)
    info = {
        "n_train": len(f),
        "epochs": epochs,
        "seeds": list(seeds),
        "wall_s": round(time.perf_counter() - t0, 2),
        "params": int(sum(q.numel() for q in models[0].parameters())),
    }
    return RoostOracle(name, property, models, ym, ys, p, info)
