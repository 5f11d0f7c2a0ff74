"""Tests of the composition-conditioned crystal GAN: representation, augmentation, gradient penalty,
a short training run, and the E_hull reference set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition

from alcore.errors import InvalidFormulaError
from generators.cccgan.augment import augment, permute_axes, supercells, translate
from generators.cccgan.dataset import load_dataset
from generators.cccgan.evaluate import load_references, summarise, validate
from generators.cccgan.model import Generator, distance_penalty, gradient_penalty, pair_distances
from generators.cccgan.representation import (
    image_counts,
    image_to_structure,
    min_distance,
    parse_counts,
    structure_to_image,
    unscale_frac,
)
from generators.cccgan.stability import e_hull, phase_diagram
from generators.cccgan.train import TrainConfig, generate, train
from tests.conftest import CCCGAN_SMALL_NET


@pytest.fixture(scope="module")
def ds():
    return load_dataset()


def _periodic_close(a: np.ndarray, b: np.ndarray, tol: float = 1e-9) -> bool:
    if not np.allclose(a[:2], b[:2], atol=tol):
        return False
    occ_a, occ_b = image_counts(a), image_counts(b)
    if not np.array_equal(occ_a, occ_b):
        return False
    rows = a[2:].mean(1) > 1 / 12
    d = unscale_frac(a[2:][rows]) - unscale_frac(b[2:][rows])
    return bool(np.all(np.abs(d - np.round(d)) < tol))


def test_round_trip_on_every_real_row(ds) -> None:
    assert ds.images.shape == (2627, 30, 3)
    assert len(ds.compositions()) == 112
    for im in ds.images:
        s = image_to_structure(im)
        assert _periodic_close(im, structure_to_image(s))
        assert min_distance(s) > 1.3  # the data's shortest distance is 1.38 Å


def test_named_structure_mg6mno8_matches_mp_lattice(ds) -> None:
    # mp-19239 (Mg6MnO8, Fm-3m, MP a_conv = 8.477 Å): primitive rhombohedral cell a = a_conv / sqrt(2), 60 deg
    i = next(k for k, n in enumerate(ds.names) if n.startswith("mp-19239_pox_mg_mg"))
    s = image_to_structure(ds.images[i])
    assert s.composition.reduced_formula == "Mg6MnO8"
    assert np.allclose(s.lattice.abc, 8.4772 / np.sqrt(2), atol=5e-3)
    assert np.allclose(s.lattice.angles, 60.0, atol=1e-6)
    # the MgMnO3 perovskite row of mp-1000487 decodes to a pseudo-cubic a of 3.87 Å, 90 degrees
    s0 = image_to_structure(ds.images[0])
    assert s0.composition.reduced_formula == "MgMnO3"
    assert np.allclose(s0.lattice.angles, 90.0) and abs(s0.lattice.a - 3.872) < 1e-3


def test_parse_counts_errors() -> None:
    assert parse_counts("Mg2Mn4O8") == (2, 4, 8)
    assert parse_counts(Composition("MgMn2O4")) == (1, 2, 4)
    with pytest.raises(InvalidFormulaError, match="outside"):
        parse_counts("Mg9MnO10")
    with pytest.raises(InvalidFormulaError, match="only Mg"):
        parse_counts("MgFeO2")


def test_augmentation_preserves_composition_and_structure(ds) -> None:
    rng = np.random.default_rng(3)
    sm = StructureMatcher()
    for i in rng.choice(len(ds.images), 6, replace=False):
        im = ds.images[i]
        ref = image_to_structure(im)
        variants = [translate(im, rng.random(3)), permute_axes(im, rng.permutation(3)), *supercells(im)]
        for v in variants:
            s = image_to_structure(v)
            assert s.composition.reduced_formula == ref.composition.reduced_formula
            assert sm.fit(ref, s)
    small = [k for k, c in enumerate(ds.counts) if tuple(c) == (1, 1, 3)][:3]
    sc = supercells(ds.images[small[0]])
    assert len(sc) == 3 and all(tuple(image_counts(x)) == (4, 4, 12) for x in sc)
    aug, counts = augment(ds.images[:40], per_composition=30, seed=1)
    comps = {tuple(c) for c in image_counts(ds.images[:40])}
    assert all(np.sum(np.all(counts == c, axis=1)) >= 30 for c in comps)
    assert np.array_equal(counts, image_counts(aug))


def test_pair_distances_match_pymatgen(ds) -> None:
    rng = np.random.default_rng(0)
    idx = rng.choice(len(ds.images), 25, replace=False)
    x = torch.from_numpy(ds.images[idx]).double().unsqueeze(1)
    d = pair_distances(x)
    exact = 0
    for k, i in enumerate(idx):
        s = image_to_structure(ds.images[i])
        occ = torch.from_numpy(ds.images[i][2:].mean(1) > 1 / 12)
        ours, ref = float(d[k][occ][:, occ].min()), min_distance(s)
        assert ours >= ref - 1e-6  # wrapped differences: exact or an upper bound (skewed cells)
        exact += abs(ours - ref) < 1e-6
    assert exact >= 20
    # real structures pay (almost) nothing, a collapsed copy of them pays a lot
    counts = torch.from_numpy(ds.counts[idx]).long()
    collapsed = x.clone()
    collapsed[:, 0, 2:] = torch.where(collapsed[:, 0, 2:] > 0, 0.5, 0.0)
    assert float(distance_penalty(x, counts)) < 0.2 < 10 < float(distance_penalty(collapsed, counts))
    # the penalty's gradient pushes two overlapping atoms apart
    two = torch.zeros(1, 1, 30, 3, dtype=torch.float64)
    two[0, 0, 0], two[0, 0, 1] = 5 / 30, 0.5
    two[0, 0, 2], two[0, 0, 10], two[0, 0, 18] = 0.5, 0.5, 0.3
    two[0, 0, 10, 0] = 0.52
    two.requires_grad_(True)
    distance_penalty(two, torch.tensor([[1, 1, 1]])).backward()
    assert float(two.grad[0, 0, 10, 0]) < 0 < float(two.grad[0, 0, 2, 0])


def test_gradient_penalty_on_linear_critic() -> None:
    torch.manual_seed(0)
    w = torch.randn(1, 30, 3) * 0.3
    critic = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731 - gradient is w everywhere
    real, fake = torch.rand(16, 1, 30, 3), torch.rand(16, 1, 30, 3)
    gp = gradient_penalty(critic, real, fake, weight=10.0)
    expected = 10.0 * (w.norm() - 1.0) ** 2
    assert torch.allclose(gp, expected, rtol=1e-5)
    unit = w / w.norm()
    gp1 = gradient_penalty(lambda x: (x * unit).flatten(1).sum(1), real, fake)
    assert float(gp1) < 1e-8


@pytest.mark.slow
def test_short_training_beats_untrained(ds) -> None:
    torch.manual_seed(0)
    # conditioning only: the distance hinge is off so 250 steps are spent on the composition signal
    cfg = TrainConfig(max_steps=250, per_composition=20, batch_size=64, lambda_dist=0.0, seed=0, **CCCGAN_SMALL_NET)
    result = train(ds.images, cfg)
    comps = [(2, 4, 8), (4, 2, 8), (2, 3, 7)]  # (2, 3, 7) is absent from the data

    def match_rate(g: Generator) -> float:
        hits = 0
        for c in comps:
            cands = validate(generate(g, c, 40, seed=5), c)
            hits += summarise(cands)["composition_ok"]
        return hits / (40 * len(comps))

    untrained = Generator(cfg.latent_dim, cfg.g_channels)
    trained_rate, untrained_rate = match_rate(result.generator), match_rate(untrained)
    assert trained_rate > untrained_rate + 0.2
    assert result.metrics["steps"] == 250


def test_reference_hull_is_consistent() -> None:
    refs = load_references()
    elements = {Composition(r["formula"]).reduced_formula for r in refs}
    assert {"Mg", "Mn", "O2", "MgO"} <= elements
    pd = phase_diagram(refs)
    best = {}
    for r in refs:
        s = Composition(r["formula"])
        best[s.reduced_formula] = min(best.get(s.reduced_formula, 1e9), r["energy_per_atom"])
    # MgO, the deepest binary, lies on the hull
    mgo = next(r for r in refs if Composition(r["formula"]).reduced_formula == "MgO")

    class _S:
        composition = Composition(mgo["formula"])

    assert abs(e_hull(pd, _S(), mgo["energy"])) < 1e-6


def test_relaxation_budget_goes_to_the_lowest_single_point_energies(ds) -> None:
    """``mark_stability`` with room for one relaxation relaxes the candidate with the lowest CHGNet
    single-point energy (a real structure beats the same structure squeezed by 12 %)."""
    from generators.cccgan.evaluate import Candidate, mark_stability
    from generators.cccgan.representation import image_to_structure
    from oracles.stability.checker import single_point

    real = image_to_structure(ds.images[0])
    squeezed = real.copy()
    squeezed.scale_lattice(real.volume * 0.88**3)
    cands = [
        Candidate(i, (0, 0, 0), ds.images[0], structure=s, decodes=True, composition_ok=True, valid=True, novel=True)
        for i, s in enumerate([squeezed, real])
    ]
    mark_stability(cands, load_references(), max_relax=1, steps=3)
    assert [c.relaxed for c in cands] == [False, True]
    assert cands[1].extra["initial_energy_per_atom"] == pytest.approx(single_point(real), abs=1e-4)
    assert cands[1].e_hull is not None and cands[0].e_hull is None


def test_checkpoint_resume_equals_uninterrupted_training(ds, tmp_path) -> None:
    # tiny networks on 40 real images (62 after augmentation: 3 steps per epoch); 3 + 3 steps == 6 steps
    torch.set_num_threads(1)
    images = ds.images[::60][:40]
    cfg = dict(g_channels=4, d_channels=4, q_channels=2, latent_dim=8, per_composition=2, batch_size=16, seed=3)
    full = train(images, TrainConfig(max_steps=6, **cfg))
    ckpt = tmp_path / "cccgan.pt"
    snaps: list[int] = []
    first = train(
        images,
        TrainConfig(max_steps=3, **cfg),
        checkpoint=ckpt,
        snapshot_every=2,
        on_snapshot=lambda step, res: snaps.append(step),
    )
    assert first.metrics["steps"] == 3 and snaps == [2] and ckpt.exists()
    resumed = train(images, TrainConfig(max_steps=6, **cfg), checkpoint=ckpt)
    assert resumed.metrics["steps"] == 6
    for k, v in full.generator.state_dict().items():
        assert torch.equal(v, resumed.generator.state_dict()[k]), k
    # a time budget stops early and the next run continues from there
    ckpt2 = tmp_path / "budget.pt"
    part = train(images, TrainConfig(max_steps=6, **cfg), checkpoint=ckpt2, time_budget_s=0.0)
    assert part.metrics["steps"] == 1
    done = train(images, TrainConfig(max_steps=6, **cfg), checkpoint=ckpt2)
    for k, v in full.generator.state_dict().items():
        assert torch.equal(v, done.generator.state_dict()[k]), k
    with pytest.raises(ValueError, match="other settings"):
        train(images, TrainConfig(max_steps=6, **{**cfg, "seed": 4}), checkpoint=ckpt2)
