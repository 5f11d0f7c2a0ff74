"""The first-hour bad-input probe (issue 19), run against the real ``alflow`` command line.

Each probe input runs ``python -m flows.cli ...`` as a child process against a scratch SecantusDB
(in memory, patched like the embedded server) and is classified:

* ``clean``: non-zero exit, stderr is exactly one ``error:`` line, no traceback, nothing written
  (database collections unchanged, no output file created);
* ``warned``: exit 0 and the output flags the input (``outside domain``) - a prediction with a warning;
* ``accepted``: exit 0 and nothing says the input was unusual;
* ``traceback``: a Python traceback was printed;
* ``other``: any other outcome (e.g. non-zero exit with several lines).

The inputs are the 19 of the probe's main table and its 16 extras (docs/reliability.md, section 3;
the misspelled-campaign extra is one row that runs the four read/export commands, all of which must be
clean). Prints a table, writes ``benchmarks/results/bad_inputs.json``.

    python benchmarks/bench_bad_inputs.py            # ~2-4 min on 2 busy cores (35 child processes)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import report  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: the probe's base campaign; each config probe changes one setting of it
TINY = yaml.safe_load((REPO / "deploy" / "campaigns" / "probe.yaml").read_text())
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"


def _cfg(tmp: Path, name: str, **changes: Any) -> str:
    cfg = {**TINY, "name": name}
    for k, v in changes.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _csv(tmp: Path, name: str, text: str | bytes) -> str:
    path = tmp / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def probe_inputs(tmp: Path) -> list[dict[str, Any]]:
    """The probe: ``{id, input, args, env?, outputs?}`` (``outputs``: paths that must not be created)."""
    out = tmp / "out"
    rows = [
        ("P1", "unknown key stuctures:", ["run", _cfg(tmp, "k1", stuctures={"top_k": 1})]),
        ("P2", "misspelled oracle resnet-adg", ["run", _cfg(tmp, "k2", oracle="resnet-adg")]),
        ("P3", "beta -1", ["run", _cfg(tmp, "k3", acquisition={"beta": -1.0})]),
        ("P4", "q 0", ["run", _cfg(tmp, "k4", acquisition={"q": 0})]),
        ("P5", "missing config file", ["run", str(tmp / "nope.yaml")]),
        ("P6", "CSV formula Xx2O", ["labels", "import", "imp", _csv(tmp, "xx.csv", "formula,value\nNaCl,5\nXx2O,1\n")]),
        ("P7", "NaN label", ["labels", "import", "imp", _csv(tmp, "nan.csv", "formula,value\nNaCl,nan\n")]),
        ("P8", "negative gap", ["labels", "import", "imp", _csv(tmp, "neg.csv", "formula,value\nNaCl,-1\n")]),
        ("P9", "header typo formla", ["labels", "import", "imp", _csv(tmp, "typo.csv", "formla,value\nNaCl,5\n")]),
        ("P10", "empty CSV", ["labels", "import", "imp", _csv(tmp, "empty.csv", "")]),
        ("P11", "binary file (PNG)", ["labels", "import", "imp", _csv(tmp, "img.csv", PNG)]),
        (
            "P12",
            "3-cell row, 2-column header",
            ["labels", "import", "imp", _csv(tmp, "three.csv", "formula,value\nMgO,7.8\nNaCl,5,0.1\n"), "--allow-new"],
        ),
        ("P13", 'empty formula ""', ["oracles", "predict", ""]),
        ("P14", "H999", ["oracles", "predict", "H999"]),
        ("P15", "NaCl)", ["oracles", "predict", "NaCl)"]),
        ("P16", "Fe2O3.5 (= Fe4O7)", ["oracles", "predict", "Fe2O3.5"]),
        ("P17", "C6H12O6 (glucose)", ["oracles", "predict", "C6H12O6"]),
        (
            "P18",
            "unreachable URI with password",
            ["campaign", "list"],
            {"ALFLOW_MONGODB_URI": "mongodb://user:secret@127.0.0.1:1/", "ALFLOW_SERVER_TIMEOUT_S": "3"},
        ),
        ("P19", "second runner (lease held)", ["run", _cfg(tmp, "busy")]),
        ("E1", "num_restarts 0", ["campaign", "create", _cfg(tmp, "e1", acquisition={"num_restarts": 0})]),
        ("E2", "semicolon CSV", ["labels", "import", "imp", _csv(tmp, "semi.csv", "formula;value\nNaCl;5\n")]),
        ("E3", "value '7.8 eV'", ["labels", "import", "imp", _csv(tmp, "ev.csv", "formula,value\nNaCl,7.8 eV\n")]),
        ("E4", "short row", ["labels", "import", "imp", _csv(tmp, "short.csv", "formula,value,std\nNaCl,5\n")]),
        ("E5", "oracles predict -o nope", ["oracles", "predict", "MgO", "-o", "nope"]),
        ("E6", "invalid YAML (run)", ["run", _csv(tmp, "bad.yaml", "name: [unclosed\n")]),
        ("E7", "q: two (run)", ["run", _cfg(tmp, "e7", acquisition={"q": "two"})]),
        ("E8", "gp.threads 0", ["run", _cfg(tmp, "e8", gp={"threads": 0})]),
        ("E9", "seeds.n -5", ["run", _cfg(tmp, "e9", seeds={"n": -5})]),
        (
            "E10",
            "URI with unescaped @",
            ["campaign", "list"],
            {"ALFLOW_MONGODB_URI": "mongodb://user:se@cret@127.0.0.1:1/"},
        ),
        (
            "E11",
            "URI with unescaped /",
            ["campaign", "list"],
            {"ALFLOW_MONGODB_URI": "mongodb://user:se/cret@127.0.0.1:1/"},
        ),
        (
            "E12",
            "unresolvable mongodb+srv host",
            ["campaign", "list"],
            {"ALFLOW_MONGODB_URI": "mongodb+srv://user:secret@nonexistent.invalid/"},
        ),
        ("E13", "max_attempts 0 (create)", ["campaign", "create", _cfg(tmp, "e13", acquisition={"max_attempts": 0})]),
        ("E14", "max_atoms -3 (create)", ["campaign", "create", _cfg(tmp, "e14", validity={"max_atoms": -3})]),
        ("E15", "candidates top -k -3", ["candidates", "top", "imp", "-k", "-3"]),
    ]
    out_rows = [{"id": r[0], "input": r[1], "runs": [{"args": r[2], "env": r[3] if len(r) > 3 else {}}]} for r in rows]
    out_rows.append(
        {
            "id": "E16",
            "input": "misspelled campaign (4 commands)",
            "runs": [
                {"args": ["candidates", "top", "nope"], "env": {}},
                {"args": ["candidates", "export", "nope", str(out / "c.csv")], "env": {}, "outputs": [out / "c.csv"]},
                {"args": ["labels", "export", "nope", str(out / "l.csv")], "env": {}, "outputs": [out / "l.csv"]},
                {
                    "args": ["structures", "export-cif", "--campaign", "nope", "--out", str(out / "cif")],
                    "env": {},
                    "outputs": [out / "cif"],
                },
            ],
        }
    )
    return out_rows


def _snapshot(db) -> dict[str, int]:
    return {name: db[name].count_documents({}) for name in sorted(db.list_collection_names())}


def _classify(rc: int, out: str, err: str, changed: bool, created: bool) -> str:
    if "Traceback" in err or "Traceback" in out:
        return "traceback"
    lines = [x for x in err.splitlines() if x.strip()]
    if rc != 0:
        if len(lines) == 1 and lines[0].startswith("error:") and not changed and not created:
            return "clean"
        if rc == 2 and lines and lines[0].startswith("Usage:") and not changed and not created:
            return "clean"  # click's usage error: usage line, hint, one "Error:" line
        return "other"
    return "warned" if "outside domain" in out else "accepted"


def run_probe(python: str = sys.executable) -> list[dict[str, Any]]:
    """Run every probe input; returns one result row per input."""
    from pymongo import MongoClient
    from secantus import SecantusDBServer

    from flows.config import load_config
    from flows.store import Store
    from flows.store.secantus_patch import apply

    apply()
    server = SecantusDBServer(storage_path=":memory:")
    server.start()
    tmp = Path(tempfile.mkdtemp(prefix="alflow-probe-"))
    (tmp / "out").mkdir()
    try:
        store = Store.from_uri(server.uri, database="probe")
        imp = {**TINY, "name": "imp", "oracle": "external"}
        from flows.config import parse_config

        store.create_campaign("imp", parse_config(imp).resolved())
        store.upsert_candidates("imp", 1, [{"formula": f, "status": "awaiting_label"} for f in ("NaCl", "KBr")])
        inputs = probe_inputs(tmp)
        store.create_campaign("busy", load_config(tmp / "busy.yaml").resolved())
        store.acquire_lease("busy", "host-a:1", 3600)
        db = MongoClient(server.uri).probe
        base_env = {
            **os.environ,
            "ALFLOW_MONGODB_URI": server.uri,
            "ALFLOW_DATABASE": "probe",
            "ALFLOW_SERVER_TIMEOUT_S": "10",
            "ALFLOW_DATA_DIR": str(tmp / "data"),
            "ALFLOW_REPORTS": "0",
            "PYTHONPATH": str(REPO),
            "COLUMNS": "80",
        }
        results = []
        for item in inputs:
            outcomes, seconds, first_line = [], 0.0, ""
            for run in item["runs"]:
                before = _snapshot(db)
                t0 = time.perf_counter()
                proc = subprocess.run(
                    [python, "-m", "flows.cli", *run["args"]],
                    env={**base_env, **run["env"]},
                    cwd=REPO,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                seconds += time.perf_counter() - t0
                changed = _snapshot(db) != before
                created = any(Path(p).exists() for p in run.get("outputs", []))
                outcomes.append(_classify(proc.returncode, proc.stdout, proc.stderr, changed, created))
                msg = (proc.stderr.strip().splitlines() or [""])[-1]
                first_line = first_line or msg or (proc.stdout.strip().splitlines() or [""])[-1]
                rc = proc.returncode
            outcome = outcomes[0] if len(set(outcomes)) == 1 else "mixed:" + ",".join(outcomes)
            results.append(
                {
                    "id": item["id"],
                    "input": item["input"],
                    "outcome": outcome,
                    "rc": rc,
                    "s": round(seconds, 1),
                    "message": first_line[:200],
                }
            )
            print(f"{item['id']:>4} {outcome:<10} rc {rc:<3} {seconds:5.1f} s  {item['input']}", flush=True)
        return results
    finally:
        server.stop()


def main() -> None:
    """Run the probe, print the per-input table and the totals, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    t0 = time.perf_counter()
    rows = run_probe()
    totals = Counter(r["outcome"] for r in rows)
    print()
    report(
        "bad_inputs",
        [{k: r[k] for k in ("id", "outcome", "rc", "s", "input")} for r in rows],
        extra={"totals": dict(totals), "details": rows, "wall_s": round(time.perf_counter() - t0, 1)},
    )
    print("totals:", ", ".join(f"{k} {v}" for k, v in sorted(totals.items())), f"(of {len(rows)})")


if __name__ == "__main__":
    main()
