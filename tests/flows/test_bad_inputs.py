"""Bad-input catalogue: every class of bad input is refused with a message that says what was wrong,
and nothing is written partially. CSV cases go through the real CLI (``flows.cli.main``: one line on
stderr, exit status 2, no stack trace). See docs/reliability.md for the table.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from alcore.acquisition import AcquisitionSettings, acquire_discrete
from alcore.composition import CompositionEncoder, canonical_formula
from alcore.errors import (
    AcquisitionError,
    AlflowError,
    CampaignLockedError,
    CampaignNotFoundError,
    ConfigError,
    CorruptModelError,
    EmptyPoolError,
    ImportValidationError,
    InvalidFormulaError,
)
from flows.config import load_config, parse_config
from flows.store import utcnow
from tests.flows.conftest import run_cli, store_uri

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- helpers
def _config(**overrides) -> dict:
    """deploy/campaigns/probe.yaml named "bad", with ``overrides`` (a mapping updates the mapping there)."""
    base = {**yaml.safe_load((REPO / "deploy" / "campaigns" / "probe.yaml").read_text()), "name": "bad"}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


def _cli(args: list[str], monkeypatch, capsys, store, **env: str) -> tuple[int, str, str]:
    """``alflow ARGS`` on ``store``'s database (:func:`run_cli`), without the generator sub-apps."""
    from flows import cli

    monkeypatch.setattr(cli, "_mount_generator_apps", lambda: None)  # not needed for these commands
    return run_cli(args, store, monkeypatch, capsys, **env)


_uri = store_uri


def _campaign_with_candidates(store, name: str = "ext") -> list[str]:
    """A registered campaign with three iteration-1 candidates (no run needed); returns their formulas."""
    cfg = parse_config(_config(name=name, oracle="external"))
    store.create_campaign(name, cfg.resolved())
    formulas = ["NaCl", "KBr", "MgO"]
    store.upsert_candidates(
        name, 1, [{"formula": f, "status": "awaiting_label", "valid": True, "rank": i} for i, f in enumerate(formulas)]
    )
    return formulas


def _import(tmp_path: Path, text: str, monkeypatch, capsys, store, *extra: str, **env: str):
    _campaign_with_candidates(store)
    path = tmp_path / "labels.csv"
    path.write_text(text)
    code, out, err = _cli(["labels", "import", "ext", str(path), *extra], monkeypatch, capsys, store, **env)
    return code, out, err


def _assert_refused(code: int, err: str, store, *needles: str) -> None:
    """Exit status 2, one error line (no traceback) containing ``needles``, and no labels written."""
    assert code == 2, err
    assert "Traceback" not in err
    assert err.strip().startswith("error:"), err
    flat = " ".join(err.split())
    for needle in needles:
        assert needle in flat, (needle, err)
    assert store.db.labels.count_documents({}) == 0


# ---------------------------------------------------------------------------- formulas (1-5)
@pytest.mark.parametrize(
    ("formula", "reason"),
    [
        ("Na(Cl", "cannot parse"),
        ("XyO2", "unknown element 'Xy'"),
        ("Fe0.123457O", "not a ratio of small integers"),
        ("", "empty formula"),
    ],
)
def test_formula_that_cannot_be_parsed_is_refused_in_import(formula, reason, tmp_path, monkeypatch, capsys, store):
    code, _, err = _import(tmp_path, f"formula,value\nNaCl,5.0\n{formula},1.0\n", monkeypatch, capsys, store)
    _assert_refused(code, err, store, "line 3", reason, "nothing was written")
    with pytest.raises(InvalidFormulaError, match=reason.split("'")[0]):
        canonical_formula(formula)


def test_count_above_encoding_maximum_is_refused():
    enc = CompositionEncoder("agd87")
    with pytest.raises(InvalidFormulaError, match="above the encoding maximum of 8"):
        enc.encode("Na9Cl")
    assert enc.representable("Na9Cl")[0] is False
    assert enc.encode("Na8Cl").shape == enc.shape  # the limit itself is fine


