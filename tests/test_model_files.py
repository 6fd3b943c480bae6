"""Files that are not fast-nst checkpoints, given where one is expected: each is refused with
fast-nst's own one-line message. torch's error texts for these files advise re-running
``torch.load`` with ``weights_only=False`` (unsafe for untrusted files); that advice must never
reach a user."""

from __future__ import annotations

import json
import pickle
import warnings
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from fast_nst import load_stylizer
from fast_nst.io.checkpoint import atomic_torch_save, load_model, make_checkpoint, read_checkpoint
from fast_nst.commands.eval import main as eval_main
from fast_nst.training import load_train_config as load_config
from fast_nst.core.errors import CheckpointError
from fast_nst.nets.johnson import TransformNet, TransformNetArgs

from conftest import make_photo

# Fragments of torch's advice; none may appear in a CheckpointError.
UNSAFE_ADVICE = ("weights_only", "Re-running", "trusted source", "add_safe_globals")
DAMAGED = "not a PyTorch checkpoint, or the file is damaged"


class _Payload:
    """Unpickling this opens (creates) a file: stands in for arbitrary code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _checkpoint(path):
    net = TransformNet(TransformNetArgs(base_channels=8, num_residual=1))
    cfg = load_config(None, ["style_image=styles/wave.jpg", "naming=wave"])
    atomic_torch_save(make_checkpoint(net, cfg, step=3), path)
    return path


def _write(kind: str, folder):
    """(path, fragment the message must contain) for a file of ``kind``."""
    if kind == "yaml":
        path = folder / "config.yml"
        path.write_text("# wave\nstyle_image: styles/wave.jpg\nnaming: wave\nimage_size: 256\n")
        return path, "YAML text file"
    if kind == "text":
        path = folder / "notes.pth"
        path.write_text("these are my notes — ünïcode too\n" * 300)  # > the sniffed 4 KiB
        return path, "text file"
    if kind == "random":
        path = folder / "random.pth"
        path.write_bytes(np.random.default_rng(0).bytes(4096))
        return path, "unreadable binary data"
    if kind == "empty":
        path = folder / "empty.pth"
        path.write_bytes(b"")
        return path, "the file is empty"
    if kind == "truncated":
        full = _checkpoint(folder / "full.pth").read_bytes()
        path = folder / "truncated.pth"
        path.write_bytes(full[: len(full) // 2])
        return path, "truncated or corrupt"
    if kind == "zip":
        path = folder / "photos.pth"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("a.txt", "not a model")
        return path, "zip archive that is not a PyTorch checkpoint"
    raise AssertionError(kind)


def _assert_own_message(message: str, *fragments: str) -> None:
    assert len(message.strip().splitlines()) == 1, message
    for bad in UNSAFE_ADVICE:
        assert bad not in message, message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("kind", ["yaml", "text", "random", "empty", "truncated", "zip"])
def test_non_checkpoint_files_get_our_own_summary(kind, tmp_path):
    path, fragment = _write(kind, tmp_path)
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    _assert_own_message(str(e.value), str(path), DAMAGED, fragment, "pytorch/examples")


@pytest.mark.parametrize("kind", ["yaml", "random"])
def test_torch_itself_gives_the_unsafe_advice_for_these_files(kind, tmp_path):
    """Guards the test above: these files really do make torch recommend weights_only=False."""
    path, _ = _write(kind, tmp_path)
    with pytest.raises(pickle.UnpicklingError, match="weights_only` set to `False`"):
        torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("wrapped", [True, False], ids=["torch_save", "raw_pickle"])
def test_pickle_asking_for_a_forbidden_global_is_refused(wrapped, tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "hostile.pth"
    if wrapped:
        torch.save({"format": "fast-nst", "payload": _Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    for load in (load_model, read_checkpoint):
        with pytest.raises(CheckpointError) as e:
            load(path)
        _assert_own_message(str(e.value), str(path), "refused", "nothing from this file was executed")
    assert not marker.exists()


def test_eval_on_a_yaml_config_names_it(tmp_path, capsys):
    path, _ = _write("yaml", tmp_path)
    photo = make_photo(tmp_path / "photo.jpg", (20, 16))
    out = tmp_path / "o.jpg"
    assert eval_main(["--model_file", str(path), "--image_file", str(photo), "--output_file", str(out),
                      "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    _assert_own_message(err, DAMAGED, "YAML text file")
    assert not out.exists()


def test_an_onnx_export_where_a_pth_is_needed_says_so(tmp_path):
    """export, train --init_from and stylize_dataset read .pth models: an .onnx file used to be
    called "not a PyTorch checkpoint, or the file is damaged"."""
    path = tmp_path / "wave.onnx"
    path.write_bytes(b"\x08\x08\x12\x07pytorch")  # how an ONNX protobuf starts (ir_version)
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    assert str(e.value) == (f"{path} is an ONNX export: this needs the .pth or .safetensors model it was "
                            "exported from (eval.py, load_stylizer and the web app run .onnx files).")


class _Tiny(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


@pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning")
@pytest.mark.parametrize("metadata", [True, False], ids=["fast_nst_export", "other_torchscript"])
def test_torchscript_archive_is_recognised_without_torch_warning(metadata, tmp_path):
    path = tmp_path / "scripted.pt"
    extra = {"fast_nst.json": json.dumps({"source": "wave.pth"})} if metadata else {}
    torch.jit.save(torch.jit.script(_Tiny()), str(path), _extra_files=extra)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for load in (load_model, read_checkpoint, lambda p: load_stylizer(p, device="cpu")):
            with pytest.raises(CheckpointError) as e:
                load(path)
            _assert_own_message(str(e.value), str(path), "TorchScript export",
                                "use the .pth checkpoint it was exported from", ".onnx")
            assert "wave.pth" not in str(e.value)  # the archive's word for its source is not advice
    assert not [w for w in caught if "TorchScript" in str(w.message)], [str(w.message) for w in caught]


# What fast_nst.json inside a TorchScript archive may claim as its source: a second "error:"
# line, the terminal's title set, and 30 KB more.
_FORGED_SOURCE = "wave.pth)\n\x1b[2Kerror: forged second line\x1b]0;TITLE\x07" + "A" * 30_000


@pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning")
@pytest.mark.parametrize("name", ["scripted.pt", "scripted.onnx"])
def test_torchscript_source_named_inside_is_never_shown(name, tmp_path, capsys):
    """The source path an archive names was printed raw as advice ("use the .pth checkpoint it
    was exported from (...)"): escapes and newlines reached the terminal."""
    path = tmp_path / name
    torch.jit.save(torch.jit.script(_Tiny()), str(path),
                   _extra_files={"fast_nst.json": json.dumps({"source": _FORGED_SOURCE})})
    photo = make_photo(tmp_path / "photo.jpg", (20, 16))
    out = tmp_path / "o.jpg"
    assert eval_main(["--model_file", str(path), "--image_file", str(photo), "--output_file", str(out),
                      "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err[:500]
    for fragment in ("forged", "TITLE", "\x1b", "AAAA", "wave.pth"):
        assert fragment not in err, (fragment, err[:500])
    _assert_own_message(err, "TorchScript export", "use the .pth checkpoint it was exported from")
    assert not out.exists()
