"""The benchmark's side-by-side timer: runs interleaved, carries threaded, nothing skipped."""

import pathlib
import sys

import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts"))
import bench_peers as peers


class _LoggedRun:
    """Stands in for a jitted scanned run: `lower(...).compile()` gives a call that logs its
    name and carry, adds the batch to the carry and returns `steps` copies of the old carry
    as the losses."""

    def __init__(self, name, log, steps):
        self.name, self.log, self.steps = name, log, steps

    def lower(self, batch, carry):
        return self

    def compile(self):
        def call(batch, carry):
            self.log.append((self.name, float(carry)))
            return carry + batch, jnp.full((self.steps,), carry)
        return call


def test_interleaved_seconds_calls_each_run_in_turn_and_threads_its_carry():
    log, steps, rounds = [], 4, 3
    runs = {"a": (_LoggedRun("a", log, steps), jnp.float32(1), jnp.float32(0)),
            "b": (_LoggedRun("b", log, steps), jnp.float32(10), jnp.float32(5))}
    timed = peers.interleaved_seconds(runs, steps=steps, rounds=rounds)
    # One untimed call each, then rounds that call a, b, a, b, ...; every call sees the
    # carry its run's previous call returned.
    assert log == [("a", 0), ("b", 5), ("a", 1), ("b", 15), ("a", 2), ("b", 25),
                   ("a", 3), ("b", 35)]
    assert list(timed) == ["a", "b"]
    for name, initial in (("a", 0), ("b", 5)):
        seconds, compile_s, first_losses = timed[name]
        assert seconds > 0 and compile_s >= 0
        np.testing.assert_array_equal(first_losses, np.full(steps, initial))
