"""What each rediscovery stage's settings digest covers (pure config logic, no database)."""

from __future__ import annotations

import pytest

from flows.pipelines.rediscovery_config import RediscoveryConfig
from flows.pipelines.rediscovery_stages import STAGE_INPUTS, stage_inputs, stage_settings, stages_for

FULL = RediscoveryConfig(
    generators=("matgan", "complm"), continuous={"strategy": "decode_select", "plausibility": True}
)


def _changed(cfg: RediscoveryConfig, **update: object) -> set[str]:
    """The stages of ``cfg`` whose settings differ after ``update`` (nested specs by dict)."""
    edited = RediscoveryConfig.model_validate({**cfg.model_dump(), **update})
    return {s for s in stages_for(cfg) if stage_settings(cfg, s) != stage_settings(edited, s)}


def test_every_stage_of_a_full_config_has_inputs_that_are_config_fields() -> None:
    stages = stages_for(FULL)
    assert {"eform", "complm", "pool@complm", "pool-al@complm", "continuous-al"} <= set(stages)
    for stage in stages:
        fields, upstream = stage_inputs(stage)
        assert set(fields) <= set(RediscoveryConfig.model_fields), stage
        assert all(stage_inputs(u) for u in upstream)
    assert len({stage_settings(FULL, s) for s in stages}) == len(stages)  # the stage name is in the digest


def test_a_retrained_autoencoder_redoes_exactly_the_campaign_routes() -> None:
    changed = _changed(FULL, autoencoder={"epochs": 9})
    assert changed == {"autoencoder", "pool-al", "pool-al@complm", "continuous-al"}


def test_the_label_budget_and_the_pools_reach_only_the_stages_that_read_them() -> None:
    assert _changed(FULL, acquisitions=500) == {
        "pool-al",
        "pool-al@complm",
        "random-pool-labels",
        "random-pool-labels@complm",
        "random-mp-labels",
        "random-mp-labels@complm",
    }
    changed = _changed(FULL, complm={**FULL.complm.model_dump(), "temperature": 0.8})
    assert "pool@complm" in changed and "pool-al@complm" in changed
    assert not any(s in changed for s in ("pool", "pool-al", "continuous-al", "random-pool-labels"))
    # MatGAN's pool sets the complm pool's size: a new MatGAN redoes every pool and route
    assert _changed(FULL, matgan={**FULL.matgan.model_dump(), "epochs": 7}) >= {"pool@complm", "continuous-al"}
    assert _changed(FULL, continuous={**FULL.continuous.model_dump(), "beta": 4.0}) == {"continuous-al"}


@pytest.mark.parametrize("update", [{"name": "other"}, {"ks": (10,)}, {"out_dir": "elsewhere"}, {"split_seeds": (5,)}])
def test_names_scoring_and_file_places_redo_nothing(update: dict) -> None:
    assert _changed(FULL, **update) == set()


def test_unknown_stages_are_refused() -> None:
    assert "screening" in STAGE_INPUTS
    with pytest.raises(KeyError):
        stage_inputs("oracle@complm")
    with pytest.raises(KeyError):
        stage_inputs("nonsense")


def test_the_stability_filter_runs_last_and_its_settings_reach_only_it(tmp_path) -> None:
    from alcore.errors import ConfigError
    from flows.pipelines.rediscovery_config import load_rediscovery_config

    cfg = RediscoveryConfig.model_validate({**FULL.model_dump(), "stability": {"top": 20}})
    assert stages_for(cfg)[-1] == "stability" and "stability" not in stages_for(FULL)
    assert cfg.stability_lists() == [
        "screening/oracle",
        "pool-AL/acquired",
        "continuous-AL/acquired",
        "random-MP-labels/screen",
        "random/pool",
    ]
    assert _changed(cfg, stability={"top": 40}) == {"stability"}
    assert "stability" in _changed(cfg, continuous={**cfg.continuous.model_dump(), "beta": 4.0})
    # verdicts are shared by lists and tops: only the judge's settings name their campaign
    assert cfg.stability.judge_settings() == cfg.stability.model_copy(update={"top": 5}).judge_settings()
    assert cfg.stability.judge_settings() != cfg.stability.model_copy(update={"steps": 5}).judge_settings()

    bad = tmp_path / "c.yaml"
    bad.write_text("name: x\nroutes: [screening, random]\nstability: {lists: [pool-AL/acquired]}\n")
    with pytest.raises(ConfigError, match="stability.lists names .*pool-AL/acquired.* do not produce"):
        load_rediscovery_config(bad)
    bad.write_text("name: x\nstability: {judge: dft}\n")
    with pytest.raises(ConfigError, match="stability.judge 'dft' is not one of"):
        load_rediscovery_config(bad)


def test_screening_by_the_judges_needs_the_eform_model_and_its_settings_reach_only_it() -> None:
    cfg = RediscoveryConfig(routes=("screening", "judged-screening"))
    assert stages_for(cfg) == ["split", "data", "oracle", "eform", "matgan", "pool", "screening", "judged-screening"]
    assert _changed(cfg, judged={"target": 3.0}) == {"judged-screening"}
    assert _changed(cfg, eform={"epochs": 3}) == {"eform", "judged-screening"}
    assert _changed(cfg, nested=True) == set()  # the nested split is in the split key, not a setting


def test_lm_pool_conditions_keep_the_lm_and_are_checked() -> None:
    conditioned = {**FULL.complm.model_dump(), "conditions": [">5", "3-5"]}
    edited = RediscoveryConfig.model_validate({**FULL.model_dump(), "complm": conditioned})
    assert edited.complm.model_digest() == FULL.complm.model_digest()  # the cached LM is reused
    assert "pool@complm" in _changed(FULL, complm=conditioned)
    with pytest.raises(ValueError, match="not gap bins"):
        RediscoveryConfig.model_validate({**FULL.model_dump(), "complm": {"conditions": ["wide"]}})
