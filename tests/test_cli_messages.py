"""What train.py, eval.py and ``python -m fast_nst.data`` tell a user: output names, resume hints,
option checks, plain warnings. All in-process: (exit code, stderr) from the CLI entry points."""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from fast_nst.core import device as device_module
from fast_nst.io.checkpoint import atomic_torch_save, make_checkpoint
from fast_nst import load_stylizer
from fast_nst.commands import eval as eval_module
from fast_nst.commands.eval import main as eval_main
from fast_nst.stylize import resolve_precision
from fast_nst.commands.train import main as train_main, train_command
from fast_nst.training import load_train_config as load_config
from fast_nst.nets.johnson import TransformNet, TransformNetArgs

from conftest import REPO, assert_clean_in_process, in_process, make_photo, run_cli, tiny_values, write_config


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    net = TransformNet(TransformNetArgs(base_channels=8, num_residual=1))
    path = tmp_path_factory.mktemp("model") / "tiny.pth"
    atomic_torch_save(make_checkpoint(net, load_config(None, ["style_image=s", "naming=tiny"]), 1), path)
    return path


# ---- eval.py ---------------------------------------------------------------------------------

def test_folder_inputs_sharing_a_stem_get_distinct_outputs(model_file, tmp_path, capsys):
    src = tmp_path / "photos"
    make_photo(src / "x.jpg", (30, 20), seed=1)
    make_photo(src / "x.png", (30, 20), seed=2, fmt="PNG")
    make_photo(src / "y.png", (30, 20), seed=3, fmt="PNG")
    # x.JPG: the same stem and suffix but for case; x_jpg.jpg: its own stem is x's first choice
    make_photo(src / "x.JPG", (30, 20), seed=4)
    make_photo(src / "x_jpg.jpg", (30, 20), seed=5)
    out = tmp_path / "out"
    code, err = in_process(capsys, eval_main, "--model_file", model_file, "--image_file", src,
                     "--output_file", out, "--device", "cpu")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        "x_jpg_2_tiny.jpg", "x_jpg_3_tiny.jpg", "x_jpg_tiny.jpg", "x_png_tiny.jpg", "y_tiny.jpg"]


def test_single_image_into_an_output_folder(model_file, tmp_path, capsys):
    photo = make_photo(tmp_path / "p.jpg", (30, 20))
    for folder, arg in ((tmp_path / "existing", None), (tmp_path / "new", "new/")):
        if arg is None:
            folder.mkdir()
        code, err = in_process(capsys, eval_main, "--model_file", model_file, "--image_file", photo,
                         "--output_file", str(folder) if arg is None else f"{tmp_path}/{arg}", "--device", "cpu")
        assert code == 0, err
        assert Image.open(folder / "p_tiny.jpg").size == (30, 20)


@pytest.mark.parametrize("args, fragments", [
    (["--tile_size", "-5"], ["--tile_size must be auto, 0 or a positive number"]),
    (["--max_image_pixels", "-5"], ["--max_image_pixels must be >= 0"]),
    (["--scale", "10", "--max_image_pixels", "5000"], ["scale 10 would make a 300 x 200 image",
                                                      "--max_image_pixels"]),
], ids=["negative_tile", "negative_pixel_limit", "upscale_past_limit"])
def test_eval_option_errors(args, fragments, model_file, tmp_path, capsys):
    photo = make_photo(tmp_path / "p.jpg", (30, 20))
    code, err = in_process(capsys, eval_main, "--model_file", model_file, "--image_file", photo,
                     "--output_file", tmp_path / "o.jpg", "--device", "cpu", *args)
    assert_clean_in_process(code, err, *fragments)
    assert not (tmp_path / "o.jpg").exists()


@pytest.mark.parametrize("amx, noted", [(False, True), (True, False), (None, False)],
                         ids=["no_amx", "amx", "unknown"])
def test_bf16_on_a_cpu_without_amx_is_noted(amx, noted, model_file, tmp_path, capsys, monkeypatch):
    """bf16 is slower than fp32 on a CPU without AMX (docs/benchmarks.md): eval.py says so in one
    line before it loads the model, and still does what it was asked."""
    monkeypatch.setattr(device_module, "cpu_has_amx", lambda: amx)
    photo = make_photo(tmp_path / "p.jpg", (30, 20))
    code, err = in_process(capsys, eval_main, "--model_file", model_file, "--image_file", photo,
                           "--output_file", tmp_path / "o.jpg", "--device", "cpu", "--precision", "bf16")
    assert code == 0, err
    assert Image.open(tmp_path / "o.jpg").size == (30, 20)
    assert ("this CPU has no AMX" in err and "--precision int8" in err) == noted, err


