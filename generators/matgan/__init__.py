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

from generators.matgan.data import (
    AUTOENCODER_NAME,
    ELEMENTS,
    GENERATOR_NAME,
    LATENT_DIM,
    MAX_COUNT,
    data_hash,
    encode_formulas,
    encoder,
    fast_formula,
    known_formulas,
    training_formulas,
    training_formulas_of,
)
from generators.matgan.model import Autoencoder, Critic, Generator, load_module, load_trained, save_module
from generators.matgan.sample import (
    MatGANSampler,
    SampleBatch,
    conv_kernels,
    generation_metrics,
    iter_sample_batches,
    reduced_sizes,
    sample_batch,
)
from generators.matgan.train import AEConfig, GANConfig, train_autoencoder, train_gan, train_matgan

__all__ = [
    "AUTOENCODER_NAME",
    "ELEMENTS",
    "GENERATOR_NAME",
    "LATENT_DIM",
    "MAX_COUNT",
    "AEConfig",
    "Autoencoder",
    "Critic",
    "GANConfig",
    "Generator",
    "MatGANSampler",
    "SampleBatch",
    "conv_kernels",
    "data_hash",
    "encode_formulas",
    "encoder",
    "fast_formula",
    "generation_metrics",
    "iter_sample_batches",
    "known_formulas",
    "load_module",
    "load_trained",
    "reduced_sizes",
    "sample_batch",
    "save_module",
    "train_autoencoder",
    "train_gan",
    "train_matgan",
    "training_formulas",
    "training_formulas_of",
]
