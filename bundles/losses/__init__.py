"""Loss objects of the GAN bundles (one module per model family)."""
