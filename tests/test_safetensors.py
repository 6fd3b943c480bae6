"""``.safetensors`` models: export from a .pth, identical outputs for every registered network
type, loading wherever a .pth loads (eval.py, load_stylizer, reports, export), and hostile
headers refused with one line each before any tensor is read."""

from __future__ import annotations

import json
import stat
import struct
from pathlib import Path

import pytest
import torch
from PIL import Image
from hypothesis import given, settings, strategies as st

from conftest import assert_clean_in_process, examples, export_cli, file_size_cap, in_process, make_photo, random_adain_net
from fast_nst import load_stylizer
from fast_nst.commands.eval import main as eval_main
from fast_nst.commands.export import main as export_main
from fast_nst.core.config import TrainConfig
from fast_nst.core.errors import CheckpointError, FastNSTError
from fast_nst.core.files import process_umask
from fast_nst.core.untrusted import events, safetensors_header
from fast_nst.core.untrusted.safetensors_header import MAX_HEADER_BYTES, parse_header
from fast_nst.io.checkpoint import atomic_torch_save, load_model, make_checkpoint, read_checkpoint
from fast_nst.io.publish import model_card
from fast_nst.io.safetensors_file import METADATA_KEY
from fast_nst.nets import NETWORKS, build_network
from fast_nst.report.collect import load_models

safetensors_torch = pytest.importorskip("safetensors.torch")

PHOTO = (1, 3, 21, 34)  # off the 4 px grid of the Johnson nets' strides


def _network(model_type: str) -> tuple[torch.nn.Module, TrainConfig]:
    torch.manual_seed(0)
    if model_type == "adain":
        return random_adain_net("relu2_1"), TrainConfig(naming="ad", model_type="adain", style_dir="art")
    if model_type == "johnson_multi":
        net = build_network(model_type, {"num_styles": 2, "base_channels": 8, "num_residual": 1})
        return net, TrainConfig(naming="multi", model_type=model_type, style_images=("a.jpg", "b.jpg"))
    args = {"base_channels": 8, "num_residual": 1} if model_type == "johnson" else {}
    return build_network(model_type, args), TrainConfig(naming=model_type, model_type=model_type, style_image="s.jpg")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """model_type -> (its .pth, its .safetensors written by the export command)."""
    root = tmp_path_factory.mktemp("safetensors")
    out = {}
    for model_type in NETWORKS:
        net, cfg = _network(model_type)
        pth = root / f"{model_type}.pth"
        atomic_torch_save(make_checkpoint(net, cfg, step=3), pth)
        printed = export_cli(pth, "--format", "safetensors")
        assert "every tensor read back identical" in printed
        out[model_type] = (pth, pth.with_suffix(".safetensors"))
    return out


def test_every_registered_network_is_tested():
    assert set(NETWORKS) == {"johnson", "johnson_slim", "johnson_multi", "adain"}


@pytest.mark.parametrize("model_type", ["johnson", "johnson_slim", "johnson_multi", "adain"])
def test_round_trip_gives_identical_outputs(exported, model_type):
    pth, sft = exported[model_type]
    style = Image.new("RGB", (22, 20), (200, 40, 90)) if model_type == "adain" else None
    outputs = []
    for path in (pth, sft):
        s = load_stylizer(str(path), device="cpu")
        if style is not None:
            s.set_style(style, style_size=32)
        elif s.style_names:
            s.set_style(s.style_names[1])
        torch.manual_seed(1)
        outputs.append(s.stylize_tensor(torch.rand(*PHOTO)))
    assert outputs[0].shape == PHOTO and torch.equal(outputs[0], outputs[1])
    a, ca = load_model(pth)
    b, cb = load_model(sft)
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert (cb["model_type"], cb["step"], cb["kind"], cb["config"]["naming"]) == (ca["model_type"], 3, "model",
                                                                                 ca["config"]["naming"])
    assert cb.get("style_names") == ca.get("style_names") and cb["exported_from"] == pth.name


def test_exported_safetensors_have_the_mode_of_other_outputs(exported):
    """export --format safetensors wrote 0600 files (safetensors' own temporary file)."""
    pth, safetensors = exported["johnson"]
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in (pth, safetensors)}
    assert set(modes.values()) == {0o666 & ~process_umask()}, modes


def test_a_folder_holding_only_the_safetensors_stands_for_it(exported, tmp_path):
    folder = tmp_path / "wave"
    folder.mkdir()
    (folder / "wave.safetensors").write_bytes(exported["johnson"][1].read_bytes())
    s = load_stylizer(str(folder), device="cpu")
    assert Path(s.info["path"]) == folder / "wave.safetensors" and s.info["step"] == 3


def test_the_web_app_lists_safetensors_models(exported):
    from fast_nst.commands.app import find_models

    found = find_models(exported["johnson"][1].parent)
    assert found["johnson.safetensors"] == exported["johnson"][1] and found["johnson.pth"] == exported["johnson"][0]


