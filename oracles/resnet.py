"""The AGD "oracle module": a deep ensemble of residual MLPs on composition descriptors.

Architecture (per ensemble member): descriptors (standardised) -> 5 hidden layers of width
``hidden`` with ReLU; layer 1 projects the input, layers 2..5 are residual (``h = relu(h + W h + b)``)
-> linear output (standardised target). All members live in one module with batched weights
(``(M, in, out)`` tensors, ``torch.baddbmm``) so a whole ensemble trains in one pass; each member
has its own initialisation seed and its own minibatch order (a deep ensemble, Lakshminarayanan et
al. 2017). The prediction is the member mean (or, with ``TrainConfig.point = "median"``, the member
median); the uncertainty is the member standard deviation. Band gaps are clipped at 0 eV per member
before the mean/median/std are taken.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from alcore.errors import ConfigError, CorruptModelError, InvalidLabelError
from alcore.weights import load_weights, save_weights, weights_paths
from oracles.base import Prediction
from oracles.calibration import SigmaCalibration
from oracles.descriptors import Featuriser, default_featuriser, featuriser_for_version

#: Standardised descriptors are clipped to [-X_CLIP, X_CLIP] (train and predict) so a formula far
#: outside the training data cannot blow the prediction up; its ensemble spread still grows.
X_CLIP = 8.0

PROPERTIES: dict[str, dict[str, Any]] = {
    "band_gap": {"unit": "eV", "clip_min": 0.0},
    "e_form": {"unit": "eV/atom", "clip_min": None},
}


#: How the members' predictions (M, N) become one point prediction (N,).
POINTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mean": lambda P: P.mean(0),
    "median": lambda P: np.median(P, 0),
}


class EnsembleLinear(nn.Module):
    """M independent linear layers applied at once: (M, B, n_in) -> (M, B, n_out)."""

    def __init__(self, n_members: int, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_members, n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_members, 1, n_out))

    def reset(self, generators: Sequence[torch.Generator]) -> None:
        """Kaiming-uniform weights (ReLU gain) drawn from one generator per member; zero biases."""
        n_in = self.weight.shape[1]
        bound = math.sqrt(6.0 / n_in) / math.sqrt(2.0) if self.weight.shape[2] > 1 else math.sqrt(1.0 / n_in)
        with torch.no_grad():
            for m, g in enumerate(generators):
                self.weight[m].uniform_(-bound, bound, generator=g)
            self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (M, B, n_in) -> (M, B, n_out)."""
        return torch.baddbmm(self.bias, x, self.weight)


