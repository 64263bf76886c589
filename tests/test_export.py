"""jaxnet.export and `jaxnet export`: names, header, file handling, and equal logits in PyTorch."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors import safe_open

import jaxnet
from jaxnet import export, predict
from jaxnet.cli import main
from jaxnet.config import TrainConfig
from jaxnet.preprocess import Preprocessing

pytestmark = pytest.mark.slow  # every test exports a fitted run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A short digits run with two hidden layers, saved as `jaxnet train` saves it."""
    out = tmp_path_factory.mktemp("run")
    jaxnet.fit(TrainConfig(hidden=(32, 16), epochs=2), out_dir=out)
    return out


@pytest.fixture(scope="module")
def model(run_dir):
    return predict.load(run_dir)


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    return export.export_torch(run_dir, tmp_path_factory.mktemp("export") / "net.safetensors")


def test_state_dict_names_follow_the_documented_indices(model):
    tensors = export.to_torch_state_dict(model)
    hidden = [(0, 1), (4, 5)]  # (Linear, BatchNorm1d) module indices of the two hidden layers
    expected = {f"{i}.{name}" for i, _ in hidden for name in ("weight", "bias")}
    expected |= {f"{j}.{name}" for _, j in hidden for name in (
        "weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    expected |= {"8.weight", "8.bias"}
    assert set(tensors) == expected
    for layer, stats, (i, j) in zip(model.params, model.bn_state, hidden, strict=False):
        np.testing.assert_array_equal(tensors[f"{i}.weight"], layer["w"])  # (out, in) as is
        np.testing.assert_array_equal(tensors[f"{i}.bias"], layer["b"])
        np.testing.assert_array_equal(tensors[f"{j}.weight"], layer["gamma"])
        np.testing.assert_array_equal(tensors[f"{j}.bias"], layer["beta"])
        np.testing.assert_array_equal(tensors[f"{j}.running_mean"], stats["mean"])
        np.testing.assert_array_equal(tensors[f"{j}.running_var"], stats["var"])
        assert tensors[f"{j}.num_batches_tracked"].dtype == np.int64
        assert tensors[f"{j}.num_batches_tracked"].shape == ()
    np.testing.assert_array_equal(tensors["8.weight"], model.params[-1]["w"])
    assert tensors["8.weight"].shape == (10, 16)
    assert all(t.dtype == np.float32 for name, t in tensors.items() if "num_batches" not in name)


def test_header_holds_architecture_preprocessing_and_classes(model, exported):
    head = export.load_header(exported)
    assert [m["module"] for m in head["architecture"]] == [
        "Linear", "BatchNorm1d", "ReLU", "Dropout"] * 2 + ["Linear"]
    norm = head["architecture"][1]
    assert norm == {"module": "BatchNorm1d", "num_features": 32, "eps": model.config.bn_eps,
                    "momentum": 0.1}
    assert head["architecture"][3] == {"module": "Dropout", "p": model.config.dropout}
    assert head["architecture"][-1] == {"module": "Linear", "in_features": 16, "out_features": 10}
    prep = head["preprocessing"]
    assert prep["standardize"] is True
    assert prep["feature_names"] is None  # trained on digits' unnamed pixels
    names = tuple(f"px{i}" for i in range(64))
    named = dataclasses.replace(model, preprocessing=dataclasses.replace(
        model.preprocessing, feature_names=names))
    assert json.loads(export.header(named)["preprocessing"])["feature_names"] == list(names)
    np.testing.assert_array_equal(prep["mean"], model.preprocessing.mean)  # float64, exactly
    np.testing.assert_array_equal(prep["scale"], model.preprocessing.scale)
    assert head["classes"] == list(range(10))
    assert head["dtype"] == "float32"
    assert TrainConfig.from_dict(head["config"]) == model.config
    with safe_open(exported, framework="numpy") as file:  # every header value is a string
        assert all(isinstance(v, str) for v in file.metadata().values())


def test_refuses_to_overwrite_unless_asked(run_dir, exported):
    before = exported.read_bytes()
    with pytest.raises(FileExistsError, match="set overwrite to replace it"):
        export.export_torch(run_dir, exported)
    assert exported.read_bytes() == before
    exported.write_bytes(b"stale")
    export.export_torch(run_dir, exported, overwrite=True)
    assert export.load_header(exported)["architecture"][0]["module"] == "Linear"
    assert not list(exported.parent.glob(".*.tmp"))  # the atomic write left no temp file


def test_load_header_refuses_other_files(run_dir, tmp_path):
    with pytest.raises(jaxnet.JaxnetError, match="not a jaxnet PyTorch export"):
        export.load_header(run_dir / "checkpoint.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(jaxnet.JaxnetError, match="not a safetensors file"):
        export.load_header(tmp_path / "junk.safetensors")


def test_cli_export(run_dir, tmp_path, capsys):
    out = tmp_path / "net.safetensors"
    assert main(["export", str(run_dir), str(out)]) == 0
    assert "nn.Sequential of 9 modules" in capsys.readouterr().out
    assert main(["export", str(run_dir), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(run_dir), str(out), "--overwrite"]) == 0
    assert main(["export", str(run_dir), str(tmp_path / "net.pt")]) == 2
    assert ".safetensors" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing"), str(tmp_path / "x.safetensors")]) == 2


def _torch_sequential(path):
    """What a PyTorch user writes: the Sequential from the header, weights loaded strictly."""
    torch = pytest.importorskip("torch")
    import safetensors.torch

    with safe_open(path, framework="pt") as file:
        modules = json.loads(file.metadata()["architecture"])
    net = torch.nn.Sequential(*[
        getattr(torch.nn, m["module"])(**{k: v for k, v in m.items() if k != "module"})
        for m in modules])
    net.load_state_dict(safetensors.torch.load_file(path), strict=True)
    return net.eval()


def test_pytorch_eval_logits_equal_jaxnet_eval_logits(model, exported):
    torch = pytest.importorskip("torch")
    data = jaxnet.load_dataset("digits")  # the run's own split; its test rows are unseen
    x_raw = data.x_test
    x = model.preprocessing.transform(x_raw)
    expected, _ = jaxnet.apply(model.params, model.bn_state, x, train=False,
                               eps=model.config.bn_eps)
    expected = np.asarray(expected)

    prep = export.load_header(exported)["preprocessing"]  # the standardisation, from the header
    x_torch = torch.from_numpy(((x_raw - np.array(prep["mean"])) / np.array(prep["scale"]))
                               .astype(np.float32))
    scale = np.max(np.abs(expected))
    for net in (_torch_sequential(exported), export.torch_module(exported)):
        assert not net.training
        with torch.no_grad():
            logits = net(x_torch).numpy()
        np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5 * scale)
        np.testing.assert_array_equal(np.asarray(export.load_header(exported)["classes"])[
            logits.argmax(axis=1)], model.predict(x_raw))


@pytest.mark.x64
def test_float64_model_exports_float64(tmp_path):
    torch = pytest.importorskip("torch")
    config = TrainConfig(hidden=(5,), dtype="float64", dropout=0.0)
    key_w, key_s, key_x = jax.random.split(jax.random.PRNGKey(1), 3)
    params, _ = jaxnet.init(key_w, (3, 5, 2), dtype=jnp.float64)
    mean, var = jax.random.uniform(key_s, (2, 5), jnp.float64, 0.5, 2.0)
    bn_state = ({"mean": mean, "var": var},)
    prep = Preprocessing.fit(np.arange(12.0).reshape(4, 3), np.array(["no", "yes"]))
    model = predict.TrainedModel(params, bn_state, config, prep)
    path = export.save(model, tmp_path / "f64.safetensors")
    x = np.asarray(jax.random.normal(key_x, (7, 3), jnp.float64))
    expected, _ = jaxnet.apply(params, bn_state, x, train=False)
    net = export.torch_module(path)
    assert export.load_header(path)["classes"] == ["no", "yes"]
    assert net[0].weight.dtype == torch.float64
    assert export.load_header(path)["architecture"][3] == {"module": "Dropout", "p": 0.0}
    with torch.no_grad():
        logits = net(torch.from_numpy(x.copy())).numpy()
    np.testing.assert_allclose(logits, np.asarray(expected), rtol=1e-12, atol=1e-12)
