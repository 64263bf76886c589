"""Several epochs per compiled call (`train.make_epochs`) on small data give what one epoch
per call gives, in float64: the rows, the best epoch and parameters, early stopping,
divergence (in the epoch and in the evaluation), checkpoints and resume."""

import dataclasses
import json

import chex
import numpy as np
import pytest

from jaxnet import checkpoint as ckpt
from jaxnet import fitting, train
from jaxnet.config import TrainConfig
from jaxnet.data.split import split_arrays

pytestmark = [pytest.mark.x64, pytest.mark.slow]

# 72 training rows in batches of 16: 5 steps an epoch, small enough to run in chunks.
BASE = TrainConfig(dataset="random", hidden=(8,), batch_size=16, dtype="float64",
                   standardize=False, dropout=0.1)
PATIENCE = dataclasses.replace(BASE, epochs=None, max_epochs=60, patience=3, lr=3e-3)
# The L2 term multiplies the weights by -999 a step: the loss overflows in epoch 11.
DIVERGES = dataclasses.replace(BASE, epochs=40, optimizer="sgd", lr=1e-2, reg=1e5, dropout=0.2)
NO_VAL = dataclasses.replace(PATIENCE, patience=None, max_epochs=30)


def _data(val=0.2, outlier=None):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 5))
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0)
    data = split_arrays("t", "t", x, y, val_fraction=val, test_fraction=0.2, seed=0,
                        dtype=np.float64)
    if outlier is not None:  # a test row far out: its logits overflow before the loss does
        x_test = data.x_test.copy()
        x_test[0] = outlier
        data = dataclasses.replace(data, x_test=x_test)
    return data


def _fit(config, data, out, *, chunked, **kwargs):
    with pytest.MonkeyPatch.context() as m:
        if not chunked:
            m.setattr(train, "epochs_per_call", lambda *args: 1)
        else:
            assert train.epochs_per_call(config, (5, 8, 3), 72) > 1
        return fitting.fit(config, data, out_dir=out, **kwargs)


CASES = {"patience": (PATIENCE, {}), "no val": (NO_VAL, {"val": 0.0}),
         "divergence": (DIVERGES, {}), "evaluation": (DIVERGES, {"outlier": 1e100})}


@pytest.fixture(scope="module")
def per_epoch(tmp_path_factory):
    """{case: (result, its reports, its folder)} of one epoch per call, run on first use."""
    runs = {}

    def run(case):
        if case not in runs:
            config, data = CASES[case]
            out, reports = tmp_path_factory.mktemp("per_epoch"), []
            runs[case] = (_fit(config, _data(**data), out, chunked=False,
                               on_epoch=reports.append), reports, out)
        return runs[case]

    return run


def _assert_same(got, want, got_out, want_out):
    assert got.history == want.history
    assert got.message == want.message and got.diverged == want.diverged
    assert {k: v for k, v in got.metrics.items() if k not in ("wall_seconds", "examples_per_second")} \
        == {k: v for k, v in want.metrics.items() if k not in ("wall_seconds", "examples_per_second")}
    chex.assert_trees_all_equal(got.final, want.final)  # params, optimizer state, step, key
    chex.assert_trees_all_equal((got.params, got.bn_state), (want.params, want.bn_state))
    # The checkpoints hold the same epoch, state, best parameters and record.
    assert _checkpoint(got_out) == _checkpoint(want_out)


def _checkpoint(out):
    """A checkpoint file's header (names, dtypes, shapes, metadata, the arrays' SHA-256)
    and its arrays' bytes."""
    raw = (out / ckpt.CHECKPOINT_FILE).read_bytes()
    size = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + size]), raw[8 + size:]


@pytest.mark.parametrize("case", list(CASES))
def test_chunks_of_epochs_equal_one_epoch_per_call(case, tmp_path, per_epoch):
    want, want_reports, want_out = per_epoch(case)
    config, data = CASES[case]
    reports = []
    got = _fit(config, _data(**data), tmp_path, chunked=True, on_epoch=reports.append)
    _assert_same(got, want, tmp_path, want_out)
    assert ([{k: v for k, v in r.items() if k != "seconds"} for r in reports]
            == [{k: v for k, v in r.items() if k != "seconds"} for r in want_reports])
    # What each case is about happened, past the first call (one epoch) of the run.
    history, message = got.history, got.message or ""
    expected = {"patience": "early stopping after epoch", "no val": "",
                "divergence": "training diverged: the loss became inf",
                "evaluation": "training diverged: the evaluation loss became non-finite"}[case]
    assert message.startswith(expected) and len(history) > 3, (len(history), message)


class _Stop(Exception):
    pass


def test_a_chunked_run_cut_and_resumed_equals_one_epoch_per_call(tmp_path, per_epoch):
    want, _, want_out = per_epoch("patience")

    def stop_at_4(report):
        if report["epoch"] == 4:
            raise _Stop

    with pytest.raises(_Stop):
        _fit(PATIENCE, _data(), tmp_path, chunked=True, on_epoch=stop_at_4)
    saved = ckpt.load_metadata(tmp_path)["epoch"]
    assert saved >= 4  # the checkpoint is written after each call, before its reports
    assert len(want.history) > saved, "the cut must fall before the run's end"
    got = _fit(PATIENCE, _data(), tmp_path, chunked=True, resume=True)
    _assert_same(got, want, tmp_path, want_out)
