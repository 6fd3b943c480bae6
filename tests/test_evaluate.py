"""``python -m fast_nst.evaluate``: the quality report (index.html, sheet.jpg, the stylized
images) of two tiny random models on three generated photos, its losses checked against
training's PerceptualLoss, and its one-line errors."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from fast_nst import load_stylizer
from fast_nst.commands.evaluate import main as evaluate_main
from fast_nst.core.images import pil_to_tensor, resize_longest
from fast_nst.core.untrusted import open_image
from fast_nst.io.checkpoint import atomic_torch_save, make_checkpoint
from fast_nst.lossnet.losses import PerceptualLoss
from fast_nst.lossnet.vgg import build_loss_network, vgg_features
from fast_nst.nets.johnson import TransformNet, TransformNetArgs
from fast_nst.core.errors import DataError, FastNSTError
from fast_nst.report.collect import MAX_PHOTOS, REPORT_MARKER, check_output, collect_photos
from fast_nst.report.measure import LOSS_SEED
from fast_nst.report.sheet import GAP, HEADER, contact_sheet, labelled_grid, sheet_size
from fast_nst.training import load_train_config

from conftest import assert_clean_in_process, examples, in_process, make_photo

PHOTO_SIZES = {"p0": (48, 40), "p1": (40, 56), "p2": (64, 48)}
ROW = re.compile(r"<tr class='result' data-photo='([^']+)' data-model='([^']+)'><td>[^<]*</td><td>[^<]*</td>"
                 r"<td class='num content'>([^<]+)</td><td class='num style'>([^<]+)</td>"
                 r"<td class='num time'>([^<]+)</td></tr>")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(two model files, photo folder, two style images)."""
    d = tmp_path_factory.mktemp("evaluate")
    styles = [make_photo(d / "styles" / f"s{i}.png", (56, 48), seed=90 + i) for i in range(2)]
    models = []
    for i, (name, extra) in enumerate((("alpha", []), ("beta", ["style_layer_weights=[1,2,1,0.5]",
                                                                 "content_layers=[relu1_2,relu2_2]"]))):
        torch.manual_seed(i)
        net = TransformNet(TransformNetArgs(base_channels=8, num_residual=1))
        cfg = load_train_config(None, [f"style_image={styles[i]}", f"naming={name}", "style_size=32", *extra])
        models.append(d / f"{name}.pth")
        atomic_torch_save(make_checkpoint(net, cfg, step=10 + i), models[-1])
    for i, (stem, size) in enumerate(PHOTO_SIZES.items()):
        make_photo(d / "photos" / f"{stem}.jpg", size, seed=i)
    return models, d / "photos", styles


def _run(capsys, models, photos, out, *extra):
    return in_process(capsys, evaluate_main, "--model_file", *models, "--images", photos, "--output", out,
                      "--loss_model_weights", "random", "--device", "cpu", *extra)


