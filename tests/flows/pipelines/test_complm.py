"""The composition LM in the pipelines: pools from it resume without duplicates; the training flow
writes weights that the registered generator loads."""

from __future__ import annotations

import torch

from flows.pipelines.pool import batch_seed, generate_pool_flow
from generators.base import get_generator, register_generator
from generators.complm import CompLMSampler, CompositionLM, FormulaTokenizer, LMConfig


def _tiny_sampler(**kwargs: object) -> CompLMSampler:
    torch.manual_seed(0)
    tok = FormulaTokenizer()
    model = CompositionLM(LMConfig(tok.vocab_size, tok.seq_len, d=16, layers=1, heads=2, ff=32))
    return CompLMSampler(model, tok, name="complm-tiny")


register_generator("complm-tiny", _tiny_sampler)


def _docs(store, pool: str) -> list[tuple[str, int]]:
    return sorted((d["formula"], d["batch"]) for d in store.db.pools.find({"pool": pool}))


def test_complm_pool_resumes_without_duplicates(store, mongo_uri, prefect_harness) -> None:
    common = dict(
        n=3000, generator="complm-tiny", seed=3, batch_size=1000, mongodb_uri=mongo_uri, database=store.db.name
    )
    first = generate_pool_flow(pool="lm-resumed", max_batches=1, **common)
    assert first["batches_run"] == 1 and first["batches_remaining"] == 2
    second = generate_pool_flow(pool="lm-resumed", **common)
    assert second["batches_skipped"] == 1 and second["batches_run"] == 2
    generate_pool_flow(pool="lm-straight", **common)
    resumed, straight = _docs(store, "lm-resumed"), _docs(store, "lm-straight")
    assert resumed == straight
    forms = [f for f, _ in resumed]
    assert len(forms) == len(set(forms))
    expected = {f for k in range(3) for f in _tiny_sampler().sample(1000, batch_seed(3, k))}
    assert set(forms) == expected
    doc = store.db.pools.find_one({"pool": "lm-resumed"})
    assert doc["generator"] == "complm-tiny" and doc["n_elements"] >= 2


def test_training_flow_writes_loadable_weights(store, mongo_uri, prefect_harness, tmp_path) -> None:
    from flows.pipelines.complm import train_complm_flow
    from flows.pipelines.training import TrainingTarget

    stem = tmp_path / "lm"
    target = TrainingTarget(out=str(stem), mongodb_uri=mongo_uri, database=store.db.name)
    meta = train_complm_flow(minutes=0.02, steps=3000, target=target)
    assert meta["steps"] >= 1 and meta["best"]["step"] >= 1 and meta["model_sha256"]
    assert (tmp_path / "checkpoints" / "lm.pt").exists()
    gen = get_generator("complm", weights=stem)
    assert gen.name == "complm" and len(gen.sample(50, 1)) == 50
    cond = get_generator("complm-cond", weights=stem)
    assert cond.name == "complm-cond" and cond.settings.guidance == 1.0


def test_conditioned_training_flow_uses_the_conditioned_recipe(store, mongo_uri, prefect_harness, tmp_path) -> None:
    from flows.pipelines.complm import train_complm_flow
    from flows.pipelines.training import TrainingTarget
    from generators.complm import CONDITIONED_RECIPE

    target = TrainingTarget(out=str(tmp_path / "lm_cond"), store_weights=False)
    meta = train_complm_flow(minutes=0.02, steps=3000, target=target, conditioned=True)
    assert {k: meta["config"][k] for k in CONDITIONED_RECIPE} == CONDITIONED_RECIPE
    assert "cond_gt5_validity" in meta["best"]
