"""`jaxnet.preload`: a module imported early in a background thread, its errors kept for the
import that needs it."""

import importlib
import sys
import threading

import pytest

from jaxnet.preload import preload


def _join(module):
    for thread in threading.enumerate():
        if thread.name == f"jaxnet-preload-{module}":
            thread.join(timeout=60)


@pytest.fixture
def modules(tmp_path, monkeypatch):
    (tmp_path / "jaxnet_preload_ok.py").write_text("VALUE = 42\n")
    (tmp_path / "jaxnet_preload_bad.py").write_text("raise ValueError('broken on import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("jaxnet_preload_ok", "jaxnet_preload_bad"):
        sys.modules.pop(name, None)


def test_preload_imports_the_module_in_a_background_thread(modules):
    assert "jaxnet_preload_ok" not in sys.modules
    preload("jaxnet_preload_ok")
    _join("jaxnet_preload_ok")
    assert sys.modules["jaxnet_preload_ok"].VALUE == 42


def test_a_failed_preload_raises_at_the_import_that_needs_the_module(modules):
    preload("jaxnet_preload_bad")
    _join("jaxnet_preload_bad")
    assert "jaxnet_preload_bad" not in sys.modules
    with pytest.raises(ValueError, match="broken on import"):
        importlib.import_module("jaxnet_preload_bad")