@pytest.mark.parametrize("amx, chosen", [(True, "bf16"), (False, "fp32"), (None, "fp32")],
                         ids=["amx", "no_amx", "unknown"])
def test_precision_auto_says_what_it_chose(amx, chosen, model_file, tmp_path, capsys, monkeypatch):
    """--precision auto: bf16 on a CPU with AMX, fp32 on one without (never int8), in one line."""
    monkeypatch.setattr(device_module, "cpu_has_amx", lambda: amx)
    photo = make_photo(tmp_path / "p.jpg", (30, 20))
    loaded = []
    monkeypatch.setattr(eval_module, "load_stylizer", lambda *a, **kw: loaded.append(load_stylizer(*a, **kw)) or loaded[-1])
    code, err = in_process(capsys, eval_main, "--model_file", model_file, "--image_file", photo,
                           "--output_file", tmp_path / "o.jpg", "--device", "cpu", "--precision", "auto")
    assert code == 0, err
    assert Image.open(tmp_path / "o.jpg").size == (30, 20)
    assert f"precision auto: {chosen} (" in err and "note:" not in err, err
    assert ("--precision int8 is faster on such CPUs" in err) == (amx is False)
    assert [s.precision for s in loaded] == [chosen]


@pytest.mark.parametrize("precision", ["auto", "bf16"])
def test_int8_advice_before_the_model_loads_names_the_models_that_take_it(precision, monkeypatch):
    """The notes come before the model is known, and arbitrary-style models refuse int8: the
    advice was unconditional ("--precision int8 is faster on such CPUs")."""
    monkeypatch.setattr(device_module, "cpu_has_amx", lambda: False)
    note = (device_module.auto_precision(torch.device("cpu"))[1] if precision == "auto"
            else device_module.slow_bf16_note(torch.device("cpu"), "bf16"))
    advice = re.findall(r"--precision int8[^,(]*", note)  # each up to the clause's end
    assert advice and all("for single- and multi-style models" in a for a in advice), note


def test_auto_precision_per_device_and_model_file(monkeypatch):
    for bf16, chosen in ((True, "bf16"), (False, "fp16")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, bf16=bf16, **k: bf16)
        assert device_module.auto_precision(torch.device("cuda"))[0] == chosen
    monkeypatch.setattr(device_module, "cpu_has_amx", lambda: True)
    assert resolve_precision("auto", "m.pth", "cpu") == ("bf16", "this CPU has AMX")
    # onnxruntime runs an export in float32; OpenVINO on the CPU whatever the device says.
    assert resolve_precision("auto", "m.onnx", "cpu")[0] == "fp32"
    assert resolve_precision("auto", "m.onnx", "cuda", "openvino")[0] == "bf16"
    assert resolve_precision("int8", "m.pth", "cpu") == ("int8", "")


def test_the_bf16_note_is_for_cpus_and_bf16_only(monkeypatch):
    monkeypatch.setattr(device_module, "cpu_has_amx", lambda: False)
    assert device_module.slow_bf16_note(torch.device("cpu"), "bf16").startswith("note: ")
    for where, precision in (("cpu", "fp32"), ("cpu", "int8"), ("cuda", "bf16")):
        assert device_module.slow_bf16_note(torch.device(where), precision) is None
    monkeypatch.undo()
    assert device_module.cpu_has_amx() in (True, False, None)


def test_slow_training_precisions_are_named(monkeypatch):
    """fp16 training on any CPU (no fast fp16 convolution backward: ~80x fp32's time) and bf16
    on a CPU without AMX get a warning; a GPU and the fast choices none."""
    note = device_module.slow_training_note
    cpu = torch.device("cpu")
    for amx in (True, False, None):
        monkeypatch.setattr(device_module, "cpu_has_amx", lambda: amx)
        assert "fp16 trains about 80x slower than fp32 on a CPU" in note(cpu, "fp16")
        assert note(cpu, "fp32") is None and note(torch.device("cuda"), "fp16") is None
        assert note(torch.device("cuda"), "bf16") is None
        assert (note(cpu, "bf16") is not None) == (amx is False)
        if amx is False:
            assert "bf16 trains slower than fp32" in note(cpu, "bf16")


