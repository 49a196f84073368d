"""Evaluation code of the bundles: regional image metrics, gene-code maps, latent walks, memorisation audit, classifiers."""