def test_report_shows_every_photo_and_model_with_losses_and_times(setup, tmp_path, capsys):
    models, photos, styles = setup
    out = tmp_path / "report"
    code, err = _run(capsys, models, photos, out, "--style", *styles)  # one per model, in order
    assert code == 0, err
    assert "RANDOM weights" in err
    page = (out / "index.html").read_text(encoding="utf-8")
    for name in [*PHOTO_SIZES, "alpha", "beta"]:
        assert name in page
    assert "Loss network: <b>vgg16</b>" in page and f"random weights (seed {LOSS_SEED})" in page
    rows = {(p, m): (c, s, t) for p, m, c, s, t in ROW.findall(page)}
    assert set(rows) == {(p, m) for p in PHOTO_SIZES for m in ("alpha", "beta")}
    for content, style, seconds in rows.values():
        assert all(math.isfinite(float(v)) and float(v) >= 0 for v in (content, style, seconds))
        assert float(content) > 0 and float(style) > 0
    # beta is measured at other layers and weights (its own): a group of its own, not comparable
    assert "Not comparable across groups" in page
    for model, group in (("alpha", "A"), ("beta", "B")):
        assert re.search(rf"<tr class='mean' data-model='{model}'><td>{model}</td>"
                         r"<td class='num content'>[0-9.e+-]+</td><td class='num style'>[0-9.e+-]+</td>"
                         rf"<td class='num time'>[0-9.]+</td><td class='num'>3</td><td class='group'>{group}</td></tr>",
                         page), model
        for photo, size in PHOTO_SIZES.items():
            with Image.open(out / model / f"{photo}.jpg") as img:
                assert img.size == size  # under --max_size: never enlarged
            assert f"src=\"{model}/{photo}.jpg\"" in page
    assert 'src="photos/p0.jpg"' in page and (out / "photos" / "p0.jpg").is_file()
    assert (out / REPORT_MARKER).is_file()  # a later report may replace this folder
    assert (out / "styles" / "alpha.jpg").is_file() and (out / "styles" / "beta.jpg").is_file()
    # rows = photos; columns = the photo, two models, the style images
    with Image.open(out / "sheet.jpg") as sheet:
        width, most = sheet_size(rows=3, cols=4)
        assert sheet.width == width and sheet.height <= most
    assert "http://" not in page and "https://" not in page and "<script" not in page
    # The same numbers for scripts: results.json
    import json
    data = json.loads((out / "results.json").read_text())
    assert [m["name"] for m in data["models"]] == ["alpha", "beta"] and data["loss_model"] == "vgg16"
    for m in data["models"]:
        assert set(m["photos"]) == set(PHOTO_SIZES)
        assert m["mean_content"] == pytest.approx(sum(v["content"] for v in m["photos"].values()) / 3)
        for photo, (content, style, _) in ((p, rows[(p, m["name"])]) for p in PHOTO_SIZES):
            assert m["photos"][photo]["content"] == pytest.approx(float(content), rel=1e-3)

    # The numbers are training's own loss terms, with each model's config weights and layers.
    for model, path in zip(("alpha", "beta"), models):
        ckpt = torch.load(path, weights_only=True)["config"]
        layers = list(dict.fromkeys(ckpt["content_layers"] + ckpt["style_layers"]))
        encoder = build_loss_network("random", layers, seed=LOSS_SEED, quiet=True)
        # At the config's style_size (32), not the default 256.
        style = pil_to_tensor(resize_longest(open_image(ckpt["style_image"]).convert("RGB"), 32)).unsqueeze(0)
        loss = PerceptualLoss(encoder, style, ckpt["content_layers"], ckpt["style_layers"],
                              ckpt["content_weight"], ckpt["style_weight"], 0.0, ckpt["style_layer_weights"])
        photo = open_image(photos / "p1.jpg").convert("RGB")
        out_img = load_stylizer(path, device="cpu").stylize(photo)
        terms = loss(pil_to_tensor(out_img).unsqueeze(0), pil_to_tensor(photo).unsqueeze(0))
        content, style_value, _ = rows[("p1", model)]
        assert float(content) == pytest.approx(float(terms["content"]), rel=1e-3), model
        assert float(style_value) == pytest.approx(float(terms["style"]), rel=1e-3), model


def test_a_stand_in_loss_network_is_named_and_no_style_gives_n_a(setup, tmp_path, capsys):
    models, photos, _ = setup
    standin = tmp_path / "my-standin-vgg16.pth"
    torch.save(vgg_features("vgg16").state_dict(), standin)
    one = tmp_path / "one"
    make_photo(one / "only.png", (36, 30), seed=5)
    # No --style: no style loss, no style column (the style image the checkpoint names is not read).
    (tmp_path / "gone").mkdir()
    net = TransformNet(TransformNetArgs(base_channels=8, num_residual=1))
    cfg = load_train_config(None, [f"style_image={tmp_path / 'gone' / 'x.jpg'}", "naming=nostyle"])
    atomic_torch_save(make_checkpoint(net, cfg, step=1), tmp_path / "nostyle.pth")
    out = tmp_path / "r"
    code, err = in_process(capsys, evaluate_main, "--model_file", tmp_path / "nostyle.pth", "--images", one,
                           "--output", out, "--loss_model_file", standin, "--device", "cpu")
    assert code == 0, err
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "my-standin-vgg16.pth" in page and "RANDOM" not in page
    (_, _, content, style, _), = ROW.findall(page)
    assert float(content) > 0 and style == "n/a"
    assert "not measured: pass the style image with --style" in page
    with Image.open(out / "sheet.jpg") as sheet:
        width, most = sheet_size(rows=1, cols=2)
        assert sheet.width == width and sheet.height <= most