def test_too_many_elements_is_refused():
    enc = CompositionEncoder("agd87", max_elements=4)
    with pytest.raises(InvalidFormulaError, match="5 elements, more than the maximum of 4"):
        enc.encode("LiNaKRbCl5")


def test_element_outside_the_encoding_list_is_refused():
    enc = CompositionEncoder(("Na", "Cl"))
    with pytest.raises(InvalidFormulaError, match=r"element\(s\) K not in the 2-element list"):
        enc.encode("KCl")


# ---------------------------------------------------------------------------- CSV files (6-14)
_BAD_GAPS = [
    ("nan", "labels must be finite"),
    ("inf", "labels must be finite"),
    ("-inf", "labels must be finite"),
    ("-0.5", "is negative"),
    ("abc", "is not a number"),
]


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        pytest.param("", ("file is empty", "nothing was written"), id="empty"),
        pytest.param("NaCl,5.0\nKBr,4.0\n", ("lacks a formula column", "nothing was written"), id="headerless"),
        pytest.param("formula,std\nNaCl,0.1\n", ("value column",), id="missing-value-column"),
        pytest.param("formula,value\n", ("no data rows after the header",), id="header-only"),
        *(
            pytest.param(f"formula,value\nNaCl,5.0\nKBr,{value}\n", ("line 3", needle, "nothing was written"), id=value)
            for value, needle in _BAD_GAPS
        ),
        # Na2Cl2 is the same material as NaCl once canonicalised
        pytest.param(
            "formula,value\nNaCl,5.0\nKBr,4.0\nNa2Cl2,6.0\n",
            ("NaCl was given 5.0 on line 2 and 6.0 here",),
            id="conflicting-duplicates",
        ),
        pytest.param("formula,value,std\nNaCl,5.0,0.1\nKBr,4.0\n", ("expected 3 columns, got 2",), id="missing-cells"),
    ],
)
def test_bad_csv_is_refused(text, needles, tmp_path, monkeypatch, capsys, store):
    code, _, err = _import(tmp_path, text, monkeypatch, capsys, store)
    _assert_refused(code, err, store, *needles)


def test_labels_for_unknown_candidates_need_allow_new(tmp_path, monkeypatch, capsys, store):
    code, _, err = _import(tmp_path, "formula,value\nNaCl,5.0\nCsI,6.1\n", monkeypatch, capsys, store)
    _assert_refused(code, err, store, "CsI is not a candidate of campaign 'ext'", "--allow-new")
    # the same file is accepted with --allow-new (and the candidate's iteration is kept for NaCl)
    path = tmp_path / "labels.csv"
    code, out, err = _cli(["labels", "import", "ext", str(path), "--allow-new"], monkeypatch, capsys, store)
    assert code == 0, err
    assert {d["formula"] for d in store.labels("ext")} == {"NaCl", "CsI"}


def test_allow_new_still_refuses_formulas_the_encoder_cannot_hold(tmp_path, monkeypatch, capsys, store):
    """--allow-new adds extra labels, but never one the next fit stage could not encode (Na9Cl: count 9)."""
    code, _, err = _import(tmp_path, "formula,value\nCsI,6.1\nNa9Cl,1.0\n", monkeypatch, capsys, store, "--allow-new")
    _assert_refused(code, err, store, "Na9Cl", "above the encoding maximum", "cannot use it")


def test_too_large_import(tmp_path, monkeypatch, capsys, store):
    code, _, err = _import(
        tmp_path, "formula,value\nNaCl,5.0\n", monkeypatch, capsys, store, ALFLOW_MAX_IMPORT_BYTES="10"
    )
    _assert_refused(code, err, store, "above the import limit of 10", "ALFLOW_MAX_IMPORT_BYTES")


def test_import_into_unknown_campaign(tmp_path, monkeypatch, capsys, store):
    path = tmp_path / "labels.csv"
    path.write_text("formula,value\nNaCl,5.0\n")
    code, _, err = _cli(["labels", "import", "nope", str(path)], monkeypatch, capsys, store)
    assert code == 2 and "Traceback" not in err
    assert "no campaign named 'nope'" in err
    assert store.db.labels.count_documents({}) == 0


