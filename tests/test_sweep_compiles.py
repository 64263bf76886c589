"""What a sweep compiles: one initialiser and one training program, shared by every rung of
successive halving and kept for later sweeps of the same program and shapes."""

import dataclasses

import chex
import jax
import pytest
from conftest import compiled_programs, prepared

from jaxnet.config import TrainConfig
from jaxnet.sweep import runs, sweep

pytestmark = pytest.mark.slow  # every test compiles and trains sweeps

# A small net on digits, quick to compile; 10 steps per epoch.
CONFIG = TrainConfig(hidden=(8,), epochs=4, batch_size=128, optimizer="momentum", dropout=0.0,
                     grad="autodiff")
SETTINGS = [{"lr": lr, "reg": reg} for lr in (3e-3, 0.05, 0.5) for reg in (0.0, 1e-2)]
INIT, TRAIN = "init_runs", "train_chunk"  # the compiled programs' names


@pytest.fixture(scope="module")
def digits():
    return prepared(CONFIG)


@pytest.fixture
def fresh_programs():
    """Nothing compiled before the test (neither by JAX nor kept by the sweep), nor kept
    after it (a test may build the programs from patched functions)."""
    jax.clear_caches()
    runs._programs.cache_clear()
    yield
    runs._programs.cache_clear()


def test_one_compilation_of_the_initialiser_and_of_the_training_program_for_all_rungs(
        digits, monkeypatch, fresh_programs):
    traces = {"init": 0, "epoch": 0}
    real_init, real_epoch = runs.model.init, runs.make_epoch

    def counted_init(*args, **kwargs):
        traces["init"] += 1
        return real_init(*args, **kwargs)

    def counted_make_epoch(*args, **kwargs):
        epoch = real_epoch(*args, **kwargs)

        def counted(*a):
            traces["epoch"] += 1
            return epoch(*a)
        return counted

    real_segment_fn = runs._segment_fn

    def segment_traced_once(*args, **kwargs):
        return chex.assert_max_traces(real_segment_fn(*args, **kwargs), n=1)

    monkeypatch.setattr(runs.model, "init", counted_init)
    monkeypatch.setattr(runs, "make_epoch", counted_make_epoch)
    monkeypatch.setattr(runs, "_segment_fn", segment_traced_once)
    chex.clear_trace_counter()
    calls = []
    # 6 runs in chunks of at most 2: rung 0 is 3 chunks of 2, rung 1 (3 runs) 2 chunks of 2.
    # The chunks hold other learning rates (and regs): values, not constants of the program.
    with compiled_programs() as compiled:
        result = sweep(CONFIG, digits, SETTINGS, chunk=2, group=None, halving=2, min_epochs=2,
                       on_chunk=lambda *a: calls.append(a))
    assert [len(r["settings"]) for r in result.rungs] == [6, 3]
    assert calls == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert traces == {"init": 1, "epoch": 1}
    assert (compiled.count(INIT), compiled.count(TRAIN)) == (1, 1), compiled


def test_halving_compiles_no_more_than_the_full_sweep_however_many_rungs(digits,
                                                                         fresh_programs):
    # Groups of 2: 3 groups in rung 0, 2 busy and 1 idle in rung 1, 1 busy in rung 2.
    with compiled_programs() as halving:
        result = sweep(CONFIG, digits, SETTINGS, group=2, halving=2, min_epochs=1)
    assert [r["epochs"] for r in result.rungs] == [1, 2, 4]
    assert halving.count(TRAIN) == 1, halving
    jax.clear_caches()
    runs._programs.cache_clear()
    with compiled_programs() as full:
        sweep(CONFIG, digits, SETTINGS, group=2)
    assert sorted(halving) == sorted(full)
    # The full sweep and halving over the same grid share their programs.
    with compiled_programs() as again:
        sweep(CONFIG, digits, SETTINGS, group=2, halving=3, min_epochs=2)
    assert again == []


def test_a_second_sweep_over_other_learning_rates_reuses_the_compiled_programs(digits):
    sweep(CONFIG, digits, [{"lr": 1e-3}, {"lr": 1e-2}], group=None)
    with compiled_programs() as compiled:
        sweep(CONFIG, digits, [{"lr": 3e-3}, {"lr": 3e-2}], group=None)
        # Nor do values no setting sweeps (as for `fit`: `fitting.program_config`).
        sweep(dataclasses.replace(CONFIG, momentum=0.5, weight_scale=0.1, seed=3), digits,
              [{"lr": 0.2}, {"lr": 0.3}], group=None)
    assert compiled == [], f"the second sweep compiled {compiled}"
