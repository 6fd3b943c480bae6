"""Export to ONNX / TorchScript (python -m fast_nst.export) and stylizing with .onnx models."""

from __future__ import annotations

import json
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fast_nst import load_stylizer
from fast_nst.io.checkpoint import atomic_torch_save, make_checkpoint
from fast_nst.commands.eval import main as eval_main
from fast_nst.training import load_train_config as load_config
from fast_nst.core.errors import CheckpointError, FastNSTError
from fast_nst.io.export import TORCHSCRIPT_METADATA, export_metadata
from fast_nst.nets.exportable import ExportableTransformNet
from fast_nst.commands.export import main as export_main
from fast_nst.commands.export import parser as export_parser
from fast_nst.nets.johnson import TransformNet, TransformNetArgs

from conftest import assert_clean_in_process, export_cli, in_process, make_photo, run_cli, trained_like_norms

# Batch 1 and 2; divisible by 4 and not; below the network's 8 px minimum (replicate padding);
# one side tiny and the other not.
SHAPES = [(1, 3, 64, 96), (2, 3, 50, 37), (1, 3, 3, 7), (2, 3, 1, 1), (1, 3, 9, 4), (1, 3, 2, 30)]
TOL = 1e-3
ONNX_HINT = 'pip install -e ".[onnx]"'


def _make_net(activation: str = "tanh") -> TransformNet:
    torch.manual_seed(0)
    net = TransformNet(TransformNetArgs(base_channels=8, num_residual=2,
                                        output_activation=activation)).eval()
    trained_like_norms(net)  # trained-like norm parameters, so padding mistakes would show
    return net


def _save(net: TransformNet, path, naming: str):
    cfg = load_config(None, ["style_image=styles/wave.jpg", f"naming={naming}"])
    atomic_torch_save(make_checkpoint(net, cfg, step=5), path)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    net = _make_net()
    return _save(net, tmp_path_factory.mktemp("export") / "wave_model.pth", "wave"), net


