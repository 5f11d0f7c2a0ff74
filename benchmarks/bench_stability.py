"""Stability judges on OQMD-relaxed ternaries: CHGNet vs SevenNet checkpoints vs a CHGNet -> SevenNet funnel.

Data: ``../shared/data/structures/templates_merged.jsonl.gz`` (source ``oqmd_ternaries_jhamlin``:
4,448 OQMD-relaxed ternaries with DFT ``delta_e`` and ``stability_e_hull``, eV/atom). Not shipped
with the project: without ../shared this benchmark stops with a one-line message.

Protocol (docs/structures.md, "Benchmark protocol"): each model relaxes the OQMD structure (FIRE +
FrechetCellFilter, fmax 0.1 eV/Å, <= 200 steps: the product's settings) and gives a formation
energy against its own elemental references (the same ``<tag>_elemental_refs.json`` the product
uses; SevenNet energies get MP's 2020 corrections first: it was trained on raw MPtrj energies,
CHGNet on corrected ones). The predicted distance to the hull is the model's formation energy minus
the DFT hull energy of the competing phases at that composition, ``h = delta_e - stability_e_hull`` (the OQMD hull of
every other phase, read off the labels); the Matbench Discovery convention. Classes: "on the hull"
(E_hull <= 0) and "within 50 meV/atom" (E_hull <= 0.05), DFT labels vs predictions. A structure a
model could not relax counts as predicted unstable. The funnel takes CHGNet's prediction, and for
the survivors of a pre-screen fixed before measuring (CHGNet E_hull <= 0.05 + 0.10 eV/atom margin)
the SevenNet prediction; its time is CHGNet's plus SevenNet's on the survivors (here SevenNet's
standalone relaxation from the OQMD structure is reused for the survivors).

Sample: a plain random permutation (numpy seed 0) of the records sorted by id; ``run --n N`` works
through its first N, every model on a structure before the next structure, so all models share the
same sample; per-structure results are appended to ``benchmarks/results/stability_oqmd/<model>.jsonl``
and a rerun (or a larger ``--n`` in a later session) continues where it stopped.

Usage (run from the repository root; 1 torch thread):

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_stability.py run --n 400
    python benchmarks/bench_stability.py score        # table + benchmarks/results/stability.json
    OMP_NUM_THREADS=1 python benchmarks/bench_stability.py mp60    # E_form MAE on the MP60 sample
    OMP_NUM_THREADS=1 python benchmarks/bench_stability.py throughput --n 20   # product path, per judge
    python benchmarks/bench_stability.py e2e --n 100 --judges sevennet   # wall clock, Prefect flow, 2 workers
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data" / "structures" / "templates_merged.jsonl.gz"
CACHE_DIR = ROOT / "benchmarks" / "results" / "stability_oqmd"
RESULTS = ROOT / "benchmarks" / "results" / "stability.json"
MODELS = ("chgnet", "7net-0", "7net-mf-0", "7net-l3i5")
THRESHOLDS = (0.0, 0.05)  # eV/atom
FUNNEL_MARGIN = 0.10  # eV/atom above the class threshold: CHGNet survivors re-judged by SevenNet
SEED = 0


def load_oqmd(path: Path = SHARED) -> list[dict]:
    """The OQMD ternary records (``id``, ``formula``, ``cif``, ``delta_e``, ``e_hull``), sorted by id."""
    if not path.exists():
        sys.exit(f"bench_stability: {path} not found (the OQMD ternaries live in ../shared, outside the project)")
    out = []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            if "oqmd_ternaries_jhamlin" not in line:
                continue
            r = json.loads(line)
            if r["source"] != "oqmd_ternaries_jhamlin":
                continue
            p = r["props"]
            out.append(
                {
                    "id": r["id"],
                    "formula": r["reduced_formula"],
                    "nsites": r["nsites"],
                    "cif": r["cif"],
                    "delta_e": float(p["delta_e"]),
                    "e_hull": float(p["stability_e_hull"]),
                }
            )
    return sorted(out, key=lambda r: r["id"])


def sample_order(n_records: int, seed: int = SEED) -> np.ndarray:
    """The benchmark's fixed random order of record indices (plain permutation, no stratification)."""
    return np.random.default_rng(seed).permutation(n_records)


