"""Generator and discriminator networks (one module per model family) and shared layers; all TorchScript-scriptable."""
