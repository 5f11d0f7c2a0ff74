"""Crash-anywhere harness: run a small seeded campaign in a child process, kill it, compare databases.

The child is ``python -m tests.flows.campaign.fault_harness CONFIG.json --owner OWNER``: it connects with
``Store.connect()`` (``ALFLOW_MONGODB_URI`` / ``ALFLOW_DATABASE`` from the environment), runs
``flows.campaign.run_campaign_in`` and prints the summary status as JSON. With
``ALFLOW_FAULT_POINT=<name>`` and ``ALFLOW_FAULT_MARKER=<file>`` in its environment the child
SIGKILLs itself at that point (see ``flows.campaign.fault_point``), so the parent sees return code -9.

A restarted runner passes the same ``owner`` (default ``"harness"``): that models a restart on the
same host re-entering its own lease, which a killed runner leaves held for ``LEASE_TTL_S`` (600 s).
A different owner must wait for the lease to expire (tested separately by moving
``lease.expires_at`` into the past).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]

#: Every stage is covered, including the two mid-write points (iterations = 2 in the harness config).
KILL_POINTS_FULL: tuple[str, ...] = (
    "seed:0:before",
    "seed:0:after",
    "fit:1:before",
    "fit:1:after",
    "acquire:1:before",
    "acquire:1:mid-candidates",
    "acquire:1:after",
    "label:1:before",
    "label:1:mid-labels",
    "label:1:after",
    "retrain:1:before",
    "retrain:1:after",
    "metrics:1:before",
    "metrics:1:after",
    "fit:2:after",
    "acquire:2:mid-candidates",
    "label:2:mid-labels",
    "metrics:2:after",
)

#: The reduced set CI runs (both mid-write points and a kill between outputs and the done mark).
KILL_POINTS_CI: tuple[str, ...] = ("acquire:1:mid-candidates", "label:1:mid-labels", "retrain:1:after")

#: Seconds one child run may take before the harness gives up (the machine is slow and shared).
CHILD_TIMEOUT_S = 900.0


def tiny_autoencoder(base_dir: Path) -> Path:
    """Train (once per ``base_dir``) a 3-epoch autoencoder on 2,000 AGD formulas; returns its path.

    ``base_dir`` is e.g. pytest's session base temp, so several test modules share one file;
    ``ALFLOW_TINY_AE_DIR`` overrides it (reuse one trained file across pytest sessions).
    """
    out = Path(os.environ.get("ALFLOW_TINY_AE_DIR") or base_dir) / "alflow_tiny_ae" / "tiny_ae.safetensors"
    if out.exists():
        return out
    import torch

    from alcore.composition import CompositionEncoder
    from flows.datasets import band_gap_table
    from flows.pipelines.autoencoder import train_and_save_autoencoder

    torch.set_num_threads(1)
    out.parent.mkdir(parents=True, exist_ok=True)
    enc = CompositionEncoder("agd87")
    corpus = [f for f in band_gap_table("agd_exp1_42k")["formula"][:4000] if enc.representable(f)[0]][:2000]
    train_and_save_autoencoder(out, epochs=3, corpus=corpus, progress=False)
    return out


def tiny_config(ae_path: Path, name: str, **overrides: Any) -> dict[str, Any]:
    """A small seeded pool-mode campaign config (lookup oracle, 1,000-formula pool, 2 iterations, q = 3)."""
    from tests.flows.conftest import pool_config_dict

    small = {
        "iterations": 2,
        "seed": 11,
        "seeds": {"dataset": "agd_exp3_init_300", "n": 30},
        "gp": {"maxiter": 10, "warm_maxiter": 5},
        "screening_epochs": 3,
        "pool_size": 1000,
    }
    return pool_config_dict(ae_path, name, **{**small, **overrides})


@dataclass
class ChildRun:
    """One child run: its return code, wall seconds, output tail and the kill point armed (if any)."""

    returncode: int
    seconds: float
    output: str
    fault_point: str | None = None


@dataclass
class HarnessEnv:
    """Where children connect: MongoDB URI, database name, Prefect API URL, a scratch folder."""

    uri: str
    database: str
    prefect_api_url: str | None
    scratch: Path
    extra: dict[str, str] = field(default_factory=dict)

    def environ(self) -> dict[str, str]:
        """The child's environment (no fault variables)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALFLOW_FAULT")}
        env.update(
            {
                "ALFLOW_MONGODB_URI": self.uri,
                "ALFLOW_DATABASE": self.database,
                "ALFLOW_SERVER_TIMEOUT_S": "20",
                "ALFLOW_TORCH_THREADS": "1",
                "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1",
                "PREFECT_LOGGING_LEVEL": "WARNING",
                "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
                "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
            }
        )
        if self.prefect_api_url:
            env["PREFECT_API_URL"] = self.prefect_api_url
        env.update(self.extra)
        return env