def _read_cache(model: str) -> dict[str, dict]:
    path = CACHE_DIR / f"{model}.jsonl"
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            d = json.loads(line)
            out[d["id"]] = d
    return out


def _append(model: str, doc: dict) -> None:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / f"{model}.jsonl", "a") as fh:
        fh.write(json.dumps(doc) + "\n")


def _refs(model: str, relaxer, library):
    from oracles.stability.checker import DATA_DIR, ElementalReferences

    return ElementalReferences(
        path=DATA_DIR / "structures" / f"{relaxer.tag}_elemental_refs.json", library=library, relaxer=relaxer
    )


def cmd_run(args) -> None:
    """Relax the first ``--n`` sampled structures with every model (resumable)."""
    from pymatgen.io.cif import CifParser

    from generators.templates import TemplateLibrary
    from oracles.stability.checker import formation_energy
    from oracles.stability.relaxers import get_relaxer

    recs = load_oqmd()
    order = sample_order(len(recs))
    models = args.models.split(",")
    library = TemplateLibrary.load()
    relaxers = {m: get_relaxer(m) for m in models}
    refs = {m: _refs(m, relaxers[m], library) for m in models}
    caches = {m: _read_cache(m) for m in models}
    t_start = time.perf_counter()
    shard, n_shards = (int(x) for x in args.shard.split("/"))
    for k, i in enumerate(order[: args.n]):
        if k % n_shards != shard:
            continue
        r = recs[int(i)]
        s = None
        for m in models:
            if r["id"] in caches[m]:
                continue
            if s is None:
                s = CifParser.from_str(r["cif"]).parse_structures(primitive=False)[0]
            doc = {"id": r["id"], "formula": r["formula"], "k": k, "nsites": len(s), "model": relaxers[m].name}
            try:
                t_ref = time.perf_counter()
                ref = refs[m].energies([e.symbol for e in s.composition.elements])
                doc["refs_s"] = time.perf_counter() - t_ref
                cpu0 = time.process_time()
                res = relaxers[m].relax(s, fmax=0.1, steps=200)
                doc["cpu_s"] = time.process_time() - cpu0
                doc.update(
                    energy_per_atom=res.energy_per_atom,
                    initial_energy_per_atom=res.initial_energy_per_atom,
                    steps=res.steps,
                    converged=res.converged,
                    seconds=res.seconds,
                    e_form=formation_energy(s.composition, res.energy_per_atom, ref),
                    load=os.getloadavg()[0],
                )
            except Exception as exc:
                doc["error"] = f"{type(exc).__name__}: {exc}"[:300]
            _append(m, doc)
            caches[m][r["id"]] = doc
            print(
                f"{k:4d} {m:10s} {r['formula']:14s} {doc.get('e_form', float('nan')):+.3f} "
                f"(DFT {r['delta_e']:+.3f}) {doc.get('seconds', 0):.1f}s {doc.get('error', '')}",
                flush=True,
            )
    print(f"done: {args.n} structures x {len(models)} models in {time.perf_counter() - t_start:.0f} s")


