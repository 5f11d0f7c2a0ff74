"""Benchmark: the Mg-Mn-O crystal GAN trained longer, in resumable time-budgeted chunks, with metrics per
checkpoint (validity, novelty, CHGNet single-point screen, relaxed E_hull), and a final screened run.

Three sub-commands (run them one after another, each as often as CPU time allows):

    # one training chunk (resumes the checkpoint; max-steps is the total target over all chunks)
    python benchmarks/bench_cccgan_training.py train --budget-s 900 --max-steps 60000 --snapshot-every 1500
    # metrics of every snapshot not evaluated yet (cheap: 40 per composition, 2 relaxations each)
    python benchmarks/bench_cccgan_training.py curve --n 40 --relax 2
    # the screened run from one snapshot: generate, distance/novelty/symmetry screen, CHGNet single
    # points, relax the most promising per composition, count distinct novel structures <= 80 meV/atom
    python benchmarks/bench_cccgan_training.py final --step 12000 --n 400 --relax 12

Checkpoint and snapshots live in ``data/weights/checkpoints/`` (ignored by git); the curve is written
to ``benchmarks/results/cccgan_curve.json`` after every snapshot (so an interrupted ``curve`` resumes),
the final run to ``benchmarks/results/cccgan_final.json``. The judge is the project's default stability
judge (CHGNet 0.4.2, one thread) with E_hull against the Mg-Mn-O reference phases relaxed by the same
model (``data/cccgan/chgnet_refs.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from alcore.paths import WEIGHTS_DIR
from generators.cccgan.dataset import load_dataset
from generators.cccgan.evaluate import (
    SYNTHESISABLE,
    distinct_stable,
    load_references,
    mark_novelty,
    mark_stability,
    screen_info,
    summarise,
    training_structures,
    validate,
)
from generators.cccgan.representation import counts_formula, parse_counts, reduced_formula
from generators.cccgan.train import TrainConfig, generate, load_generator, save_weights, train

TARGETS = ["Mg2Mn4O8", "Mg4Mn2O8", "Mg2Mn2O6", "Mg2Mn3O7", "Mg3Mn3O7"]  # last two absent from the data
CKPT_DIR = WEIGHTS_DIR / "checkpoints"
CKPT = CKPT_DIR / "cccgan_mgmno_long.pt"
RESULTS = Path(__file__).resolve().parent / "results"
CURVE = RESULTS / "cccgan_curve.json"
FINAL = RESULTS / "cccgan_final.json"


def snapshot_name(step: int) -> str:
    """Weights name of the snapshot after ``step`` generator steps."""
    return f"cccgan_mgmno_step{step:06d}"


def cmd_train(args: argparse.Namespace) -> None:
    """One time-budgeted chunk of training; snapshots every ``--snapshot-every`` steps."""
    torch.set_num_threads(1)
    ds = load_dataset()
    cfg = TrainConfig(max_steps=args.max_steps)

    def on_snapshot(step: int, res: Any) -> None:
        save_weights(res, ds.sha256, snapshot_name(step), CKPT_DIR)
        print(f"snapshot step {step}: {res.metrics}", flush=True)

    t0 = time.perf_counter()
    res = train(
        ds.images,
        cfg,
        checkpoint=args.checkpoint,
        time_budget_s=args.budget_s,
        snapshot_every=args.snapshot_every,
        on_snapshot=on_snapshot,
    )
    print(f"chunk done in {time.perf_counter() - t0:.0f} s: {res.metrics}", flush=True)


def evaluate_snapshot(
    step: int,
    n: int,
    relax: int,
    seed: int,
    relax_steps: int,
    refs: list[dict],
    known: dict,
    committed: bool = False,
    targets: list[str] | None = None,
) -> dict[str, Any]:
    """Generate ``n`` per target composition from one snapshot (``committed``: the committed weights
    ``data/weights/cccgan_mgmno``, which must be the snapshot of ``step``), screen, relax ``relax``
    per composition (``targets``: a subset of :data:`TARGETS`, e.g. one per process; same draws)."""
    g, meta = load_generator(*(("cccgan_mgmno", WEIGHTS_DIR) if committed else (snapshot_name(step), CKPT_DIR)))
    if meta["metrics"].get("steps") not in (None, step):
        raise SystemExit(f"those weights are the snapshot of step {meta['metrics']['steps']}, not {step}")
    t0 = time.perf_counter()
    per: dict[str, Any] = {}
    all_cands = []
    for comp in targets or TARGETS:
        counts = parse_counts(comp)
        cs = validate(generate(g, counts, n, seed), counts)
        mark_novelty(cs, known)
        mark_stability(cs, refs, max_relax=relax, steps=relax_steps)
        summ = summarise(cs) | screen_info(cs)
        summ["in_training"] = reduced_formula(counts) in known
        summ["e_hull"] = sorted(c.e_hull for c in cs if c.e_hull is not None)
        per[counts_formula(counts)] = summ
        all_cands += cs
        print(f"  step {step} {comp}: {summ}", flush=True)
    stable = distinct_stable(all_cands, known, SYNTHESISABLE)
    cols = ("generated", "valid", "novel", "relaxed", "metastable", "synthesisable")
    return {
        "step": step,
        "epochs": meta["metrics"].get("epochs_done"),
        "train_seconds": meta["metrics"].get("seconds"),
        "train_metrics": meta["metrics"],
        "per_composition": per,
        "totals": {c: sum(p[c] for p in per.values()) for c in cols},
        "distinct_novel_le_80meV": len(stable),
        "median_e_hull": _median([h for p in per.values() for h in p["e_hull"]]),
        "median_sp_energy": _median([p["median_sp_energy"] for p in per.values() if p["median_sp_energy"] is not None]),
        "eval_seconds": round(time.perf_counter() - t0, 1),
    }


def _median(xs: list[float]) -> float | None:
    xs = sorted(xs)
    return None if not xs else float(xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2)


def cmd_curve(args: argparse.Namespace) -> None:
    """Evaluate each snapshot not in the curve file yet; rewrite the file after each."""
    torch.set_num_threads(1)
    curve = json.loads(CURVE.read_text()) if CURVE.exists() else {"points": []}
    done = {p["step"] for p in curve["points"]}
    steps = sorted(int(p.stem.split("step")[1]) for p in CKPT_DIR.glob("cccgan_mgmno_step*.safetensors"))
    if args.steps:
        steps = [s for s in steps if s in set(args.steps)]
    ds = load_dataset()
    known = training_structures(ds.images)
    refs = load_references()
    for step in steps:
        if step in done:
            continue
        point = evaluate_snapshot(step, args.n, args.relax, args.seed, args.relax_steps, refs, known)
        curve["points"] = sorted([*curve["points"], point], key=lambda p: p["step"])
        curve["params"] = {
            "n_per_composition": args.n,
            "relax_per_composition": args.relax,
            "seed": args.seed,
            "relax_steps": args.relax_steps,
            "targets": TARGETS,
        }
        curve["machine"] = f"{platform.machine()}, 2 shared cores, 1 torch thread"
        RESULTS.mkdir(parents=True, exist_ok=True)
        CURVE.write_text(json.dumps(curve, indent=1) + "\n")
    print_curve(curve)


def print_curve(curve: dict[str, Any]) -> None:
    """The per-checkpoint table (80 columns)."""
    print(
        f"{'step':>6} {'epochs':>6} {'valid':>6} {'novel':>6} {'relaxed':>7} {'<=200':>5} {'<=80':>4} "
        f"{'distinct<=80':>12} {'med Ehull':>9}"
    )
    for p in curve["points"]:
        t = p["totals"]
        med = "-" if p["median_e_hull"] is None else f"{1000 * p['median_e_hull']:.0f}"
        print(
            f"{p['step']:>6} {p['epochs'] or 0:>6.1f} {t['valid']:>6} {t['novel']:>6} {t['relaxed']:>7} "
            f"{t['metastable']:>5} {t['synthesisable']:>4} {p['distinct_novel_le_80meV']:>12} {med:>9}"
        )


def cmd_final(args: argparse.Namespace) -> None:
    """The screened run from one snapshot; writes ``cccgan_final.json``."""
    torch.set_num_threads(1)
    ds = load_dataset()
    known = training_structures(ds.images)
    refs = load_references()
    point = evaluate_snapshot(
        args.step, args.n, args.relax, args.seed, args.relax_steps, refs, known, args.committed, args.targets
    )
    point["params"] = vars(args) | {"targets": args.targets or TARGETS}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(point, indent=1, default=str) + "\n")
    print_curve({"points": [point]})
    print(f"wrote {args.out}")


def main() -> None:
    """Parse the sub-command and run it."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--budget-s", type=float, default=900.0)
    t.add_argument("--max-steps", type=int, default=60_000)
    t.add_argument("--snapshot-every", type=int, default=1500)
    t.add_argument("--checkpoint", type=Path, default=CKPT)
    for name in ("curve", "final"):
        c = sub.add_parser(name)
        c.add_argument("--n", type=int, default=40 if name == "curve" else 400)
        c.add_argument("--relax", type=int, default=2 if name == "curve" else 12)
        c.add_argument("--relax-steps", type=int, default=150)
        c.add_argument("--seed", type=int, default=0)
        if name == "curve":
            c.add_argument("--steps", type=int, nargs="*", default=None)
        else:
            c.add_argument("--step", type=int, required=True)
            c.add_argument(
                "--committed", action="store_true", help="use data/weights/cccgan_mgmno (that step's snapshot)"
            )
            c.add_argument("--targets", nargs="+", choices=TARGETS, default=None, help="only these compositions")
            c.add_argument("--out", type=Path, default=FINAL, help="results JSON")
    args = ap.parse_args()
    {"train": cmd_train, "curve": cmd_curve, "final": cmd_final}[args.cmd](args)


if __name__ == "__main__":
    main()
