"""The shared adversarial trainer: loop, loss dict, sample grid, atomic checkpoints, exact resume."""

import json
import pickle

import pytest
import torch
from ignite.engine import Events
from torch.utils.data import DataLoader

from gan_core.engines.averaging import GeneratorAverage, averaged_copy
from gan_core.engines.gan_trainer import AdversarialTrainer
from gan_core.engines.handlers import AtomicCheckpointSaver, CheckpointResumer, SampleGridSaver
from gan_core.engines.sampling import ResumableSampler
from gan_core.errors import BundleInputError
from gan_core.figures import plt
from gan_core.models import load_checkpoint


class TinyGenerator(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))

    def forward(self, cond: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(torch.cat([cond, noise], 1)))


class TinyDiscriminator(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(2, 4, 3, stride=2), torch.nn.Dropout(0.3), torch.nn.Flatten(), torch.nn.LazyLinear(1)
        )

    def forward(self, image: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([image, cond], 1))


class TinyTrainer(AdversarialTrainer):
    """A conditional GAN on 8x8 images, enough to exercise every hook."""

    def generate(self, batch):
        return {"image": self.generator(batch["cond"], torch.randn_like(batch["cond"]))}

    def discriminator_terms(self, batch, fake):
        real = self.discriminator(batch["image"], batch["cond"])
        fake_logit = self.discriminator(fake["image"], batch["cond"])
        d_real = ((real - 1) ** 2).mean()
        d_fake = (fake_logit**2).mean()
        return {"d_real": d_real, "d_fake": d_fake, "d_total": d_real + d_fake}

    def generator_terms(self, batch, fake):
        g_adv = ((self.discriminator(fake["image"], batch["cond"]) - 1) ** 2).mean()
        return {"g_adv": g_adv, "g_total": g_adv}

    def sample_columns(self, batch, fake):
        return [("condition", batch["cond"]), ("generated", fake["image"]), ("real", batch["image"])]


class TinyDataset(torch.utils.data.Dataset):
    def __init__(self, n=12):
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 1, 8, 8, generator=g) * 2 - 1
        self.conds = torch.rand(n, 1, 8, 8, generator=g)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "cond": self.conds[i], "index": torch.tensor(i)}


def make_trainer(tmp_path, max_epochs=2, resume=False, every_n_iterations=None, amp=False, amp_dtype="float16"):
    torch.manual_seed(0)
    generator, discriminator = TinyGenerator(), TinyDiscriminator()
    discriminator(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))  # materialise the lazy layer
    g_opt = torch.optim.Adam(generator.parameters(), 1e-3, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(discriminator.parameters(), 1e-3, betas=(0.5, 0.999))
    dataset = TinyDataset()
    loader = DataLoader(dataset, batch_size=3, sampler=ResumableSampler(dataset, seed=1))
    trainer = TinyTrainer(
        "cpu", max_epochs, loader, generator, discriminator, g_opt, d_opt, seed=3, amp=amp, amp_dtype=amp_dtype
    )
    average = averaged_copy(generator)
    objects = {"generator": generator, "generator_ema": average, "discriminator": discriminator, "g_optimizer": g_opt,
               "d_optimizer": d_opt, "trainer": trainer}
    CheckpointResumer(str(tmp_path / "ckpt"), objects, enabled=resume).attach(trainer)
    GeneratorAverage(generator, average, half_life=2.0).attach(trainer)
    AtomicCheckpointSaver(str(tmp_path / "ckpt"), objects, every_n_iterations=every_n_iterations).attach(trainer)
    SampleGridSaver(str(tmp_path)).attach(trainer)
    record = []
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED,
        lambda e: record.append((e.state.iteration, tuple(e.state.batch["index"].tolist()), e.state.output[0]["loss"])),
    )
    return trainer, record


def test_loop_outputs_named_losses_grid_and_checkpoints(tmp_path):
    trainer, record = make_trainer(tmp_path)
    trainer.run()
    assert trainer.state.iteration == 8 and trainer.state.epoch == 2
    assert set(record[-1][2]) == {"d_real", "d_fake", "d_total", "g_adv", "g_total"}
    grid = plt.imread(tmp_path / "samples" / "epoch_0002.png")
    assert grid.ndim == 3 and grid.shape[0] > 100 and grid.std() > 0.05  # a figure of samples, not a blank
    ckpt = load_checkpoint(tmp_path / "ckpt" / "checkpoint_latest.pt")
    assert set(ckpt) == {"generator", "generator_ema", "discriminator", "g_optimizer", "d_optimizer", "trainer"}
    last, average = ckpt["generator"], ckpt["generator_ema"]
    assert all(torch.isfinite(average[k]).all() for k in average) and any((average[k] - last[k]).abs().max() > 1e-4
                                                                          for k in last)
    assert ckpt["trainer"]["iteration"] == 8
    # every epoch visits each sample once, in a different order
    epochs = [sorted(i for _, idx, _ in record[k * 4:(k + 1) * 4] for i in idx) for k in range(2)]
    assert epochs[0] == epochs[1] == list(range(12))
    assert record[0][1] != record[4][1]
    assert not list((tmp_path / "ckpt").glob(".*tmp*"))


