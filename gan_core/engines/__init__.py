"""Ignite / MONAI training engines: the adversarial trainer every GAN subclasses, its handlers, tracking, the moving
average of the generator, the resumable sampler and the DDP helpers (each GAN's trainer is in its bundle's scripts)."""
