"""Fold-batched training of band-gap ResNet ensembles on a GPU (torch + numpy + scikit-learn only).

Trains, for each *run*, one :class:`oracles.resnet.ResNetEnsemble`-shaped network per (set, member):
the five matbench_mp_gap folds (KFold(5, shuffle=True, random_state=18012019)) plus, where asked,
a "final" set (all rows but a 10 % calibration hold-out) whose weights are shipped. All sets train
in lockstep in one batched module (``(M, in, out)`` weights, ``baddbmm``), each member with its own
init seed, minibatch order, training rows and standardisation, so five folds + the final model
cost about as much wall time as one model. The architecture, standardisation (inputs clipped at
+-8 sigma), AdamW + one-cycle schedule and per-member minibatches are those of
``oracles/resnet.py``; losses: ``l1`` (regression) or ``bce`` (metal/non-metal classifier, logits).

Data (``--data``, from ``prep_device_data.py``): padded element indices/fractions and the element
table; descriptors are rebuilt here by :func:`featurise` (identical to
``oracles.descriptors._featurise_parsed``). Rows of ``agd_exp1_42k`` whose reduced formula is not in
matbench_mp_gap are the "union" extra rows; for every fold the script asserts that no extra
training row shares a reduced formula with the fold's test rows (none can: their formulas are absent
from matbench_mp_gap) and that train, validation and test rows are disjoint. Matbench's own training
rows follow the matbench protocol (a polymorph of a test formula may be in training).

Writes to ``--out``: ``preds_<group>.npz`` (member outputs, eV or logits, on every fold's val/test rows
and the final set's val rows, with the row indices), ``final_<group>.npz`` (final sets' weights +
scalers, keys ``<run>__model.*``/``<run>__scaler.*``), ``summary.json`` (sizes, leak checks, timings).
Differences from ``train_resnet``: all members run the same number of steps (epochs of the largest
set; a smaller set is topped up from a second permutation), initialisation streams are seeded per
member and layer, and the GPU uses TF32 matmuls.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

MATBENCH_SEED = 18012019
X_CLIP = 8.0
VAL_FRACTION = 0.1


def featurise(idx: np.ndarray, frac: np.ndarray, props: np.ndarray, emb: np.ndarray) -> np.ndarray:
    """Descriptors (N, 301) float32 from padded element indices/fractions (N, K) and the element table
    (props (E, 19), emb (E, 200)); same maths as ``oracles.descriptors._featurise_parsed``."""
    idx = idx.astype(np.int64)
    out = []
    for s in range(0, len(idx), 8192):
        i, fr = idx[s : s + 8192], frac[s : s + 8192]
        mask = fr > 0
        p = props[i]
        w = fr[:, :, None]
        mean = (w * p).sum(1)
        var = (w * (p - mean[:, None, :]) ** 2).sum(1)
        mn = np.where(mask[:, :, None], p, np.inf).min(1)
        mx = np.where(mask[:, :, None], p, -np.inf).max(1)
        stats = np.stack([mean, np.sqrt(np.maximum(var, 0.0)), mn, mx, mx - mn], axis=2)
        e = np.einsum("nk,nkd->nd", fr, emb[i])
        n_el = mask.sum(1).astype(np.float64)
        norms = [(fr**q).sum(1) ** (1.0 / q) for q in (2, 3, 5, 10)]
        stoich = np.stack([n_el, *norms, fr.max(1)], axis=1)
        out.append(np.concatenate([stats.reshape(len(i), -1), e, stoich], axis=1).astype(np.float32))
    return np.concatenate(out)


@dataclass
class Run:
    """One batched training run: ``task`` reg_all | reg_nm (non-metals only) | cls; ``data`` mb | union |
    agd (AGD rows minus each fold's test formulas: the resnet-agd recipe); ``val``: hold 10 % of each
    fold's matbench training rows out (calibration/selection); ``final``: add the shipped set."""

    name: str
    task: str
    data: str
    hidden: int
    epochs: int
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-5
    members: int = 5
    n_layers: int = 5
    val: bool = True
    final: bool = True
    seed: int = 0
    group: str = "A"  # predictions of runs in one group share one output file (the device returns 8 files)


RUNS = [
    Run("hurdle_cls_union", "cls", "union", 256, 80, group="A"),
    Run("hurdle_reg_union", "reg_nm", "union", 256, 80, group="A"),
    Run("plain_union", "reg_all", "union", 256, 80, group="A"),
    Run("mpgap_recipe", "reg_all", "mb", 256, 40, val=False, final=False, group="B"),
    Run("agd_recipe", "reg_all", "agd", 128, 30, val=False, final=False, group="B"),
    Run("hurdle_cls_mb", "cls", "mb", 256, 80, final=False, group="C"),
    Run("hurdle_reg_mb", "reg_nm", "mb", 256, 80, final=False, group="C"),
    Run("hurdle_cls_union_w512", "cls", "union", 512, 80, final=False, group="D"),
    Run("hurdle_reg_union_w512", "reg_nm", "union", 512, 80, final=False, group="D"),
    # second device call: the plain L1 ensemble won the first, so its budget knobs are measured
    Run("plain_union_e160", "reg_all", "union", 256, 160, group="E"),
    Run("plain_union_m10", "reg_all", "union", 256, 80, members=10, group="E"),
    Run("plain_union_w512", "reg_all", "union", 512, 80, final=False, group="F"),
    Run("plain_mb", "reg_all", "mb", 256, 80, final=False, group="F"),
]
#: which final weights share a file
FINAL_GROUP = {
    "hurdle_cls_union": "hurdle",
    "hurdle_reg_union": "hurdle",
    "plain_union": "plain",
    "plain_union_e160": "plain_e160",
    "plain_union_m10": "plain_m10",
}


def build_sets(d: dict, run: Run) -> tuple[list[dict], dict]:
    """Index sets of a run. Rows index the concatenation [matbench rows, AGD rows]. Returns a list of
    ``{name, train, val, test}`` (numpy int arrays) and a dict of checks/counts."""
    from sklearn.model_selection import KFold

    n_mb = len(d["y_mb"])
    key_all = np.concatenate([d["key_mb"], d["key_agd"]])
    mb_keys = set(d["key_mb"].tolist())
    agd_extra = n_mb + np.flatnonzero([k not in mb_keys for k in d["key_agd"].tolist()])
    folds = list(KFold(5, shuffle=True, random_state=MATBENCH_SEED).split(np.arange(n_mb)))
    sets, checks = [], {"n_agd_extra": int(len(agd_extra))}
    y_all = np.concatenate([d["y_mb"], d["y_agd"]])
    plan = [(f"fold{k}", tr, te) for k, (tr, te) in enumerate(folds)]
    if run.final:
        plan.append(("final", np.arange(n_mb), np.zeros(0, dtype=np.int64)))
    for name, tr, te in plan:
        rng = np.random.default_rng(1000 + len(sets))
        if run.val:
            perm = rng.permutation(tr)
            nv = int(round(VAL_FRACTION * len(tr)))
            val, tr = np.sort(perm[:nv]), np.sort(perm[nv:])
        else:
            val = np.zeros(0, dtype=np.int64)
        test_keys = set(key_all[te].tolist())
        if run.data == "mb":
            train = tr
        elif run.data == "union":
            extra = agd_extra[[k not in test_keys for k in key_all[agd_extra].tolist()]]
            train = np.concatenate([tr, extra])
        elif run.data == "agd":
            agd_rows = n_mb + np.arange(len(d["y_agd"]))
            train = agd_rows[[k not in test_keys for k in key_all[agd_rows].tolist()]]
        else:
            raise ValueError(run.data)
        if run.task == "reg_nm":
            train = train[y_all[train] > 0]
        # leakage checks: no extra (non-matbench) training row shares a reduced formula with the test rows
        extra_train = train[train >= n_mb]
        leak = int(sum(k in test_keys for k in key_all[extra_train].tolist()))
        assert leak == 0, f"{name}: {leak} extra training rows share a formula with the test fold"
        assert not set(train.tolist()) & set(te.tolist()), "train/test overlap"
        assert not set(train.tolist()) & set(val.tolist()), "train/val overlap"
        checks[name] = {
            "n_train": int(len(train)),
            "n_val": int(len(val)),
            "n_test": int(len(te)),
            "n_extra_train": int(len(extra_train)),
            "extra_rows_sharing_test_formula": leak,
        }
        sets.append({"name": name, "train": train, "val": val, "test": te})
    return sets, checks


class Batched(torch.nn.Module):
    """M residual MLPs (weights named as in ``oracles.resnet.ResNetEnsemble``)."""

    def __init__(self, m: int, n_in: int, hidden: int, n_layers: int, seeds: list[int]) -> None:
        super().__init__()
        shapes = [("inp", n_in, hidden)] + [(f"blocks.{i}", hidden, hidden) for i in range(n_layers - 1)]
        shapes.append(("out", hidden, 1))
        self.names = [s[0] for s in shapes]
        self.w = torch.nn.ParameterList()
        self.b = torch.nn.ParameterList()
        for _name, a, b in shapes:
            w = torch.empty(m, a, b)
            bound = math.sqrt(6.0 / a) / math.sqrt(2.0) if b > 1 else math.sqrt(1.0 / a)
            for j, s in enumerate(seeds):
                w[j].uniform_(-bound, bound, generator=torch.Generator().manual_seed(int(s) + 7919 * a + b))
            self.w.append(torch.nn.Parameter(w))
            self.b.append(torch.nn.Parameter(torch.zeros(m, 1, b)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (M, B, F) -> (M, B)."""
        h = torch.relu(torch.baddbmm(self.b[0], x, self.w[0]))
        for i in range(1, len(self.w) - 1):
            h = torch.relu(h + torch.baddbmm(self.b[i], h, self.w[i]))
        return torch.baddbmm(self.b[-1], h, self.w[-1]).squeeze(-1)


def train_run(X: torch.Tensor, y: torch.Tensor, run: Run, sets: list[dict], dev: str, log) -> tuple:
    """Train all (set, member) networks of ``run`` in lockstep; returns (model, scalers, info)."""
    M = len(sets) * run.members
    owner = np.repeat(np.arange(len(sets)), run.members)
    tr_lists = [torch.as_tensor(sets[s]["train"], device=dev) for s in owner]
    xm = torch.stack([X[t].mean(0) for t in tr_lists])  # (M, F)
    xs = torch.stack([X[t].std(0) for t in tr_lists])
    xs = torch.where(xs > 1e-6, xs, torch.ones_like(xs))
    if run.task == "cls":
        target = (y > 0).float()
        ym, ys = torch.zeros(M, device=dev), torch.ones(M, device=dev)
    else:
        target = y
        ym = torch.stack([y[t].mean() for t in tr_lists])
        ys = torch.stack([y[t].std().clamp_min(1e-6) for t in tr_lists])
    seeds = [
        run.seed * 1000 + int(s) * 100 + j
        for s, j in zip(owner, np.tile(np.arange(run.members), len(sets)), strict=True)
    ]
    model = Batched(M, X.shape[1], run.hidden, run.n_layers, seeds).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=run.lr, weight_decay=run.weight_decay, fused=dev == "cuda")
    L = max(len(t) for t in tr_lists)
    bs = run.batch_size
    steps = L // bs
    total = steps * run.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=run.lr, total_steps=max(total, 4), pct_start=min(0.5, max(0.1, 2.0 / max(total, 4)))
    )
    gen = torch.Generator(device=dev).manual_seed(run.seed + 12345)
    xm3, xs3, ym2, ys2 = xm[:, None, :], xs[:, None, :], ym[:, None], ys[:, None]
    t0 = time.perf_counter()
    for epoch in range(run.epochs):
        # each member its own order over its own rows; shorter sets are topped up from a second permutation
        order = []
        for t in tr_lists:
            n = len(t)
            p = torch.randperm(n, generator=gen, device=dev)
            if n < L:
                p = torch.cat([p, torch.randperm(n, generator=gen, device=dev)[: L - n]])
            order.append(t[p])
        order = torch.stack(order)  # (M, L)
        run_loss = torch.zeros((), device=dev)
        for s in range(steps):
            idx = order[:, s * bs : (s + 1) * bs]
            xb = ((X[idx] - xm3) / xs3).clamp(-X_CLIP, X_CLIP)
            out = model(xb)
            if run.task == "cls":
                loss = F.binary_cross_entropy_with_logits(out, target[idx])
            else:
                loss = F.l1_loss(out, (target[idx] - ym2) / ys2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run_loss += loss.detach()
        if epoch % 10 == 9 or epoch == run.epochs - 1:
            log(
                f"  [{run.name}] epoch {epoch + 1}/{run.epochs} loss {float(run_loss) / steps:.4f} "
                f"({time.perf_counter() - t0:.0f} s)"
            )
    info = {"steps": total, "steps_per_epoch": steps, "wall_s": round(time.perf_counter() - t0, 1), "M": M}
    return model.eval(), (xm, xs, ym, ys), info


@torch.no_grad()
def predict_rows(model, scalers, X: torch.Tensor, rows: np.ndarray, members: slice, task: str) -> np.ndarray:
    """Outputs of the members in ``members`` on ``rows``: (m, n) float32 (eV, or logits for cls)."""
    xm, xs, ym, ys = scalers
    out = []
    r = torch.as_tensor(rows, device=X.device)
    for s in range(0, len(r), 16384):
        xb = X[r[s : s + 16384]]
        x3 = ((xb[None] - xm[members, None, :]) / xs[members, None, :]).clamp(-X_CLIP, X_CLIP)
        sub = _slice_forward(model, x3, members)
        if task != "cls":
            sub = sub * ys[members, None] + ym[members, None]
        out.append(sub.float().cpu().numpy())
    return np.concatenate(out, axis=1) if out else np.zeros((members.stop - members.start, 0), np.float32)


def _slice_forward(model: Batched, x: torch.Tensor, members: slice) -> torch.Tensor:
    h = torch.relu(torch.baddbmm(model.b[0][members], x, model.w[0][members]))
    for i in range(1, len(model.w) - 1):
        h = torch.relu(h + torch.baddbmm(model.b[i][members], h, model.w[i][members]))
    return torch.baddbmm(model.b[-1][members], h, model.w[-1][members]).squeeze(-1)


def main() -> None:
    """Train the runs that fit the time budget; write predictions, final weights and a summary."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-s", type=float, default=420.0, help="skip runs that would end after this")
    ap.add_argument("--runs", default="", help="comma-separated run names (default: all, in priority order)")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke test: 3000 rows, 2 epochs, width 16")
    args = ap.parse_args()
    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.set_num_threads(min(16, os.cpu_count() or 1))

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", flush=True)

    z = np.load(args.data)
    d = {k: z[k] for k in z.files}
    if args.tiny:
        keep_mb, keep_agd = np.arange(3000), np.arange(1500)
        for k in ("idx_mb", "frac_mb", "y_mb", "key_mb"):
            d[k] = d[k][keep_mb]
        for k in ("idx_agd", "frac_agd", "y_agd", "key_agd"):
            d[k] = d[k][keep_agd]
    X = np.concatenate(
        [
            featurise(d["idx_mb"], d["frac_mb"], d["props"], d["emb"]),
            featurise(d["idx_agd"], d["frac_agd"], d["props"], d["emb"]),
        ]
    )
    y = np.concatenate([d["y_mb"], d["y_agd"]]).astype(np.float32)
    log(f"device {dev} ({torch.cuda.get_device_name(0) if dev == 'cuda' else 'cpu'}); X {X.shape}")
    Xt, yt = torch.from_numpy(X).to(dev), torch.from_numpy(y).to(dev)
    runs = [r for r in RUNS if not args.runs or r.name in args.runs.split(",")]
    summary = {"device": dev, "runs": {}, "data_sha256": {"mb": str(d["sha_mb"]), "agd": str(d["sha_agd"])}}
    sec_per_netstep = None
    group_preds: dict[str, dict] = {}
    finals: dict[str, dict] = {}
    for run in runs:
        if args.tiny:
            run.hidden, run.epochs = 16, 2
        sets, checks = build_sets(d, run)
        L = max(len(s["train"]) for s in sets)
        est = None
        if sec_per_netstep is not None:
            est = sec_per_netstep * (L // run.batch_size) * run.epochs * (run.hidden / 256) ** 1.0
            if time.perf_counter() - t_start + est > args.budget_s:
                log(f"skip {run.name}: estimated {est:.0f} s would exceed the budget")
                summary["runs"][run.name] = {"skipped": True, "estimated_s": est}
                continue
        log(f"run {run.name}: {len(sets)} sets x {run.members} members, L={L}, est {est}")
        model, scalers, info = train_run(Xt, yt, run, sets, dev, log)
        per_step = info["wall_s"] / info["steps"] / (run.hidden / 256)
        sec_per_netstep = per_step if sec_per_netstep is None else max(sec_per_netstep, per_step)
        preds = group_preds.setdefault(run.group, {})
        for si, s in enumerate(sets):
            mem = slice(si * run.members, (si + 1) * run.members)
            for part in ("val", "test"):
                if len(s[part]):
                    key = f"{run.name}__{s['name']}_{part}"
                    preds[key] = predict_rows(model, scalers, Xt, s[part], mem, run.task)
                    preds[f"{key}_rows"] = s[part].astype(np.int32)
            if s["name"] == "final":
                xm, xs, ym, ys = scalers
                w = finals.setdefault(FINAL_GROUP[run.name], {})
                p = f"{run.name}__"
                w.update(
                    {f"{p}model.{n}.weight": model.w[i][mem].detach().cpu().numpy() for i, n in enumerate(model.names)}
                )
                w.update(
                    {f"{p}model.{n}.bias": model.b[i][mem].detach().cpu().numpy() for i, n in enumerate(model.names)}
                )
                w.update(
                    {
                        f"{p}scaler.x_mean": xm[mem.start].cpu().numpy(),
                        f"{p}scaler.x_std": xs[mem.start].cpu().numpy(),
                        f"{p}scaler.y_mean": ym[mem.start].reshape(1).cpu().numpy(),
                        f"{p}scaler.y_std": ys[mem.start].reshape(1).cpu().numpy(),
                    }
                )
                np.savez(out / f"final_{FINAL_GROUP[run.name]}.npz", **w)
        np.savez_compressed(out / f"preds_{run.group}.npz", **preds)
        summary["runs"][run.name] = {"run": asdict(run), "checks": checks, **info}
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        log(f"done {run.name}: {info}")
    summary["total_wall_s"] = round(time.perf_counter() - t_start, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    log("all done")


if __name__ == "__main__":
    main()
