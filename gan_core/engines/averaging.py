"""A moving average of the generator's weights, the network that inference and export use.

A GAN generator's weights keep moving with the discriminator until the last step, so the state at the end of a
short training is one noisy point of an oscillation. Averaging the weights over the last iterations (Karras et al.
2018, "Progressive growing of GANs"; StyleGAN2-ADA's ``G_ema``) gives a generator whose samples are steadier and
better than the last state's, at no training cost. The average is a second copy of the generator, updated after
every iteration:

    beta = 0.5 ** (1 / h_t),  h_t = min(half_life, rampup * t)          (t = iterations done)
    parameters: avg <- beta * avg + (1 - beta) * G;  buffers (BatchNorm statistics): copied from G

so the weight of an iteration halves every ``h_t`` iterations; ``rampup`` (StyleGAN2-ADA's ``ema_rampup``) keeps
the average from holding on to the first, untrained iterations of a short run. The copy is saved in every
checkpoint (``generator_ema``) and resumed with it; :func:`gan_core.models.read_model` loads it in place of the last
state when a checkpoint has one.
"""

from __future__ import annotations

import copy

import torch
from ignite.engine import Engine, Events

from gan_core.models import unwrap

__all__ = ["GeneratorAverage", "averaged_copy", "average_beta"]


def averaged_copy(generator: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy (eval mode, no gradients) of the bare generator inside ``generator`` (DDP unwrapped), on its
    device: the starting point of the average."""
    average = copy.deepcopy(unwrap(generator)).eval()
    return average.requires_grad_(False)


def average_beta(iteration: int, half_life: float, rampup: float | None) -> float:
    """The decay after ``iteration`` iterations (>= 1): ``0.5 ** (1 / min(half_life, rampup * iteration))``; no
    ramp when ``rampup`` is None. 0 (a plain copy) for a half-life of 0."""
    life = float(half_life) if rampup is None else min(float(half_life), float(rampup) * iteration)
    return 0.0 if life <= 0 else 0.5 ** (1.0 / life)


class GeneratorAverage:
    """Ignite handler that updates ``average`` from ``generator`` after every iteration (see the module docstring).

    Args:
        generator: the trained generator (plain or DistributedDataParallel-wrapped).
        average: its copy from :func:`averaged_copy`, listed in the trainer's ``save_dict`` as ``generator_ema``.
        half_life: iterations over which an iteration's weight halves (0: the average is the last state).
        rampup: ramp of the half-life over the first iterations (``h_t = rampup * t``); None for none.
    """

    def __init__(self, generator: torch.nn.Module, average: torch.nn.Module, half_life: float = 100.0,
                 rampup: float | None = 0.05):
        if isinstance(half_life, bool) or not isinstance(half_life, (int, float)) or half_life < 0:
            raise ValueError(f"half_life must be a number of iterations >= 0, got {half_life!r}")
        self.generator = generator
        self.average = average
        self.half_life = float(half_life)
        self.rampup = None if rampup is None else float(rampup)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    @torch.no_grad()
    def __call__(self, engine: Engine) -> None:
        beta = average_beta(engine.state.iteration, self.half_life, self.rampup)
        source = unwrap(self.generator)
        for avg, current in zip(self.average.parameters(), source.parameters(), strict=True):
            avg.lerp_(current.detach(), 1.0 - beta)
        for avg, current in zip(self.average.buffers(), source.buffers(), strict=True):
            avg.copy_(current)