def test_errors_are_one_line_and_leave_nothing(setup, tmp_path, capsys):
    models, photos, _ = setup
    out = tmp_path / "never"
    (tmp_path / "empty").mkdir()
    code, err = _run(capsys, models, tmp_path / "empty", out)
    assert_clean_in_process(code, err, "holds no images")
    code, err = _run(capsys, models, tmp_path / "nowhere", out)
    assert_clean_in_process(code, err, "--images", "does not exist")
    notes = tmp_path / "notes.pth"
    notes.write_text("not a model\n" * 50)
    code, err = _run(capsys, [models[0], notes], photos, out)
    assert_clean_in_process(code, err, "notes.pth", "not a PyTorch checkpoint")
    code, err = _run(capsys, models, photos, out, "--max_size", "5000")
    assert_clean_in_process(code, err, "--max_size must be a whole number from 1 to 1024")
    assert not out.exists()
    small = tmp_path / "small"  # every photo too small for a stability clip
    small.mkdir()
    for name in ("p0.jpg", "p1.jpg"):
        (small / name).write_bytes((photos / name).read_bytes())
    with pytest.warns(UserWarning) as caught:
        code, err = _run(capsys, models, small, out, "--stability")  # before the stylizing, not after it
    assert_clean_in_process(code, err, "--stability: none of the photos is large enough for a stability clip",
                            "use larger photos, or leave out --stability")
    said = [str(w.message) for w in caught if "--stability" in str(w.message)]
    assert len(said) == 2 and "p0.jpg: a 48 x 40 photo is too small for a 32 x 32 clip" in said[0]
    assert not out.exists() and "ms per photo" not in err
    assert not any("--max_size" in m for m in [err, *said])  # the photos are their own size: no flag enlarges them
    with pytest.warns(UserWarning) as caught:
        code, err = _run(capsys, models, photos, out, "--stability", "--max_size", "40")
    assert_clean_in_process(code, err, "none of the photos is large enough", "use larger photos or a larger --max_size")
    assert any("p0.jpg: a 40 x 33 photo" in str(w.message) and "or a larger --max_size" in str(w.message)
               for w in caught)
    make_photo(tmp_path / "square" / "sq.jpg", (50, 50))  # a square photo needs 52 px a side
    with pytest.warns(UserWarning) as caught:
        code, err = _run(capsys, models, tmp_path / "square", out, "--stability")
    assert_clean_in_process(code, err, "none of the photos is large enough")
    assert any("sq.jpg: a 50 x 50 photo is too small for a 32 x 32 clip of 10 frames; use a larger photo "
               "(left out of the stability measure)" in str(w.message) for w in caught)
    code, err = _run(capsys, models, photos, notes)
    assert_clean_in_process(code, err, "is a file; give a folder")
    code, err = _run(capsys, models, photos, out, "--style", tmp_path / "no.jpg")
    assert_clean_in_process(code, err, "--style", "does not exist")
    assert not out.exists()
    for e in err.splitlines():
        assert e.startswith(("error:", "warning:")) or not e.strip(), err


