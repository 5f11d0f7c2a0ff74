"""Sampling the composition LM: batched autoregressive decoding with a key/value cache, temperature,
top-p, classifier-free guidance toward a condition, structural masks (elements in canonical order,
no repeats, 2..8 elements) and optional rejection of known formulas; the sampler behind the
:class:`generators.base.CompositionGenerator` interface."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alcore.paths import WEIGHTS_DIR
from generators.complm.model import CompositionLM, load_lm
from generators.complm.tokens import EF_NULL, EOS, GAP_NULL, PAD, FormulaTokenizer, condition_tokens
from generators.matgan.sample import SampleBatch, reduced_sizes

#: Rows decoded per forward pass; each chunk has its own seed, so results depend on (n, seed) only.
SAMPLE_CHUNK = 4096
MODEL_NAME = "complm"
#: Weights for conditioned sampling (the v5 recipe, :data:`generators.complm.train.CONDITIONED_RECIPE`):
#: loaded when a gap or E_form condition is set and no weights are given (docs/complm.md).
COND_MODEL_NAME = "complm_cond"


@dataclass(frozen=True)
class SamplingSettings:
    """``temperature`` (> 0), ``top_p`` in (0, 1] (1 = off), ``guidance`` (classifier-free guidance
    weight w: logits = uncond + w (cond - uncond); 1 = plain conditional sampling), the condition
    tokens, at least ``min_elements`` elements, and ``reject_tries`` rounds of resampling rows whose
    formula is in the sampler's exclusion set (0 = off); with ``reject_seen`` also rows whose formula
    an earlier draw of the same ``sample(n, seed)`` call produced (more distinct formulas per draw)."""

    temperature: float = 1.0
    top_p: float = 1.0
    guidance: float = 1.0
    gap: int = GAP_NULL
    eform: int = EF_NULL
    min_elements: int = 2
    reject_tries: int = 0
    reject_seen: bool = False


def _chunk_generator(seed: int, chunk: int) -> torch.Generator:
    s = np.random.SeedSequence([int(seed), int(chunk)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(s >> np.uint64(1)))


@torch.no_grad()
def sample_tokens(
    model: CompositionLM, tokenizer: FormulaTokenizer, n: int, gen: torch.Generator, s: SamplingSettings
) -> np.ndarray:
    """Decode ``n`` token rows (n, seq_len) int64 (condition tokens, pairs, EOS, PAD) with ``gen``.

    Rows that have emitted EOS leave the batch (their caches are dropped), so a step costs only the
    unfinished rows. A token is drawn by inverse-CDF sampling with one uniform per row and step."""
    model.eval()
    rk, _ = tokenizer.token_rank_count()
    rank = torch.from_numpy(rk)
    is_pair = rank >= 0
    v = tokenizer.vocab_size
    out = torch.full((n, tokenizer.seq_len), PAD, dtype=torch.long)
    out[:, 0], out[:, 1] = s.gap, s.eform
    cfg_on = s.guidance != 1.0 and (s.gap != GAP_NULL or s.eform != EF_NULL)
    prefix = out[:, :2]
    if cfg_on:
        null = torch.tensor([[GAP_NULL, EF_NULL]]).expand(n, 2)
        prefix = torch.cat([prefix, null])
    logits, caches = model.step(prefix, 0, None)
    rows = torch.arange(n)  # the unfinished rows, in order
    last = torch.full((n,), -1, dtype=torch.long)
    n_el = torch.zeros(n, dtype=torch.long)
    eos_col = torch.zeros(v, dtype=torch.bool)
    eos_col[EOS] = True
    for pos in range(2, tokenizer.seq_len):
        m = rows.numel()
        if cfg_on:
            lc, lu = logits[:m], logits[m:]
            logits = lu + s.guidance * (lc - lu)
        allowed = is_pair[None, :] & (rank[None, :] > last[:, None])
        allowed &= (n_el < tokenizer.max_elements)[:, None]
        allowed |= eos_col[None, :] & (n_el >= s.min_elements)[:, None]
        allowed |= eos_col[None, :] & ~allowed.any(1, keepdim=True)  # nothing left: stop
        logits = logits.masked_fill(~allowed, float("-inf"))
        if s.temperature != 1.0:
            logits = logits / s.temperature
        probs = torch.softmax(logits, dim=-1)
        if s.top_p < 1.0:
            sp, si = probs.sort(dim=-1, descending=True)
            sp = sp * (sp.cumsum(-1) - sp < s.top_p)
            probs = torch.zeros_like(probs).scatter_(1, si, sp)
        cdf = probs.cumsum(-1)
        u = torch.rand(m, 1, generator=gen, dtype=cdf.dtype) * cdf[:, -1:]
        nxt = torch.searchsorted(cdf, u).squeeze(1).clamp_(max=v - 1)
        out[rows, pos] = nxt
        pair = is_pair[nxt]
        last = torch.where(pair, rank[nxt], last)
        n_el = n_el + pair.long()
        alive = nxt != EOS
        if pos == tokenizer.seq_len - 1 or not bool(alive.any()):
            break
        if not bool(alive.all()):
            keep = alive.nonzero().squeeze(1)
            rows, last, n_el, nxt = rows[keep], last[keep], n_el[keep], nxt[keep]
            if cfg_on:
                keep = torch.cat([keep, keep + m])
            caches = [(k[keep], vv[keep]) for k, vv in caches]
        step_tok = nxt[:, None]
        if cfg_on:
            step_tok = torch.cat([step_tok, step_tok])
        logits, caches = model.step(step_tok, pos, caches)
    return out.numpy()


class CompLMSampler:
    """A trained composition LM behind the :class:`generators.base.CompositionGenerator` interface.

    ``sample(n, seed)`` returns the canonical formulas of ``n`` draws (every draw decodes to a
    formula of 2..8 elements in the matgan85 / count <= 8 encoding). ``exclude`` (a set of
    canonical formulas, e.g. the known MP formulas) is used with ``settings.reject_tries > 0``:
    draws that land in it are redrawn up to that many times (a draw still excluded is kept)."""

    def __init__(
        self,
        model: CompositionLM,
        tokenizer: FormulaTokenizer | None = None,
        settings: SamplingSettings | None = None,
        metadata: dict[str, Any] | None = None,
        name: str = "complm",
        exclude: frozenset[str] | set[str] | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer or FormulaTokenizer()
        self.settings = settings or SamplingSettings()
        self.metadata = metadata or {}
        self.name = name
        self.exclude = exclude

    @classmethod
    def pretrained(
        cls,
        weights: str | Path | None = None,
        name: str = "complm",
        temperature: float = 1.0,
        top_p: float = 1.0,
        guidance: float = 1.0,
        condition: str | None = None,
        eform: str | None = None,
        reject_known: bool = False,
        reject_seen: bool = False,
    ) -> CompLMSampler:
        """Load the committed weights, or the stem ``weights``: ``data/weights/complm`` for
        unconditioned sampling, ``data/weights/complm_cond`` when ``condition`` or ``eform`` is set.

        ``condition``: a gap bin (``metal``, ``0-1.6``, ``1.6-3``, ``3-5``, ``>5``) or None;
        ``eform``: ``neg`` (E_form < 0), ``pos`` or None; ``reject_known`` redraws samples that are
        known MP formulas (up to 4 times); ``reject_seen`` also redraws formulas already drawn in the
        same ``sample`` call (up to 4 times). Raises ``ValueError`` for an unknown condition and
        :class:`CorruptModelError` for missing weights."""
        g, e = condition_tokens(condition, eform)
        default = MODEL_NAME if (g, e) == (GAP_NULL, EF_NULL) else COND_MODEL_NAME
        model, meta = load_lm(weights or WEIGHTS_DIR / default)
        tok = FormulaTokenizer(meta.get("elements", "matgan85"), meta.get("max_count", 8), meta.get("max_elements", 8))
        tries = 4 if reject_known or reject_seen else 0
        s = SamplingSettings(temperature, top_p, guidance, g, e, 2, tries, reject_seen)
        exclude = None
        if reject_known:
            from generators.matgan.data import known_formulas

            exclude = known_formulas()
        return cls(model, tok, s, meta, name, exclude)

    # ------------------------------------------------------------------------------------ sampling
    def _chunk(self, size: int, seed: int, k: int, seen: set[str] | None) -> np.ndarray:
        """Token rows of chunk ``k`` (``size`` draws) of a ``seed`` run, with the rejection rounds
        (excluded formulas, and with ``seen`` formulas drawn earlier in the call or in this chunk)."""
        gen = _chunk_generator(seed, k)
        toks = sample_tokens(self.model, self.tokenizer, size, gen, self.settings)
        exclude = self.exclude or frozenset()
        for _ in range(self.settings.reject_tries):
            if not exclude and seen is None:
                break
            forms = self.tokenizer.decode(toks)
            local: set[str] = set()
            redo = []
            for i, f in enumerate(forms):
                if f in exclude or (seen is not None and (f in seen or f in local)):
                    redo.append(i)
                else:
                    local.add(f)
            if not redo:
                break
            toks[redo] = sample_tokens(self.model, self.tokenizer, len(redo), gen, self.settings)
        return toks

    def iter_batches(self, n: int, seed: int, part: int = 4 * SAMPLE_CHUNK) -> Iterator[SampleBatch]:
        """The ``n`` draws of ``seed`` as consecutive :class:`SampleBatch` parts of about ``part``
        rows (whole chunks; the draws do not depend on ``part``). ``counts`` are over matgan85."""
        per = max(1, part // SAMPLE_CHUNK)
        chunks = [(k, min(SAMPLE_CHUNK, n - k * SAMPLE_CHUNK)) for k in range(-(-n // SAMPLE_CHUNK))]
        seen: set[str] | None = set() if self.settings.reject_seen and self.settings.reject_tries else None
        for p in range(0, len(chunks), per):
            parts = []
            for k, size in chunks[p : p + per]:
                toks = self._chunk(size, seed, k, seen)
                if seen is not None:
                    seen.update(f for f in self.tokenizer.decode(toks) if f is not None)
                parts.append(toks)
            toks = np.concatenate(parts)
            counts = self.tokenizer.counts(toks)
            forms = self.tokenizer.decode(toks)
            ok = np.array([f is not None for f in forms], dtype=bool)
            yield SampleBatch(counts.astype(np.uint8), forms, ok)

    def sample_batch(self, n: int, seed: int) -> SampleBatch:
        """All ``n`` draws for ``seed`` in one :class:`SampleBatch` (for the generation metrics)."""
        parts = list(self.iter_batches(n, seed))
        if not parts:
            return SampleBatch(np.zeros((0, len(self.tokenizer.symbols)), np.uint8), [], np.zeros(0, bool))
        return SampleBatch(
            np.concatenate([p.counts for p in parts]),
            [f for p in parts for f in p.formulas],
            np.concatenate([p.ok for p in parts]),
        )

    def sample(self, n: int, seed: int) -> list[str]:
        """``n`` draws for ``seed`` (deterministic); returns their canonical formulas."""
        return [f for b in self.iter_batches(n, seed) for f, ok in zip(b.formulas, b.ok, strict=True) if ok]

    def sample_sized(
        self, n: int, seed: int, part: int = 4 * SAMPLE_CHUNK
    ) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
        """:meth:`sample` in parts with the reduced formulas' atom and element counts:
        yields ``(formulas, n_atoms (k,) int64, n_elements (k,) int64)`` (pool generation)."""
        for b in self.iter_batches(n, seed, part=part):
            idx = np.flatnonzero(b.ok)
            atoms, elems = reduced_sizes(b.counts[idx])
            yield [b.formulas[i] for i in idx], atoms, elems


__all__ = ["COND_MODEL_NAME", "MODEL_NAME", "SAMPLE_CHUNK", "CompLMSampler", "SamplingSettings", "sample_tokens"]
