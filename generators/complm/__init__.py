"""A composition language model (issue 22): a small decoder-only transformer over (element, count)
pair tokens in canonical element order, with band-gap-bin and E_form condition prefixes.

* ``tokens``: the tokeniser (:class:`FormulaTokenizer`) and the condition tokens.
* ``data``: the SMACT-valid MP training formulas, their MP DFT gap bins / E_form signs, the split.
* ``model``: :class:`CompositionLM` (pre-LN GPT with a key/value cache), weights I/O.
* ``train``: resumable training with checkpoint selection on the valid-novel-unique share.
* ``sample``: batched sampling (temperature, top-p, classifier-free guidance, rejection of known
  formulas) and :class:`CompLMSampler`, the :class:`generators.base.CompositionGenerator`.
* ``metrics``: the valid-and-novel-and-unique share.
"""

from __future__ import annotations

from generators.complm import model, sample, tokens, train
from generators.complm.model import *  # noqa: F403
from generators.complm.sample import *  # noqa: F403
from generators.complm.tokens import *  # noqa: F403
from generators.complm.train import *  # noqa: F403

__all__ = [*model.__all__, *sample.__all__, *tokens.__all__, *train.__all__]
