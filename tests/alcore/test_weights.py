"""The one weights format: safetensors + JSON metadata with the file's sha256, verified on load."""

from __future__ import annotations

import json

import pytest
import torch

from alcore.errors import CorruptModelError
from alcore.weights import load_into, load_weights, save_weights, weights_paths


def test_round_trip_keeps_tensors_and_metadata(tmp_path) -> None:
    net = torch.nn.Linear(3, 2)
    sha = save_weights(tmp_path / "sub" / "lin", net.state_dict(), {"epochs": 3})
    tensors, meta = load_weights(tmp_path / "sub" / "lin.safetensors", "train it")
    assert meta["epochs"] == 3 and meta["weights_sha256"] == sha
    copy = load_into(torch.nn.Linear(3, 2), tensors, "lin")
    assert torch.equal(copy.weight, net.weight) and not copy.training


def test_tampered_missing_and_misfitting_weights_are_refused(tmp_path) -> None:
    save_weights(tmp_path / "lin", torch.nn.Linear(3, 2).state_dict(), {})
    path, meta_path = weights_paths(tmp_path / "lin")
    with pytest.raises(CorruptModelError, match="alflow autoencoder train"):
        load_weights(tmp_path / "absent", "train it with `alflow autoencoder train`")
    tensors, _ = load_weights(tmp_path / "lin", "")
    with pytest.raises(CorruptModelError, match="does not fit the Linear architecture"):
        load_into(torch.nn.Linear(4, 2), tensors, path)
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(CorruptModelError, match="does not match the sha256"):
        load_weights(tmp_path / "lin", "")
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = meta.pop("weights_sha256")  # the autoencoder's older key is checked too
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CorruptModelError, match="does not match the sha256"):
        load_weights(tmp_path / "lin", "")


def test_state_dicts_round_trip_networks_and_optimisers() -> None:
    from alcore.weights import load_state_dicts, state_dicts

    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    saved = state_dicts({"net": net, "opt": opt})
    assert set(saved) == {"net", "opt"}
    other = torch.nn.Linear(3, 2)
    other_opt = torch.optim.Adam(other.parameters(), lr=0.1)
    load_state_dicts({"net": other, "opt": other_opt}, saved)
    assert torch.equal(other.weight, net.weight) and other_opt.state_dict()["state"][0]["step"] == 1