def test_skip_bad_writes_only_the_good_rows(tmp_path, monkeypatch, capsys, store):
    code, out, err = _import(
        tmp_path, "formula,value\nNaCl,5.0\nKBr,nan\nMgO,7.8\n", monkeypatch, capsys, store, "--skip-bad"
    )
    assert code == 0, err
    assert "imported 2 label(s)" in " ".join(out.split())
    assert {d["formula"]: d["value"] for d in store.labels("ext")} == {"MgO": 7.8, "NaCl": 5.0}


def test_cli_entry_point_prints_one_line_without_traceback(tmp_path, store):
    """The installed ``alflow`` script (a real child process) turns an AlflowError into one line."""
    path = tmp_path / "empty.csv"
    path.write_text("")
    exe = Path(sys.executable).with_name("alflow")
    env = {
        **os.environ,
        "ALFLOW_MONGODB_URI": _uri(store),
        "ALFLOW_DATABASE": store.db.name,
        "ALFLOW_SERVER_TIMEOUT_S": "10",
    }
    proc = subprocess.run(
        [str(exe), "labels", "import", "nope", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error:")
    assert "no campaign named 'nope'" in proc.stderr


def test_unknown_cli_command_is_a_usage_message(monkeypatch, capsys, store):
    """A mistyped sub-command exits 2 with click's usage line, not a traceback."""
    code, _, err = _cli(["campaign", "run", "--help"], monkeypatch, capsys, store)
    assert code == 2
    assert "No such command 'run'" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------------------- configs (15-20)
@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"oracle": "oracle-that-does-not-exist"}, "unknown oracle 'oracle-that-does-not-exist'"),
        ({"seeds": {"dataset": "no_such_set"}}, "unknown seed data set 'no_such_set'"),
        ({"pool": "no_such_pool"}, "pool: unknown data set 'no_such_pool'"),
        ({"lookup_table": "no_such_table"}, "lookup_table: unknown data set 'no_such_table'"),
        ({"acquisition": {"beta": 0.0}}, "beta must be a positive number"),
        ({"acquisition": {"beta": -3.0}}, "beta must be a positive number"),
        ({"acquisition": {"q": 0}}, "q must be an integer >= 1"),
        ({"acquisition": {"trust_region": 0.0}}, "trust_region"),
        ({"acquisition": {"trust_region": 1.5}}, "trust_region"),
        ({"mode": "sideways"}, "mode"),
        ({"mode": "continuous", "pool_collection": "mine"}, "pool_collection 'mine' needs mode: pool"),
        ({"iterations": 0}, "iterations"),
        ({"gp": {"threads": 0}}, "gp.threads: Input should be greater than or equal to 1"),
        ({"seeds": {"n": -5}}, "seeds.n: Input should be greater than or equal to 1"),
        ({"acquisition": {"max_attempts": 0}}, "acquisition.max_attempts"),
        ({"validity": {"max_atoms": -3}}, "validity.max_atoms"),
        ({"validity": {"min_elements": 3, "max_elements": 2}}, "min_elements 3 > max_elements 2"),
        ({"target": {"threshold": float("nan")}}, "target.threshold"),
        ({"structures": {"top_k": -1}}, "structures.top_k"),
        ({"name": "has spaces/slash"}, "name"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_config_is_refused(overrides, needle):
    with pytest.raises(ConfigError, match="invalid campaign config|beta|q must") as info:
        parse_config(_config(**overrides), source="test.yaml")
    assert needle in str(info.value)
    assert str(info.value).startswith("test.yaml")


def test_band_gap_campaigns_refuse_pure_elements_by_default():
    """Issue 19, finding 10: Ca, Ba, Fe, O2 and Xe passed validity and took 2 of 11 demo acquisitions."""
    from alcore.validity import BAND_GAP_MIN_ELEMENTS, ValidityRules, check_validity

    spec = parse_config(_config()).validity
    assert spec.min_elements == BAND_GAP_MIN_ELEMENTS == 2
    rules = ValidityRules(min_elements=spec.min_elements, max_elements=spec.max_elements, max_atoms=spec.max_atoms)
    for f in ("Ca", "Ba", "Fe", "O2", "Xe"):
        verdict = check_validity(f, rules)
        assert not verdict.valid and verdict.reasons == ["1 elements < min_elements 2"], (f, verdict)
        assert check_validity(f).valid  # the library default (generator metrics) is unchanged
    assert check_validity("MgO", rules).valid


def test_the_campaign_loop_uses_the_configured_min_elements(store):
    from flows.campaign import CampaignContext

    ctx = CampaignContext(store, parse_config(_config(name="elements")), owner="t")
    assert ctx.validity_rules.min_elements == 2


def test_config_file_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must contain a mapping"):
        load_config(path)
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_existing_campaign_with_a_different_config(store):
    cfg = parse_config(_config(name="same"))
    store.create_campaign("same", cfg.resolved())
    changed = parse_config(_config(name="same", seed=2, acquisition={"beta": 9.0}))
    with pytest.raises(ConfigError, match=r"exists with a different config \(differs in \['acquisition', 'seed'\]\)"):
        store.create_campaign("same", changed.resolved())
    assert store.db.campaigns.count_documents({}) == 1
    assert store.get_campaign("same")["config"]["seed"] == 1
    # raising only the iteration target is allowed (continuing a campaign)
    store.create_campaign("same", parse_config(_config(name="same", iterations=5)).resolved())
    # a config stored before an optional field existed equals one with that field unset
    older = {k: v for k, v in parse_config(_config(name="older")).resolved().items() if k != "pool_collection"}
    store.create_campaign("older", older)
    store.create_campaign("older", parse_config(_config(name="older")).resolved())


def test_campaign_on_an_empty_mongodb_pool_says_how_to_fill_it(store):
    from flows.campaign import CampaignContext

    cfg = parse_config(_config(name="nopool", pool_collection="never-generated"))
    with pytest.raises(EmptyPoolError, match="MongoDB pool 'never-generated' has no formula.*generate or fill"):
        _ = CampaignContext(store, cfg, owner="test").pool


def test_unknown_campaign_lookup(store):
    with pytest.raises(CampaignNotFoundError, match="no campaign named 'ghost'; known: none"):
        store.get_campaign("ghost")


# ---------------------------------------------------------------------------- model blobs (21-23)
def _blob(store) -> str:
    return store.save_model("gp", {"w": torch.arange(6, dtype=torch.float64)}, {"campaign": "c"})


def test_corrupt_model_blob_sha_mismatch(store):
    sha = _blob(store)
    chunk = store.db["models.chunks"].find_one()
    data = bytearray(chunk["data"])
    data[-1] ^= 0xFF
    store.db["models.chunks"].update_one({"_id": chunk["_id"]}, {"$set": {"data": bytes(data)}})
    with pytest.raises(CorruptModelError, match=f"is corrupt: sha256 .* != recorded {sha[:12]}.*retrain"):
        store.load_model(sha, kind="gp")


def test_wrong_kind_model_blob(store):
    sha = _blob(store)
    with pytest.raises(CorruptModelError, match="is a 'gp' blob, expected 'screening'"):
        store.load_model(sha, kind="screening")
    with pytest.raises(CorruptModelError, match="no model blob with sha256 000000000000"):
        store.load_model("0" * 64, kind="gp")


def test_model_blob_that_is_not_safetensors(store):
    import hashlib

    payload = b"\x80\x04not a safetensors file (a pickle would start like this)"
    sha = hashlib.sha256(payload).hexdigest()
    store.fs.upload_from_stream("evil.bin", payload, metadata={"kind": "gp", "sha256": sha})
    with pytest.raises(CorruptModelError, match="is not valid safetensors"):
        store.load_model(sha, kind="gp")


# ---------------------------------------------------------------------------- acquisition (24-25)
def test_pool_smaller_than_q():
    from alcore.surrogate import fit_gp

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (8, 2))
    box = np.array([[-1.0, -1.0], [1.0, 1.0]])
    gp = fit_gp(x, x.sum(axis=1), box, maxiter=5).model
    with pytest.raises(EmptyPoolError, match="the pool has 2 unlabelled candidates, fewer than q=3"):
        acquire_discrete(gp, x[:2], AcquisitionSettings(25.0, 3, 2, 8, 5, 8), seed=0)
    idx, _ = acquire_discrete(gp, x[:3], AcquisitionSettings(25.0, 3, 2, 8, 5, 8), seed=0)
    assert sorted(idx.tolist()) == [0, 1, 2]