def test_photos_are_bounded_and_named_uniquely(tmp_path):
    for i in range(MAX_PHOTOS + 1):
        make_photo(tmp_path / f"img_{i:03d}.png", (20, 16), seed=i)
    make_photo(tmp_path / "img_000.jpg", (20, 16), seed=1)
    with pytest.warns(UserWarning, match=f"holds {MAX_PHOTOS + 2} images; the report shows the first {MAX_PHOTOS}"):
        photos = collect_photos(tmp_path, 8)
    assert len(photos) == MAX_PHOTOS
    assert [p.name for p in photos[:3]] == ["img_000_jpg", "img_000_png", "img_001"]
    assert photos[0].image.size == (8, 6)


def test_an_unreadable_photo_is_skipped_not_the_report(tmp_path):
    make_photo(tmp_path / "a.jpg", (20, 16), seed=1)
    (tmp_path / "b.jpg").write_bytes(b"not a JPEG")
    make_photo(tmp_path / "b.JPG", (20, 16), seed=2)
    with pytest.warns(UserWarning, match=r"b\.jpg: not an image file Pillow can read \(skipped\)"):
        photos = collect_photos(tmp_path, 8)
    assert [p.name for p in photos] == ["a", "b_jpg"]  # b.JPG sorts first: b_jpg, then b.jpg's b_jpg_2
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "b.JPG").write_bytes(b"")
    with pytest.warns(UserWarning), pytest.raises(DataError, match="none of its images could be read"):
        collect_photos(tmp_path, 8)


def test_weights_are_converted_to_the_measuring_networks_convention():
    """A model trained against vgg16_caffe, measured with vgg16: its Caffe-scale weights are
    converted, so its losses have the size they had in training."""
    from pathlib import Path

    from fast_nst.lossnet import convert_weights
    from fast_nst.report.collect import ModelEntry, choose_loss_model, loss_settings

    caffe = loss_settings({"loss_model": "vgg16_caffe", "content_weight": 3e-4, "style_weight": 1.8e-4})
    tuned_for_caffe = loss_settings({"loss_model": "vgg16", "loss_weights_for": "caffe",
                                     "content_weight": 3e-4, "style_weight": 1.8e-4})
    plain = loss_settings({"loss_model": "vgg16", "content_weight": 1.0, "style_weight": 1e5})
    assert (caffe.weights_for, tuned_for_caffe.weights_for, plain.weights_for) == ("caffe", "caffe", "torchvision")
    models = [ModelEntry(n, Path(n), None, s, None, "") for n, s in (("a", caffe), ("b", tuned_for_caffe), ("c", plain))]
    assert choose_loss_model(models, "vgg16") == "vgg16"
    content, style, _ = convert_weights(3e-4, 1.8e-4, 0.0, "caffe", "vgg16")
    for m in models[:2]:
        assert (m.settings.content_weight, m.settings.style_weight) == (content, style)
    assert (models[2].settings.content_weight, models[2].settings.style_weight) == (1.0, 1e5)


def test_an_adain_models_weights_are_converted_as_its_training_converted_them():
    """AdaIN's mean/std style loss grows with the features squared, a Gram loss with their fourth
    power: the report weighs an AdaIN model's terms as training did (loss_weights with
    STATS_STYLE_DEGREE; the Gram exponent made its style weight ~3300x too large), also when
    --loss_model measures it with another convention."""
    from pathlib import Path

    from fast_nst.core.config import config_from_dict
    from fast_nst.lossnet import STATS_STYLE_DEGREE, convert_weights, loss_weights
    from fast_nst.report.collect import ModelEntry, choose_loss_model, loss_settings

    values = {"naming": "ad", "model_type": "adain", "style_dir": "art", "loss_model": "vgg16",
              "style_layers": ["relu1_1", "relu2_1"], "content_weight": 3e-4, "style_weight": 1.8e-4}
    cfg = config_from_dict({**values, "loss_weights_for": "caffe"}, "test")
    entry = ModelEntry("ad", Path("ad.pth"), None, loss_settings(cfg.to_dict()), None, "")
    assert entry.settings.style_loss == "stats" and choose_loss_model([entry], None) == "vgg16"
    content, style, _ = loss_weights(cfg, STATS_STYLE_DEGREE)  # what training weighed its terms with
    assert (entry.settings.content_weight, entry.settings.style_weight) == pytest.approx((content, style))
    entry.settings = loss_settings(config_from_dict(values, "test").to_dict())  # vgg16's own scale
    choose_loss_model([entry], "vgg16_caffe")
    expected = convert_weights(3e-4, 1.8e-4, 0.0, "torchvision", "caffe", STATS_STYLE_DEGREE)
    assert (entry.settings.content_weight, entry.settings.style_weight) == pytest.approx(expected[:2])