def test_train_warns_of_fp16_on_a_cpu_before_its_checks_end(tiny_conf, tmp_path, capsys):
    """The warning comes before the work (here a later check stops the run). In-process, pytest
    records warnings instead of printing them; run_command's one-line form is checked with a
    subprocess below."""
    with pytest.warns(UserWarning, match="fp16 trains about 80x slower than fp32 on a CPU") as caught:
        code, err = in_process(capsys, train_main, "-c", tiny_conf, "--set", f"model_path={tmp_path / 'm'}",
                               "--set", "precision=fp16", "--set", "batch_size=64")
    assert_clean_in_process(code, err, "training images for a global batch of 64")
    assert len([w for w in caught if "fp16" in str(w.message)]) == 1


def test_video_into_an_image_name_is_refused(model_file, tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not checked before the output name")
    code, err = in_process(capsys, eval_main, "--model_file", model_file, "--video_file", clip,
                     "--output_file", tmp_path / "o.jpg", "--device", "cpu")
    assert_clean_in_process(code, err, "names an image", ".mp4")


# ---- train.py --------------------------------------------------------------------------------

def test_train_command_repeats_the_config_and_every_override():
    cmd = train_command("conf/my style.yml", ["max_steps=20", "train_dir=/data/my photos"])
    assert cmd == "python train.py -c 'conf/my style.yml' --set max_steps=20 --set 'train_dir=/data/my photos'"
    # a resumed run reads the same images: the hint keeps the limit it was started with
    assert train_command("c.yml", [], 0) == "python train.py -c c.yml --max_image_pixels 0"


@pytest.fixture
def tiny_conf(tmp_path, train_dir, style_file) -> Path:
    values = tiny_values(tmp_path / "models", train_dir, style_file, max_steps=2, num_samples=0)
    values.pop("model_path")  # given with --set, so the hints must repeat it
    return write_config(tmp_path / "tiny.yml", **values)


def test_train_takes_the_max_image_pixels_its_messages_advise(tiny_conf, train_dir, tmp_path, capsys, monkeypatch):
    """The message of an image over the limit advises --max_image_pixels; train.py had no such flag."""
    import fast_nst.training.data as data
    from PIL import Image

    models = f"model_path={tmp_path / 'models'}"
    code, err = in_process(capsys, train_main, "-c", tiny_conf, "--set", models, "--max_image_pixels", "100")
    # the style image (56 x 48 px), read before any training
    assert_clean_in_process(code, err, "style.png", "limit of 100 pixels", "--max_image_pixels N")
    assert not (tmp_path / "models").exists()

    # Loader workers decode within the same limit, also when started by spawn or forkserver
    # (a fresh Pillow, with its own default limit), not only when forked.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 123)
    loader = data.build_loader(data.find_training_images(train_dir), 16, 2, 0, num_workers=1)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 89_478_485)
    monkeypatch.setattr(data.signal, "signal", lambda *a: None)
    loader.worker_init_fn(0)
    assert Image.MAX_IMAGE_PIXELS == 123


def test_hints_repeat_the_overrides_and_resume_past_the_end_is_refused(tiny_conf, tmp_path, capsys):
    models = f"model_path={tmp_path / 'models'}"
    code, err = in_process(capsys, train_main, "-c", tiny_conf, "--set", models, "--no_progress")
    assert code == 0, err
    assert "step 1/2: loss=" in err and "step 2/2: loss=" in err  # log lines without a bar

    code, err = in_process(capsys, train_main, "-c", tiny_conf, "--set", models, "--no_progress")
    assert_clean_in_process(code, err, f"Continue it with: python train.py -c {tiny_conf} --set {models} --resume")

    code, err = in_process(capsys, train_main, "-c", tiny_conf, "--set", models, "--resume", "--no_progress")
    assert_clean_in_process(code, err, "is at step 2, and this run ends at step 2", "nothing left to train",
                 f"--set {models} --resume --set max_steps=1002")

    # A subprocess: pytest records warnings in-process instead of printing them.
    r = run_cli("train.py", "-c", str(tiny_conf), "--set", models, "--set", "max_steps=3",
                "--set", "lr=0.002", "--resume", "--no_progress")
    assert r.returncode == 0, r.stderr
    assert "warning: Resuming with a config that differs from the checkpoint's in: lr" in r.stderr
    assert "UserWarning" not in r.stderr and "warnings.warn" not in r.stderr


