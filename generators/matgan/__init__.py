"""MatGAN (Dan et al., npj Comput. Mater. 6, 84, 2020): a WGAN-GP on the 85 x 8 one-hot composition
matrix, and its companion autoencoder used to check whether a formula is reachable.

* Generator: latent (128) -> FC -> transposed convolutions -> sigmoid, one value per (element,
  count) cell of the :class:`~alcore.composition.CompositionEncoder` matrix (``"matgan85"``, counts
  1..8). A sample is decoded with ``decode_counts`` (an element is present when its largest cell
  exceeds 0.5; its count is that cell's column + 1) and canonicalised with
  :class:`generators.fast_formula.FastFormula`.
* Critic: two strided convolutions + FC, no normalisation (the gradient penalty needs none).
* Autoencoder: convolutional encoder to a 128-d code and a decoder with exactly the generator's
  architecture, trained with the negative Dice loss. The paper's argument: if the AE decoder cannot
  reproduce a formula, a generator of the same architecture is unlikely to generate it, so
  :meth:`MatGANSampler.reachable` = "the AE reconstructs the formula exactly".

Training data: MP formulas (``data/known/mp_formulas_spacegroups.csv``), canonical, deduplicated,
representable under matgan85 / max count 8, single-element entries removed (as in the paper).
Weights are committed as ``data/weights/matgan_generator.safetensors`` and
``data/weights/matgan_autoencoder.safetensors`` with JSON metadata (data hash, epochs, metrics).

Modules: ``data`` (encoding, training formulas), ``model`` (networks, weights), ``train`` (WGAN-GP
with checkpoints, autoencoder, end to end), ``sample`` (sampler, generation metrics).
"""

from __future__ import annotations

from generators.matgan import data, model, sample, train
from generators.matgan.data import *  # noqa: F403
from generators.matgan.model import *  # noqa: F403
from generators.matgan.sample import *  # noqa: F403
from generators.matgan.train import *  # noqa: F403

__all__ = [*data.__all__, *model.__all__, *sample.__all__, *train.__all__]