def test_checkpoints_of_one_run_are_told_apart_by_step_then_by_file(setup, tmp_path):
    """Two checkpoints of a multi-style run keep their steps in every style's name, as
    single-style ones do; at the same step (a copy, a .pth and its export) the file tells them
    apart."""
    import shutil

    from fast_nst.core.config import config_from_dict
    from fast_nst.nets.multistyle import MultiStyleArgs, MultiStyleNet
    from fast_nst.report.collect import load_models

    files = []
    for step in (0, 500):
        net = MultiStyleNet(MultiStyleArgs(2, base_channels=8, num_residual=1)).eval()
        net.style_names = ["candy", "udnie"]
        cfg = config_from_dict({"naming": "multi", "model_type": net.model_type, "style_image": "x",
                                "model_args": net.args.to_dict()}, "test")
        files.append(tmp_path / f"multi_{step}.pth")
        atomic_torch_save(make_checkpoint(net, cfg, step=step), files[-1])
    copy = shutil.copy(setup[0][0], tmp_path / "alpha_copy.pth")  # alpha at step 10, twice
    entries = load_models([str(f) for f in [*files, setup[0][0], copy]], "cpu", [None] * 4)
    assert [m.name for m in entries] == ["multi_step0_candy", "multi_step0_udnie", "multi_step500_candy",
                                         "multi_step500_udnie", "alpha_step10", "alpha_step10_copy"]
    from fast_nst.report.collect import _labels

    assert _labels(["ad", "ad", "ad"], [3, 3, 7], ["m/ad.pth", "m/ad.onnx", "ad7.pth"]) == \
        ["ad_step3_pth", "ad_step3_onnx", "ad_step7"]


def test_a_photo_too_small_for_the_loss_layers_is_skipped_with_advice_that_helps(setup, tmp_path, capsys):
    """Photos are never enlarged: --max_size is advised only where it shrank the photo and a
    larger one would do; the report goes on without the photo, as without an unreadable one."""
    models, photos, _ = setup
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "p0.jpg").write_bytes((photos / "p0.jpg").read_bytes())
    make_photo(mixed / "tiny.png", (3, 3), seed=1)
    with pytest.warns(UserWarning) as caught:
        code, err = _run(capsys, models[:1], mixed, tmp_path / "report")
    assert code == 0, err
    (said,) = [str(w.message) for w in caught if "tiny.png" in str(w.message)]
    assert said.startswith(f"{mixed / 'tiny.png'} is 3x3 px; the loss layers need at least")
    assert "--max_size" not in said
    (model,) = json.loads((tmp_path / "report" / "results.json").read_text())["models"]
    assert list(model["photos"]) == ["p0"]

    from fast_nst.report import _usable_photos

    for name, size in (("ok", (40, 40)), ("tiny", (3, 3)), ("wide", (200, 20)), ("thin", (3000, 20))):
        make_photo(tmp_path / f"{name}.png", size, seed=1)
    photos = collect_photos(tmp_path, 100)
    with pytest.warns(UserWarning) as caught:
        kept = _usable_photos(photos, 16, 100)
    assert [p.name for p in kept] == ["ok"]
    said = sorted(str(w.message) for w in caught)
    assert said == [
        f"{tmp_path / 'thin.png'} is 100x1 px at --max_size 100; the loss layers need at least 16 px per side: "
        "use a larger photo (skipped)",
        f"{tmp_path / 'tiny.png'} is 3x3 px; the loss layers need at least 16 px per side: use a larger photo (skipped)",
        f"{tmp_path / 'wide.png'} is 100x10 px after --max_size 100; the loss layers need at least 16 px per side: "
        "raise --max_size (at most 1024) (skipped)"]
    with pytest.warns(UserWarning), pytest.raises(FastNSTError, match="none of the photos is large enough"):
        _usable_photos([p for p in photos if p.name == "tiny"], 16, 100)