# ---- python -m fast_nst.data prepare ---------------------------------------------------------

@pytest.mark.parametrize("size", ["0", "-3", "8"])
def test_prepare_rejects_sizes_training_cannot_use(size, train_dir, capsys):
    from fast_nst.commands.data import main as data_main

    before = sorted(p.name for p in train_dir.iterdir())
    code, err = in_process(capsys, data_main, "prepare", train_dir, "--image_size", size)
    assert_clean_in_process(code, err, "--image_size must be at least 16", f"got {size}")
    assert sorted(p.name for p in train_dir.iterdir()) == before  # no cache folder left behind


@pytest.mark.parametrize("size", ["4097", "9000"])
def test_prepare_rejects_sizes_above_any_training_run(size, train_dir, capsys):
    """9000 skipped every photo and said "Cached 0 images" (exit 0); 4097 wrote a cache no run
    opens: training takes resize_to up to 4096 (image_size up to 2048)."""
    from fast_nst.commands.data import main as data_main

    before = sorted(p.name for p in train_dir.iterdir())
    code, err = in_process(capsys, data_main, "prepare", train_dir, "--image_size", size)
    assert_clean_in_process(code, err, "--image_size must be at most 4096", "resize_to", f"got {size}")
    assert sorted(p.name for p in train_dir.iterdir()) == before


def test_prepare_takes_the_max_image_pixels_its_skip_lines_advise(tmp_path, capsys, monkeypatch):
    """A photo over the limit is skipped with a line advising --max_image_pixels, which
    ``data prepare`` did not take."""
    from fast_nst.commands.data import main as data_main
    from fast_nst.training import cache
    import fast_nst.training.data as data

    folder = tmp_path / "photos"
    make_photo(folder / "big.jpg", (40, 30))   # 1200 px
    make_photo(folder / "small.jpg", (20, 16))  # 320 px
    code, err = in_process(capsys, data_main, "prepare", folder, "--image_size", "16",
                           "--num_workers", "0", "--max_image_pixels", "500")
    assert code == 0, err
    assert "big.jpg" in err and "limit of 500 pixels" in err and "--max_image_pixels N" in err
    assert "Cached 1 images" in err and "1 unreadable files skipped" in err

    # The loader's worker processes decode within the same limit, also when started by spawn
    # or forkserver (a fresh Pillow with its default limit).
    seen = {}

    def recording(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **{**kwargs, "num_workers": 0, "worker_init_fn": None})  # no process here

    real = cache.DataLoader
    monkeypatch.setattr(cache, "DataLoader", recording)
    code, err = in_process(capsys, data_main, "prepare", folder, "--image_size", "16",
                           "--num_workers", "1", "--max_image_pixels", "0")
    assert code == 0 and "Cached 2 images" in err, err
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 89_478_485)
    monkeypatch.setattr(data.signal, "signal", lambda *a: None)
    seen["worker_init_fn"](0)
    assert Image.MAX_IMAGE_PIXELS is None  # 0 removes the limit

    code, err = in_process(capsys, data_main, "prepare", folder, "--max_image_pixels", "-1")
    assert_clean_in_process(code, err, "--max_image_pixels must be >= 0")