@pytest.mark.slow
def test_no_valid_decode_within_attempt_budget(store, prefect_harness, tmp_path_factory, monkeypatch):
    """Validity limits nothing can satisfy (max_atoms 0): AcquisitionError after max_attempts, the stage
    is marked failed with the error, and the rejected decodes are kept with their reasons. (A config
    with ``max_atoms: 0`` is refused since issue 19, so the rules are set on the campaign context.)"""
    from alcore.validity import ValidityRules
    from flows.campaign import CampaignContext, run_campaign_in
    from tests.flows.campaign.fault_harness import tiny_autoencoder

    monkeypatch.setattr(CampaignContext, "validity_rules", property(lambda self: ValidityRules(max_atoms=0)))

    ae = tiny_autoencoder(tmp_path_factory.getbasetemp())
    cfg = parse_config(
        _config(
            name="nodecode",
            mode="continuous",
            autoencoder=str(ae),
            gp={"maxiter": 5},
            acquisition={
                "q": 2,
                "num_restarts": 2,
                "raw_samples": 16,
                "maxiter": 5,
                "mc_samples": 16,
                "max_attempts": 2,
            },
        )
    )
    with pytest.raises(
        AcquisitionError, match="no valid formula decoded in 2 attempts.*raise acquisition.max_attempts"
    ):
        run_campaign_in(store, cfg, owner="t")
    stage = store.get_iteration("nodecode", 1)["stages"]["acquire"]
    assert stage["status"] == "failed" and stage["error"].startswith("AcquisitionError")
    rejected = store.candidates("nodecode", 1)
    assert rejected and all(not c["valid"] and c["reasons"] and c["status"] == "rejected" for c in rejected)
    assert store.get_campaign("nodecode")["status"] == "failed"
    assert store.get_campaign("nodecode")["lease"] is None
    assert store.db.labels.count_documents({"campaign": "nodecode", "source": {"$ne": "seed"}}) == 0