def test_a_photo_too_small_for_a_stability_clip_is_left_out_of_that_measure_only(setup, tmp_path, capsys):
    """--stability on a folder with a photo too small for a clip: a warning, and the report goes
    on, that photo measured for content and style but left out of the stability figures."""
    models, photos, _ = setup
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "p0.jpg").write_bytes((photos / "p0.jpg").read_bytes())  # 48 x 40: too small for a clip
    make_photo(mixed / "big.png", (96, 72), seed=4)
    with pytest.warns(UserWarning) as caught:
        code, err = _run(capsys, models[:1], mixed, tmp_path / "report", "--stability")
    assert code == 0, err
    (said,) = [str(w.message) for w in caught if "--stability" in str(w.message)]
    assert said == (f"--stability: {mixed / 'p0.jpg'}: a 48 x 40 photo is too small for a 32 x 32 clip of 10 "
                    "frames; use a larger photo (left out of the stability measure)")
    data = json.loads((tmp_path / "report" / "results.json").read_text())
    assert list(data["models"][0]["photos"]) == ["big", "p0"] and data["stability_photos"] == ["big"]
    assert [r["mode"] for r in data["stability"]] == ["per-frame", "stable statistics"]
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Too small for a clip, so not in these figures: p0." in page and "a 10-frame 56 x 40 clip" in page


def test_captioned_adds_a_strip_and_keeps_the_picture():
    from fast_nst.report.sheet import CAPTION, captioned

    img = Image.new("RGB", (60, 40), (10, 200, 30))
    out = captioned(img, "stand-in VGG16")
    assert out.size == (60, 40 + CAPTION)
    assert out.crop((0, 0, 60, 40)).tobytes() == img.tobytes()
    strip = out.crop((0, 40, 60, 40 + CAPTION))
    assert strip.getextrema() != ((255, 255), (255, 255), (255, 255)), "the label is drawn in the strip"


def test_sheets_have_no_white_bands_between_rows_of_landscape_photos():
    """A row is as tall as its tallest picture: 3:2 photos in 60 px cells make 40 px rows (square
    cells left 10 px of white above and below each)."""
    photo, tall = Image.new("RGB", (300, 200), "red"), Image.new("RGB", (100, 200), "blue")
    sheet = contact_sheet(["photo", "model"], [[[photo], [photo]]] * 3, cell=60)
    assert sheet.size == (2 * 60 + 3 * GAP, HEADER + 3 * (40 + GAP))
    assert sheet.getpixel((GAP + 30, HEADER + 40 + GAP + 1))[0] > 240   # the second row starts at once
    assert contact_sheet(["a", "b"], [[[photo], [tall]]], cell=60).height == HEADER + 60 + GAP
    grid = labelled_grid([photo] * 5, list("abcde"), columns=4, cell=60)   # eval.py --style_sheet's
    assert grid.size == (4 * 60 + 5 * GAP, 2 * (HEADER + 40 + GAP))


