"""Hostile and clumsy files: each is built here, tiny on disk, and must cost little memory and
time and end in one line of fast-nst's own (see docs/reliability.md, "Hostile and clumsy files").

Cases whose unfixed behaviour would exhaust memory run under :func:`_memory_cap`, so a
regression fails with MemoryError instead of taking the machine down.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from fast_nst import load_stylizer
from fast_nst.commands.convert import main as convert_main
from fast_nst.commands.data import main as data_main
from fast_nst.commands.eval import main as eval_main
from fast_nst.commands.export import main as export_main
from fast_nst.core.errors import CheckpointError, DataError, quote
from fast_nst.io import checkpoint as checkpoint_io
from fast_nst.io.checkpoint import load_model, make_checkpoint, read_checkpoint
from fast_nst.io.export import export_metadata
from fast_nst.nets.johnson import TransformNet, TransformNetArgs
from fast_nst.training import cache as cache_mod
from fast_nst.training import load_train_config
from fast_nst.training.cache import cache_dir, open_cache, prepare_cache
from fast_nst.training.data import ImageFolderDataset, decode_resized, find_training_images

from conftest import assert_clean_in_process, in_process, make_photo
from conftest import memory_cap as _memory_cap, set_declared_size as _set_declared_size

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ---- building the files ---------------------------------------------------------------------------

def _ckpt(**changes) -> dict:
    """A real checkpoint of the smallest network (1 channel, 1 block) with ``changes`` applied."""
    net = TransformNet(TransformNetArgs(base_channels=1, num_residual=1))
    cfg = load_train_config(None, ["style_image=styles/wave.jpg", "naming=wave"])
    return {**make_checkpoint(net, cfg, step=3), **changes}


def _save(path: Path, **changes) -> Path:
    torch.save(_ckpt(**changes), path)
    return path


def _shared_nest(depth: int = 9, width: int = 10, leaf=0, kind=list):
    """``width ** depth`` leaves through shared references: a few hundred bytes pickled, but
    ``repr`` or ``str`` would expand it to gigabytes."""
    x = kind([leaf] * width)
    for _ in range(depth - 1):
        x = kind([x] * width)
    return x


def _photo(tmp_path: Path) -> Path:
    return make_photo(tmp_path / "photo.png", (20, 16))


def _eval(capsys, model: Path, tmp_path: Path) -> tuple[int, str]:
    return in_process(capsys, eval_main, "--model_file", model, "--image_file", _photo(tmp_path),
                      "--output_file", tmp_path / "out.png", "--device", "cpu")


# ---- 1. unbounded memory from tiny files -----------------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    ({"base_channels": 1024, "num_residual": 4096}, "num_residual must be a whole number from 1 to 64"),
    ({"base_channels": 1024, "num_residual": 64}, "over the limit of 200,000,000"),
])
def test_checkpoint_declaring_a_huge_network_is_refused_before_allocating(args, fragment, tmp_path, capsys):
    path = tmp_path / "huge.pth"
    torch.save(_ckpt(model_args={**args, "output_activation": "tanh"}, model_state={}), path)
    assert path.stat().st_size < 8_000  # a few KB that would build a 1-trillion-parameter network
    with _memory_cap():
        code, err = _eval(capsys, path, tmp_path)
    assert_clean_in_process(code, err, str(path), "bad model_args", fragment)
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.png").exists()


def test_archive_member_declaring_gigabytes_is_refused_before_unpacking(tmp_path, capsys):
    path = _save(tmp_path / "liar.pth")
    _set_declared_size(path, "/data/0", 0xFFFF_FFF0)  # 4.3 GB claimed for a few bytes of weights
    assert path.stat().st_size < 20_000
    with _memory_cap(), pytest.raises(CheckpointError, match="refused: the archive declares 4.3 GB") as e:
        read_checkpoint(path)
    assert str(path) in str(e.value) and "Nothing was unpacked" in str(e.value)
    code, err = _eval(capsys, path, tmp_path)
    assert_clean_in_process(code, err, "declares 4.3 GB")


def test_archive_member_inflating_a_thousandfold_is_refused(tmp_path):
    """An honest header, but 8 MiB of zeros deflated to 8 KB: torch.load would inflate it all."""
    src = _save(tmp_path / "small.pth")
    path = tmp_path / "bomb.pth"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            if info.filename.endswith("/data/0"):
                zout.writestr(info.filename, bytes(8 << 20), compress_type=zipfile.ZIP_DEFLATED)
            else:
                zout.writestr(info, zin.read(info))
    assert path.stat().st_size < 40_000
    with pytest.raises(CheckpointError, match=r"data/0' inflates 1,0\d\d-fold") as e:
        load_model(path)
    assert "PyTorch writes checkpoints uncompressed" in str(e.value)


def test_archive_size_limit_is_the_modules_constant(tmp_path, monkeypatch):
    path = _save(tmp_path / "ok.pth")
    read_checkpoint(path)  # a real checkpoint is far below the limit
    monkeypatch.setattr(checkpoint_io, "MAX_ARCHIVE_BYTES", 1000)
    with pytest.raises(CheckpointError, match="refused: the file is .* more than any PyTorch checkpoint"):
        read_checkpoint(path)


def test_quote_is_bounded_in_depth_width_and_length():
    nest = _shared_nest()
    text = quote(nest)
    assert len(text) <= 80 and text.startswith("[[[")
    assert len(quote("x" * 10_000, 30)) <= 30
    assert quote({"base_channels": 1024}) == "{'base_channels': 1024}"
    assert quote(10 ** 5000) == "<int of 16610 bits>"  # repr would raise (over 4300 digits)
    assert quote(torch.zeros(2, 3)) == "<Tensor of shape (2, 3) torch.float32>"
    assert quote(("a",)) == "('a',)"
    loop: dict = {}
    loop["self"] = loop
    assert len(quote(loop)) <= 80


@pytest.mark.parametrize("field", ["format_version", "kind", "model_type", "model_args", "step", "config"])
def test_nested_values_are_never_expanded_into_messages(field, tmp_path):
    """format_version (and the others) nested 9 deep and 10 wide through shared references:
    10**9 leaves in a 12 KB file. Quoted whole, the message alone would take gigabytes."""
    nest = _shared_nest()
    value = {"base_channels": nest} if field == "model_args" else nest
    path = _save(tmp_path / f"{field}.pth", **{field: value})
    assert path.stat().st_size < 20_000
    with _memory_cap(), pytest.raises(CheckpointError) as e:
        load_model(path)
    message = str(e.value)
    assert str(path) in message and field in message.replace("checkpoint kind", "kind")
    assert len(message) < 600, message[:2000]


def test_nested_model_state_keys_are_never_expanded(tmp_path):
    key = _shared_nest(depth=5, kind=tuple)  # hashable; 10**5 leaves (hashing is a pass over them)
    path = _save(tmp_path / "keys.pth", model_state={key: torch.zeros(1)})
    with pytest.raises(CheckpointError, match="model_state has the key") as e:
        load_model(path)
    assert len(str(e.value)) < 400


def test_export_metadata_bounds_text_from_the_checkpoint():
    net = TransformNet(TransformNetArgs(base_channels=1, num_residual=1))
    ckpt = {"config": {"naming": _shared_nest(), "style_image": "x" * 100_000}, "step": 3}
    with _memory_cap():
        meta = export_metadata(net, ckpt, Path("m.pth"))
    assert len(meta["name"]) <= 200 and len(meta["naming"]) <= 200 and len(meta["style_image"]) <= 200


def _strip(path: Path, size: tuple[int, int]) -> Path:
    Image.new("RGB", size, (200, 100, 50)).save(path)
    return path


@pytest.mark.parametrize("size, image_size, fragment", [
    ((1, 3000), 32, "an aspect ratio of 1:3000"),
    ((3000, 40), 32, "an aspect ratio of 1:75"),
    ((1000, 40), 2048, "over the limit of 67,108,864"),  # 1:25, but 2048 x 51200 pixels resized
])
def test_training_photo_of_absurd_proportions_is_refused_before_decoding(size, image_size, fragment,
                                                                        tmp_path, monkeypatch):
    path = _strip(tmp_path / "strip.png", size)
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded before the size check"))
    with pytest.raises(DataError, match="training photos may be at most 1:50|over the limit") as e:
        decode_resized(path, image_size)
    assert fragment in str(e.value) and str(path) in str(e.value)


def test_a_photo_at_the_aspect_bound_is_still_used(tmp_path):
    arr = decode_resized(_strip(tmp_path / "wide.png", (50, 1)), 16)
    assert arr.shape == (16, 800, 3)


def test_absurd_training_photo_is_skipped_by_the_dataset_and_by_prepare(tmp_path, capsys):
    folder = tmp_path / "photos"
    make_photo(folder / "a.jpg", (40, 30))
    _strip(folder / "b_strip.png", (1, 3000))
    make_photo(folder / "c.jpg", (30, 40), seed=1)
    files = find_training_images(folder)
    sample = ImageFolderDataset(files, 32, seed=0)[(0, 1)]  # index 1 is the strip
    assert sample.ok and sample.bad_files == [str(folder / "b_strip.png")]
    assert tuple(sample.image.shape) == (3, 32, 32)
    final = prepare_cache(folder, 32, num_workers=0, progress=False)
    err = capsys.readouterr().err
    assert "warning: skipping unreadable training file" in err and "aspect ratio of 1:3000" in err
    cache = open_cache(folder, 32, files)
    assert cache is not None and cache.shapes[1] == [0, 0] and final.is_dir()


# ---- 2. outputs that must never be replaced -----------------------------------------------------------

def _examples_state() -> dict:
    from test_convert import ExamplesTransformerNet  # the pytorch/examples layout the tests share

    return ExamplesTransformerNet().state_dict()


def test_convert_refuses_to_overwrite_its_input(tmp_path, capsys):
    src = tmp_path / "ex.pth"
    torch.save(_examples_state(), src)
    before = src.read_bytes()
    for dest in (src, tmp_path / "sub" / ".." / "ex.pth"):
        code, err = in_process(capsys, convert_main, src, dest)
        assert_clean_in_process(code, err, "is the input", "refusing to overwrite it")
    assert src.read_bytes() == before
    assert not (tmp_path / "sub").exists()


@pytest.mark.parametrize("where, fragment", [("folder", "is a folder"),
                                             ("below_file", "is a file, not a folder")])
def test_convert_to_a_folder_or_below_a_file_is_one_line(where, fragment, tmp_path, capsys):
    src = tmp_path / "ex.pth"
    src.write_bytes(b"never read")  # the output is checked before the input is loaded
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    dest = tmp_path if where == "folder" else blocker / "out.pth"
    code, err = in_process(capsys, convert_main, src, dest)
    assert_clean_in_process(code, err, fragment)
    assert len(err.strip().splitlines()) == 1 and blocker.read_text() == "x"


def _device_node(path: Path) -> Path:
    if not IS_ROOT:
        pytest.skip("making a device node needs root")
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a copy of /dev/null
    except OSError as e:
        pytest.skip(f"mknod failed: {e}")
    return path


def test_convert_and_export_never_replace_a_device(tmp_path, capsys):
    node = _device_node(tmp_path / "null")
    src = tmp_path / "ex.pth"
    torch.save(_examples_state(), src)
    code, err = in_process(capsys, convert_main, src, node)
    assert_clean_in_process(code, err, "not a regular file", "refusing to replace it")
    model = _save(tmp_path / "model.pth")
    for fmt in ("torchscript", "onnx"):
        code, err = in_process(capsys, export_main, model, "--format", fmt, "--output", node)
        assert_clean_in_process(code, err, "cannot write the export", "not a regular file")
    assert stat.S_ISCHR(os.stat(node).st_mode)


def test_export_refuses_its_input_before_loading_it(tmp_path, capsys, monkeypatch):
    import fast_nst.io.model_export as export

    model = _save(tmp_path / "m.pth")
    monkeypatch.setattr(export, "load_model", lambda p: pytest.fail("loaded before the output check"))
    code, err = in_process(capsys, export_main, model, "--format", "torchscript", "--output",
                           tmp_path / "." / "m.pth")
    assert_clean_in_process(code, err, "is the input", "refusing to overwrite it")


# ---- 3. one line instead of a traceback ---------------------------------------------------------------

@pytest.mark.parametrize("change, fragment", [
    ({"config": [1, 2]}, "config is a list, expected the training config as a dict"),
    ({"config": "naming: wave"}, "config is a str"),
    ({"model_state": {1: torch.zeros(1)}}, "model_state has the key 1, which is not a parameter name"),
    ({"model_state": {"encoder.0.conv.weight": [1.0]}}, "is a list, not a tensor"),
    ({"training_state": {"encoder.0.conv.weight": "w"}}, "training_state['encoder.0.conv.weight'] is a str"),
    ({"step": "3"}, "step is '3', not a step count"),
    ({"format_version": True}, "without a valid format_version (True)"),
])
def test_checkpoint_entries_of_the_wrong_type_are_one_line(change, fragment, tmp_path, capsys):
    path = _save(tmp_path / "odd.pth", **change)
    code, err = _eval(capsys, path, tmp_path)
    assert_clean_in_process(code, err, str(path), fragment)
    assert len(err.strip().splitlines()) == 1


def _onnx_model(path: Path, nodes, inits=(), meta=None) -> Path:
    _need_onnx()
    import onnx
    from onnx import TensorProto, helper

    dims = ["N", 3, "H", "W"]
    graph = helper.make_graph(nodes, "hostile", [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", "C", "H", "W"])],
                              initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8  # what onnxruntime of any supported version reads
    for key, value in (meta or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def _ints(name: str, values) -> object:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def _need_onnx() -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")


def _hostile_onnx(kind: str, path: Path) -> Path:
    _need_onnx()
    from onnx import helper, numpy_helper

    if kind == "six_channels":  # Tile by min(shape, [1, 2, 1, 1]): channels doubled at run time only
        nodes = [helper.make_node("Shape", ["input"], ["s"]), helper.make_node("Min", ["s", "two"], ["r"]),
                 helper.make_node("Tile", ["input", "r"], ["output"])]
        return _onnx_model(path, nodes, [_ints("two", [1, 2, 1, 1])])
    if kind == "failing_reshape":
        return _onnx_model(path, [helper.make_node("Reshape", ["input", "shape"], ["output"])],
                           [_ints("shape", [1, 3, 7, 5])])
    fill = numpy_helper.from_array(np.array([0.5], dtype=np.float32))
    shape = {"huge_constant": [1, 3, 10**6, 10**6], "wrong_size": [1, 3, 64, 64]}[kind]  # 12 TB; 64 x 64
    return _onnx_model(path, [helper.make_node("ConstantOfShape", ["shape"], ["output"], value=fill)],
                       [_ints("shape", shape)])


@pytest.mark.parametrize("kind, fragment", [
    ("six_channels", "of shape (1, 6, 8, 8), expected float32 of the input's shape"),
    ("failing_reshape", "the ONNX model failed on an input of shape 1x3x8x8 (Fail: "),
    ("huge_constant", "the ONNX model failed on an input of shape 1x3x8x8"),
    ("wrong_size", "of shape (1, 3, 64, 64)"),
])
def test_onnx_model_misbehaving_at_run_time_is_a_checkpoint_error(kind, fragment, tmp_path):
    path = _hostile_onnx(kind, tmp_path / f"{kind}.onnx")
    stylizer = load_stylizer(path, device="cpu")  # the declared signature looks right
    with pytest.raises(CheckpointError) as e:
        stylizer.stylize_tensor(torch.rand(1, 3, 8, 8))
    assert str(path) in str(e.value) and fragment in str(e.value), str(e.value)
    assert len(str(e.value)) < 600 and len(str(e.value).splitlines()) == 1


def test_eval_with_a_failing_onnx_model_prints_one_line(tmp_path, capfd):
    path = _hostile_onnx("failing_reshape", tmp_path / "bad.onnx")
    code, err = in_process(capfd, eval_main, "--model_file", path, "--image_file", _photo(tmp_path),
                           "--output_file", tmp_path / "out.png", "--device", "cpu")
    assert_clean_in_process(code, err, str(path), "failed on an input of shape")
    assert len(err.strip().splitlines()) == 1, err  # onnxruntime logs nothing of its own
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("meta, expect", [
    ({"format": "fast-nst", "format_version": "1", "step": "²"}, None),
    ({"format": "fast-nst", "format_version": "1", "step": "9" * 5000}, None),
    ({"format": "fast-nst", "format_version": "1", "step": "12"}, 12),
    ({"format": "fast-nst", "format_version": "²"}, "export format version '²'"),
])
def test_onnx_metadata_numbers_that_are_not_numbers(meta, expect, tmp_path):
    _need_onnx()
    from onnx import helper

    path = _onnx_model(tmp_path / "m.onnx", [helper.make_node("Identity", ["input"], ["output"])], meta=meta)
    if isinstance(expect, str):
        with pytest.raises(CheckpointError, match=expect):
            load_stylizer(path, device="cpu")
        return
    stylizer = load_stylizer(path, device="cpu")
    assert stylizer.info.get("step") == expect


def _prepare_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    for i in range(3):
        make_photo(folder / f"{i}.jpg", (40, 30), seed=i)
    return folder


def _assert_prepare_failed_cleanly(code: int, err: str, folder: Path, *fragments: str) -> None:
    assert_clean_in_process(code, err, "cannot write the cache", *fragments)
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert [line for line in lines if not line.startswith("prepare:")] == [lines[-1]], err  # tqdm's bar aside
    assert sorted(p.name for p in folder.iterdir()) == ["0.jpg", "1.jpg", "2.jpg"]


@pytest.mark.skipif(IS_ROOT, reason="root ignores folder permissions (simulated in the next test)")
def test_prepare_in_a_read_only_folder_is_one_line(tmp_path, capsys):
    folder = _prepare_folder(tmp_path)
    folder.chmod(0o555)
    try:
        code, err = in_process(capsys, data_main, "prepare", folder, "--image_size", "32", "--num_workers", "0")
    finally:
        folder.chmod(0o755)
    _assert_prepare_failed_cleanly(code, err, folder, "Permission denied")


def _failing_open(error: OSError, on_write: bool):
    """An ``open`` for the cache module that fails at once or at the first write."""

    class _Full(io.FileIO):
        def write(self, data):
            raise error

    def fake(path, mode="r", *args, **kwargs):
        if "w" not in mode:
            return open(path, mode, *args, **kwargs)
        if not on_write:
            raise error
        return _Full(path, "wb")

    return fake


@pytest.mark.parametrize("error, on_write, fragment", [
    (PermissionError(errno.EACCES, "Permission denied"), False, "Permission denied"),
    (OSError(errno.ENOSPC, "No space left on device"), True, "No space left on device"),
])
def test_prepare_on_an_unwritable_or_full_disk_is_one_line(error, on_write, fragment, tmp_path, capsys,
                                                           monkeypatch):
    folder = _prepare_folder(tmp_path)
    monkeypatch.setattr(cache_mod, "open", _failing_open(error, on_write), raising=False)
    code, err = in_process(capsys, data_main, "prepare", folder, "--image_size", "32", "--num_workers", "0")
    _assert_prepare_failed_cleanly(code, err, folder, fragment)


def test_truncated_cache_is_ignored_with_a_warning(tmp_path):
    folder = _prepare_folder(tmp_path)
    files = find_training_images(folder)
    prepare_cache(folder, 32, num_workers=0, progress=False)
    assert open_cache(folder, 32, files) is not None
    pixels = cache_dir(folder, 32) / "pixels.u8"
    full = pixels.stat().st_size
    with open(pixels, "r+b") as f:
        f.truncate(full - 100)
    with pytest.warns(UserWarning, match=rf"Ignoring damaged cache .*pixels.u8 holds {full - 100:,} bytes, "
                                         rf"its index needs {full:,}.*prepare"):
        assert open_cache(folder, 32, files) is None


# ---- 4. code-running pickles are called what they are ---------------------------------------------------

class _System:
    """Unpickling this would run a shell command (one that creates a file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("wrapped", [True, False], ids=["torch_save", "raw_pickle"])
def test_pickle_calling_os_system_is_refused_as_code_not_damage(wrapped, tmp_path, capsys):
    path, marker = tmp_path / "hostile.pth", tmp_path / "PWNED"
    if wrapped:
        torch.save({"format": "fast-nst", "payload": _System(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(_System(marker), protocol=2))
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    message = str(e.value)
    assert "refused: it asks to run code" in message and "system" in message
    assert "nothing from this file was executed" in message and "damaged" not in message
    code, err = _eval(capsys, path, tmp_path)
    assert_clean_in_process(code, err, "asks to run code")
    assert not marker.exists()


def test_torch_really_reports_os_system_as_a_blocked_global(tmp_path):
    """Guards the test above: torch's text is not the older "Unsupported global" one."""
    path = tmp_path / "hostile.pth"
    torch.save({"payload": _System(tmp_path / "PWNED")}, path)
    with pytest.raises(pickle.UnpicklingError, match=r"unsupported GLOBAL posix\.system whose module posix is blocked"):
        torch.load(path, weights_only=True)


@pytest.mark.parametrize("protocol", [2, 4, pickle.HIGHEST_PROTOCOL])
def test_a_plain_pickle_is_called_one_and_told_how_to_save_weights(protocol, tmp_path, capsys):
    """pickle.dump's files (not torch.save's) were "unreadable binary data: not a pickle, or a
    truncated one"; a cut one is called cut short, an old torch.save file still loads."""
    path = tmp_path / "dumped.pth"
    path.write_bytes(pickle.dumps({"conv1.weight": [[0.5, 0.25]], "step": 3}, protocol=protocol))
    code, err = _eval(capsys, path, tmp_path)
    assert_clean_in_process(code, err, f"{path}: not a PyTorch checkpoint: a plain Python pickle (pickle.dump's "
                            "format, not torch.save's)", "torch.save(model.state_dict(), 'model.pth')")
    assert "not a pickle" not in err and "damaged" not in err
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(CheckpointError, match=r"damaged \(a Python pickle that is cut short\)"):
        load_model(path)
    old = tmp_path / "old.pth"
    torch.save(_ckpt(), old, _use_new_zipfile_serialization=False)
    assert load_model(old)[1]["step"] == 3


_SAVE_ADVICE = "save the weights with torch.save(model.state_dict(), 'model.pth')"


@pytest.mark.parametrize("protocol", [0, 1])
def test_a_plain_pickle_of_protocol_0_or_1_is_called_one_not_text_or_binary(protocol, tmp_path):
    """Protocol 0 (text-looking) was "it is a text file", protocol 1 "unreadable binary data"; so
    were cut copies of them, now cut pickles of their protocol."""
    path = tmp_path / "dumped.pth"
    path.write_bytes(pickle.dumps({"conv1.weight": [[0.5, 0.25]], "step": 3}, protocol=protocol))
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    kind = "a plain Python pickle of protocol 0 (text-looking; " if protocol == 0 else "a plain Python pickle ("
    assert f"{path}: not a PyTorch checkpoint: {kind}pickle.dump's format, not torch.save's)" in str(e.value)
    assert _SAVE_ADVICE in str(e.value) and "text file" not in str(e.value) and "damaged" not in str(e.value)
    raw = path.read_bytes()
    for cut in (len(raw) - 1, len(raw) // 2):  # a cut one is not a whole pickle
        path.write_bytes(raw[:cut])
        with pytest.raises(CheckpointError) as e:
            load_model(path)
        assert f"damaged (a Python pickle of protocol {protocol} that is cut short)" in str(e.value)


@pytest.mark.parametrize("protocol", [0, 1, 2])
def test_a_plain_pickle_of_tensors_is_refused_as_code_and_told_how_to_save_weights(protocol, tmp_path):
    """pickle.dump of tensors (protocols below 3) names torch.storage._load_from_bytes: refused as
    code, as it should be, but was not told to be a plain pickle nor how to save the weights."""
    path = tmp_path / "dumped.pth"
    path.write_bytes(pickle.dumps({"conv1.weight": torch.ones(2, 2)}, protocol=protocol))
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    message = str(e.value)
    if protocol:  # protocol 0's tensors fail torch's unpickler before it names the function
        assert f"{path}: refused: it asks to run code" in message and "torch.storage._load_from_bytes" in message
    assert "a plain Python pickle" in message and _SAVE_ADVICE in message and "damaged" not in message


def test_an_old_torch_save_cut_inside_a_function_name_is_damaged_not_code(tmp_path):
    """A pre-1.6 torch.save file cut inside "torch._utils\\n_rebuild_tensor_v2" was "asks to run
    code (torch._utils._rebuild_tens)": the unpickler reads the cut name's first letters."""
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buffer, _use_new_zipfile_serialization=False)
    data = buffer.getvalue()
    start = data.index(b"ctorch._utils\n")
    for end in range(start + 1, start + len(b"ctorch._utils\n_rebuild_tensor_v2\n")):
        path = tmp_path / f"cut{end}.pth"
        path.write_bytes(data[:end])
        with pytest.raises(CheckpointError) as e:
            load_model(path)
        assert "damaged (a PyTorch file in the format before PyTorch 1.6 that is truncated or corrupt)" in str(e.value), \
            (data[start:end], str(e.value))
        assert "run code" not in str(e.value)


def test_a_crash_inside_the_loop_does_not_hang_on_loader_workers(tmp_path, train_dir, style_file):
    """Loader workers ignore SIGTERM (the main process decides when to stop); an unexpected
    error in a step must still end the process promptly instead of waiting for them at exit."""
    import subprocess
    import sys

    from conftest import REPO, tiny_values, write_config

    conf = write_config(tmp_path / "c.yml", **tiny_values(tmp_path / "m", train_dir, style_file, num_workers=2))
    script = ("import sys; from fast_nst.training import trainer, load_train_config\n"
              "def boom(self, images): raise RuntimeError('boom in a step')\n"
              "trainer.Trainer.train_step = boom\n"
              f"trainer.train(load_train_config({str(conf)!r}), progress=False)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "boom in a step" in result.stderr


# ---- 5. weights a transform net cannot hold: one message for .pth and .safetensors -------------------

_WEIGHT = "encoder.0.1.weight"  # the first convolution's, (1, 3, 9, 9) in the smallest network


@pytest.mark.parametrize("change, fragment", [
    (lambda w: w.to(torch.complex64), "tensor 'encoder.0.1.weight' is complex64, where the network holds float32 "
                                      "(real floating point: float32, float16, bfloat16 or float64)"),
    (lambda w: w.to(torch.int64), "tensor 'encoder.0.1.weight' is int64, where the network holds float32"),
    (lambda w: w.bool(), "tensor 'encoder.0.1.weight' is bool, where the network holds float32"),
    (lambda w: w[None], "tensor 'encoder.0.1.weight' has shape [1, 1, 3, 9, 9], where the network needs [1, 3, 9, 9]"),
    (lambda w: torch.full_like(w, float("nan")), "its weights are NaN or infinite (encoder.0.1.weight)"),
], ids=["complex", "int64", "bool", "shape", "nan"])
def test_weights_that_do_not_fit_read_the_same_in_a_pth_and_a_safetensors(change, fragment, tmp_path, capsys):
    """A .pth took complex (imaginary part dropped), integer and boolean weights without a word,
    and said a wrong shape in PyTorch's words; a .safetensors said it in its own."""
    pytest.importorskip("safetensors")
    from fast_nst.io.safetensors_file import write_safetensors

    ckpt = _ckpt()
    ckpt["model_state"][_WEIGHT] = change(ckpt["model_state"][_WEIGHT])
    pth, sft = tmp_path / "m.pth", tmp_path / "m.safetensors"
    torch.save(ckpt, pth)
    write_safetensors(ckpt, sft)
    said = []
    for path in (pth, sft):
        with pytest.raises(CheckpointError) as e:
            load_model(path)
        assert str(e.value).startswith(f"{path}: ") and fragment in str(e.value), str(e.value)
        said.append(str(e.value).removeprefix(f"{path}: "))
    assert said[0] == said[1]
    code, err = _eval(capsys, pth, tmp_path)
    assert_clean_in_process(code, err, str(pth), fragment)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_weights_of_another_float_type_load_in_both_formats(dtype, tmp_path):
    """Half- or double-precision weights are the network's, cast (a .safetensors refused them)."""
    pytest.importorskip("safetensors")
    from fast_nst.io.safetensors_file import write_safetensors

    ckpt = _ckpt()
    ckpt["model_state"] = {k: v.to(dtype) if v.is_floating_point() else v for k, v in ckpt["model_state"].items()}
    torch.save(ckpt, tmp_path / "m.pth")
    write_safetensors(ckpt, tmp_path / "m.safetensors")
    for path in (tmp_path / "m.pth", tmp_path / "m.safetensors"):
        state = load_model(path)[0].state_dict()
        assert state[_WEIGHT].dtype == torch.float32
        assert torch.equal(state[_WEIGHT], ckpt["model_state"][_WEIGHT].float())
