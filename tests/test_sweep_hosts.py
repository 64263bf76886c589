"""`jaxnet sweep` across processes: two processes on localhost (one CPU device each, their
collectives over Gloo) shard the runs over both and give the results of one process; only
process 0 writes the outputs. Successive halving is on, so the carries of the survivors
cross the processes too."""

from __future__ import annotations

import json

import pytest
from conftest import run_jaxnet, two_processes

pytestmark = pytest.mark.slow  # two jaxnet processes

# Momentum, not the default Adam: Adam rescales the round-off that the pre-batchnorm biases
# pick up (their gradient is exactly zero) into full-sized steps, and the two layouts (four
# runs in one vmap, or two per process) round differently (see tests/test_distributed.py).
SWEEP = ["sweep", "--dataset", "digits", "--hidden", "8", "--batch-size", "128",
         "--optimizer", "momentum", "--lr", "1e-3,1e-2,1e-1,0.5", "--dropout", "0.1",
         "--epochs", "2", "--halving", "2", "--min-epochs", "1", "--dtype", "float64",
         "--seed", "1", "--quiet"]


def _results(directory):
    return json.loads((directory / "results.json").read_text())


def _assert_same(actual, expected, where):
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys(), where
        for k in expected:
            _assert_same(actual[k], expected[k], f"{where}.{k}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _assert_same(a, e, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-10), where
    else:
        assert actual == expected, where


def test_two_processes_sweep_like_one(tmp_path):
    reference = tmp_path / "one"
    run_jaxnet([*SWEEP, "--out", reference], cwd=tmp_path)
    outs = [tmp_path / f"proc{i}" for i in range(2)]
    stdouts = two_processes(lambda i: [*SWEEP, "--out", outs[i]], tmp_path)
    assert {p.name for p in outs[0].iterdir()} >= {"results.json", "results.csv", "best.json",
                                                  "sweep.png", "rungs.png"}
    assert not outs[1].exists()  # process 1 writes nothing
    assert "outputs in" in stdouts[0] and "outputs in" not in stdouts[1]
    one, two = _results(reference), _results(outs[0])
    assert [len(r["settings"]) for r in one["rungs"]] == [4, 2]
    for key in ("criterion", "epochs_spent", "rungs", "settings", "runs"):
        _assert_same(two[key], one[key], key)
    _assert_same(json.loads((outs[0] / "best.json").read_text()),
                 json.loads((reference / "best.json").read_text()), "best")
