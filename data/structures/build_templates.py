"""Dev-time builder of data/structures/templates.jsonl.gz (run once; the output is committed).

Reads the team's merged structure set (templates_merged.jsonl.gz, see README.md here for sources)
and pymatgen's bundled AFLOW prototypes, keeps ordered structures with <= MAX_SITES sites from
sources whose licence allows redistribution (Materials Project-derived, OQMD, AMCSD, AFLOW
prototypes; the hypothetical perovskite sets are left out), de-duplicates on (reduced formula,
space group) preferring MP > AMCSD > OQMD > AFLOW and then fewer sites, and writes one compact
record per template:

``{"id", "src", "f" (reduced formula), "spg", "lat" (9 floats, Å, row vectors),
"els" (element list), "sp" (per-site index into els), "xyz" (flat fractional coords, 4 decimals),
"mpid", "nsites", "ef" (DFT formation energy, eV/atom, where the source gives one: MP e_form_per_atom or
OQMD delta_e), "eh" (source's E_hull where given), "tid" (stable id: "T" + sha1(source|id)[:10])}``.

Usage: ``python data/structures/build_templates.py SRC_DIR`` (SRC_DIR holds templates_merged.jsonl.gz).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from pymatgen.core import Lattice

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from alcore.composition import canonical_formula  # noqa: E402
from generators.emd import MOD_PETTI  # noqa: E402
from generators.templates import MP_SOURCES, SOURCE_TIER  # noqa: E402

MAX_SITES = 40
OUT = Path(__file__).with_name("templates.jsonl.gz")

PRIORITY = {**dict.fromkeys(MP_SOURCES, 0), **SOURCE_TIER}
LICENCE = {
    **dict.fromkeys(MP_SOURCES, "MP CC BY 4.0"),
    "amcsd_larixite": "AMCSD (Downs & Hall-Wallace 2003)",
    "oqmd_ternaries_jhamlin": "OQMD CC BY 4.0",
    "aflow_prototypes": "AFLOW prototypes via pymatgen (MIT)",
}

_NUM = re.compile(r"^-?\d+(\.\d*)?(\(\d+\))?$")
_SYM = re.compile(r"^([A-Z][a-z]?)")


def _num(tok: str) -> float:
    return float(tok.split("(")[0])


def fast_p1(cif: str):
    """Parse a P1 CIF (pymatgen style) into (lattice 3x3, species list, frac (n,3)); None if not P1."""
    if "'P 1'" not in cif or cif.count("_symmetry_equiv_pos_as_xyz") != 1:
        return None
    vals = {}
    for key in ("a", "b", "c", "alpha", "beta", "gamma"):
        m = re.search(rf"_cell_(?:length|angle)_{key}\s+(\S+)", cif)
        if not m:
            return None
        vals[key] = _num(m.group(1))
    lines = cif.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "loop_" and i + 1 < len(lines) and lines[i + 1].strip().startswith("_atom_site_"):
            cols = []
            j = i + 1
            while j < len(lines) and lines[j].strip().startswith("_"):
                cols.append(lines[j].strip())
                j += 1
            try:
                ct, cx, cy, cz = (
                    cols.index(c)
                    for c in (
                        "_atom_site_type_symbol",
                        "_atom_site_fract_x",
                        "_atom_site_fract_y",
                        "_atom_site_fract_z",
                    )
                )
            except ValueError:
                return None
            co = cols.index("_atom_site_occupancy") if "_atom_site_occupancy" in cols else None
            species, frac = [], []
            while j < len(lines) and lines[j].strip() and not lines[j].strip().startswith(("_", "loop_")):
                tok = lines[j].split()
                if len(tok) != len(cols):
                    return None
                if co is not None and abs(_num(tok[co]) - 1.0) > 1e-3:
                    return None
                m = _SYM.match(tok[ct])
                if not m:
                    return None
                species.append(m.group(1))
                frac.append([_num(tok[cx]), _num(tok[cy]), _num(tok[cz])])
                j += 1
            lat = Lattice.from_parameters(**vals).matrix
            return lat, species, np.array(frac)
    return None


def slow_parse(cif: str):
    """Parse any CIF with pymatgen; (lattice, species, frac) or None."""
    from pymatgen.io.cif import CifParser

    try:
        s = CifParser.from_str(cif).parse_structures(primitive=True)[0]
    except Exception:
        return None
    if not s.is_ordered:
        return None
    return s.lattice.matrix, [sp.symbol for sp in s.species], s.frac_coords


def record(rid, src, lat, species, frac, spg, mpid=None, ef=None, eh=None):
    """Compact record (see module docstring); None if an element has no mod_petti position."""
    if any(e not in MOD_PETTI for e in species) or len(species) > MAX_SITES or not species:
        return None
    els = sorted(set(species), key=lambda e: MOD_PETTI[e])
    counts = {e: species.count(e) for e in els}
    try:
        f = canonical_formula("".join(f"{e}{n}" for e, n in counts.items()))
    except Exception:
        return None
    frac = np.mod(np.asarray(frac, float), 1.0)
    return {
        "id": rid,
        "src": src,
        "f": f,
        "spg": int(spg) if spg else 0,
        "lat": [round(float(x), 5) for x in np.asarray(lat).ravel()],
        "els": els,
        "sp": [els.index(e) for e in species],
        "xyz": [round(float(x), 4) % 1.0 for x in frac.ravel()],
        "mpid": mpid,
        "nsites": len(species),
        "ef": None if ef is None else round(float(ef), 4),
        "eh": None if eh is None else round(float(eh), 4),
        "tid": "T" + hashlib.sha1(f"{src}|{rid}".encode()).hexdigest()[:10],
    }


def aflow_records():
    """The 288 AFLOW prototypes bundled with pymatgen as records."""
    import pymatgen.analysis.prototypes as proto
    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    path = os.path.join(os.path.dirname(proto.__file__), "aflow_prototypes.json.gz")
    with gzip.open(path, "rt") as fh:
        data = json.load(fh)
    out = []
    for d in data:
        s = Structure.from_dict(d["snl"])
        if not s.is_ordered:
            continue
        try:
            spg = SpacegroupAnalyzer(s, symprec=0.1).get_space_group_number()
        except Exception:
            spg = 0
        r = record(
            f"aflow:{d['tags']['aflow']}",
            "aflow_prototypes",
            s.lattice.matrix,
            [sp.symbol for sp in s.species],
            s.frac_coords,
            spg,
        )
        if r:
            out.append(r)
    return out


def main(src_dir: str) -> None:
    t0 = time.time()
    best: dict[tuple[str, int], dict] = {}
    n_in = n_fast = n_slow = 0

    def offer(r):
        key = (r["f"], r["spg"])
        old = best.get(key)
        rank = (PRIORITY[r["src"]], r["nsites"])
        if old is None or rank < (PRIORITY[old["src"]], old["nsites"]):
            best[key] = r

    with gzip.open(Path(src_dir) / "templates_merged.jsonl.gz", "rt") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec["source"] not in PRIORITY or not rec.get("ordered", True) or rec["nsites"] > MAX_SITES:
                continue
            n_in += 1
            parsed = fast_p1(rec["cif"])
            if parsed is None:
                parsed = slow_parse(rec["cif"])
                n_slow += 1
            else:
                n_fast += 1
            if parsed is None:
                continue
            props = rec.get("props") or {}
            mpid = props.get("material_id")
            ef = props.get("e_form_per_atom", props.get("delta_e"))
            eh = props.get("energy_above_hull", props.get("stability_e_hull"))
            try:
                ef = float(ef) if ef is not None else None
                eh = float(eh) if eh is not None else None
            except (TypeError, ValueError):
                ef = eh = None
            r = record(rec["id"], rec["source"], *parsed, rec.get("spg"), mpid, ef, eh)
            if r:
                offer(r)
    for r in aflow_records():
        offer(r)
    recs = sorted(best.values(), key=lambda r: (r["f"], r["spg"]))
    assert len({r["tid"] for r in recs}) == len(recs), "template id collision"
    tmp = OUT.with_suffix(".tmp")
    with gzip.open(tmp, "wt", compresslevel=9) as fh:
        for r in recs:
            fh.write(json.dumps(r, separators=(",", ":")) + "\n")
    tmp.replace(OUT)
    print(
        f"read {n_in} (fast {n_fast}, pymatgen {n_slow}); wrote {len(recs)} templates to {OUT} "
        f"({OUT.stat().st_size / 1e6:.1f} MB) in {time.time() - t0:.0f} s"
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/structures")
