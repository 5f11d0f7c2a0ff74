"""Model weights in GridFS: safetensors bytes keyed by sha256, verified on every load."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch
from pymongo import DESCENDING
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from alcore.errors import CorruptModelError


class ModelStore:
    """Model weights in GridFS (a part of :class:`flows.store.Store`)."""

    # ------------------------------------------------------------------ model weights (GridFS)
    def save_model(self, kind: str, state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> str:
        """Store weights as safetensors bytes in GridFS; returns their sha256 (hex).

        ``kind`` names the model family (e.g. ``"autoencoder"``); ``metadata`` (JSON-like) holds
        params, training metrics, campaign/iteration. Saving identical bytes twice stores them once;
        the second ``metadata`` is kept as an alias (``metadata.aliases``) so that
        :meth:`latest_model` finds the weights under either (e.g. a model retrained under new
        settings that came out bit-identical).
        """
        blob = save_safetensors({k: v.detach().contiguous().cpu() for k, v in state_dict.items()})
        sha = hashlib.sha256(blob).hexdigest()
        files = self.db["models.files"]
        existing = files.find_one({"metadata.sha256": sha, "metadata.kind": kind})
        if existing is None:
            self.fs.upload_from_stream(
                f"{kind}-{sha[:12]}.safetensors",
                blob,
                metadata={**dict(metadata), "kind": kind, "sha256": sha, "format": "safetensors", "bytes": len(blob)},
            )
        elif any(existing["metadata"].get(k) != v for k, v in metadata.items()):
            files.update_one({"_id": existing["_id"]}, {"$addToSet": {"metadata.aliases": dict(metadata)}})
        return sha

    def load_model(self, sha256: str, kind: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Load weights by sha256; returns ``(state_dict, metadata)``.

        Raises :class:`CorruptModelError` if the blob is missing, of another ``kind``, its bytes do
        not hash to ``sha256``, or it is not a safetensors file. Nothing executable is ever loaded.
        """
        meta = self.db["models.files"].find_one({"metadata.sha256": sha256})
        if meta is None:
            raise CorruptModelError(f"no model blob with sha256 {sha256[:12]}...; retrain or re-import it")
        info = meta["metadata"]
        if kind is not None and info.get("kind") != kind:
            raise CorruptModelError(
                f"model {sha256[:12]} is a {info.get('kind')!r} blob, expected {kind!r}; check the model reference"
            )
        blob = self.fs.open_download_stream(meta["_id"]).read()
        actual = hashlib.sha256(blob).hexdigest()
        if actual != sha256:
            raise CorruptModelError(
                f"model blob {meta['filename']} is corrupt: sha256 {actual[:12]} != recorded {sha256[:12]}; "
                "delete it and retrain"
            )
        try:
            state = load_safetensors(blob)
        except Exception as exc:
            raise CorruptModelError(f"model blob {meta['filename']} is not valid safetensors: {exc}") from None
        return state, dict(info)

    def latest_model(self, kind: str, **where: Any) -> str | None:
        """sha256 of the newest model of ``kind`` whose metadata, or one of its aliases (see
        :meth:`save_model`), matches the fields ``where``; None if there is none."""
        query: dict[str, Any] = {"metadata.kind": kind}
        if where:
            query["$or"] = [
                {f"metadata.{k}": v for k, v in where.items()},
                {"metadata.aliases": {"$elemMatch": dict(where)}},
            ]
        doc = self.db["models.files"].find_one(query, sort=[("uploadDate", DESCENDING)])
        return doc["metadata"]["sha256"] if doc else None


#: What the status counts group: collection -> field.