class ResNetEnsemble(nn.Module):
    """``n_members`` residual MLPs with ``n_layers`` hidden ReLU layers of width ``hidden``."""

    def __init__(self, n_in: int, hidden: int = 256, n_layers: int = 5, n_members: int = 5, seed: int = 0) -> None:
        super().__init__()
        if n_layers < 1 or n_members < 1 or hidden < 1:
            raise ConfigError("hidden, n_layers and n_members must all be >= 1")
        self.n_members = n_members
        self.inp = EnsembleLinear(n_members, n_in, hidden)
        self.blocks = nn.ModuleList(EnsembleLinear(n_members, hidden, hidden) for _ in range(n_layers - 1))
        self.out = EnsembleLinear(n_members, hidden, 1)
        gens = [torch.Generator().manual_seed(int(seed) * 1000 + m) for m in range(n_members)]
        for layer in [self.inp, *self.blocks, self.out]:
            layer.reset(gens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, n_in) shared by all members, or (M, B, n_in) per member -> (M, B) standardised outputs."""
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.n_members, -1, -1)
        h = torch.relu(self.inp(x))
        for block in self.blocks:
            h = torch.relu(h + block(h))
        return self.out(h).squeeze(-1)


@dataclass
class TrainConfig:
    """Training hyper-parameters of a :class:`ResNetOracle` (all stored with the weights)."""

    hidden: int = 256
    n_layers: int = 5
    n_members: int = 5
    epochs: int = 60
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-5
    loss: str = "l1"  # "l1" (optimises MAE) or "mse"
    seed: int = 0
    point: str = "mean"  # the ensemble's point prediction: "mean" or "median" of the members
    extra: dict[str, Any] = field(default_factory=dict)


class ResNetOracle:
    """A trained descriptor ResNet ensemble behind the :class:`~oracles.base.Oracle` interface.

    ``name``: registry/config name; ``property``: ``"band_gap"`` (eV, clipped at 0) or ``"e_form"``
    (eV/atom). ``predict(formulas)`` returns a :class:`Prediction` (mean, std = ensemble spread,
    NaN + reason for formulas that cannot be featurised). Where ``info["calibration"]`` holds a fitted
    :class:`~oracles.calibration.SigmaCalibration` (shipped models: fitted on held-out rows), ``std``
    is the calibrated sigma; ``predict(..., calibrated=False)`` gives the raw ensemble spread.
    """

    def __init__(
        self,
        name: str,
        property: str,
        model: ResNetEnsemble,
        scaler: dict[str, torch.Tensor],
        config: TrainConfig,
        info: dict[str, Any] | None = None,
        featuriser: Featuriser | None = None,
    ) -> None:
        if property not in PROPERTIES:
            raise ConfigError(f"unknown property {property!r}; choose one of {sorted(PROPERTIES)}")
        if config.point not in POINTS:
            raise ConfigError(f"unknown point prediction {config.point!r}; choose one of {sorted(POINTS)}")
        self.name = name
        self.property = property
        self.model = model.eval()
        self.scaler = scaler
        self.config = config
        self.info = dict(info or {})
        self.featuriser = featuriser or default_featuriser()
        self.clip_min = PROPERTIES[property]["clip_min"]

    # ------------------------------------------------------------------ prediction
    def predict_members(self, X: np.ndarray, batch: int = 8192) -> np.ndarray:
        """Raw member predictions for finite descriptor rows X (N, F) -> (M, N) in property units."""
        out = []
        xm, xs = self.scaler["x_mean"], self.scaler["x_std"]
        ym, ys = self.scaler["y_mean"], self.scaler["y_std"]
        with torch.inference_mode():
            for s in range(0, len(X), batch):
                xb = ((torch.from_numpy(np.ascontiguousarray(X[s : s + batch])) - xm) / xs).clamp(-X_CLIP, X_CLIP)
                out.append((self.model(xb) * ys + ym).numpy())
        P = np.concatenate(out, axis=1) if out else np.zeros((self.model.n_members, 0), np.float32)
        if self.clip_min is not None:
            P = np.maximum(P, self.clip_min)
        return P.astype(np.float64)

    @property
    def calibration(self) -> SigmaCalibration:
        """The sigma recalibration map of this model (identity when none was fitted)."""
        return SigmaCalibration.from_dict(self.info.get("calibration"))

    def predict(self, formulas: Sequence[str], calibrated: bool = True) -> Prediction:
        """Predict N formulas: mean (N,) and std (N,) in eV or eV/atom; NaN + reason where impossible.

        ``mean`` is the members' mean or median (``config.point``). ``std`` is the calibrated sigma
        when the model carries a calibration and ``calibrated`` is True, else the ensemble spread
        (ddof 1). The point prediction never depends on the calibration.
        """
        formulas = list(formulas)
        X, reasons = self.featuriser.transform(formulas)
        ok = np.array([r is None for r in reasons], dtype=bool)
        mean = np.full(len(formulas), np.nan)
        std = np.full(len(formulas), np.nan)
        if ok.any():
            P = self.predict_members(X[ok])
            mean[ok] = POINTS[self.config.point](P)
            std[ok] = P.std(0, ddof=1) if P.shape[0] > 1 else 0.0
            if calibrated and self.info.get("calibration"):
                std[ok] = self.calibration.apply(std[ok])
        return Prediction(mean, std, reasons)

    __call__ = predict

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, torch.Tensor]:
        """All tensors needed to rebuild the oracle: model weights plus ``scaler.*`` standardisation."""
        sd = {f"model.{k}": v.detach().clone().contiguous() for k, v in self.model.state_dict().items()}
        sd.update({f"scaler.{k}": v.detach().clone().contiguous() for k, v in self.scaler.items()})
        return sd

    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable description (name, property, config, descriptor version, training info)."""
        return {
            "format": "alflow-resnet-ensemble/v1",
            "name": self.name,
            "property": self.property,
            "unit": PROPERTIES[self.property]["unit"],
            "descriptor_version": self.featuriser.version,
            "config": asdict(self.config),
            "info": self.info,
        }

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], metadata: dict[str, Any]) -> ResNetOracle:
        """Rebuild an oracle from :meth:`state_dict` tensors and :meth:`metadata`.

        The featuriser is the one of the stored ``descriptor_version``. Raises
        :class:`CorruptModelError` if the tensors do not match the metadata or this code does not
        compute that descriptor version.
        """
        try:
            try:
                featuriser = featuriser_for_version(str(metadata.get("descriptor_version")))
            except KeyError as exc:
                raise CorruptModelError(
                    f"cannot load these weights: {exc.args[0]}; retrain the model (alflow oracles train ...)"
                ) from None
            cfg = TrainConfig(**metadata["config"])
            n_in = state["model.inp.weight"].shape[1]
            model = ResNetEnsemble(n_in, cfg.hidden, cfg.n_layers, cfg.n_members, seed=cfg.seed)
            model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")}, strict=True)
            scaler = {k[7:]: v.float() for k, v in state.items() if k.startswith("scaler.")}
            if set(scaler) != {"x_mean", "x_std", "y_mean", "y_std"}:
                raise CorruptModelError(f"scaler tensors missing: got {sorted(scaler)}")
            return cls(metadata["name"], metadata["property"], model, scaler, cfg, metadata.get("info"), featuriser)
        except CorruptModelError:
            raise
        except (KeyError, RuntimeError, TypeError) as exc:
            raise CorruptModelError(f"cannot rebuild the ResNet oracle from its state: {exc}") from None

    def to_bytes(self) -> bytes:
        """Serialise to safetensors bytes (metadata JSON in the safetensors header)."""
        return st_save(self.state_dict(), metadata={"alflow": json.dumps(self.metadata())})

    @classmethod
    def from_bytes(cls, blob: bytes) -> ResNetOracle:
        """Inverse of :meth:`to_bytes` (safetensors only, nothing executable is loaded)."""
        state = st_load(blob)
        meta = _header_metadata(blob)
        return cls.from_state(state, meta)

    def save(
        self,
        stem: str | Path,
        extra_metadata: dict[str, Any] | None = None,
        weights_dtype: torch.dtype | None = None,
    ) -> tuple[Path, Path]:
        """Write ``<stem>.safetensors`` and ``<stem>.json`` (:func:`alcore.weights.save_weights`); returns both paths.

        ``weights_dtype`` (e.g. ``torch.float16``) stores the network weights in that type (halves the
        file; they are cast back to float32 on load); the standardisation stays float32. A fitted
        calibration is also written at the JSON's top level (``calibration``), where :meth:`load`
        reads it.
        """
        meta = {**self.metadata(), **(extra_metadata or {})}
        if self.info.get("calibration"):
            meta["calibration"] = self.info["calibration"]
        state = self.state_dict()
        if weights_dtype is not None:
            state = {k: v.to(weights_dtype) if k.startswith("model.") else v for k, v in state.items()}
        save_weights(stem, state, meta)
        return weights_paths(stem)

    @classmethod
    def load(cls, stem: str | Path, name: str | None = None) -> ResNetOracle:
        """Load ``<stem>.safetensors`` and its ``<stem>.json`` metadata; ``name`` overrides the stored name.

        A ``calibration`` entry at the top level of the JSON (fitted after training, see
        ``benchmarks/bandgap/calibrate_shipped.py``) takes precedence over one in the training info.
        Raises ``FileNotFoundError`` when the weights are missing, :class:`CorruptModelError` when they
        do not match their JSON.
        """
        st_path, _ = weights_paths(stem)
        if not st_path.exists():
            raise FileNotFoundError(f"{st_path} is missing; train it with `alflow oracles train` or re-checkout")
        tensors, meta = load_weights(stem, "train it with `alflow oracles train` or re-checkout")
        state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
        if meta.get("calibration"):
            meta = {**meta, "info": {**(meta.get("info") or {}), "calibration": meta["calibration"]}}
        oracle = cls.from_state(state, meta)
        if name:
            oracle.name = name
        return oracle


