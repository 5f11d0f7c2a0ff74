"""The transformer: incremental decoding with the key/value cache equals the full forward pass; weights I/O."""

from __future__ import annotations

import torch

from generators.complm.model import CompositionLM, LMConfig, load_lm, save_lm


def test_cached_steps_equal_the_full_forward(tmp_path) -> None:
    torch.manual_seed(0)
    model = CompositionLM(LMConfig(vocab=50, seq_len=8, d=32, layers=2, heads=2, ff=64)).eval()
    x = torch.randint(0, 50, (5, 8))
    with torch.no_grad():
        full = model(x)
        logits, cache = model.step(x[:, :2], 0, None)
        assert torch.allclose(logits, full[:, 1], atol=1e-5)
        for p in range(2, 8):
            logits, cache = model.step(x[:, p : p + 1], p, cache)
            assert torch.allclose(logits, full[:, p], atol=1e-5)
    save_lm(tmp_path / "lm", model, {"kind": "test"})
    again, meta = load_lm(tmp_path / "lm")
    assert meta["kind"] == "test" and meta["lm_config"]["d"] == 32
    with torch.no_grad():
        assert torch.equal(again(x), full)
