"""A small decoder-only transformer over formula tokens (pre-LayerNorm GPT, learned positions,
tied input/output embeddings) with a key/value cache for fast batched sampling."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alcore import weights as weights_io


@dataclass(frozen=True)
class LMConfig:
    """Model size: ``vocab`` token ids, ``seq_len`` positions, ``layers`` blocks of width ``d``
    with ``heads`` attention heads and a ``ff``-wide MLP; ``dropout`` in training only."""

    vocab: int
    seq_len: int = 11
    d: int = 128
    layers: int = 4
    heads: int = 4
    ff: int = 512
    dropout: float = 0.1


class Block(nn.Module):
    """Pre-LN transformer block: causal self-attention then an MLP, both residual."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.ln1 = nn.LayerNorm(cfg.d)
        self.qkv = nn.Linear(cfg.d, 3 * cfg.d)
        self.proj = nn.Linear(cfg.d, cfg.d)
        self.ln2 = nn.LayerNorm(cfg.d)
        self.fc1 = nn.Linear(cfg.d, cfg.ff)
        self.fc2 = nn.Linear(cfg.ff, cfg.d)
        self.drop = nn.Dropout(cfg.dropout)
        self.p = cfg.dropout

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``x`` (B, T, d); with ``cache`` (keys, values of the earlier positions, (B, H, T0, d/H)
        each) ``x`` holds the next positions only. Returns ``(output (B, T, d), new cache)``."""
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        q, k, v = self._split(q), self._split(k), self._split(v)
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        causal = cache is None  # with a cache: one new position, which sees all earlier ones
        a = F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=self.p if self.training else 0.0)
        b, h, t, dh = a.shape
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, t, h * dh)))
        x = x + self.drop(self.fc2(F.gelu(self.fc1(self.ln2(x)))))
        return x, (k, v)


class CompositionLM(nn.Module):
    """Causal language model over token ids (B, T) -> next-token logits (B, T, vocab)."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab, cfg.d)
        self.pos = nn.Embedding(cfg.seq_len, cfg.d)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln = nn.LayerNorm(cfg.d)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, vocab) of the token after each position of ``tokens`` (B, T) int64."""
        t = tokens.shape[1]
        x = self.drop(self.tok(tokens) + self.pos(torch.arange(t)))
        for blk in self.blocks:
            x, _ = blk(x)
        return self.ln(x) @ self.tok.weight.T

    def step(
        self, tokens: torch.Tensor, start: int, caches: list[tuple[torch.Tensor, torch.Tensor]] | None
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Incremental decoding: ``tokens`` (B, T) at positions ``start..start+T-1`` given the
        ``caches`` of the earlier positions (None at the start). Returns the logits of the last
        position (B, vocab) and the extended caches. Equal to :meth:`forward` (tested)."""
        t = tokens.shape[1]
        x = self.tok(tokens) + self.pos(torch.arange(start, start + t))
        new = []
        for i, blk in enumerate(self.blocks):
            x, c = blk(x, None if caches is None else caches[i])
            new.append(c)
        return self.ln(x[:, -1]) @ self.tok.weight.T, new


def n_params(model: nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def save_lm(stem: str | Path, model: CompositionLM, metadata: dict[str, Any]) -> str:
    """Write ``<stem>.safetensors`` + ``<stem>.json`` (metadata gets the model config under
    ``lm_config``); returns the weights' sha256."""
    return weights_io.save_weights(stem, model.state_dict(), {**metadata, "lm_config": asdict(model.cfg)})


def load_lm(stem: str | Path) -> tuple[CompositionLM, dict[str, Any]]:
    """Load a model written by :func:`save_lm`; returns ``(model in eval mode, metadata)``.

    Raises :class:`~alcore.errors.CorruptModelError` for missing or mismatching files."""
    tensors, meta = weights_io.load_weights(stem, "train it with `alflow complm train`")
    model = CompositionLM(LMConfig(**meta["lm_config"]))
    weights_io.load_into(model, tensors, stem)
    return model.eval(), meta


__all__ = ["CompositionLM", "LMConfig", "load_lm", "n_params", "save_lm"]