def run_child(
    henv: HarnessEnv,
    config: dict[str, Any],
    owner: str = "harness",
    fault: str | None = None,
    timeout_s: float = CHILD_TIMEOUT_S,
) -> ChildRun:
    """Run the campaign ``config`` in a child process; with ``fault`` armed it is expected to die (-9).

    Returns a :class:`ChildRun`; the config is written to ``henv.scratch/<name>.json``.
    """
    henv.scratch.mkdir(parents=True, exist_ok=True)
    cfg_path = henv.scratch / f"{config['name']}.json"
    cfg_path.write_text(json.dumps(config))
    env = henv.environ()
    if fault:
        marker = henv.scratch / f"{config['name']}.{fault.replace(':', '_')}.fired"
        marker.unlink(missing_ok=True)
        env.update({"ALFLOW_FAULT_POINT": fault, "ALFLOW_FAULT_MARKER": str(marker)})
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "tests.flows.campaign.fault_harness", str(cfg_path), "--owner", owner],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    return ChildRun(proc.returncode, time.perf_counter() - t0, (proc.stdout + proc.stderr)[-4000:], fault)


def run_with_kills(
    henv: HarnessEnv,
    config: dict[str, Any],
    points: list[str] | tuple[str, ...],
    owner: str = "harness",
    max_restarts: int = 3,
) -> list[ChildRun]:
    """Run ``config`` killing it once at each of ``points`` (in order), then restart until it finishes.

    Each armed run must die by SIGKILL (-9); afterwards plain restarts (same ``owner``) run until one
    exits 0. Returns every child run. Raises AssertionError with the child's output otherwise.
    """
    runs: list[ChildRun] = []
    for point in points:
        run = run_child(henv, config, owner=owner, fault=point)
        runs.append(run)
        assert run.returncode == -signal.SIGKILL, (
            f"kill point {point!r}: expected SIGKILL (-9), got {run.returncode}\n{run.output}"
        )
    for _ in range(max_restarts):
        run = run_child(henv, config, owner=owner)
        runs.append(run)
        if run.returncode == 0:
            return runs
    raise AssertionError(f"campaign {config['name']} did not finish after {max_restarts} restarts:\n{runs[-1].output}")


# ---------------------------------------------------------------------------- database comparison
def db_state(db: Any, name: str) -> dict[str, Any]:
    """The outcome of campaign ``name`` in pymongo database ``db``, in a canonical order.

    Labels ``(formula, value, source, iteration)``, candidates ``(iteration, formula, status, valid)``
    and per-iteration metrics (timings excluded: they are wall times).
    """
    labels = sorted(
        (d["formula"], round(float(d["value"]), 9), d.get("source"), d.get("iteration"))
        for d in db.labels.find({"campaign": name})
    )
    cands = sorted(
        (d["iteration"], d["formula"], d["status"], d["valid"]) for d in db.candidates.find({"campaign": name})
    )
    metrics = [
        (it["iteration"], it.get("metrics")) for it in db.iterations.find({"campaign": name}).sort("iteration", 1)
    ]
    return {"labels": labels, "candidates": cands, "metrics": metrics}


def state_diff(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """Readable differences between two :func:`db_state` results (empty when identical)."""
    out: list[str] = []
    for key in ("labels", "candidates"):
        extra, missing = set(got[key]) - set(want[key]), set(want[key]) - set(got[key])
        out += [f"{key}: unexpected {x}" for x in sorted(extra, key=str)]
        out += [f"{key}: missing {x}" for x in sorted(missing, key=str)]
    g, w = dict(got["metrics"]), dict(want["metrics"])
    for it in sorted(set(g) | set(w)):
        gm, wm = g.get(it) or {}, w.get(it) or {}
        out += [
            f"metrics[{it}].{k}: {gm.get(k)!r} != {wm.get(k)!r}"
            for k in sorted(set(gm) | set(wm))
            if gm.get(k) != wm.get(k)
        ]
    return out


def invariant_problems(db: Any, name: str) -> list[str]:
    """Problems with a finished campaign: duplicate keys, stages not ``done``, a lease still held."""
    problems: list[str] = []
    for coll, key in (("labels", ("formula", "property")), ("candidates", ("iteration", "formula"))):
        counts = Counter(tuple(d[k] for k in key) for d in db[coll].find({"campaign": name}))
        problems += [f"duplicate {coll} {k}" for k, n in counts.items() if n > 1]
    for it in db.iterations.find({"campaign": name}):
        for stage, state in it.get("stages", {}).items():
            if state.get("status") != "done":
                problems.append(f"iteration {it['iteration']} stage {stage} is {state.get('status')}")
    camp = db.campaigns.find_one({"name": name})
    if camp is None:
        problems.append("campaign document missing")
    else:
        if camp.get("status") != "finished":
            problems.append(f"campaign status {camp.get('status')}")
        if camp.get("lease"):
            problems.append(f"lease still held: {camp['lease']}")
    return problems


# ---------------------------------------------------------------------------- child entry point
def main(argv: list[str] | None = None) -> int:
    """Child process: run (or resume) the campaign in CONFIG.json; prints ``{"status": ...}``; exit 0/2."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", type=Path)
    parser.add_argument("--owner", default="harness")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from alcore.errors import AlflowError
    from flows.campaign import run_campaign_in
    from flows.config import parse_config
    from flows.store import Store

    config = parse_config(json.loads(args.config.read_text()), source=str(args.config))
    try:
        store = Store.connect()
        try:
            summary = run_campaign_in(store, config, owner=args.owner)
        finally:
            store.close()
    except AlflowError as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 2
    print(json.dumps({"status": summary["status"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