def test_failed_prepare_leaves_no_temporary_cache(tmp_path, monkeypatch, capsys):
    from fast_nst.training import cache as data

    folder = tmp_path / "photos"
    for i in range(3):
        make_photo(folder / f"{i}.jpg", (40, 30), seed=i)
    monkeypatch.setattr(data, "_write_cache", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        data.prepare_cache(folder, 32, num_workers=0, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["0.jpg", "1.jpg", "2.jpg"]


def test_transparency_dropped_by_jpeg_is_reported(tmp_path):
    from fast_nst.core.images import save_image

    img = Image.new("RGBA", (4, 4), (10, 20, 30, 255))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_image(img, tmp_path / "opaque.jpg")  # fully opaque: nothing lost, no warning
    img.putpixel((0, 0), (10, 20, 30, 0))
    with pytest.warns(UserWarning, match=r"see_through\.jpg: \.jpg cannot hold transparency.*\.png"):
        save_image(img, tmp_path / "see_through.jpg")
    assert Image.open(tmp_path / "see_through.jpg").mode == "RGB"


def test_pixel_limit_option_does_not_outlive_the_call(model_file, tmp_path, capsys):
    before = Image.MAX_IMAGE_PIXELS
    photo = make_photo(tmp_path / "p.jpg", (30, 20))
    code, err = in_process(capsys, eval_main, "--model_file", model_file, "--image_file", photo,
                     "--output_file", tmp_path / "o.jpg", "--device", "cpu", "--max_image_pixels", "5000")
    assert code == 0, err
    assert Image.MAX_IMAGE_PIXELS == before


def test_a_run_folder_stands_for_its_final_model(model_file, tmp_path, capsys):
    run = tmp_path / "tiny"
    run.mkdir()
    (run / "tiny.pth").write_bytes(model_file.read_bytes())
    photo = make_photo(tmp_path / "p.jpg", (30, 20))
    code, err = in_process(capsys, eval_main, "--model_file", run, "--image_file", photo,
                     "--output_file", tmp_path / "o.jpg", "--device", "cpu")
    assert code == 0, err
    assert Image.open(tmp_path / "o.jpg").size == (30, 20)
    other = tmp_path / "other"
    other.mkdir()
    code, err = in_process(capsys, eval_main, "--model_file", other, "--image_file", photo,
                     "--output_file", tmp_path / "o2.jpg", "--device", "cpu")
    assert_clean_in_process(code, err, "is a folder")


def test_a_run_that_fails_its_checks_leaves_no_folder(tmp_path, style_file, capsys):
    models = tmp_path / "new" / "models"
    conf = write_config(tmp_path / "x.yml", **tiny_values(models, tmp_path / "no_photos", style_file))
    code, err = in_process(capsys, train_main, "-c", conf)
    assert_clean_in_process(code, err, "no_photos")
    assert not (tmp_path / "new").exists()


# ---- PyTorch too old ------------------------------------------------------------------------------

def test_too_old_torch_is_one_clear_error(monkeypatch, capsys, tmp_path):
    import fast_nst

    missing = str(tmp_path / "nope.pth")
    monkeypatch.setattr(torch, "__version__", "2.1.2+cu121")
    code, err = in_process(capsys, eval_main, "--model_file", missing, "--image_file", missing)
    assert_clean_in_process(code, err, f"fast-nst needs torch >= {fast_nst.__min_torch__}, but torch "
                            "2.1.2+cu121 is installed", "pip install -U torch torchvision")
    assert "nope.pth" not in err  # checked before anything else

    monkeypatch.setattr(torch, "__version__", "2.10.0")  # 2.10 is newer than 2.4, not older
    code, err = in_process(capsys, eval_main, "--model_file", missing, "--image_file", missing)
    assert_clean_in_process(code, err, "nope.pth does not exist")  # the version passed


def test_fast_nst_does_not_import_torchvision():
    """torchvision.models pulls in torch._dynamo: twice the CPU time of ``import torch`` for every
    command's start-up. fast-nst builds its VGG layouts itself (lossnet.vgg)."""
    found = []
    for path in sorted((REPO / "fast_nst").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.relative_to(REPO)}:{node.lineno}" for n in names if n.split(".")[0] == "torchvision"]
    assert found == []


def test_no_slow_bf16_note_before_an_onnx_file_refuses_bf16(monkeypatch, capsys):
    """onnxruntime has no bf16 for .onnx files: the load says so; a note on bf16's speed first misled."""
    import fast_nst.commands as commands
    monkeypatch.setattr(commands, "slow_bf16_note", lambda device, precision: "note: bf16 is slow here")
    commands.precision_note("cpu", "bf16", "default", "wave.onnx")
    assert capsys.readouterr().err == ""
    commands.precision_note("cpu", "bf16", "default", "wave.pth")
    commands.precision_note("cpu", "bf16", "openvino", "wave.onnx")
    assert capsys.readouterr().err == "note: bf16 is slow here\n" * 2
