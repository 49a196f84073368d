"""Ignite handlers shared by the three trainers: sample grids, atomic checkpoints, resume."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar
from monai.handlers import from_engine

from gan_core.config import as_flag
from gan_core.errors import BundleInputError
from gan_core.figures import plt, save_figure, save_image_grid
from gan_core.fileio import atomic_torch_save
from gan_core.models import load_checkpoint, load_state_into, unwrap

logger = logging.getLogger(__name__)


def is_main_process() -> bool:
    """True unless this is a non-zero rank of an initialised process group."""
    return not (torch.distributed.is_initialized() and torch.distributed.get_rank() != 0)


class SampleGridSaver:
    """Each ``every_n_epochs``, save a PNG grid of the trainer's :meth:`sample_columns` on a fixed batch.

    The batch is the first training batch (its first ``num_samples`` items) and the noise is drawn from a
    fixed seed, so grids of successive epochs show the same inputs. Files: ``output_dir/samples/
    epoch_NNNN.png``; the path of the latest one is kept in ``engine.state.sample_grid``.
    """

    def __init__(self, output_dir: str, every_n_epochs: int = 1, num_samples: int = 4, seed: int = 12345):
        self.sample_dir = Path(output_dir) / "samples"
        self.every_n_epochs = every_n_epochs
        self.num_samples = num_samples
        self.seed = seed
        self.fixed_batch: dict | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_STARTED, self._keep_first_batch)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.every_n_epochs), self)

    def _keep_first_batch(self, engine: Engine) -> None:
        if self.fixed_batch is None:
            batch = engine.prepare(engine.state.batch)
            self.fixed_batch = {k: v[: self.num_samples].clone() for k, v in batch.items()}

    def __call__(self, engine: Engine) -> None:
        if self.fixed_batch is None:
            return
        # every rank runs the forward pass: a DDP generator synchronises buffers with the other ranks
        generator = engine.generator
        was_training = generator.training
        generator.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            fake = engine.generate(self.fixed_batch)
            columns = engine.sample_columns(self.fixed_batch, fake)
        generator.train(was_training)
        if not is_main_process():
            return
        path = self.sample_dir / f"epoch_{engine.state.epoch:04d}.png"
        save_image_grid(columns, path, title=f"epoch {engine.state.epoch}, iteration {engine.state.iteration}")
        engine.state.sample_grid = str(path)
        logger.info("sample grid written to %s", path)


class LossProgressBar:
    """Ignite's ProgressBar showing the named loss terms (config lists only call ``attach(engine)``)."""

    def __init__(self, persist: bool = True):
        self.bar = ProgressBar(persist=persist)

    def attach(self, engine: Engine) -> None:
        if is_main_process():
            self.bar.attach(engine, output_transform=from_engine(["loss"], first=True))


class LossHistory:
    """Append every iteration's loss terms to ``output_dir/losses.jsonl``; plot ``loss_curves.png`` per epoch.

    One JSON object per line: ``{"epoch", "iteration", <term>: value, ...}``, flushed each iteration so
    the history survives a crash (a resumed run appends after it, repeating iterations it redoes). A last line
    cut short by a crash or a full disk is removed when the run starts again, so the file stays JSON Lines.
    """

    def __init__(self, output_dir: str, plot_every_n_epochs: int = 1):
        self.path = Path(output_dir) / "losses.jsonl"
        self.plot_path = Path(output_dir) / "loss_curves.png"
        self.plot_every_n_epochs = plot_every_n_epochs

    def attach(self, engine: Engine) -> None:
        if is_main_process():
            engine.add_event_handler(Events.STARTED, self.repair)
            engine.add_event_handler(Events.ITERATION_COMPLETED, self.record)
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.plot_every_n_epochs), self.plot)

    def repair(self, engine: Engine | None = None) -> None:
        """Cut a last line that a crash left without its newline."""
        if not self.path.is_file():
            return
        with open(self.path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)
                logger.warning("%s: removed a last line cut short by an interrupted run", self.path)

    def record(self, engine: Engine) -> None:
        losses = from_engine(["loss"], first=True)(engine.state.output)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps({"epoch": engine.state.epoch, "iteration": engine.state.iteration, **losses}) + "\n")

    def plot(self, engine: Engine) -> None:
        history = read_loss_history(self.path)
        if not history:
            return
        terms = [k for k in history[-1] if k not in ("epoch", "iteration")]
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
        for ax, prefix in zip(axes, ("d_", "g_"), strict=True):
            for term in [t for t in terms if t.startswith(prefix)] or terms:
                ax.plot([h["iteration"] for h in history], [h[term] for h in history], label=term, lw=0.8)
            ax.set_xlabel("iteration")
            ax.set_title("discriminator" if prefix == "d_" else "generator")
            ax.legend(fontsize=7)
        fig.tight_layout()
        save_figure(fig, self.plot_path, dpi=80)


def read_loss_history(path: str | Path) -> list[dict]:
    """The loss history of a run, one dict per iteration; a redone iteration keeps its latest entry."""
    path = Path(path)
    if not path.exists():
        return []
    by_iteration = {}
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
            by_iteration[entry["iteration"]] = entry
    return [by_iteration[k] for k in sorted(by_iteration)]