def merge_members(oracles: Sequence[ResNetOracle], name: str | None = None) -> ResNetOracle:
    """One ensemble from several trained on the same rows: members concatenated in order.

    The oracles must share property, descriptor version, architecture and standardisation (same
    training rows); their seeds and epochs may differ. The merged config has ``n_members`` = the sum,
    the first oracle's seed and epochs, and the parts' in ``extra["merged_seeds"]`` and
    ``extra["merged_epochs"]``; its info is the first oracle's without its calibration
    and test metrics (they belong to the parts: refit them on the merged model) plus the parts'
    training infos. Raises :class:`ConfigError` when the oracles cannot be merged.
    """
    if len(oracles) < 2:
        raise ConfigError("merge_members needs at least two oracles")
    first = oracles[0]
    arch = (first.property, first.featuriser.version, first.config.hidden, first.config.n_layers)
    for o in oracles[1:]:
        if (o.property, o.featuriser.version, o.config.hidden, o.config.n_layers) != arch:
            raise ConfigError(f"cannot merge {o.name!r} into {first.name!r}: property, descriptor or shape differ")
        if any(not torch.equal(o.scaler[k], first.scaler[k]) for k in first.scaler):
            raise ConfigError(
                f"cannot merge {o.name!r} into {first.name!r}: trained on different rows (scalers differ)"
            )
    n_members = sum(o.config.n_members for o in oracles)
    cfg = replace(
        first.config,
        n_members=n_members,
        extra={
            **first.config.extra,
            "merged_seeds": [o.config.seed for o in oracles],
            "merged_epochs": [o.config.epochs for o in oracles],
        },
    )
    model = ResNetEnsemble(first.model.inp.weight.shape[1], cfg.hidden, cfg.n_layers, n_members, seed=cfg.seed)
    states = [o.model.state_dict() for o in oracles]
    merged = {k: torch.cat([s[k] for s in states]) for k in states[0]}
    model.load_state_dict(merged)
    info = {k: v for k, v in first.info.items() if k not in ("calibration", "test_metrics")}
    info["parts"] = [{k: v for k, v in o.info.items() if k != "calibration"} for o in oracles]
    return ResNetOracle(name or first.name, first.property, model, first.scaler, cfg, info, first.featuriser)