@pytest.fixture(scope="module")
def onnx_file(model):
    """Exported once through the command's main(), in-process (a subprocess would add its ~4.5 s
    of imports and prove nothing more: the entry points are tested on their own)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    path = model[0].parent / "out" / "wave.onnx"
    printed = export_cli(model[0], "--format", "onnx", "--output", path, "--check_size", "5", "3")
    assert "Checked against PyTorch on 1x3x64x96, 2x3x50x37" in printed and "1x3x5x3" in printed
    return path


@pytest.fixture(scope="module")
def torchscript_file(model):
    """Exported in-process with the default output name (the model's, with .pt)."""
    assert export_main([str(model[0]), "--format", "torchscript"]) == 0
    path = model[0].with_suffix(".pt")
    assert path.is_file()
    return path


def _reference(net: TransformNet, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return net(x)


def _no_temp_files(folder) -> bool:
    return not [p for p in folder.iterdir() if ".tmp" in p.name]


# ---- the export-friendly network ----------------------------------------------------------

@pytest.mark.parametrize("activation", ["tanh", "clamp"])
def test_exportable_net_is_transform_net(activation):
    net = _make_net(activation)
    wrapper = ExportableTransformNet(net).eval()
    gen = torch.Generator().manual_seed(0)
    for shape in SHAPES + [(1, 3, 8, 8), (1, 3, 4, 13), (1, 3, 5, 5)]:
        x = torch.rand(shape, generator=gen)
        with torch.inference_mode():
            # The decoder is rewritten (phase convs, stride-2 output conv): equal up to rounding,
            # which a 1 x 1 photo (constant features: instance norm divides by sqrt(eps)) amplifies.
            atol = 1e-3 if shape[-2:] == (1, 1) else 2e-6
            torch.testing.assert_close(wrapper(x), net(x), atol=atol, rtol=0, msg=str(shape))


def test_metadata_of_converted_model():
    """pytorch/examples models loaded on the fly have no step, config or format version."""
    net = TransformNet(TransformNetArgs(base_channels=8, num_residual=2, output_activation="clamp"))
    ckpt = {"config": {"naming": "candy"}, "step": None, "converted_from": "pytorch-examples"}
    meta = export_metadata(net, ckpt, Path("saved_models/candy.pth"))
    assert meta["name"] == "candy" and meta["step"] == "" and meta["converted_from"] == "pytorch-examples"
    assert json.loads(meta["model_args"])["output_activation"] == "clamp"
    assert "checkpoint_format_version" not in meta
    assert all(isinstance(v, str) for v in meta.values())


# ---- ONNX ---------------------------------------------------------------------------------

def test_onnx_matches_pytorch_on_many_shapes(onnx_file, model):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert inp.name == "input" and out.name == "output"
    assert inp.shape == ["batch", 3, "height", "width"] and out.shape == inp.shape
    gen = torch.Generator().manual_seed(1)
    for shape in SHAPES:
        x = torch.rand(shape, generator=gen)
        y = sess.run(None, {"input": x.numpy()})[0]
        assert y.shape == shape and y.dtype == np.float32
        assert np.abs(y - _reference(model[1], x).numpy()).max() <= TOL, shape
        assert y.min() >= 0 and y.max() <= 1
    assert _no_temp_files(onnx_file.parent)


def test_onnx_metadata(onnx_file):
    import onnx

    proto = onnx.load(str(onnx_file))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["format"] == "fast-nst" and meta["format_version"] == "1"
    assert meta["name"] == "wave" and meta["step"] == "5" and meta["style_image"] == "wave.jpg"
    assert meta["input_range"] == "[0, 1]" and meta["output_range"] == "[0, 1]"
    assert json.loads(meta["model_args"])["base_channels"] == 8
    assert not proto.graph.initializer[0].external_data  # one self-contained file
    # Intermediate shapes are written in the input's axis names, not torch's s0, s77, ...
    params = {d.dim_param for info in proto.graph.value_info for d in info.type.tensor_type.shape.dim}
    assert any("height" in p for p in params) and any("width" in p for p in params)
    assert not [p for p in params if re.search(r"\bs\d+\b", p)], params


def test_onnx_graph_has_the_fast_decoder(onnx_file):
    """The decoder as the fast CPU form writes it: no upsampling Resize, phase interleaves
    (DepthToSpace), and the output conv to 12 channels (4 phases x RGB) with stride 2."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_file)).graph
    ops = [n.op_type for n in graph.node]
    assert "Resize" not in ops and ops.count("DepthToSpace") == 3  # 2 upsamplings + the output
    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    last = weights[convs[-1].input[1]]
    assert last.shape == (12, 8, 10, 10)  # base_channels 8 -> 4 phases x 3 channels
    assert [a.ints for a in convs[-1].attribute if a.name == "strides"] == [[2, 2]]


def test_load_stylizer_on_onnx(onnx_file, model, tmp_path):
    s = load_stylizer(onnx_file, device="cpu")
    pth = load_stylizer(model[0], device="cpu")
    assert s.name == "wave" and s.device == torch.device("cpu") and s.info["step"] == 5
    x = torch.rand(2, 3, 23, 41)
    y = s.stylize_tensor(x)
    assert y.shape == x.shape and y.dtype == torch.float32 and y.device == x.device
    assert (y - pth.stylize_tensor(x)).abs().max() <= TOL
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        s.stylize_tensor(torch.rand(3, 8, 8))

    photo = Image.open(make_photo(tmp_path / "p.png", (61, 33), fmt="PNG"))
    for options in ({}, {"tile_size": None}, {"preserve_color": True, "strength": 0.5}):
        a, b = s.stylize(photo, **options), pth.stylize(photo, **options)
        assert a.size == photo.size and a.mode == "RGB"
        assert np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max() <= 1
    assert s.stylize(photo, max_size=40).size == (40, 22)
    assert s.stylize(photo, scale=0.5, keep_size=True).size == photo.size
    rgba = photo.convert("RGBA")
    assert s.stylize(rgba).mode == "RGBA"
    # It tiles (test_onnx_tiling): a photo smaller than the tile is stylized whole.
    assert s.can_tile and s.stylize(photo, tile_size=256).size == photo.size and s.last_tile_count == 1
    with pytest.raises(FastNSTError, match=r"use fp32, or the \.pth checkpoint for bf16/fp16\.$"):
        load_stylizer(onnx_file, device="cpu", precision="fp16")
    # OpenVINO runs an .onnx file in bf16: the refusal says so (onnxruntime has no bf16 for it)
    with pytest.raises(FastNSTError, match=r"'bf16' is not available.*runs \.onnx files in bf16: --runtime openvino"):
        load_stylizer(onnx_file, device="cpu", precision="bf16")


def test_eval_cli_on_onnx(onnx_file, tmp_path, capsys):
    photo = make_photo(tmp_path / "photo.jpg", (61, 33))
    out = tmp_path / "out.png"
    assert eval_main(["--model_file", str(onnx_file), "--image_file", str(photo),
                      "--output_file", str(out), "--device", "cpu"]) == 0
    assert Image.open(out).size == (61, 33)
    assert eval_main(["--model_file", str(onnx_file), "--image_file", str(photo), "--device", "cpu",
                      "--output_file", str(tmp_path / "folder_out" / "x.jpg"), "--max_size", "20"]) == 0
    assert Image.open(tmp_path / "folder_out" / "x.jpg").size == (20, 11)
    assert eval_main(["--model_file", str(onnx_file), "--image_file", str(photo),
                      "--output_file", str(tmp_path / "t.png"), "--device", "cpu",
                      "--tile_size", "256"]) == 0  # tiles (test_onnx_tiling): one, for this photo
    assert np.array_equal(np.asarray(Image.open(tmp_path / "t.png")), np.asarray(Image.open(out)))


def test_corrupt_and_foreign_onnx_files(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage, not a protobuf" * 10)
    with pytest.raises(CheckpointError, match="not a valid ONNX model"):
        load_stylizer(bad, device="cpu")
    with pytest.raises(CheckpointError, match="not found"):
        load_stylizer(tmp_path / "missing.onnx", device="cpu")
    photo = make_photo(tmp_path / "photo.jpg", (20, 16))
    assert eval_main(["--model_file", str(bad), "--image_file", str(photo), "--device", "cpu",
                      "--output_file", str(tmp_path / "o.jpg")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a valid ONNX model" in err and "Traceback" not in err

    # A valid ONNX model that is not an image-to-image network.
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])])
    foreign = tmp_path / "classifier.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), str(foreign))
    with pytest.raises(CheckpointError, match="not a style transfer model"):
        load_stylizer(foreign, device="cpu")


def test_missing_onnxruntime_names_the_extra(onnx_file, model, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(FastNSTError, match=r'pip install -e "\.\[onnx\]"'):
        load_stylizer(onnx_file, device="cpu")
    out = tmp_path / "x.onnx"
    assert export_main([str(model[0]), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and ONNX_HINT in err and "onnxruntime" in err
    assert not out.exists()


def test_onnx_cuda_provider_that_fails_to_start(onnx_file, monkeypatch):
    """onnxruntime-gpu lists CUDAExecutionProvider but silently runs on CPU when CUDA libraries
    do not load: an explicit cuda request is an error, auto falls back to a CPU stylizer."""
    import onnxruntime as ort

    import fast_nst.stylize.onnx_stylizer as onnx_rt

    class CudaListedButBroken:
        SessionOptions = ort.SessionOptions
        __version__ = ort.__version__

        @staticmethod
        def get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

        @staticmethod
        def InferenceSession(path, sess_options=None, providers=None):
            assert providers[0][0] == "CUDAExecutionProvider"  # it was asked for CUDA
            return ort.InferenceSession(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(onnx_rt, "_import_onnxruntime", lambda: CudaListedButBroken)
    monkeypatch.setattr(onnx_rt, "resolve_device", lambda name: torch.device("cuda"))
    with pytest.raises(FastNSTError, match="could not start its CUDA provider.*--device cpu"):
        load_stylizer(onnx_file, device="cuda")
    s = load_stylizer(onnx_file, device="auto")
    assert s.device == torch.device("cpu")
    x = torch.rand(1, 3, 16, 16)
    assert s.stylize_tensor(x).shape == x.shape


def test_torchscript_export_named_onnx_is_recognised(torchscript_file, tmp_path, capsys):
    misnamed = tmp_path / "wave.onnx"  # e.g. written by an older export that did not check suffixes
    misnamed.write_bytes(Path(torchscript_file).read_bytes())
    with pytest.raises(CheckpointError, match="this is a TorchScript export"):
        load_stylizer(misnamed, device="cpu")


# ---- TorchScript ------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_matches_pytorch(torchscript_file, model):
    extra = {TORCHSCRIPT_METADATA: ""}
    module = torch.jit.load(str(torchscript_file), map_location="cpu", _extra_files=extra)
    assert json.loads(extra[TORCHSCRIPT_METADATA])["name"] == "wave"
    gen = torch.Generator().manual_seed(2)
    for shape in SHAPES:
        x = torch.rand(shape, generator=gen)
        with torch.inference_mode():
            y = module(x)
        assert y.shape == shape and (y - _reference(model[1], x)).abs().max() <= TOL, shape
    assert _no_temp_files(torchscript_file.parent)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_export_of_clamp_model(tmp_path, capsys):
    """Models converted from pytorch/examples clip their output instead of tanh."""
    net = _make_net("clamp")
    path = _save(net, tmp_path / "clampy.pth", "clampy")
    out = tmp_path / "clampy.ts"  # .ts: TorchScript inferred from the suffix
    assert export_main([str(path), "--output", str(out), "--check_size", "2", "2"]) == 0
    assert "TorchScript" in capsys.readouterr().out
    module = torch.jit.load(str(out))
    x = torch.rand(1, 3, 21, 10)
    with torch.inference_mode():
        assert (module(x) - net(x)).abs().max() <= TOL


# ---- errors -------------------------------------------------------------------------------

def test_export_cli_clean_error_for_missing_model(tmp_path, capsys):
    # In-process: the onnx_file fixture runs the command as a subprocess already.
    from fast_nst.commands.export import main as export_main

    code, err = in_process(capsys, export_main, tmp_path / "nope.pth", "--output", tmp_path / "x.onnx")
    assert code == 1 and "Traceback" not in err
    assert err.startswith("error: ") and "not found" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("case", ["not_a_checkpoint", "foreign_checkpoint", "unwritable_output",
                                  "output_is_folder", "low_opset", "opset_with_torchscript",
                                  "bad_check_size"])
def test_export_errors(case, model, tmp_path, capsys):
    src, out = model[0], tmp_path / "x.onnx"
    args, fragment = None, None
    if case == "not_a_checkpoint":
        src, out = tmp_path / "notes.pth", tmp_path / "x.pt"  # TorchScript: no optional extra needed
        src.write_text("hello")
        fragment = "not a PyTorch checkpoint"
    elif case == "foreign_checkpoint":
        src, out = tmp_path / "other.pth", tmp_path / "x.pt"
        torch.save({"weight": torch.zeros(2)}, src)
        fragment = "not a fast-nst checkpoint"
    elif case == "unwritable_output":
        blocker = tmp_path / "file"
        blocker.write_text("x")
        out = blocker / "x.onnx"  # its "folder" is a file: fails even for root
        fragment = "cannot write"
    elif case == "output_is_folder":
        out = tmp_path
        fragment = "is a folder"
    elif case == "low_opset":
        args, fragment = ["--opset", "11"], "--opset 11"
    elif case == "opset_with_torchscript":
        args, fragment = ["--opset", "18", "--format", "torchscript"], "--opset applies only"
    elif case == "bad_check_size":
        args, fragment = ["--check_size", "0", "5"], "at least 1"
    assert export_main([str(src), "--output", str(out)] + (args or [])) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err, err
    assert len(err.strip().splitlines()) == 1
    assert not out.is_file()
    assert _no_temp_files(tmp_path)


def test_bad_format_is_rejected_by_argparse(model, capsys):
    with pytest.raises(SystemExit) as e:
        export_main([str(model[0]), "--format", "tflite", "--output", "x.tflite"])
    assert e.value.code == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err


def test_failed_check_discards_the_export(model, tmp_path, monkeypatch, capsys):
    """A mismatch against PyTorch leaves no output and no temporary file; an existing output
    file keeps its content (the export is written to a temporary name and renamed last)."""
    import fast_nst.io.export as export

    monkeypatch.setattr(export, "TOLERANCE", -1.0)  # every comparison fails
    out = tmp_path / "m.pt"
    assert export_main([str(model[0]), "--format", "torchscript", "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "differs from PyTorch" in err and "not written" in err
    assert not out.exists() and _no_temp_files(tmp_path)
    out.write_bytes(b"previous export")
    assert export_main([str(model[0]), "--format", "torchscript", "--output", str(out)]) == 1
    assert "left unchanged" in capsys.readouterr().err
    assert out.read_bytes() == b"previous export" and _no_temp_files(tmp_path)


# ---- what export accepts and writes ----------------------------------------------------------

def test_eval_on_torchscript_export_explains_it(torchscript_file, tmp_path):
    """torch.load refuses TorchScript under weights_only=True with a multi-line warning and an
    error advising weights_only=False; eval.py says what the file is and what to use instead."""
    photo = make_photo(tmp_path / "photo.jpg", (20, 16))
    r = run_cli("eval.py", "--model_file", str(torchscript_file), "--image_file", str(photo),
                "--output_file", str(tmp_path / "o.jpg"), "--device", "cpu")
    assert r.returncode == 1 and r.stderr.startswith("error: ")
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr  # no torch warning before it
    assert "TorchScript export" in r.stderr and "wave_model.pth" not in r.stderr and ".onnx" in r.stderr
    assert "weights_only" not in r.stderr and "Warning" not in r.stderr
    assert not (tmp_path / "o.jpg").exists()


@pytest.mark.parametrize("fmt, name, fragment", [
    ("torchscript", "a.onnx", "has the suffix of an ONNX file but --format is torchscript"),
    ("onnx", "a.pt", "has the suffix of a TorchScript/PyTorch file but --format is onnx"),
    ("onnx", "a.pth", "has the suffix of a PyTorch checkpoint but --format is onnx"),
    # it used to write ONNX or TorchScript under the name, which loaders then read as safetensors
    ("onnx", "a.safetensors", "has the suffix of a safetensors model but --format is onnx; use a .onnx name (a.onnx)"),
    ("torchscript", "a.SafeTensors", "has the suffix of a safetensors model but --format is torchscript; use a .pt"),
])
def test_format_contradicting_output_suffix_is_refused(fmt, name, fragment, model, tmp_path, capsys):
    out = tmp_path / name
    for src in (model[0], tmp_path / "missing.pth"):  # missing model: refused before loading it
        assert export_main([str(src), "--format", fmt, "--output", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and fragment in err and "not found" not in err, err
        assert len(err.strip().splitlines()) == 1
        assert not out.exists() and _no_temp_files(tmp_path)


@pytest.mark.parametrize("args,fragment", [
    (["."], "error: Model file . is a folder, not a file; give the path of a file."),
    (["/", "--format", "torchscript"], "error: Model file / is a folder, not a file; give the path of a file."),
    ([".", "--format", "safetensors"], "error: Model file . is a folder, not a file; give the path of a file."),
    (["MODEL", "--format", "safetensors", "-o", "."], "error: --output . is a folder; give a file name."),
])
def test_a_folder_without_a_name_is_refused_in_one_line(model, tmp_path, monkeypatch, capsys, args, fragment):
    """"." has no name to derive an output from: it used to end in "ValueError: PosixPath('.')
    has an empty name"."""
    monkeypatch.chdir(tmp_path)
    code, err = in_process(capsys, export_main, *[model[0] if a == "MODEL" else a for a in args])
    assert_clean_in_process(code, err, fragment)
    assert err.count("\n") == 1 and list(tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning")
def test_format_from_suffix_and_other_suffixes(model, tmp_path, capsys):
    """No --format: .pth means TorchScript (never ONNX inside a .pth); .bin is allowed."""
    inferred = tmp_path / "styled.pth"
    assert export_main([str(model[0]), "--output", str(inferred)]) == 0
    assert "TorchScript" in capsys.readouterr().out
    with zipfile.ZipFile(inferred) as zf:
        assert any(n.endswith("/constants.pkl") for n in zf.namelist())
    with pytest.raises(CheckpointError, match="TorchScript export"):
        load_stylizer(inferred, device="cpu")
    other = tmp_path / "styled.bin"
    assert export_main([str(model[0]), "--format", "torchscript", "--output", str(other)]) == 0
    torch.jit.load(str(other))


@pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning")
def test_help_describes_what_export_accepts(model, tmp_path):
    text = " ".join(export_parser().format_help().split())
    for claim in ("train.py's final model", "training checkpoint from its checkpoints/ folder",
                  "pytorch/examples fast_neural_style .pth", "weights-only loading",
                  "A --format that contradicts --output's suffix"):
        assert claim in text, claim
    assert "checkpoint written by train.py (.pth)" not in text
    # The claim about training checkpoints holds (pytorch/examples files: test_convert.py).
    net = _make_net()
    cfg = load_config(None, ["style_image=styles/wave.jpg", "naming=wave"])
    training = tmp_path / "checkpoints" / "step_00000007.pth"
    atomic_torch_save(make_checkpoint(net, cfg, step=7, optimizer=torch.optim.Adam(net.parameters())),
                      training)
    out = tmp_path / "from_training.pt"
    assert export_main([str(training), "--output", str(out)]) == 0
    extra = {TORCHSCRIPT_METADATA: ""}
    torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra[TORCHSCRIPT_METADATA])["step"] == "7"


def test_onnx_export_on_too_old_torch_says_so(model, tmp_path, monkeypatch, capsys):
    """torch before 2.8 cannot export the network with free sizes (2.6 guards height >= 9):
    one message naming the fix, and TorchScript still works."""
    pytest.importorskip("onnx")
    import fast_nst

    major, minor = map(int, fast_nst.__min_torch_onnx__.split("."))
    older = f"{major}.{minor - 1}.1+cu126"
    monkeypatch.setattr(torch, "__version__", older)
    out = tmp_path / "x.onnx"
    assert export_main([str(model[0]), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: ONNX export needs torch >= {fast_nst.__min_torch_onnx__}, but torch "
                          f"{older} is installed"), err
    assert "--format torchscript" in err and not out.exists()
    assert export_main([str(model[0]), "--output", str(tmp_path / "x.pt")]) == 0


def test_export_metadata_writes_only_plain_config_values():
    """A checkpoint's config is untrusted: a nested list of shared references (a few KB in the
    file) took minutes and gigabytes in json.dumps; only plain values reach the loss_config."""
    from fast_nst.io.export import export_metadata
    from fast_nst.nets.johnson import TransformNet, TransformNetArgs

    bomb = "ab"
    for _ in range(9):
        bomb = [bomb] * 10  # 10**9 strings when written out
    config = {"naming": "wave", "style_weight": 5.0, "style_layers": bomb, "style_images": ["/x/a.jpg"]}
    meta = export_metadata(TransformNet(TransformNetArgs(base_channels=8, num_residual=1)),
                           {"config": config, "step": 3}, Path("wave.pth"))
    assert json.loads(meta["loss_config"]) == {"naming": "wave", "style_weight": 5.0, "style_images": ["a.jpg"]}
