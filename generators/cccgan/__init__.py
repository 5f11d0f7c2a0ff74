"""Composition-conditioned crystal GAN (Kim et al. 2020) for Mg-Mn-O: representation, augmentation,
model, training and evaluation."""
