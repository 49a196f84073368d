"""Ignite/MONAI training engines: the shared adversarial trainer, its handlers, and one trainer per GAN."""
