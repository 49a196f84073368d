"""The adversarial trainer every bundle subclasses: one discriminator step, then one generator step."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch
from ignite.engine import Events
from monai.engines import Trainer

from gan_core.config import as_flag

AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


class AdversarialTrainer(Trainer):
    """A `monai.engines.Trainer` for GANs with arbitrary conditioning, outputs and loss terms.

    Each iteration: the generator produces ``fake`` once; the discriminator is updated on ``fake``
    detached; the generator is updated through the discriminator. Subclasses only describe their model
    through five hooks (:meth:`prepare`, :meth:`generate`, :meth:`discriminator_terms`,
    :meth:`generator_terms`, :meth:`sample_columns`); the loop, mixed precision and seeding live here.

    Torch's global RNG is re-seeded at the start of every iteration from ``(seed, rank, iteration)``, and the
    random transforms of the training dataset (MONAI ``Randomizable``) just before its batch is loaded, so
    noise, dropout and augmentation of iteration ``i`` are the same whether or not training was resumed
    before ``i`` (exactly so with ``num_workers=0``; worker processes keep their own random states).

    The engine output follows MONAI's decollated convention: a list with one dict per sample,
    ``{"loss": {term: float}, <generated name>: Tensor}``, the "loss" dict (every named term, with
    ``d_total`` and ``g_total``) replicated in each. So ``monai.handlers.from_engine(["loss"], first=True)``
    gives the loss dict to StatsHandler, ProgressBar and MLFlowHandler, as ``--tracking mlflow`` expects.

    Args:
        device: where the networks live.
        max_epochs: number of epochs.
        train_data_loader: yields dictionaries of batched tensors.
        generator, discriminator: the networks (plain or DistributedDataParallel-wrapped).
        g_optimizer, d_optimizer: their optimizers.
        epoch_length: iterations per epoch (default: the loader's length).
        seed: base of the per-iteration seeds.
        amp: run forward passes under autocast; ``amp_dtype`` "float16" (with a GradScaler on CUDA) or
            "bfloat16".
        train_handlers: handlers attached to this engine, in order.
    """

    def __init__(
        self,
        device: torch.device | str,
        max_epochs: int,
        train_data_loader,
        generator: torch.nn.Module,
        discriminator: torch.nn.Module,
        g_optimizer: torch.optim.Optimizer,
        d_optimizer: torch.optim.Optimizer,
        *,
        epoch_length: int | None = None,
        seed: int = 0,
        amp: bool = False,
        amp_dtype: str = "float16",
        train_handlers: Sequence | None = None,
        non_blocking: bool = False,
    ):
        if amp_dtype not in AMP_DTYPES:
            raise ValueError(f"amp_dtype must be one of {sorted(AMP_DTYPES)}, got {amp_dtype!r}")
        # MONAI's own amp switch would build a CUDA-only GradScaler; this class manages autocast itself.
        super().__init__(
            device=torch.device(device),
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            handlers=train_handlers,
            amp=False,
            decollate=False,
        )
        self.generator = generator
        self.discriminator = discriminator
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        # MLFlowHandler logs the learning rate of `engine.optimizer`; the generator's is the one to watch.
        self.optimizer = g_optimizer
        self.seed = int(seed)
        self.use_amp = as_flag(amp, "amp")
        self.amp_dtype = AMP_DTYPES[amp_dtype]
        use_scaler = self.use_amp and self.amp_dtype == torch.float16 and self.state.device.type == "cuda"
        self.g_scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.d_scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.add_event_handler(Events.GET_BATCH_STARTED, self._seed_data_transforms)

    @property
    def rank(self) -> int:
        return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0

    # ----------------------------------------------------------------------------------- subclass hooks
    def prepare(self, batchdata: dict) -> dict[str, torch.Tensor]:
        """Move the tensors of a loader batch to the device (override to select or derive inputs)."""
        return {
            k: torch.as_tensor(v).to(self.state.device, non_blocking=self.non_blocking)
            for k, v in batchdata.items()
            if isinstance(v, torch.Tensor)
        }

    def generate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run the generator on a prepared batch; return its outputs by name."""
        raise NotImplementedError

    def discriminator_terms(self, batch: dict, fake: dict) -> dict[str, torch.Tensor]:
        """Named discriminator loss terms for ``fake`` (detached); must contain ``"d_total"``."""
        raise NotImplementedError

    def generator_terms(self, batch: dict, fake: dict) -> dict[str, torch.Tensor]:
        """Named generator loss terms; must contain ``"g_total"``."""
        raise NotImplementedError

    def sample_columns(self, batch: dict, fake: dict) -> list[tuple[str, torch.Tensor]]:
        """Columns of the per-epoch sample grid: ``(title, (B, 1, H, W) tensor in [-1, 1])``."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------------------- the loop
    def autocast(self):
        """Autocast context for forward passes (a no-op when amp is off)."""
        if not self.use_amp:
            return nullcontext()
        return torch.autocast(device_type=self.state.device.type, dtype=self.amp_dtype)

    def _seed_data_transforms(self, engine: AdversarialTrainer) -> None:
        transform = getattr(getattr(self.data_loader, "dataset", None), "transform", None)
        if hasattr(transform, "set_random_state"):
            transform.set_random_state(seed=self.iteration_seed(engine.state.iteration + 1) % 2**32)

    def iteration_seed(self, iteration: int) -> int:
        return (self.seed * 1_000_003 + self.rank * 7919 + iteration) % (2**63 - 1)

    def _iteration(self, engine: AdversarialTrainer, batchdata: dict) -> dict:
        torch.manual_seed(self.iteration_seed(engine.state.iteration))
        batch = self.prepare(batchdata)
        self.generator.train()
        self.discriminator.train()

        with self.autocast():
            fake = self.generate(batch)
        detached = {k: v.detach() for k, v in fake.items()}

        self.d_optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            d_terms = self.discriminator_terms(batch, detached)
        self._step(d_terms["d_total"], self.d_optimizer, self.d_scaler)

        self.g_optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            g_terms = self.generator_terms(batch, fake)
        self._step(g_terms["g_total"], self.g_optimizer, self.g_scaler)

        losses = {name: float(value.detach()) for name, value in {**d_terms, **g_terms}.items()}
        batch_size = next(iter(detached.values())).shape[0]
        return [{"loss": losses, **{k: v[i] for k, v in detached.items()}} for i in range(batch_size)]

    @staticmethod
    def _step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite loss {float(loss)}: lower the learning rate or switch amp off (amp_dtype=bfloat16 "
                "is more robust than float16)"
            )
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
