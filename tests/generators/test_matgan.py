"""MatGAN: fast canonical formulas, learning, sampling determinism, reachability, committed weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from alcore.composition import canonical_formula
from alcore.errors import CorruptModelError
from alcore.validity import check_validity
from generators import matgan as M
from generators.base import CompositionGenerator, get_generator
from generators.fast_formula import FastFormula
from generators.matgan import sample as matgan_sample


def _validity(batch: M.SampleBatch) -> float:
    forms = [f for f, ok in zip(batch.formulas, batch.ok, strict=True) if ok]
    return sum(check_validity(f).valid for f in forms) / len(batch.formulas)


@pytest.mark.slow  # ~20 s idle; 100 s on the loaded 2-core machine (pymatgen reference on 2,000 formulas)
def test_fast_formula_equals_canonical_formula() -> None:
    enc = M.encoder()
    ff = FastFormula(enc.symbols)
    train = M.training_formulas()
    rng = np.random.default_rng(0)
    picked = [train[i] for i in rng.choice(len(train), 1000, replace=False)]
    counts = enc.decode_counts(enc.encode_batch(picked).matrices)
    assert ff.formulas(counts) == [canonical_formula(f) for f in picked]
    # random count vectors, not reduced, incl. polyanion brackets, NaN electronegativity (Ar), O2, Li2O2
    rand = np.zeros((1000, len(enc.symbols)), dtype=np.int64)
    for row in rand:
        k = rng.integers(1, 6)
        row[rng.choice(len(enc.symbols), k, replace=False)] = rng.integers(1, 9, k)
    special = {"O": 2, "Li": 2}, {"O": 4}, {"Ar": 2, "Na": 1, "Cl": 1}, {"Ba": 1, "P": 2, "O": 6}, {"H": 2, "O": 2}
    for i, comp in enumerate(special):
        rand[i] = 0
        for s, c in comp.items():
            rand[i, enc.index[s]] = c
    ref = [canonical_formula("".join(f"{enc.symbols[j]}{r[j]}" for j in np.flatnonzero(r))) for r in rand]
    assert ff.formulas(rand) == ref
    assert ref[0] == "Li2O2" and ref[1] == "O2" and "(" in ref[3]
    assert ff.formulas(np.zeros((2, len(enc.symbols)), dtype=int)) == [None, None]


def test_known_formulas_are_canonical() -> None:
    known = M.known_formulas()
    assert len(known) > 80_000
    assert {"NaCl", "MgO", "LiFePO4"} <= known
    assert all(canonical_formula(f) == f for f in list(sorted(known))[:500])


@pytest.mark.slow  # ~30 s on an idle core, 2 min on the loaded 2-core machine
def test_short_training_beats_untrained_generator() -> None:
    torch.set_num_threads(1)
    forms = M.training_formulas()[::30]  # ~2,000 formulas
    data = M.encode_formulas(forms)
    untrained = M.Generator()
    untrained.eval()
    g, hist = M.train_gan(data, M.GANConfig(epochs=6, seed=0))  # 90 generator steps (fixed, not timed)
    assert hist["steps"] == 90
    before = M.sample_batch(untrained, 400, seed=1)
    after = M.sample_batch(g, 400, seed=1)
    # untrained (sparse-prior output bias): nearly every decode is empty -> nothing representable/valid
    assert before.ok.mean() < 0.05
    assert after.ok.mean() > before.ok.mean() + 0.1
    assert _validity(after) > _validity(before) + 0.05


def test_sampling_is_deterministic_and_canonical() -> None:
    sampler = M.MatGANSampler.pretrained()
    assert isinstance(sampler, CompositionGenerator)
    a, b = sampler.sample(2000, seed=5), sampler.sample(2000, seed=5)
    assert a == b and a != sampler.sample(2000, seed=6)
    assert all(canonical_formula(f) == f for f in a[:300])
    assert get_generator("matgan").name == "matgan"


def test_sampling_parts_and_chunk_sizes_give_identical_results() -> None:
    """The pool path (``sample_sized``: parts, SAMPLE_CHUNK-row forward passes, sizes from the count matrix)
    returns exactly what ``sample`` returns, and the forward-pass chunk does not change a bit."""
    from alcore.composition import reduced_counts

    torch.set_num_threads(1)
    sampler = M.MatGANSampler.pretrained(with_autoencoder=False)
    ref = M.sample_batch(sampler.generator, 5000, seed=3, chunk=16384)
    new = M.sample_batch(sampler.generator, 5000, seed=3)
    assert np.array_equal(ref.counts, new.counts) and ref.formulas == new.formulas
    # the former path: one 16,384-row pass with the default (oneDNN) kernels decodes to the same counts
    with torch.no_grad(), M.conv_kernels(native=False):
        z = matgan_sample._chunked_randn(5000, sampler.generator.latent_dim, 3)
        onednn = M.encoder().decode_counts(sampler.generator(z).numpy())
    assert np.array_equal(onednn, new.counts)
    parts = list(sampler.sample_sized(5000, seed=3, part=1500))
    assert len(parts) == 4
    forms = [f for p in parts for f in p[0]]
    assert forms == sampler.sample(5000, seed=3)
    atoms = np.concatenate([p[1] for p in parts])
    elems = np.concatenate([p[2] for p in parts])
    expected = [reduced_counts(f) for f in forms]
    assert atoms.tolist() == [sum(c for _, c in rc) for rc in expected]
    assert elems.tolist() == [len(rc) for rc in expected]
    # the reduction by the gcd and the special formulas: O (-> "O2", 1 atom), Li2O2 (-> "Li2O2", 2 atoms)
    enc = M.encoder()
    rows = np.zeros((4, len(enc.symbols)), dtype=np.uint8)
    rows[0, enc.index["O"]] = 2
    rows[1, enc.index["Li"]], rows[1, enc.index["O"]] = 2, 2
    rows[2, enc.index["Ba"]], rows[2, enc.index["P"]], rows[2, enc.index["O"]] = 2, 4, 8
    a, e = M.reduced_sizes(rows)
    assert a.tolist() == [1, 2, 7, 0] and e.tolist() == [1, 2, 3, 0]
    assert M.fast_formula().formulas(rows[:3]) == ["O2", "Li2O2", "Ba(PO2)2"]
    assert [sum(c for _, c in reduced_counts(f)) for f in ["O2", "Li2O2", "Ba(PO2)2"]] == [1, 2, 7]


@pytest.mark.slow  # SMACT on many-element formulas: ~100 s on the loaded 2-core machine
def test_pretrained_generator_makes_valid_novel_formulas() -> None:
    sampler = M.MatGANSampler.pretrained()
    meta = sampler.metadata
    assert meta["data_sha256"] == M.data_hash(M.training_formulas())
    batch = sampler.sample_batch(3000, seed=11)
    untrained = M.sample_batch(M.Generator(meta["params"]["latent_dim"], meta["params"]["ch"]).eval(), 300, seed=11)
    small = M.SampleBatch(batch.counts[:300], batch.formulas[:300], batch.ok[:300])
    assert _validity(small) > 0.2 > _validity(untrained)  # committed weights: ~40 % (SMACT is slow: 300 only)
    novel = [f for f, ok in zip(batch.formulas, batch.ok, strict=True) if ok and f not in M.known_formulas()]
    assert len(novel) > 100


def test_reachability_of_training_formulas() -> None:
    sampler = M.MatGANSampler.pretrained()
    train = M.training_formulas()
    rng = np.random.default_rng(0)
    picked = [train[i] for i in rng.choice(len(train), 500, replace=False)]
    reach = sampler.reachable(picked)
    assert reach.dtype == bool and reach.shape == (500,)
    assert reach.mean() > 0.1  # committed AE: ~20 % exact reconstruction (minutes of CPU training)
    # outside the encoding (count 9 after reduction, element not in matgan85) -> not reachable
    assert sampler.reachable(["Na9Cl2", "TcO2", "NaCl"]).tolist()[:2] == [False, False]
    # random 6-element compositions are mostly not reachable
    enc = M.encoder()
    junk = []
    for _ in range(200):
        idx = rng.choice(len(enc.symbols), 6, replace=False)
        junk.append("".join(f"{enc.symbols[i]}{rng.integers(1, 9)}" for i in idx))
    assert sampler.reachable(junk).mean() < reach.mean()


def test_missing_weights_raise_clear_error(tmp_path) -> None:
    with pytest.raises(CorruptModelError, match="train-matgan"):
        M.MatGANSampler.pretrained(tmp_path)


def test_valid_only_training_set_keeps_the_charge_balanced_formulas(tmp_path) -> None:
    csv = tmp_path / "known.csv"
    csv.write_text("pretty_formula\nNaCl\nMgO\nNaCl2\nFe3Al\nFe\nAl2O3\n")
    assert M.training_formulas(csv) == ["Al2O3", "AlFe3", "MgO", "NaCl", "NaCl2"]
    assert M.training_formulas(csv, valid_only=True) == ["Al2O3", "MgO", "NaCl"]


def test_matgan_valid_generator_loads_its_own_weights() -> None:
    """``matgan-valid``: the committed weights trained on the SMACT-valid MP formulas only."""
    sampler = get_generator("matgan-valid")
    assert sampler.name == "matgan-valid" and get_generator("matgan").name == "matgan"
    assert sampler.metadata["n_formulas"] < M.MatGANSampler.pretrained().metadata["n_formulas"]
    assert "SMACT-valid only" in sampler.metadata["data"]
    batch = sampler.sample_batch(300, seed=5)
    assert _validity(batch) > 0.5


def _tiny_data() -> torch.Tensor:
    return M.encode_formulas(M.training_formulas(valid_only=True)[:640])  # 10 batches of 64


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_gan_training_resumes_from_a_checkpoint_exactly(tmp_path: Path) -> None:
    """Stopped mid-epoch by its time budget and resumed (3 runs of one checkpoint), training ends with
    the weights, w-distance history and step count of one uninterrupted run."""
    torch.set_num_threads(1)
    data = _tiny_data()
    straight, h_straight = M.train_gan(data, M.GANConfig(epochs=2, seed=0))
    ckpt = tmp_path / "gan.pt"
    g, h = M.train_gan(data, M.GANConfig(epochs=2, seed=0, time_budget_s=0.0), checkpoint=ckpt)
    assert h["epochs"] == pytest.approx(0.1) and ckpt.exists()  # stopped after the first batch
    assert not _same_weights(g, straight)
    runs = 1
    while h["epochs"] < 2:
        g, h = M.train_gan(data, M.GANConfig(epochs=2, seed=0, time_budget_s=0.0), checkpoint=ckpt)
        runs += 1
    assert runs == 20 and h["runs"] == 20  # one batch per run
    assert _same_weights(g, straight)
    assert h["w_distance"] == h_straight["w_distance"] and h["steps"] == h_straight["steps"] == 10
    # a finished checkpoint with a larger epoch target trains on
    _, h3 = M.train_gan(data, M.GANConfig(epochs=3, seed=0), checkpoint=ckpt)
    assert h3["epochs"] == 3 and len(h3["w_distance"]) == 3


def test_gan_checkpoint_of_other_data_settings_or_bytes_is_refused(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data = _tiny_data()
    ckpt = tmp_path / "gan.pt"
    M.train_gan(data, M.GANConfig(epochs=1, seed=0), checkpoint=ckpt)
    with pytest.raises(ValueError, match="other formulas"):
        M.train_gan(data[:320], M.GANConfig(epochs=2, seed=0), checkpoint=ckpt)
    with pytest.raises(ValueError, match="other settings.*'batch_size'"):
        M.train_gan(data, M.GANConfig(epochs=2, seed=0, batch_size=32), checkpoint=ckpt)
    # a lower learning rate is allowed (fine-tuning) and recorded
    _, h = M.train_gan(data, M.GANConfig(epochs=2, seed=0, lr=1e-4), checkpoint=ckpt)
    assert h["lr_schedule"] == [[0.0, 1e-3], [1.0, 1e-4]] and h["epochs"] == 2
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(CorruptModelError, match="delete it to start over"):
        M.train_gan(data, M.GANConfig(epochs=2, seed=0), checkpoint=ckpt)


def test_generation_metrics_on_a_hand_made_batch() -> None:
    """6 draws: NaCl x2, LiF, Fe (elemental), NaCl2 (not charge balanced), one empty decode."""
    enc = M.encoder()
    forms = ["NaCl", "NaCl", "LiF", "Fe", "NaCl2"]
    counts = np.vstack([enc.decode_counts(enc.encode_batch(forms).matrices), np.zeros((1, len(enc.symbols)), np.uint8)])
    batch = M.SampleBatch(counts, [*forms, None], np.array([True] * 5 + [False]))
    m = M.generation_metrics(batch, known=frozenset({"NaCl", "LiF"}), training=frozenset({"NaCl"}))
    assert m["samples"] == 6 and m["representable"] == pytest.approx(5 / 6)
    assert m["unique_formulas"] == 4 and m["uniqueness"] == pytest.approx(4 / 6)
    assert m["validity"] == pytest.approx(4 / 6)  # NaCl x2, LiF, Fe (SMACT passes elements)
    assert m["validity_multi_element"] == pytest.approx(3 / 6) and m["single_element_share"] == pytest.approx(1 / 6)
    assert m["novelty_samples"] == pytest.approx(2 / 5) and m["novelty_unique"] == pytest.approx(2 / 4)
    assert m["novelty_vs_training_samples"] == pytest.approx(3 / 5)
    assert m["valid_novel_unique"] == 1  # Fe
