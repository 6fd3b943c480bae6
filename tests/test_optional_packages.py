"""An optional extra that is not installed is named, with the pip command, in one line before any
work it would waste: before an hf:// or URL model is downloaded, an ONNX export is made, or the
web app lists its models. The tests run with every extra installed, so a package is taken away
here as if it were not: ``sys.modules[name] = None`` (its import and ``find_spec`` fail) or, for
safetensors (imported when fast-nst is), its ``safe_open`` set to None."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys

import pytest
import setuptools

from conftest import REPO, assert_clean_in_process, in_process, make_photo
from fast_nst import load_stylizer
from fast_nst.commands.app import main as app_main
from fast_nst.commands.eval import main as eval_main
from fast_nst.commands.export import main as export_main
from fast_nst.core.errors import FastNSTError
from fast_nst.core.untrusted import safetensors_header
from fast_nst.io import hub
from fast_nst.io.bundled import bundled_model
from fast_nst.stylize.int8 import float32_onnx

ONNX_PACKAGES = ("onnx", "onnxruntime", "onnxscript")
SAFETENSORS_MESSAGE = "reading and writing .safetensors files needs the safetensors package: pip install safetensors"
ONNX_MESSAGE = 'missing: onnx, onnxruntime, onnxscript). Install them with: pip install -e ".[onnx]"'


def _without(monkeypatch, *names: str) -> None:
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.fixture
def no_download(monkeypatch):
    """Fetching an hf:// or URL model fails the test: what is missing must be said first."""
    def fetched(*args, **kwargs):
        raise AssertionError(f"downloaded {args[0]} before saying what is missing")
    monkeypatch.setattr(hub, "hub_file", fetched)
    monkeypatch.setattr(hub, "model_url_file", fetched)


@pytest.mark.parametrize("ref", ["https://example.com/m/wave.onnx", "hf://me/wave/wave.onnx"])
def test_a_remote_onnx_model_without_onnxruntime_is_not_downloaded(ref, no_download, monkeypatch):
    _without(monkeypatch, "onnxruntime")
    with pytest.raises(FastNSTError, match=r'Running \.onnx models needs onnxruntime.*pip install -e "\.\[onnx\]"'):
        load_stylizer(ref, device="cpu")


@pytest.mark.parametrize("ref", ["https://example.com/m/wave.safetensors", "hf://me/wave/wave.safetensors@v2"])
def test_a_remote_safetensors_model_without_safetensors_is_not_downloaded(ref, no_download, monkeypatch):
    monkeypatch.setattr(safetensors_header, "safe_open", None)
    with pytest.raises(FastNSTError, match=SAFETENSORS_MESSAGE):
        hub.local_model_file(ref)  # what every command reads a model through


@pytest.mark.parametrize("flags", [["--precision", "int8"], ["--runtime", "openvino"]])
def test_eval_of_a_remote_model_names_the_missing_extra_before_downloading(flags, no_download, monkeypatch,
                                                                             tmp_path, capsys):
    _without(monkeypatch, *ONNX_PACKAGES, "openvino")
    photo = make_photo(tmp_path / "p.jpg", (20, 20))
    code, err = in_process(capsys, eval_main, "--model_file", "https://example.com/m/wave.pth", "--image_file",
                           photo, "--device", "cpu", "--output_file", tmp_path / "out.jpg", *flags)
    assert_clean_in_process(code, err, "pip install")
    assert err.count("\n") == 1, err
    assert ("runtime openvino needs the openvino, onnxruntime, onnx, onnxscript packages" if "openvino" in flags
            else ONNX_MESSAGE) in err


def test_runtime_openvino_names_every_missing_package_at_once_before_any_export(monkeypatch, tmp_path, capsys):
    """Installing openvino alone left the ONNX export to fail next, after 'Making the ONNX export'."""
    _without(monkeypatch, "openvino", "onnx", "onnxscript")
    with pytest.raises(FastNSTError) as e:
        load_stylizer(device="cpu", runtime="openvino")  # the built-in .pth: exported first
    assert str(e.value) == ('runtime openvino needs the openvino, onnx, onnxscript packages: pip install openvino '
                            'onnx onnxscript (or pip install -e ".[openvino]")')
    monkeypatch.delitem(sys.modules, "openvino")
    with pytest.raises(FastNSTError, match=r"needs the onnx, onnxscript packages: pip install onnx onnxscript "):
        load_stylizer(device="cpu", runtime="openvino")
    with pytest.raises(FastNSTError, match="ONNX export needs the optional packages"):
        float32_onnx(bundled_model(), tmp_path)
    assert capsys.readouterr().err == ""  # no "Making the ONNX export ..." before the error