# ---------------------------------------------------------------------------- scoring
def prf(label: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    """(precision, recall, F1) of boolean predictions against boolean labels (0 where undefined)."""
    tp = float(np.sum(label & pred))
    p = tp / max(1.0, float(np.sum(pred)))
    r = tp / max(1.0, float(np.sum(label)))
    return p, r, (2 * p * r / (p + r) if p + r > 0 else 0.0)


def bootstrap_f1(label: np.ndarray, preds: dict[str, np.ndarray], n_boot: int = 2000, seed: int = 0) -> dict:
    """95 % percentile bootstrap CIs of F1 per model and of each model's F1 minus CHGNet's (paired)."""
    rng = np.random.default_rng(seed)
    n = len(label)
    f1s = {m: [] for m in preds}
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        for m, p in preds.items():
            f1s[m].append(prf(label[idx], p[idx])[2])
    out = {}
    for m in preds:
        a = np.array(f1s[m])
        d = a - np.array(f1s["chgnet"]) if "chgnet" in f1s else a * np.nan
        out[m] = {
            "f1_ci95": [float(np.percentile(a, 2.5)), float(np.percentile(a, 97.5))],
            "f1_minus_chgnet_ci95": [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))],
        }
    return out


def e_form_of(model: str, doc: dict, refs: dict[str, dict]) -> float:
    """Formation energy (eV/atom) of a cached result: energy (+ MP2020 correction for SevenNet) minus the
    model's elemental references; NaN if the relaxation failed or a reference is missing."""
    from pymatgen.core import Composition

    from oracles.stability.checker import formation_energy
    from oracles.stability.corrections import mp2020_correction

    if "energy_per_atom" not in doc:
        return float("nan")
    comp = Composition(doc["formula"])
    if any(el.symbol not in refs for el in comp.elements):
        return float("nan")
    corr = 0.0 if model == "chgnet" else mp2020_correction(comp)
    ref = {el.symbol: refs[el.symbol]["energy_per_atom"] for el in comp.elements}
    return formation_energy(comp, doc["energy_per_atom"] + corr, ref)


def _refs_table(model: str) -> dict[str, dict]:
    from oracles.stability.checker import DATA_DIR
    from oracles.stability.relaxers import SEVENNET_CHECKPOINTS

    tag = "chgnet" if model not in SEVENNET_CHECKPOINTS else "sevennet_" + model.removeprefix("7net-").replace("-", "")
    return json.loads((DATA_DIR / "structures" / f"{tag}_elemental_refs.json").read_text())


