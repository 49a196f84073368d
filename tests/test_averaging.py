"""The moving average of the generator's weights: the decay schedule and the update, by hand."""

import math

import pytest
import torch
from ignite.engine import Engine

from gan_core.engines.averaging import GeneratorAverage, average_beta, averaged_copy
from gan_core.models import NetworkRecord, read_model


def test_average_beta_halves_an_iterations_weight_every_half_life():
    assert average_beta(10_000, 100, 0.05) == pytest.approx(0.5 ** (1 / 100))
    assert average_beta(20, 100, 0.05) == pytest.approx(0.5 ** (1 / 1.0))  # ramp: min(100, 0.05 x 20) = 1
    assert average_beta(1, 100, None) == pytest.approx(0.5 ** (1 / 100))
    assert average_beta(5, 0, 0.05) == 0.0  # half-life 0: the average is the last state
    with pytest.raises(ValueError, match="half_life"):
        GeneratorAverage(torch.nn.Linear(1, 1), torch.nn.Linear(1, 1), half_life=-1)


def test_generator_average_updates_parameters_and_copies_buffers():
    net = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    average = averaged_copy(net)
    assert not average.training and not any(p.requires_grad for p in average.parameters())
    handler = GeneratorAverage(net, average, half_life=1.0, rampup=None)  # beta = 0.5 at every step

    def step(engine, _):  # the "training" sets the weight to the iteration number and moves the BN statistics
        with torch.no_grad():
            net[0].weight.fill_(float(engine.state.iteration))
            net[1].running_mean.fill_(10.0 * engine.state.iteration)

    engine = Engine(step)
    handler.attach(engine)
    engine.run([0, 0, 0], max_epochs=1)
    expected = 1.0  # 0.5 * avg + 0.5 * w for w = 1, 2, 3, from 1
    for w in (1.0, 2.0, 3.0):
        expected = 0.5 * expected + 0.5 * w
    assert average[0].weight.item() == pytest.approx(expected) and not math.isclose(expected, 3.0)
    assert average[1].running_mean.item() == 30.0  # buffers: the last state's


def test_read_model_prefers_the_average(tmp_path, toy_bundle):
    record = NetworkRecord({"builder": "scripts.networks.TinyGenerator", "latent": 3})
    generator = record.build()
    average = averaged_copy(generator)
    with torch.no_grad():
        for p in average.parameters():
            p.add_(1.0)
    path = tmp_path / "checkpoint.pt"
    torch.save({"network": record.state_dict(), "generator": generator.state_dict(),
                "generator_ema": average.state_dict()}, path)
    model = read_model(path)
    key = next(iter(model.state))
    torch.testing.assert_close(model.state[key], average.state_dict()[key])
