"""One way to write and read model weights: ``<stem>.safetensors`` (tensors only, no pickle, so loading
never runs code) beside ``<stem>.json`` (metadata plus the sha256 of the weights file, checked on
every load). The autoencoder, MatGAN, CrystalGAN and the composition-conditioned crystal GAN all go
through here, and so do the ResNet oracles (their in-memory ``to_bytes`` blobs for GridFS keep the
metadata inside the safetensors header).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from alcore.errors import CorruptModelError

#: The metadata key of the weights file's sha256 (older files of the autoencoder use ``sha256``).
SHA_KEY = "weights_sha256"


def weights_paths(stem: str | Path) -> tuple[Path, Path]:
    """``(<stem>.safetensors, <stem>.json)`` for a stem given with or without the suffix."""
    stem = Path(stem)
    if stem.suffix == ".safetensors":
        stem = stem.with_suffix("")
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def jsonable(obj: Any) -> Any:
    """``json.dumps`` fallback: numpy scalars, dataclasses and anything else as its string."""
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    return str(obj)


def save_weights(
    stem: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any], sha_key: str = SHA_KEY
) -> str:
    """Write ``tensors`` to ``<stem>.safetensors`` and ``metadata`` plus the file's sha256 (under
    ``sha_key``) to ``<stem>.json``; creates the folder. Returns the sha256 (hex)."""
    path, meta_path = weights_paths(stem)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    meta_path.write_text(json.dumps({**metadata, sha_key: sha}, indent=2, default=jsonable) + "\n")
    return sha


def load_weights(stem: str | Path, how_to_make: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read ``<stem>.safetensors`` and ``<stem>.json``; returns ``(tensors, metadata)``.

    Raises :class:`CorruptModelError` when a file is missing (the message ends with ``how_to_make``,
    e.g. the command that trains the model) or the weights do not match the recorded sha256.
    """
    path, meta_path = weights_paths(stem)
    if not path.exists() or not meta_path.exists():
        raise CorruptModelError(f"{path} or its .json is missing; {how_to_make}")
    meta = json.loads(meta_path.read_text())
    recorded = meta.get(SHA_KEY, meta.get("sha256"))
    if recorded is not None and hashlib.sha256(path.read_bytes()).hexdigest() != recorded:
        raise CorruptModelError(f"{path} does not match the sha256 in {meta_path.name}; retrain or restore it")
    return load_file(str(path)), meta


def load_into(module: torch.nn.Module, tensors: Mapping[str, torch.Tensor], source: str | Path) -> torch.nn.Module:
    """Load ``tensors`` into ``module`` (strict) and return it in eval mode; a shape or key mismatch
    raises :class:`CorruptModelError` naming ``source``."""
    try:
        module.load_state_dict(dict(tensors))
    except (RuntimeError, KeyError) as exc:
        raise CorruptModelError(
            f"{source} does not fit the {type(module).__name__} architecture: {str(exc)[:200]}"
        ) from None
    return module.eval()


# ---------------------------------------------------------------------------- training checkpoints
def state_dicts(parts: Mapping[str, Any]) -> dict[str, Any]:
    """``{key: part.state_dict()}`` of named networks and optimisers, for a training checkpoint."""
    return {key: part.state_dict() for key, part in parts.items()}


def load_state_dicts(parts: Mapping[str, Any], state: Mapping[str, Any]) -> None:
    """Load ``state[key]`` (as :func:`state_dicts` wrote it) into each named network or optimiser."""
    for key, part in parts.items():
        part.load_state_dict(state[key])


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> None:
    """Write a training checkpoint (tensors, numbers, RNG states; ``torch.save``) atomically: a kill
    mid-write leaves the previous checkpoint intact. Creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(dict(state), tmp)
    tmp.replace(path)


def load_checkpoint(
    path: str | Path,
    model: str,
    version: int,
    data_sha: str,
    config: Mapping[str, Any],
    resumable: Iterable[str] = (),
) -> dict[str, Any]:
    """Read a checkpoint of :func:`save_checkpoint` (``weights_only``: nothing executable) and check
    it belongs to this run: its ``version``, the sha256 of the training data (``data_sha256``) and
    its ``config`` except the ``resumable`` fields (e.g. the step budget) must match.

    Raises :class:`CorruptModelError` for an unreadable file or another version and ``ValueError``
    naming what differs for other data or other settings; ``model`` names the model in the messages.
    """
    path = Path(path)
    try:
        state = torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise CorruptModelError(f"{model} checkpoint {path} cannot be read ({exc}); delete it to start over") from None
    if state.get("version") != version:
        raise CorruptModelError(
            f"{model} checkpoint {path} has version {state.get('version')}, expected {version}; delete it to start over"
        )
    if state["data_sha256"] != data_sha:
        raise ValueError(
            f"{model} checkpoint {path} was trained on other data (sha256 {state['data_sha256'][:12]} vs "
            f"{data_sha[:12]}): other formulas or images; use another checkpoint path or delete it"
        )
    skip = set(resumable)

    def fixed(cfg: Mapping[str, Any]) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items() if k not in skip}

    stored, asked = fixed(state["config"]), fixed(config)
    if stored != asked:
        diff = {k: (stored.get(k), asked.get(k)) for k in asked if stored.get(k) != asked.get(k)}
        raise ValueError(
            f"{model} checkpoint {path} was trained with other settings {diff} (stored, asked); "
            "resume with the stored settings, or use another checkpoint path"
        )
    return state