def cmd_score(args) -> None:
    """Score every model on the structures all models have finished; print the table, write the JSON."""
    from pymatgen.core import Composition

    recs = {r["id"]: r for r in load_oqmd()}
    models = [m for m in args.models.split(",") if (CACHE_DIR / f"{m}.jsonl").exists()]
    caches = {m: _read_cache(m) for m in models}
    for m in models:  # E_form from the stored energy with the current references and corrections
        refs = _refs_table(m)
        for d in caches[m].values():
            d["e_form"] = e_form_of(m, d, refs)
    order = sample_order(len(recs))
    by_id = sorted(recs)  # load_oqmd's order: records sorted by id
    # every sample position that every model has finished, in sample order. Workers take positions
    # by index % k (--shard), so which positions are done depends on the worker, not on the structure
    # (a worker held up by a large cell leaves its share of positions for a later session)
    ids = [by_id[int(i)] for i in order if all(by_id[int(i)] in c for c in caches.values())]
    reached = max(d["k"] for c in caches.values() for d in c.values()) + 1 if ids else 0
    if not ids:
        sys.exit("bench_stability: no results yet; run `bench_stability.py run` first")
    n = len(ids)
    dft_ehull = np.array([recs[i]["e_hull"] for i in ids])
    h = np.array([recs[i]["delta_e"] - recs[i]["e_hull"] for i in ids])  # DFT hull energy of the others
    delta_e = np.array([recs[i]["delta_e"] for i in ids])
    pred: dict[str, np.ndarray] = {}
    ef: dict[str, np.ndarray] = {}
    secs: dict[str, np.ndarray] = {}  # wall seconds of the relaxation (inflated by the shared machine's load)
    cpu: dict[str, np.ndarray] = {}  # CPU seconds of the relaxation (1 thread; recorded from session 6 on)
    conv: dict[str, np.ndarray] = {}
    for m in models:
        ef[m] = np.array([caches[m][i].get("e_form", np.nan) for i in ids], float)
        pred[m] = ef[m] - h
        secs[m] = np.array([caches[m][i].get("seconds", np.nan) for i in ids], float)
        cpu[m] = np.array([caches[m][i].get("cpu_s", np.nan) for i in ids], float)
        # converged = stopped before the 200-step bound (FIRE's own criterion; the stored flag of early
        # entries used the Cartesian forces of the last frame, which the product no longer does)
        conv[m] = np.array([caches[m][i].get("steps", 200) < 200 for i in ids])
    strong = [m for m in models if m != "chgnet"]
    survivors = {}
    if "chgnet" in models:
        for m in strong:
            for thr in THRESHOLDS:
                keep = pred["chgnet"] <= thr + FUNNEL_MARGIN
                survivors[(m, thr)] = keep
            # one pre-screen per funnel: the looser threshold's survivors (used for both classes)
            keep = pred["chgnet"] <= max(THRESHOLDS) + FUNNEL_MARGIN
            name = f"funnel:{m}"
            pred[name] = np.where(keep, pred[m], pred["chgnet"])
            ef[name] = np.where(keep, ef[m], ef["chgnet"])
            secs[name] = secs["chgnet"] + np.where(keep, secs[m], 0.0)
            cpu[name] = cpu["chgnet"] + np.where(keep, cpu[m], 0.0)
            conv[name] = np.where(keep, conv[m], conv["chgnet"])
            survivors[name] = keep
    names = list(pred)
    cpu_all = {m: [d["cpu_s"] for d in caches[m].values() if "cpu_s" in d] for m in models}
    out: dict = {
        "n": n,
        "sample": f"the {n} positions every model finished among the first {reached} of a numpy "
        f"default_rng({SEED}) permutation of the 4,448 OQMD records sorted by id",
        "n_elements_in_formula": {
            str(k): sum(len(Composition(recs[i]["formula"]).elements) == k for i in ids) for k in (1, 2, 3, 4)
        },
        "protocol": "E_hull_pred = E_form(model, own elemental refs) - (delta_e - stability_e_hull); "
        "failed relaxations count as predicted unstable; fmax 0.1 eV/A, <= 200 FIRE steps",
        "funnel_prescreen": f"CHGNet E_hull_pred <= {max(THRESHOLDS) + FUNNEL_MARGIN} eV/atom",
        "labels": {f"e_hull<={t}": int(np.sum(dft_ehull <= t)) for t in THRESHOLDS},
        "models": {},
    }
    rows = []
    for t in THRESHOLDS:
        label = dft_ehull <= t
        p_all = {m: np.nan_to_num(pred[m], nan=np.inf) <= t for m in names}
        ci = bootstrap_f1(label, p_all, n_boot=args.boot)
        for m in names:
            p, r, f1 = prf(label, p_all[m])
            d = out["models"].setdefault(m, {})
            d[f"e_hull<={t}"] = {"precision": p, "recall": r, "f1": f1, **ci[m]}
            rows.append((m, t, p, r, f1, ci[m]["f1_ci95"]))
    for m in names:
        d = out["models"][m]
        ok = np.isfinite(ef[m])
        d["n_failed"] = int(np.sum(~ok))
        d["n_unconverged"] = int(np.sum(~conv[m]))
        d["e_form_mae"] = float(np.mean(np.abs(ef[m][ok] - delta_e[ok])))
        d["e_hull_mae"] = float(np.mean(np.abs(pred[m][ok] - dft_ehull[ok])))
        d["s_per_structure_mean"] = float(np.nanmean(secs[m]))
        d["s_per_structure_median"] = float(np.nanmedian(secs[m]))
        # CPU time over every cached relaxation that recorded it (not only the scored prefix)
        if m in cpu_all:
            d["cpu_s_per_structure_mean"] = float(np.mean(cpu_all[m])) if len(cpu_all[m]) else None
            d["cpu_s_per_structure_median"] = float(np.median(cpu_all[m])) if len(cpu_all[m]) else None
            d["cpu_s_n"] = len(cpu_all[m])
        elif m.startswith("funnel:") and cpu_all.get("chgnet") and cpu_all.get(m.removeprefix("funnel:")):
            strong = m.removeprefix("funnel:")
            frac = float(np.mean(survivors[m]))
            d["cpu_s_per_structure_mean"] = float(np.mean(cpu_all["chgnet"]) + frac * np.mean(cpu_all[strong]))
            d["cpu_s_how"] = f"mean CPU s of CHGNet + survivor fraction {frac:.2f} x mean CPU s of {strong}"
        else:
            d["cpu_s_per_structure_mean"] = None
        if m in survivors:
            d["survivor_fraction"] = float(np.mean(survivors[m]))
    out["per_structure"] = [
        {
            "id": i,
            "formula": recs[i]["formula"],
            "delta_e": recs[i]["delta_e"],
            "stability_e_hull": recs[i]["e_hull"],
            **{f"e_form[{m}]": _num(caches[m][i].get("e_form")) for m in models},
            **{f"seconds[{m}]": caches[m][i].get("seconds") for m in models},
            **{f"converged[{m}]": caches[m][i].get("converged") for m in models},
        }
        for i in ids
    ]
    out["machine"] = f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs, 1 torch thread"
    out["date"] = time.strftime("%Y-%m-%d %H:%M")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for key in ("mp60", "throughput", "e2e"):  # written by those subcommands; kept
        if key in old:
            out[key] = old[key]
    RESULTS.write_text(json.dumps(out, indent=1, default=float))
    lab = out["labels"]
    print(f"OQMD records, n = {n} (on hull: {lab['e_hull<=0.0']}, <= 50 meV: {lab['e_hull<=0.05']})")
    print(f"sample: {out['sample']}; elements per formula: {out['n_elements_in_formula']}")
    print(f"{'model':20s} {'class':>6s} {'prec':>5s} {'rec':>5s} {'F1':>5s} {'F1 95% CI':>13s}", end="")
    print(f" {'MAE':>5s} {'s/str':>5s}")
    for m, t, p, r, f1, c in rows:
        d = out["models"][m]
        cpu_s = d["cpu_s_per_structure_mean"] or np.nan
        print(
            f"{m:20s} {'<=' + str(int(t * 1000)):>6s} {p:5.3f} {r:5.3f} {f1:5.3f} "
            f"{'[' + f'{c[0]:.2f}, {c[1]:.2f}' + ']':>13s} {d['e_form_mae']:5.3f} {cpu_s:5.2f}"
        )
    print("class: E_hull <= 0 or <= 50 meV/atom; MAE: E_form vs delta_e (eV/atom); s/str: CPU s per relaxation")
    for m in names:
        d = out["models"][m]
        extra = f", survivors {d['survivor_fraction']:.2f}" if "survivor_fraction" in d else ""
        print(f"{m}: failed {d['n_failed']}, unconverged {d['n_unconverged']}{extra}")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