class ShardLog:
    """Each epoch, every rank appends the dataset indices its sampler drew to ``output_dir/shards/rank<r>.jsonl``.

    For multi-process runs: shows that the ranks trained on disjoint shards of the data.
    """

    def __init__(self, output_dir: str):
        self.output_dir = Path(output_dir) / "shards"

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        sampler = engine.data_loader.sampler
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with open(self.output_dir / f"rank{rank}.jsonl", "a") as f:
            f.write(json.dumps({"epoch": engine.state.epoch, "indices": list(sampler.last_indices)}) + "\n")


def _state_of(obj) -> dict:
    if isinstance(obj, torch.nn.Module):
        return unwrap(obj).state_dict()
    return obj.state_dict()


class AtomicCheckpointSaver:
    """Save ``{name: obj.state_dict()}`` atomically (temporary file, fsync, rename) on rank 0.

    Writes ``checkpoint_latest.pt`` every ``every_n_iterations`` (if set) and at every epoch end, plus
    ``checkpoint_epoch=NNNN.pt`` every ``every_n_epochs``, keeping the last ``n_saved`` of those.
    ``save_dict`` usually holds generator, discriminator, both optimizers and the trainer itself (whose
    state is its epoch / iteration counters). Networks are saved without their DDP wrapper.
    """

    def __init__(
        self,
        save_dir: str,
        save_dict: dict,
        every_n_epochs: int = 1,
        every_n_iterations: int | None = None,
        n_saved: int = 2,
    ):
        self.save_dir = Path(save_dir)
        self.save_dict = save_dict
        self.every_n_epochs = every_n_epochs
        self.every_n_iterations = every_n_iterations
        self.n_saved = n_saved

    def attach(self, engine: Engine) -> None:
        if self.every_n_iterations:
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.every_n_iterations), self.save_latest)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.save_latest)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.every_n_epochs), self.save_epoch)

    def checkpoint(self) -> dict:
        return {name: _state_of(obj) for name, obj in self.save_dict.items()}

    def save_latest(self, engine: Engine) -> None:
        if is_main_process():
            atomic_torch_save(self.checkpoint(), self.save_dir / "checkpoint_latest.pt")

    def save_epoch(self, engine: Engine) -> None:
        if not is_main_process():
            return
        atomic_torch_save(self.checkpoint(), self.save_dir / f"checkpoint_epoch={engine.state.epoch:04d}.pt")
        epochs = sorted(self.save_dir.glob("checkpoint_epoch=*.pt"))
        for old in epochs[: max(0, len(epochs) - self.n_saved)]:
            old.unlink()


class CheckpointResumer:
    """At start, restore ``load_dict`` from ``ckpt_dir/checkpoint_latest.pt`` when ``enabled`` and it exists.

    Restores networks, optimizers and the trainer's counters; if the run stopped mid-epoch and the loader
    uses :class:`~gan_core.engines.sampling.ResumableSampler`, the batches already seen are skipped, so the
    run continues exactly where it stopped. Attach it first among the handlers.
    """

    def __init__(self, ckpt_dir: str, load_dict: dict, enabled: bool = True):
        self.path = Path(ckpt_dir) / "checkpoint_latest.pt"
        self.load_dict = load_dict
        self.enabled = as_flag(enabled, "resume")

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        if not self.enabled:
            return
        if not self.path.exists():
            logger.info("resume requested but %s does not exist yet: starting from scratch", self.path)
            return
        checkpoint = load_checkpoint(self.path)
        # the network record first: other settings give a clearer message than a weight-shape mismatch
        for name, obj in sorted(self.load_dict.items(), key=lambda item: item[0] != "network"):
            if name not in checkpoint:
                raise BundleInputError(f"checkpoint has no entry '{name}'", path=self.path, field=name,
                                       hint="resume only runs written by this version, or train into a new "
                                       "--output_dir")
            if isinstance(obj, torch.nn.Module):
                load_state_into(obj, checkpoint[name], self.path, name)
            elif isinstance(obj, Engine):
                max_epochs = obj.state.max_epochs  # the configured length wins over the checkpoint's
                obj.load_state_dict(checkpoint[name])
                obj.state.max_epochs = max_epochs
            else:
                try:
                    obj.load_state_dict(checkpoint[name])
                except (ValueError, KeyError, RuntimeError) as err:
                    if isinstance(err, BundleInputError):
                        raise
                    raise BundleInputError(f"checkpoint entry '{name}' does not fit ({err})", path=self.path,
                                           field=name, hint="resume with the settings of the interrupted run, or "
                                           "train into a new --output_dir") from err
        epoch_length = engine.state.epoch_length
        done_in_epoch = engine.state.iteration % epoch_length if epoch_length else 0
        sampler = getattr(getattr(engine, "data_loader", None), "sampler", None)
        if done_in_epoch and hasattr(sampler, "skip_next"):
            sampler.skip_next(done_in_epoch * engine.data_loader.batch_size)
        logger.info(
            "resumed from %s at epoch %d, iteration %d", self.path, engine.state.epoch, engine.state.iteration
        )

