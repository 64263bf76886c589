"""One divergence rule (`train.is_finite`) for `fit`, `train_seeds` and `sweep`, and one way
of reporting a diverged run: the flag set, its losses and accuracies None."""

import dataclasses

import numpy as np
import pytest

from jaxnet import fitting
from jaxnet.cli.train import summary_line
from jaxnet.config import TrainConfig
from jaxnet.sweep import sweep, train_seeds

pytestmark = pytest.mark.slow  # fits, seeds and sweeps

# Adam with an L2 strength of 1e30: the first update squares a ~1e28 gradient into Adam's
# second moment, which overflows float32, while the weights barely move (the update is
# m / sqrt(inf) = 0). The losses and every reported number stay finite; only the optimizer
# state breaks the rule. Full batch (one step per epoch) and one epoch: the blow-up is in
# the run's last update, and the best-by-validation parameters look fine.
LAST_UPDATE = TrainConfig(hidden=(8,), epochs=1, batch_size=2000, optimizer="adam", reg=1e30,
                          dropout=0.0)
NUMBERS = ["final_loss", *(f"{split}_{what}" for split in ("train", "val", "test")
                           for what in ("loss", "accuracy"))]


@pytest.fixture(scope="module")
def raw_digits():
    return fitting.load_data(LAST_UPDATE)


@pytest.mark.parametrize("config", [
    LAST_UPDATE,
    dataclasses.replace(LAST_UPDATE, epochs=2, batch_size=64),  # breaks at step 1 of 40
], ids=["last-update", "first-update"])
def test_fit_train_seeds_and_sweep_agree_on_a_run_that_breaks_the_rule(raw_digits, config):
    fitted = fitting.fit(config, raw_digits)
    assert fitted.diverged and fitted.metrics["diverged"] is True
    assert "optimizer state became non-finite at step" in fitted.message, fitted.message
    assert all(fitted.metrics[k] is None for k in NUMBERS), fitted.metrics
    assert summary_line({**fitted.metrics, "wall_seconds": 1.0}, "out").startswith(
        "no accuracy | 0 epochs (best 0) | diverged | ")

    data = fitting.prepare(config, raw_digits)[0]
    swept = sweep(config, data, [{"reg": config.reg}, {"reg": 1e-4}])
    bad, good = swept.runs
    # Only the state check can have caught it: the losses stayed finite.
    assert np.all(np.isfinite(swept.loss_curves[0]))
    assert bad["diverged"] is True and all(bad[k] is None for k in NUMBERS), bad
    assert swept.settings[0]["diverged"] and swept.settings[0]["val_accuracy"] is None
    assert not good["diverged"] and swept.best["reg"] == 1e-4

    seeds = train_seeds(config, data, 2)
    assert seeds["diverged"] is True
    for name in ("train_accuracy", "val_accuracy", "test_accuracy", "final_loss"):
        assert seeds[f"{name}_per_seed"] == [None, None]
        assert seeds[f"{name}_mean"] is None and seeds[f"{name}_std"] is None