def test_the_metadata_describes_the_model_and_no_local_paths(exported):
    _, sft = exported["adain"]
    with safetensors_torch.safe_open(str(sft), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "pt"
    desc = json.loads(meta[METADATA_KEY])
    assert desc["format"] == "fast-nst" and desc["model_type"] == "adain" and desc["kind"] == "model"
    assert desc["model_args"]["encoder_file"] == "" and "model_state" not in desc
    assert read_checkpoint(sft)["config"]["style_dir"] == "art"  # the .pth reader's view of it too


def test_eval_and_a_report_read_a_safetensors_model(exported, tmp_path, capsys):
    _, sft = exported["johnson_multi"]
    photo = make_photo(tmp_path / "p.jpg", (30, 26))
    code, err = in_process(capsys, eval_main, "--model_file", sft, "--image_file", photo, "--output_file",
                           tmp_path / "o.png", "--style", "style1", "--device", "cpu")
    assert code == 0, err
    assert (tmp_path / "o.png").stat().st_size > 0
    entries = load_models([str(exported["johnson"][1])], "cpu", [None])
    assert entries[0].settings.style_weight == TrainConfig().style_weight  # its config was read back


def test_the_model_card_lists_settings_losses_and_the_style_thumbnail(exported, tmp_path):
    pth, _ = exported["johnson"]
    style = make_photo(tmp_path / "painting.png", (900, 600))
    out = tmp_path / "hub" / "j.safetensors"
    printed = export_cli(pth, "--output", out, "--model_card", "--style_image", style, "--repo_id", "me/j",
                         "--license", "cc-by-4.0")
    card = (out.parent / "README.md").read_text()
    assert f"hf upload me/j {out.parent} . --include j.safetensors --include style.jpg --include README.md" in printed
    assert card.startswith("---\nlicense: cc-by-4.0\nlibrary_name: fast-nst\n") and "![the style image](style.jpg)" in card
    assert "The model is released under `cc-by-4.0`" in card
    for row in ("| style_weight | 100000.0 |", "| content_layers | relu2_2 |", "| lr | 0.0003 |", "| steps | 3 |"):
        assert row in card
    assert "python eval.py --model_file hf://me/j/j.safetensors" in card
    with Image.open(out.parent / "style.jpg") as img:
        assert max(img.size) == 512


def test_model_card_text_from_a_file_is_escaped():
    ckpt = {"model_type": "johnson", "step": 1, "config": {"naming": "x|y\n# z", "lr": "<script>"}}
    card = model_card(ckpt, "m.safetensors")
    assert "# x\\|y\\x0a# z: fast" in card and "<script>" not in card and "&lt;script>" in card
    assert card.startswith("---\nlicense: unknown\n") and "No licence was given for this model yet" in card


def test_a_failed_export_write_says_why_and_keeps_the_file(exported, capsys, tmp_path):
    """A full disk used to end in "safetensors_rust.SafetensorError: ... No space left on device"."""
    pth, sft = exported["johnson"]
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"mine")
    with file_size_cap(sft.stat().st_size // 2):
        code, err = in_process(capsys, export_main, pth, "--format", "safetensors", "-o", out)
    assert code == 1 and err == f"error: cannot write --output {out}: File too large.\n", err
    assert out.read_bytes() == b"mine" and sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_export_refuses_onnx_options_and_a_wrong_suffix(exported, capsys, tmp_path):
    pth, _ = exported["johnson"]
    code, err = in_process(capsys, export_main, pth, "--format", "safetensors", "--opset", "17")
    assert_clean_in_process(code, err, "--opset, --check_size and --style are for onnx")
    code, err = in_process(capsys, export_main, pth, "--format", "safetensors", "--output", tmp_path / "m.bin")
    assert_clean_in_process(code, err, "needs the .safetensors suffix")
    code, err = in_process(capsys, export_main, pth, "--model_card")
    assert_clean_in_process(code, err, "are for --format safetensors")
    code, err = in_process(capsys, export_main, pth, "--format", "safetensors", "--license", "mit")
    assert_clean_in_process(code, err, "--style_image and --license are for the model card: add --model_card")
    code, err = in_process(capsys, export_main, pth, "-o", tmp_path / "l.safetensors", "--model_card", "--license",
                           "MIT License\x1b[2J")
    assert_clean_in_process(code, err, "give a Hugging Face Hub licence identifier", "\\x1b")
    assert not (tmp_path / "l.safetensors").exists()
    out = tmp_path / "m.safetensors"
    code, err = in_process(capsys, export_main, pth, "-o", out, "--model_card", "--style_image", tmp_path / "no.jpg")
    assert_clean_in_process(code, err, "--style_image", "no.jpg")
    assert not out.exists()


# ---- hostile files ----------------------------------------------------------------------------


def _raw(path: Path, header: object, data: bytes = b"", length: int | None = None) -> Path:
    """A file in safetensors' layout with ``header`` (a dict, or bytes as they are)."""
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob) if length is None else length) + blob + data)
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _meta(exported) -> dict:
    with safetensors_torch.safe_open(str(exported["johnson"][1]), "pt") as f:
        return f.metadata()