def test_resume_mid_epoch_reproduces_the_uninterrupted_run(tmp_path):
    full, full_record = make_trainer(tmp_path / "full", max_epochs=3)
    full.run()

    # an interrupted run: stops after iteration 6 (mid-epoch 2) right after its checkpoint
    part, part_record = make_trainer(tmp_path / "part", max_epochs=3, every_n_iterations=1)
    part.add_event_handler(Events.ITERATION_COMPLETED, lambda e: e.terminate() if e.state.iteration == 6 else None)
    part.run()
    assert load_checkpoint(tmp_path / "part" / "ckpt" / "checkpoint_latest.pt")["trainer"]["iteration"] == 6

    resumed, resumed_record = make_trainer(tmp_path / "part", max_epochs=3, resume=True, every_n_iterations=1)
    resumed.run()
    assert [r[0] for r in resumed_record] == list(range(7, 13))
    for (it_a, idx_a, loss_a), (it_b, idx_b, loss_b) in zip(full_record[6:], resumed_record, strict=True):
        assert it_a == it_b and idx_a == idx_b
        assert loss_a == pytest.approx(loss_b, rel=1e-6, abs=1e-7)
    full_average = load_checkpoint(tmp_path / "full" / "ckpt" / "checkpoint_latest.pt")["generator_ema"]
    resumed_average = load_checkpoint(tmp_path / "part" / "ckpt" / "checkpoint_latest.pt")["generator_ema"]
    for key, value in full_average.items():  # the weight average resumes with the run
        torch.testing.assert_close(resumed_average[key], value, rtol=1e-6, atol=1e-7)


def test_amp_bfloat16_on_cpu_stays_close_to_fp32(tmp_path):
    fp32, rec32 = make_trainer(tmp_path / "a", max_epochs=1)
    fp32.run()
    bf16, rec16 = make_trainer(tmp_path / "b", max_epochs=1, amp=True, amp_dtype="bfloat16")
    bf16.run()
    for (_, _, a), (_, _, b) in zip(rec32, rec16, strict=True):
        assert all(torch.isfinite(torch.tensor(v)) for v in b.values())
        assert b["d_total"] == pytest.approx(a["d_total"], rel=0.05, abs=0.02)


class _Exploit:
    """Unpickling this runs code: it creates the file ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_crafted_pickle_checkpoint_is_refused_without_running_its_code(tmp_path, how):
    path, marker = tmp_path / "evil.pt", tmp_path / "code_ran"
    if how == "pickle":
        with open(path, "wb") as f:
            pickle.dump({"generator": _Exploit(marker)}, f)
    else:
        torch.save({"generator": _Exploit(marker)}, path)
    with pytest.raises(BundleInputError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated zip", b"just some text"])
def test_empty_truncated_or_foreign_files_are_user_errors(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(BundleInputError, match="empty|not a readable PyTorch checkpoint|refused") as err:
        load_checkpoint(path)
    assert err.value.path == str(path) and err.value.hint


def test_a_tensor_file_is_not_a_checkpoint(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(BundleInputError, match="holds a Tensor"):
        load_checkpoint(tmp_path / "tensor.pt")


def test_loss_history_survives_a_cut_line_and_keeps_the_latest_redo(tmp_path):
    from gan_core.engines.handlers import LossHistory, read_loss_history

    trainer, _ = make_trainer(tmp_path, max_epochs=1)
    LossHistory(str(tmp_path)).attach(trainer)
    trainer.run()
    history = read_loss_history(tmp_path / "losses.jsonl")
    assert [h["iteration"] for h in history] == [1, 2, 3, 4]
    curves = plt.imread(tmp_path / "loss_curves.png")
    assert curves.ndim == 3 and curves.std() > 0.02
    with open(tmp_path / "losses.jsonl", "a") as f:
        f.write('{"epoch": 1, "iteration": 4, "d_total": 9.0}\n{"epoch": 1, "itera')
    history = read_loss_history(tmp_path / "losses.jsonl")
    assert len(history) == 4 and history[-1]["d_total"] == 9.0
    # the next start removes the cut line, so what is appended after it stays valid JSON Lines
    LossHistory(str(tmp_path)).repair()
    with open(tmp_path / "losses.jsonl", "a") as f:
        f.write('{"epoch": 2, "iteration": 5, "d_total": 1.0}\n')
    lines = (tmp_path / "losses.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [1, 2, 3, 4, 4, 5]
