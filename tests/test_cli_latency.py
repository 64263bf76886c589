"""What answers at once: `import jaxnet`, `jaxnet --version`, `--help`, each command's `--help`
and a mistyped flag import none of JAX, scikit-learn, matplotlib, pandas, SciPy or Optax
(checked in a fresh process's `sys.modules`, not timed); the package's names load on first
use; bare `jaxnet` prints the usage and exits 2."""

import ast
import json
import pathlib

import pytest
from conftest import run_python

import jaxnet
from jaxnet.cli import main

HEAVY = ("jax", "jaxlib", "sklearn", "matplotlib", "pandas", "scipy", "optax")
COMMAND_LINES = [["--version"], ["--help"], *([c, "--help"] for c in (
    "train", "sweep", "predict", "evaluate", "export", "gradcheck")),
    ["train", "--lr", "fast"], ["sweep", "--halving"], ["predict"], ["tran"]]

# Runs each command line in this one fresh process and prints, per line, its exit status
# and the heavy modules imported by then (they only accumulate, so the first line that
# imports one is the one named).
_CHILD = """
import contextlib, io, json, sys
from jaxnet.cli import main
heavy, rows = {heavy!r}, []
for argv in {lines!r}:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_info:
            code = exit_info.code
    rows.append([argv, code, [m for m in heavy if m in sys.modules], err.getvalue()])
print(json.dumps(rows))
"""


@pytest.mark.slow
def test_help_version_and_argument_errors_import_nothing_heavy():
    proc = run_python(["-c", _CHILD.format(heavy=HEAVY, lines=COMMAND_LINES)])
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [argv for argv, *_ in rows] == COMMAND_LINES
    for argv, code, heavy, err in rows:
        assert heavy == [], f"jaxnet {' '.join(argv)} imported {heavy}"
        if argv[-1] in ("--help", "--version"):
            assert code == 0, (argv, err)
        else:  # a mistake in the command line: one line, exit 2
            assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, (argv, err)


@pytest.mark.slow
def test_import_jaxnet_imports_nothing_heavy():
    code = f"import sys, jaxnet, jaxnet.config; print([m for m in {HEAVY!r} if m in sys.modules])"
    proc = run_python(["-c", code])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_bare_jaxnet_prints_the_usage_and_exits_2(capsys):
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    usage, error = err.strip().split("\n", 1)[0], err.strip().splitlines()[-1]
    assert usage.startswith("usage: jaxnet ") and "{train,sweep," in err
    assert error.startswith("error: jaxnet: choose a command") and "jaxnet train" in error


def _type_checking_imports() -> dict[str, str]:
    """The names imported under `if TYPE_CHECKING:` in jaxnet/__init__.py -> their module."""
    tree = ast.parse(pathlib.Path(jaxnet.__file__).read_text())
    block = next(node for node in tree.body if isinstance(node, ast.If)
                 and getattr(node.test, "id", None) == "TYPE_CHECKING")
    names = {}
    for node in block.body:
        for alias in node.names:
            names[alias.asname or alias.name] = (
                f"{node.module}.{alias.name}" if node.module == "jaxnet" else node.module)
    return names


def test_every_public_name_loads_and_type_checkers_see_the_same_names():
    assert _type_checking_imports() == jaxnet._EXPORTS
    assert set(jaxnet.__all__) == {  # jaxnet 0.2.0's names, eagerly imported then (and
        # export_onnx, EnsembleModel and fit_ensemble, new)
        "EnsembleModel", "fit_ensemble", "layers", "TrainConfig", "Dataset", "load_dataset", "JaxnetError", "MLPClassifier",
        "export_torch", "export_onnx", "TrainResult", "fit", "GradcheckReport", "check_layer", "gradcheck",
        "gradcheck_network", "apply", "init", "loss", "manual_value_and_grad", "TrainedModel",
        "load", "SweepResult", "make_settings", "sweep", "train_seeds", "TrainState",
        "make_train_step"}
    assert set(jaxnet.__all__) <= set(dir(jaxnet))
    for name in jaxnet.__all__:
        value = getattr(jaxnet, name)
        assert value is not None, name
    from jaxnet import TrainConfig, fit, layers  # the usual spellings still work
    from jaxnet.fitting import fit as fitting_fit
    assert fit is fitting_fit and TrainConfig is jaxnet.config.TrainConfig
    assert layers.__name__ == "jaxnet.layers"
    with pytest.raises(AttributeError, match="no attribute 'fitt'"):
        jaxnet.fitt  # noqa: B018


def test_jaxnet_sweep_is_the_function_although_the_subpackage_shares_its_name():
    import jaxnet.sweep.settings  # binds the subpackage to `jaxnet.sweep` as it loads
    from jaxnet.sweep import sweep

    assert jaxnet.sweep is sweep and callable(jaxnet.sweep)


def test_the_process_command_leaves_its_heap_uncollected_to_the_exit(monkeypatch, capsys):
    import gc

    gc.unfreeze()
    try:
        with pytest.raises(SystemExit):  # called from Python: the caller's heap is its own
            main(["--version"])
        assert gc.get_freeze_count() == 0
        monkeypatch.setattr("sys.argv", ["jaxnet", "--version"])
        with pytest.raises(SystemExit) as exit_info:  # the process's command
            main()
        assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("jaxnet ")
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
