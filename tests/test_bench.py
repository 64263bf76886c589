"""The benchmark's command line: `--batches` times only the batch sizes asked for, in the
parts that have batch sizes, and is refused where it has nothing to choose; importing it
switches no process-wide flag."""

import json
import pathlib
import subprocess
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts"))
import bench


@pytest.mark.parametrize("quick", [False, True])
def test_combos_for_some_batches_are_the_full_lists_rows_at_those_batches(quick):
    combos, peer_combos = bench._combos(quick)
    some, some_peers = bench._combos(quick, (50, 4096))
    assert some == [c for c in combos if c[0] in (50, 4096)]
    assert some_peers == [c for c in peer_combos if c[0] in (50, 4096)]
    assert {c[0] for c in some} == {50, 4096}


@pytest.mark.slow
def test_batches_writes_rows_of_those_batches_only(tmp_path):
    out = tmp_path / "rows.json"
    bench.main(["--quick", "--only", "gemm", "--batches", "50", "--out", str(out)])
    rows = [r for r in json.loads(out.read_text()) if r["impl"] != "meta"]
    assert [(r["impl"], r["batch"]) for r in rows] == [("gemm-bound", 50)]


@pytest.mark.parametrize("only, value, message", [
    ("gemm", "64", "no rows for batch 64; choose from 50, 256, 4096"),
    ("gemm", "50,x", "'50,x' is not a comma list of whole numbers"),
    ("sweep,e2e", "50", "the parts run (e2e, sweep) have no batch sizes to choose"),
])
def test_batches_refuses_what_it_cannot_time(only, value, message, capsys, tmp_path):
    out = tmp_path / "rows.json"
    with pytest.raises(SystemExit):
        bench.main(["--only", only, "--batches", value, "--out", str(out)])
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_importing_the_bench_leaves_64_bit_jax_off():
    # Only the float64 sweep rows switch x64 on, for themselves; a fresh process shows the
    # process-wide flag as the import left it (this process's fixtures set it per test).
    scripts = pathlib.Path(bench.__file__).parent
    code = (f"import sys; sys.path.insert(0, {str(scripts)!r}); import bench, jax; "
            "print(jax.config.jax_enable_x64)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_latency_table_shows_each_command_over_scikit_learns_script_and_its_target():
    def row(task, command, dataset, cache, best, impl="jaxnet"):
        return {"impl": impl, "work": "latency", "task": task, "command": command,
                "dataset": dataset, "cache": cache, "best_s": best}
    rows = [{"impl": "meta", "work": "meta"}, row("version", "jaxnet --version", None, None, 0.21),
            row("train", "jaxnet train", "digits", "cold", 6.0),
            row("train", "jaxnet train", "digits", "warm", 2.0),
            row("sklearn", "scikit-learn script", "digits", None, 4.0, impl="sklearn"),
            row("train", "jaxnet train", "iris-csv", "warm", 3.0)]  # no sklearn row: no ratio
    assert bench.latency_table(rows).splitlines() == [
        "| command | data | cache | seconds (best) | / scikit-learn | target |",
        "|---|---|---|---|---|---|",
        "| jaxnet --version |  |  | 0.21 |  | <= 0.6 s |",
        "| jaxnet train | digits | cold | 6.00 | 1.50x | <= 2.0x |",
        "| jaxnet train | digits | warm | 2.00 | 0.50x | <= 1.0x |",
        "| scikit-learn script | digits |  | 4.00 | 1.00x |  |",
        "| jaxnet train | iris-csv | warm | 3.00 |  | <= 1.5x |"]
    assert bench.latency_table(rows[:1]) == ""


def test_latency_rows_of_another_checkout_show_their_ratio_and_no_target():
    rows = [{"impl": "jaxnet", "work": "latency", "task": "train", "dataset": "digits",
             "cache": "warm", "best_s": b, "command": c, "checkout": k}
            for c, b, k in (("jaxnet train (before)", 6.0, "before"), ("jaxnet train", 2.0, None))]
    rows.append({"impl": "sklearn", "work": "latency", "task": "sklearn", "dataset": "digits",
                 "cache": None, "best_s": 2.0, "command": "scikit-learn script"})
    assert bench.latency_table(rows).splitlines()[2:4] == [
        "| jaxnet train (before) | digits | warm | 6.00 | 3.00x |  |",
        "| jaxnet train | digits | warm | 2.00 | 1.00x | <= 1.0x |"]