def test_a_later_report_removes_what_the_earlier_wrote_and_nothing_else(setup, tmp_path, capsys):
    """Report alpha and beta, then alpha alone on fewer photos into the same folder: beta's
    folder and the photo left out go (they used to linger), the user's files stay."""
    models, photos, _ = setup
    out = tmp_path / "report"
    assert _run(capsys, models, photos, out)[0] == 0
    assert (out / "beta" / "p1.jpg").is_file() and (out / "photos" / "p1.jpg").is_file()
    (out / "notes.txt").write_text("mine")
    (out / "beta" / "mine.txt").write_text("mine too")
    fewer = tmp_path / "fewer"
    fewer.mkdir()
    for name in ("p0.jpg", "p2.jpg"):
        (fewer / name).write_bytes((photos / name).read_bytes())
    code, err = _run(capsys, models[:1], fewer, out)
    assert code == 0, err
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert left == [REPORT_MARKER, "alpha/p0.jpg", "alpha/p2.jpg", "beta/mine.txt", "index.html", "notes.txt",
                    "photos/p0.jpg", "photos/p2.jpg", "results.json", "sheet.jpg"]


def test_report_never_writes_over_what_the_user_owns(setup, tmp_path, capsys):
    models, photos, _ = setup
    mine = tmp_path / "mine"
    mine.mkdir()
    for stem in ("sheet", "p0"):  # a photo named like the report's sheet: it used to be overwritten
        make_photo(mine / f"{stem}.jpg", (48, 40), seed=7)
    (mine / "index.html").write_text("my page")
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    code, err = _run(capsys, models, mine, mine)
    assert_clean_in_process(code, err, f"--output {mine} holds the input --images", f"e.g. {mine / 'report'}")
    code, err = _run(capsys, models, photos, mine)
    assert_clean_in_process(code, err, "holds files that are not a fast-nst report", "index.html")
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == before
    earlier = tmp_path / "earlier"  # a report fast-nst wrote (its marker) may be replaced
    (earlier / "photos").mkdir(parents=True)
    (earlier / REPORT_MARKER).write_text("")
    (earlier / "index.html").write_text("old")
    assert check_output(earlier, [("--images", photos)]) == []
    with pytest.raises(DataError, match="holds the input --images"):
        check_output(earlier, [("--images", earlier / "photos")])


def test_an_earlier_reports_list_names_only_files_inside_it(tmp_path):
    """The list is read from the user's folder: nothing outside the report is ever removed."""
    from fast_nst.report.marker import earlier_files, remove_stale

    (tmp_path / "outside.txt").write_text("keep")
    report = tmp_path / "report"
    report.mkdir()
    (report / "ok.txt").write_text("old")
    (report / "linked").symlink_to(tmp_path)
    listed = ["../outside.txt", str(tmp_path / "outside.txt"), "a/b/c.jpg", ".hidden", REPORT_MARKER,
              "linked/outside.txt", "ok.txt", 7]
    (report / REPORT_MARKER).write_text(json.dumps({"files": listed}))
    assert earlier_files(report, 100) == ["linked/outside.txt", "ok.txt"]
    remove_stale(report, earlier_files(report, 100), [])
    assert not (report / "ok.txt").exists() and (tmp_path / "outside.txt").read_text() == "keep"
    (report / REPORT_MARKER).write_text("A quality report written by fast-nst (an earlier version)\n")
    assert earlier_files(report, 100) == []


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
                     lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=10), inner, max_size=6),
                     max_leaves=30)


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(listed=st.lists(st.text(max_size=30) | st.integers(), max_size=20), other=_JSON,
       raw=st.binary(max_size=200))
def test_any_marker_gives_plain_names_inside_the_folder_or_none(tmp_path, listed, other, raw):
    """The marker is read from the user's folder: whatever it holds ends in a list of plain
    relative names (at most two components, none the marker), never in an exception."""
    from pathlib import PurePosixPath

    from fast_nst.core.files import safe_component
    from fast_nst.report.marker import earlier_files

    for content in (json.dumps({"files": listed}), json.dumps(other), raw):
        (tmp_path / REPORT_MARKER).write_bytes(content if isinstance(content, bytes) else content.encode())
        found = earlier_files(tmp_path, 10)
        assert len(found) <= 10
        for name in found:
            parts = PurePosixPath(name).parts
            assert 1 <= len(parts) <= 2 and all(p == safe_component(p) and p != REPORT_MARKER for p in parts)