def _entry(dtype="F32", shape=(2,), begin=0, end=8) -> dict:
    return {"dtype": dtype, "shape": list(shape), "data_offsets": [begin, end]}


HOSTILE = {
    "huge length": (lambda p, m: _raw(p, b"{}", length=1 << 62), "declares 4,611,686,018,427,387,904 bytes"),
    "length past the end": (lambda p, m: _raw(p, b"{}", length=5000), "truncated or not a safetensors file"),
    "deep JSON": (lambda p, m: _raw(p, b"[" * 5000 + b"]" * 5000), "JSON nested 5000 levels deep"),
    "not JSON": (lambda p, m: _raw(p, b"{not json"), "not valid JSON"),
    "wrong dtype": (lambda p, m: _raw(p, {"w": _entry("STR")}, bytes(8)), "has the dtype STR"),
    "overlapping": (lambda p, m: _raw(p, {"a": _entry(), "b": _entry(begin=4, end=12)}, bytes(12)), "overlaps"),
    "past the end": (lambda p, m: _raw(p, {"a": _entry()}, bytes(4)), "extend past the end of the file"),
    "a gap": (lambda p, m: _raw(p, {"a": _entry(begin=4, end=12)}, bytes(12)), "belong to no tensor"),
    "shape and offsets disagree": (lambda p, m: _raw(p, {"a": _entry(shape=(1 << 38, 1 << 38))}, bytes(8)),
                                   "but its offsets span 8"),
    "metadata not text": (lambda p, m: _raw(p, {"__metadata__": {"a": 1}}), "not a mapping of text to text"),
    "no fast-nst metadata": (lambda p, m: _raw(p, {"__metadata__": {"format": "pt"}}), "without fast-nst's"),
    "deep metadata": (lambda p, m: _raw(p, {"__metadata__": {METADATA_KEY: "[" * 40 + "]" * 40}}),
                      "JSON nested 40 levels deep"),
    "training kind": (lambda p, m: _raw(p, {"__metadata__": {METADATA_KEY: json.dumps({"kind": "training"})}}),
                      "a .safetensors file is a final model (kind 'model'), this one says 'training'"),
    "empty": (lambda p, m: _bytes(p, b""), "shorter than the 8-byte header length"),
    "a .pth": (lambda p, m: _bytes(p, m.read_bytes()), "a PyTorch .pth file under a .safetensors name; rename"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_headers_are_one_clear_line(exported, tmp_path, case):
    make, fragment = HOSTILE[case]
    path = make(tmp_path / "m.safetensors", exported["johnson"][0] if case == "a .pth" else _meta(exported))
    with pytest.raises(CheckpointError) as e:
        load_stylizer(str(path), device="cpu")
    message = str(e.value)
    assert fragment in message and "\n" not in message and len(message) < 600, message


def _rewritten(exported, tmp_path: Path, change) -> Path:
    """The johnson export with its tensors changed by ``change(state)`` and its metadata kept."""
    state = safetensors_torch.load_file(str(exported["johnson"][1]))
    change(state)
    path = tmp_path / "m.safetensors"
    safetensors_torch.save_file(state, str(path), metadata=_meta(exported))
    return path


@pytest.mark.parametrize("change,fragment", [
    (lambda s: s.update({"encoder.0.1.weight": torch.zeros(8, 3, 9, 7)}),
     "tensor 'encoder.0.1.weight' has shape [8, 3, 9, 7], where the network needs [8, 3, 9, 9]"),
    (lambda s: s.update({"encoder.0.1.weight": s["encoder.0.1.weight"].long()}),
     "tensor 'encoder.0.1.weight' is int64, where the network holds float32"),
    (lambda s: s.update({"encoder.0.1.weight": s["encoder.0.1.weight"].to(torch.complex64)}), "is complex64"),
    (lambda s: s.pop("encoder.0.1.weight"), "missing encoder.0.1.weight"),
    (lambda s: s.update({"extra": torch.zeros(1)}), "unexpected extra"),
])
def test_tensors_are_checked_against_the_network_before_any_is_read(exported, tmp_path, monkeypatch, capsys,
                                                                     change, fragment):
    path = _rewritten(exported, tmp_path, change)

    def never(*args, **kwargs):
        raise AssertionError("a tensor was read before the shapes were checked")

    monkeypatch.setattr(safetensors_header, "safe_open", never)
    photo = make_photo(tmp_path / "p.jpg", (20, 20))
    code, err = in_process(capsys, eval_main, "--model_file", path, "--image_file", photo, "--device", "cpu")
    assert_clean_in_process(code, err, fragment)
    assert err.count("\n") == 1


def test_without_the_safetensors_package_the_error_names_the_install(exported, monkeypatch):
    monkeypatch.setattr(safetensors_header, "safe_open", None)
    with pytest.raises(CheckpointError, match=r"needs the safetensors package: pip install safetensors"):
        load_stylizer(str(exported["johnson"][1]), device="cpu")


_HEADERS = st.recursive(st.none() | st.booleans() | st.integers(-2, 1 << 65) | st.text(max_size=8),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                    max_size=3), max_leaves=12)
_ENTRIES = st.dictionaries(st.sampled_from(["a", "b", "__metadata__"]),
                           st.fixed_dictionaries({"dtype": st.sampled_from(["F32", "U8", "I64", "X"]),
                                                  "shape": st.lists(st.integers(-1, 4), max_size=3),
                                                  "data_offsets": st.lists(st.integers(-1, 40), min_size=2,
                                                                           max_size=2)}), max_size=3)


@settings(max_examples=examples(60), deadline=None)
@given(header=_HEADERS | _ENTRIES, extra=st.integers(0, 40), length=st.none() | st.integers(0, 1 << 64 - 1))
def test_the_header_parser_gives_a_header_or_one_error(header, extra, length):
    blob = json.dumps(header).encode()
    prefix = struct.pack("<Q", len(blob) if length is None else length) + blob
    try:
        parsed = parse_header(prefix, len(prefix) + extra, "m.safetensors")
    except FastNSTError as e:
        assert isinstance(e, CheckpointError) and "\n" not in str(e)
        return
    covered = sum(t.end - t.begin for t in parsed.tensors.values())
    assert covered == extra and all(isinstance(v, str) for v in parsed.metadata.values())


@settings(max_examples=examples(40), deadline=None)
@given(raw=st.binary(max_size=64), size=st.integers(0, MAX_HEADER_BYTES * 2))
def test_the_header_parser_takes_any_bytes(raw, size):
    try:
        parse_header(raw, max(size, len(raw)), "m.safetensors")
    except CheckpointError as e:
        assert "\n" not in str(e)


def test_training_writes_its_final_model_as_safetensors_too(tiny_config, capsys, monkeypatch):
    from fast_nst.commands.train import main as train_main

    config = tiny_config("st", final_format="safetensors", max_steps=1, model_args={"base_channels": 8,
                                                                                    "num_residual": 1})
    code, err = in_process(capsys, train_main, "-c", config, "--no_progress")
    assert code == 0, err
    run = config.parent.parent / "models" / "st"
    assert "st.pth and st.safetensors" in err
    a, _ = load_model(run / "st.pth")
    b, ckpt = load_model(run / "st.safetensors")
    assert ckpt["config"]["final_format"] == "safetensors" and ckpt["step"] == 1
    # The file meant for sharing has the mode of every other output (it was 0600).
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in (run / "st.pth", run / "st.safetensors")}
    assert set(modes.values()) == {0o666 & ~process_umask()}, modes
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    printed = export_cli(run / "st.pth", "--output", run / "card" / "st.safetensors", "--model_card")
    card = (run / "card" / "README.md").read_text()
    assert "Last logged values (step 1, as in the run's TensorBoard logs)" in card and "| loss/total | " in card
    assert "| loss/style/" not in card and "Losses for the model card" in printed
    monkeypatch.setattr(events, "MAX_EVENT_BYTES", 100)  # logs over the bound: not parsed, a note
    printed = export_cli(run / "st.pth", "--output", run / "card" / "st.safetensors", "--model_card")
    assert "note: the model card lists no loss values" in printed and "more than the 100 read" in printed
    assert "Last logged values" not in (run / "card" / "README.md").read_text()
    monkeypatch.setattr(safetensors_header, "safe_open", None)  # the package missing: refused before training
    code, err = in_process(capsys, train_main, "-c", config, "--no_progress", "--overwrite")
    assert_clean_in_process(code, err, "final_format: safetensors: reading and writing .safetensors files needs "
                                       "the safetensors package: pip install safetensors")
    assert (run / "st.safetensors").is_file()  # nothing was cleared


@settings(max_examples=examples(20), deadline=None)
@given(data=st.binary(max_size=200))
def test_the_event_file_reader_gives_losses_or_one_error(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("events")
    (folder / "events.out.tfevents.1.host").write_bytes(data)
    try:
        step, values = events.last_losses(folder)
    except FastNSTError as e:
        assert "\n" not in str(e)
        return
    assert step >= 0 and all(isinstance(v, float) for v in values.values())
