"""Active-learning core: pure computation (encoding, validity, autoencoder, GP surrogate, acquisition)."""