# ---------------------------------------------------------------------------- runners (26)
def test_second_runner_is_refused_while_the_lease_is_live(store):
    from flows.campaign import run_campaign_in

    cfg = parse_config(_config(name="busy"))
    store.create_campaign("busy", cfg.resolved())
    store.acquire_lease("busy", "host-a:1", ttl_s=600)
    with pytest.raises(CampaignLockedError, match="being run by 'host-a:1'.*wait for it to finish"):
        run_campaign_in(store, cfg, owner="host-b:2")
    with pytest.raises(CampaignLockedError, match="lost the lease"):
        store.renew_lease("busy", "host-b:2")
    assert store.get_campaign("busy")["lease"]["owner"] == "host-a:1"
    assert store.db.iterations.count_documents({"campaign": "busy"}) == 0  # no work was done
    # after expiry the other runner may take it over
    store.update_campaign("busy", **{"lease.expires_at": utcnow() - timedelta(seconds=1)})
    assert store.acquire_lease("busy", "host-b:2")["owner"] == "host-b:2"


def test_every_catalogued_error_is_an_alflow_error():
    """The CLI prints one line for AlflowError only: all the classes above must derive from it."""
    for cls in (
        InvalidFormulaError,
        ImportValidationError,
        ConfigError,
        CorruptModelError,
        EmptyPoolError,
        AcquisitionError,
        CampaignLockedError,
        CampaignNotFoundError,
    ):
        assert issubclass(cls, AlflowError), cls