def test_an_onnx_file_in_openvino_needs_no_exporter(monkeypatch, tmp_path):
    _without(monkeypatch, "openvino", "onnx", "onnxscript")
    with pytest.raises(FastNSTError) as e:
        load_stylizer(tmp_path / "wave.onnx", device="cpu", runtime="openvino")
    assert "needs the openvino package: pip install openvino (or" in str(e.value)


@pytest.mark.parametrize("output,missing", [("wave.onnx", ONNX_PACKAGES), ("wave.int8.onnx", ONNX_PACKAGES),
                                            ("wave.safetensors", ())])
def test_export_of_a_remote_model_names_the_missing_extra_before_downloading(output, missing, no_download,
                                                                             monkeypatch, tmp_path, capsys):
    _without(monkeypatch, *missing)
    monkeypatch.setattr(safetensors_header, "safe_open", None)
    quantize = ["--quantize", "int8"] if "int8" in output else []
    code, err = in_process(capsys, export_main, "hf://me/wave/wave.pth", "--output", tmp_path / output, *quantize)
    assert_clean_in_process(code, err, ONNX_MESSAGE if missing else SAFETENSORS_MESSAGE)
    assert err.count("\n") == 1, err


def test_the_app_without_gradio_says_so_before_listing_or_fetching_models(no_download, monkeypatch, capsys):
    _without(monkeypatch, "gradio")
    code, err = in_process(capsys, app_main, "--models", "hf://me/wave/wave.pth")
    assert_clean_in_process(code, err, 'The web app needs Gradio, which is not installed. Install it with: '
                                       'pip install -e ".[app]"')
    assert err.count("\n") == 1 and capsys.readouterr().out == ""  # not "No models in models: ..."


@pytest.mark.parametrize("flags,message", [(["--runtime", "openvino"], "runtime openvino needs the openvino"),
                                           (["--precision", "int8"], ONNX_MESSAGE)])
def test_the_app_does_not_start_without_its_runtime(flags, message, no_download, monkeypatch, capsys):
    """A page whose every model fails to load in the browser is refused at the start instead."""
    _without(monkeypatch, *ONNX_PACKAGES, "openvino")
    code, err = in_process(capsys, app_main, "--models", "hf://me/wave/wave.pth", "--device", "cpu", *flags)
    assert_clean_in_process(code, err, message)
    assert err.count("\n") == 1, err


def test_the_openvino_extra_installs_what_runtime_openvino_imports(monkeypatch):
    """runtime openvino exports and quantizes with the onnx extra's packages and checks the file
    with onnxruntime: ``pip install -e ".[openvino]"`` alone must make it work."""
    captured = {}
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    runpy.run_path(str(REPO / "setup.py"))
    extras = captured["extras_require"]
    assert set(extras["onnx"]) <= set(extras["openvino"]) and any(r.startswith("openvino") for r in extras["openvino"])


def test_importing_the_commands_loads_no_optional_package_nor_tensorboard():
    """`fast-nst-X --help` and `import fast_nst` stay quick and work without the extras: each
    optional package, and TensorBoard (used once a training run logs), is imported where used."""
    heavy = ("onnx", "onnxruntime", "onnxscript", "av", "gradio", "openvino", "huggingface_hub", "tensorboard",
             "torch.utils.tensorboard")
    code = ("import sys, fast_nst\n"
            "from fast_nst.commands import app, convert, data, download, eval, evaluate, export, optimize, "
            "stylize_dataset, train\n"
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr[-2000:]


def test_training_without_tensorboard_says_what_to_install(monkeypatch):
    from fast_nst.training.reporting import _summary_writer

    _without(monkeypatch, "torch.utils.tensorboard")
    with pytest.raises(FastNSTError, match=r"Training logs need the tensorboard package .*: pip install tensorboard$"):
        _summary_writer()
