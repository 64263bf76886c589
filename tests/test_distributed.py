"""Data-parallel training across fake CPU devices and across processes (jax.distributed).

Every case runs JAX in subprocesses, each with its own device count set through
XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts (this pytest process
keeps its single device). The comparisons run in float64: the pre-batchnorm biases have an
exactly zero gradient, so they only pick up round-off, which Adam rescales to full-sized
steps; in float64 that noise stays below 1e-9 and everything else agrees to ~1e-12.
"""

from __future__ import annotations

import json
import pathlib

import chex
import numpy as np
import pytest
from conftest import (
    REPO,
    run_jaxnet,
    run_python,
    succeeded,
    two_processes,
)

from jaxnet.checkpoint import CHECKPOINT_FILE

pytestmark = pytest.mark.slow  # subprocesses: each case starts JAX processes

WORKER = pathlib.Path(__file__).with_name("_distributed_worker.py")
RTOL, ATOL = 1e-9, 1e-9  # float64 (see the module docstring)
# the reference run of the CLI tests: float64, small, dropout on so the masks matter
TRAIN = ["train", "--dataset", "digits", "--hidden", "32,32", "--dropout", "0.5",
         "--batch-size", "64", "--dtype", "float64", "--seed", "3", "--quiet"]


def _checkpoint(directory: pathlib.Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(directory / CHECKPOINT_FILE)


def _assert_checkpoints_agree(actual: dict, expected: dict):
    assert actual.keys() == expected.keys()
    ints = {k for k, v in expected.items() if v.dtype.kind != "f"}  # steps, counts, PRNG key
    for k in ints:
        np.testing.assert_array_equal(actual[k], expected[k], err_msg=k)
    chex.assert_trees_all_close({k: v for k, v in actual.items() if k not in ints},
                                {k: v for k, v in expected.items() if k not in ints},
                                rtol=RTOL, atol=ATOL)


def _metrics(directory: pathlib.Path) -> dict:
    return json.loads((directory / "metrics.json").read_text())


@pytest.fixture(scope="module")
def one_device_run(tmp_path_factory) -> pathlib.Path:
    """The reference: `jaxnet train` for 2 epochs on one device, in a 1-device process."""
    out = tmp_path_factory.mktemp("one_device") / "run"
    run_jaxnet([*TRAIN, "--epochs", "2", "--devices", "1", "--out", out], cwd=out.parent)
    return out


def _assert_same_run(directory: pathlib.Path, reference: pathlib.Path):
    """Same per-epoch losses and accuracies, and the same checkpoint, to float64 round-off."""
    for a, b in zip(_metrics(directory)["history"], _metrics(reference)["history"], strict=True):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-10), k
    _assert_checkpoints_agree(_checkpoint(directory), _checkpoint(reference))


# --------------------------------------------------------------------------- one host


@pytest.mark.parametrize("devices", [4, 8])
def test_sharded_epoch_matches_one_device(tmp_path, devices):
    out = tmp_path / "fit"
    succeeded(run_python([WORKER, "fit", out, "--devices", 1, devices], devices=devices,
                         cwd=REPO))
    facts = json.loads(out.with_suffix(".json").read_text())
    assert facts["visible"] == devices
    single, sharded = facts["runs"]["1"], facts["runs"][str(devices)]
    # the run really was split: one program per device, each on its own rows of the
    # minibatch, with gradients and batchnorm statistics summed by all-reduce
    assert sharded["num_devices"] == devices
    assert sharded["num_partitions"] == devices
    assert sharded["all_reduce"]
    assert sharded["per_device_batch"] and not sharded["global_batch"]
    assert sharded["outputs_replicated"] and sharded["state_replicated"]
    # same params, batchnorm statistics, optimizer state and loss as one device with the
    # same global batch; dropout is 0.5, so the masks do not depend on the device count
    with np.load(out.with_suffix(".npz")) as npz:
        arrays = dict(npz)
    expected = {k[2:]: v for k, v in arrays.items() if k.startswith("1/")}
    actual = {k[len(f"{devices}/"):]: v for k, v in arrays.items() if k.startswith(f"{devices}/")}
    assert actual.keys() == expected.keys() and expected
    chex.assert_trees_all_close(actual, expected, rtol=RTOL, atol=ATOL)
    assert sharded["loss"] == pytest.approx(single["loss"], rel=1e-12)