def _num(x):
    return None if x is None or not np.isfinite(x) else float(x)


# ---------------------------------------------------------------------------- results-file sections
def _section(key: str) -> dict:
    """The ``key`` section of the results file (empty if absent)."""
    return (json.loads(RESULTS.read_text()) if RESULTS.exists() else {}).get(key, {})


def _save_section(key: str, value: dict) -> None:
    """Write ``value`` as section ``key`` of the results file, keeping the other sections."""
    allres = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    allres[key] = value
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(allres, indent=1, default=float))


def _throughput_candidates(n: int) -> list[str]:
    """bench_structures' seeded ternary oxide/halide/sulfide swaps: the first ``n``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_structures", ROOT / "benchmarks" / "bench_structures.py")
    bs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bs)
    return bs._pipeline_candidates(n)


# ---------------------------------------------------------------------------- MP60 E_form check
def cmd_mp60(args) -> None:
    """E_form MAE vs MP DFT on data/structures/dft_sample_mp60.jsonl.gz for each model (relaxed)."""
    from pymatgen.io.cif import CifParser

    from generators.templates import TemplateLibrary
    from oracles.stability.checker import formation_energy
    from oracles.stability.corrections import mp2020_correction
    from oracles.stability.relaxers import get_relaxer

    with gzip.open(ROOT / "data/structures/dft_sample_mp60.jsonl.gz", "rt") as fh:
        recs = [json.loads(x) for x in fh]
    library = TemplateLibrary.load()
    mp60 = _section("mp60")
    for m in args.models.split(","):
        relaxer = get_relaxer(m)
        refs = _refs(m, relaxer, library)
        rows, secs = [], []
        for r in recs:
            s = CifParser.from_str(r["cif"]).parse_structures(primitive=False)[0]
            try:
                ref = refs.energies([e.symbol for e in s.composition.elements])
                res = relaxer.relax(s, fmax=0.1, steps=200)
                corr = mp2020_correction(s.composition, res.structure) if relaxer.energy_correction else 0.0
                e_form = formation_energy(s.composition, res.energy_per_atom + corr, ref)
                secs.append(res.seconds)
            except Exception as exc:
                print(m, r["formula"], "failed", exc)
                e_form = None
            rows.append(
                {"formula": r["formula"], "mpid": r["material_id"], "dft": r["e_form_per_atom"], "pred": e_form}
            )
        err = np.array([abs(x["pred"] - x["dft"]) for x in rows if x["pred"] is not None])
        mp60[m] = {
            "model": relaxer.name,
            "n": len(err),
            "mae": float(err.mean()),
            "median_abs": float(np.median(err)),
            "s_per_relaxation": float(np.mean(secs)),
            "rows": rows,
        }
        print(
            f"{m:10s} n={len(err)} E_form MAE {err.mean():.3f} eV/atom, median {np.median(err):.3f}, "
            f"{np.mean(secs):.2f} s/relaxation",
            flush=True,
        )
        _save_section("mp60", mp60)


# ---------------------------------------------------------------------------- product throughput
def cmd_throughput(args) -> None:
    """The product's path for ``--n`` candidates (bench_structures' seeded ternary oxide/halide/sulfide
    swaps, 1 template each): propose, relax, E_form, E_hull over every phase, verdict; one thread,
    each judge in turn, competing-phase caches as committed (what a judge lacks it computes and
    its time counts). CPU seconds (the shared machine's load inflates wall time, not CPU time);
    extrapolated to 100 candidates on 2 single-threaded workers: mean CPU s * 100 / 2."""
    from generators.templates import TemplateLibrary, propose_structures
    from oracles.stability.judges import make_checker

    cands = _throughput_candidates(args.n)
    library = TemplateLibrary.load()
    out = _section("throughput")
    for judge in args.judges.split(","):
        t0 = time.perf_counter()
        chk = make_checker(judge, library, threads=1)
        load_s = time.perf_counter() - t0
        rows = []
        load0 = os.getloadavg()[0]
        for f in cands:
            t, cpu0 = time.perf_counter(), time.process_time()
            trial = propose_structures(f, library, k=1)[0]
            v = chk.evaluate(trial)
            cpu_s = time.process_time() - cpu0
            rows.append(
                {
                    "formula": f,
                    "verdict": str(v.verdict),
                    "model": v.model,
                    "e_form": _num(v.e_form),
                    "e_hull": _num(v.e_hull),
                    "steps": v.steps,
                    "n_phases": v.extra.get("n_competing_phases"),
                    "seconds": time.perf_counter() - t,
                    "cpu_s": cpu_s,
                }
            )
            print(judge, rows[-1], flush=True)
        secs = np.array([r["cpu_s"] for r in rows])
        out[judge] = {
            "n": len(rows),
            "model_load_s": load_s,
            "wall_s_per_candidate_mean": float(np.mean([r["seconds"] for r in rows])),
            "cpu_s_per_candidate_mean": float(secs.mean()),
            "cpu_s_per_candidate_median": float(np.median(secs)),
            "min_per_100_on_2_workers": float(secs.mean() * 100 / 2 / 60),
            "load_start": load0,
            "load_end": os.getloadavg()[0],
            "rows": rows,
        }
        print(f"{judge}: {secs.mean():.1f} CPU s/candidate -> {secs.mean() * 100 / 2 / 60:.1f} min per 100 on 2 cores")
        _save_section("throughput", out)


def cmd_e2e(args) -> None:
    """Wall-clock time of the product path on ``--n`` candidates (the throughput candidates), as a
    user runs it: ``run_structures`` (the Prefect ``structures`` flow of ``alflow structures run``)
    with ``--k-templates`` trials per formula on ``--workers`` Dask single-threaded worker
    processes, into a fresh embedded MongoDB-wire store; model loading, template proposal, relaxation,
    E_form, the hull over every competing phase (committed caches; what a judge lacks it computes,
    and that time counts) and the verdict documents. One row per judge."""
    import tempfile

    from flows.pipelines.structures import run_structures
    from flows.store.embedded import start_server, stop_server

    cands = _throughput_candidates(args.n)
    out = _section("e2e")
    for judge in args.judges.split(","):
        base = Path(tempfile.mkdtemp(prefix="alflow-bench-e2e-", dir="/tmp"))
        server = start_server(base, args.port)
        load0, t0 = os.getloadavg()[0], time.perf_counter()
        try:
            summary = run_structures(
                formulas=cands,
                runner=args.runner,
                workers=args.workers,
                campaign=f"e2e-{judge}",
                k_templates=args.k_templates,
                judge=judge,
                mongo_uri=server.uri,
                database="bench",
            )
            wall = time.perf_counter() - t0
        finally:
            stop_server(base)
        out[f"{judge}/k{args.k_templates}"] = {
            "judge": judge,
            "n": len(cands),
            "k_templates": args.k_templates,
            "runner": args.runner,
            "workers": args.workers,
            "wall_s": wall,
            "min_per_100": wall / len(cands) * 100 / 60,
            "trials": summary["trials"],
            "relaxed": summary["relaxed"],
            "verdicts": summary["verdicts"],
            "load_start": load0,
            "load_end": os.getloadavg()[0],
            "formulas": cands,
        }
        print(
            f"{judge}: {len(cands)} candidates x {args.k_templates} trials in {wall / 60:.1f} min "
            f"({summary['verdicts']}; load {load0:.1f} -> {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        _save_section("e2e", out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run")
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--shard", default="0/1", help="i/k: this process takes sample positions with index % k == i")
    p = sub.add_parser("score")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--boot", type=int, default=2000)
    p = sub.add_parser("mp60")
    p.add_argument("--models", default=",".join(MODELS))
    p = sub.add_parser("throughput")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--judges", default="chgnet,funnel,sevennet")
    p = sub.add_parser("e2e", help="wall clock of the product path (Prefect structures flow) on --n candidates")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--judges", default="sevennet")
    p.add_argument("--k-templates", type=int, default=1)
    p.add_argument("--runner", default="dask")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--port", type=int, default=27700 + os.getpid() % 90)
    args = ap.parse_args()
    cmds = {"run": cmd_run, "score": cmd_score, "mp60": cmd_mp60, "throughput": cmd_throughput, "e2e": cmd_e2e}
    cmds[args.cmd](args)


if __name__ == "__main__":
    main()