def _header_metadata(blob: bytes) -> dict[str, Any]:
    """The ``alflow`` JSON stored in a safetensors header."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    try:
        return json.loads(header["__metadata__"]["alflow"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise CorruptModelError(f"safetensors blob has no alflow metadata ({exc}); not an alflow oracle") from None


# ---------------------------------------------------------------------- training
def _check_labels(values: Sequence[float], property: str) -> np.ndarray:
    y = np.asarray(values, dtype=np.float64)
    if not np.isfinite(y).all():
        raise InvalidLabelError(f"{int((~np.isfinite(y)).sum())} label(s) are NaN/inf; drop or fix them")
    if property == "band_gap" and (y < 0).any():
        raise InvalidLabelError(f"{int((y < 0).sum())} band gap(s) are negative; band gaps are >= 0 eV")
    return y


def train_resnet(
    formulas: Sequence[str],
    values: Sequence[float],
    *,
    property: str = "band_gap",
    name: str = "resnet",
    config: TrainConfig | None = None,
    featuriser: Featuriser | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> ResNetOracle:
    """Train a ResNet deep ensemble from scratch.

    Takes N formulas and N labels (eV or eV/atom); formulas that cannot be featurised are dropped
    (their count is recorded in ``oracle.info["dropped"]``). ``progress(epoch, train_loss)`` is
    called after each epoch. Returns the trained :class:`ResNetOracle`; ``oracle.info`` holds
    ``n_train``, ``epochs``, ``wall_s`` and the final training loss. Deterministic for a fixed
    ``config.seed`` and thread count.
    """
    cfg = config or TrainConfig()
    if property not in PROPERTIES:
        raise ConfigError(f"unknown property {property!r}; choose one of {sorted(PROPERTIES)}")
    if cfg.loss not in {"l1", "mse"}:
        raise ConfigError(f"loss must be 'l1' or 'mse', got {cfg.loss!r}")
    y = _check_labels(values, property)
    if len(formulas) != len(y):
        raise InvalidLabelError(f"{len(formulas)} formulas but {len(y)} labels")
    feat = featuriser or default_featuriser()
    X, reasons = feat.transform(list(formulas))
    ok = np.array([r is None for r in reasons], dtype=bool)
    if ok.sum() < 2:
        raise InvalidLabelError("fewer than 2 featurisable formulas; cannot train")
    X, y = X[ok], y[ok]
    t0 = time.perf_counter()
    Xt = torch.from_numpy(X)
    yt = torch.from_numpy(y.astype(np.float32))
    x_mean, x_std = Xt.mean(0), Xt.std(0)
    x_std = torch.where(x_std > 1e-6, x_std, torch.ones_like(x_std))  # constant column: leave unscaled
    y_mean, y_std = yt.mean(), yt.std().clamp_min(1e-6)
    Xs = ((Xt - x_mean) / x_std).clamp(-X_CLIP, X_CLIP)
    ys = (yt - y_mean) / y_std
    torch.manual_seed(cfg.seed)
    model = ResNetEnsemble(X.shape[1], cfg.hidden, cfg.n_layers, cfg.n_members, seed=cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(Xs)
    bs = min(cfg.batch_size, n)
    steps_per_epoch = max(1, n // bs)
    total = cfg.epochs * steps_per_epoch
    # OneCycleLR divides by its phase lengths: at least 4 scheduled steps and a warm-up of >= 2 steps
    # (a 43-label, 5-epoch screening fit has 10 steps and crashed with pct_start=0.1).
    sched_steps = max(total, 4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=sched_steps, pct_start=min(0.5, max(0.1, 2.0 / sched_steps))
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    loss_fn = nn.functional.l1_loss if cfg.loss == "l1" else nn.functional.mse_loss
    model.train()
    last = float("nan")
    for epoch in range(cfg.epochs):
        perms = torch.stack([torch.randperm(n, generator=gen) for _ in range(cfg.n_members)])  # (M, n)
        running = 0.0
        for s in range(steps_per_epoch):
            idx = perms[:, s * bs : (s + 1) * bs]  # (M, bs): each member its own minibatch
            pred = model(Xs[idx])
            loss = loss_fn(pred, ys[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += float(loss.detach())
        last = running / steps_per_epoch
        if progress is not None:
            progress(epoch, last)
    model.eval()
    info = {
        "n_train": int(ok.sum()),
        "dropped": int((~ok).sum()),
        "epochs": cfg.epochs,
        "wall_s": round(time.perf_counter() - t0, 3),
        "final_train_loss_std_units": last,
        "torch_threads": torch.get_num_threads(),
    }
    scaler = {"x_mean": x_mean, "x_std": x_std, "y_mean": y_mean.reshape(1), "y_std": y_std.reshape(1)}
    return ResNetOracle(name, property, model, scaler, cfg, info, feat)