def test_checkpoint_from_four_devices_resumes_on_one(tmp_path, one_device_run):
    four = tmp_path / "four"
    run_jaxnet([*TRAIN, "--devices", "4", "--epochs", "1", "--out", four], devices=4, cwd=tmp_path)
    assert _metrics(four)["devices"] == 4
    run_jaxnet(["train", "--resume", four, "--epochs", "2", "--quiet"], cwd=tmp_path)
    metrics = _metrics(four)
    assert metrics["devices"] == 1 and metrics["epochs_run"] == 2
    _assert_same_run(four, one_device_run)


def test_invalid_device_flags_fail_with_one_line(tmp_path):
    cases = {
        "batch": ([*TRAIN, "--devices", "3", "--batch-size", "64"],
                  ["does not divide evenly across 3 devices", "--batch-size 63 or 66"]),
        "process_id": ([*TRAIN, "--coordinator", "127.0.0.1:1", "--num-processes", "2",
                        "--process-id", "2"], ["--process-id 2 must be in [0, 2)"]),
        "partial": ([*TRAIN, "--coordinator", "127.0.0.1:1"],
                    ["need all of", "missing --num-processes, --process-id"]),
        "partial2": ([*TRAIN, "--num-processes", "2", "--process-id", "0"],
                     ["need all of", "missing --coordinator"]),
        "coordinator": ([*TRAIN, "--coordinator", "localhost", "--num-processes", "2",
                         "--process-id", "0"], ["HOST:PORT"]),
        "too_many": ([*TRAIN, "--devices", "5"],
                     ["--devices 5 asks for more devices than the 4 visible",
                      "--devices 4 or fewer"]),
    }
    argvs = [[*map(str, argv), "--out", str(tmp_path / name)] for name, (argv, _) in cases.items()]
    out = tmp_path / "cli"
    succeeded(run_python([WORKER, "cli", out, "--argvs", json.dumps(argvs)], devices=4,
                         cwd=tmp_path))
    reports = json.loads(out.with_suffix(".json").read_text())
    for (name, (_, needles)), report in zip(cases.items(), reports, strict=True):
        err = report["stderr"].strip()
        assert report["rc"] == 2, (name, report)
        assert err.startswith("error: ") and "\n" not in err, (name, err)
        for needle in needles:
            assert needle in err, (name, err)
        assert not (tmp_path / name).exists(), name  # failed before writing anything
    # the real command exits non-zero too (main's status becomes the exit status)
    proc = run_python(["-m", "jaxnet", *TRAIN, "--devices", "2", "--out", tmp_path / "x"],
                      cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "asks for more devices than the 1 visible" in proc.stderr


# --------------------------------------------------------------------------- two processes


def test_two_processes_match_one(tmp_path, one_device_run):
    outs = [tmp_path / f"proc{i}" for i in range(2)]
    stdouts = two_processes(lambda i: [*TRAIN, "--epochs", "1", "--out", outs[i]], tmp_path)
    # process 0 writes metrics, curves and the checkpoint; process 1 writes nothing
    assert {p.name for p in outs[0].iterdir()} >= {CHECKPOINT_FILE, "metrics.json", "curves.png"}
    assert not outs[1].exists()
    # (Gloo prints its connections on stdout; the summary line is jaxnet's)
    assert "outputs in" in stdouts[0] and "outputs in" not in stdouts[1]
    assert _metrics(outs[0])["devices"] == 2
    # both processes read the checkpoint (a shared folder here) and continue
    two_processes(lambda i: ["train", "--resume", outs[0], "--epochs", "2", "--quiet"], tmp_path)
    assert not outs[1].exists()
    metrics = _metrics(outs[0])
    assert metrics["devices"] == 2 and metrics["epochs_run"] == 2
    # the same as one process on one device with the same global batch
    _assert_same_run(outs[0], one_device_run)
