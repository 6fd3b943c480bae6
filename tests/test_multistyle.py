"""The multi-style network (conditional instance norm): style vectors and blends, training several
styles, adding styles with frozen convolutions, checkpoints, config checks, the stylizer and eval."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import assert_clean_in_process, examples, in_process, make_photo, tiny_values, write_config
from fast_nst.commands import eval as eval_cmd
from fast_nst.commands.train import main as train_main
from fast_nst.core.errors import CheckpointError, ConfigError, FastNSTError
from fast_nst.io.checkpoint import atomic_torch_save, load_model, read_checkpoint
from fast_nst.nets.multistyle import MultiStyleArgs, MultiStyleNet, StyleError, resolve_style, style_label
from fast_nst.stylize import load_stylizer
from fast_nst.training.config import train_config_from_dict
from fast_nst.training.trainer import train

NAMES = ["alpha", "beta", "gamma"]
SMALL = {"base_channels": 8, "num_residual": 1}


def _net(num_styles: int = 3, seed: int = 0) -> MultiStyleNet:
    """A tiny network whose styles differ (random norm parameters)."""
    torch.manual_seed(seed)
    net = MultiStyleNet(MultiStyleArgs(num_styles, base_channels=8, num_residual=1)).eval()
    with torch.no_grad():
        for p in net.norm_parameters():
            p.add_(0.5 * torch.randn_like(p))
    net.style_names = NAMES[:num_styles]
    return net


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(2, 3, 30, 41)


# -- the network ----------------------------------------------------------------------------------

def test_one_hot_style_is_that_styles_parameters(photo):
    net = _net()
    for k in range(3):
        w = torch.eye(3)[k]
        single = net.for_style(w)
        # for_style copies row k exactly: the single-style net's norms hold that style's parameters
        norm = single.downsampling[0].norm
        assert torch.equal(norm.weight, net.downsampling[0].norm.weight[k])
        assert torch.equal(norm.bias, net.downsampling[0].norm.bias[k])
        assert torch.allclose(net(photo, w), single(photo), atol=1e-5)
        assert torch.allclose(net.for_style(w).fast_inference()(photo), single(photo), atol=1e-4)


def test_blends_are_weighted_and_continuous(photo):
    net = _net()
    a, b = net(photo, torch.eye(3)[0]), net(photo, torch.eye(3)[1])
    assert (a - b).abs().max() > 0.05, "the styles should differ"
    assert torch.equal(net(photo, resolve_style("alpha:1,beta:0", NAMES)), a)
    half = net(photo, resolve_style("alpha:0.5,beta:0.5", NAMES))
    # Halfway lies between: nearer to each end than the ends are to each other.
    assert (half - a).norm() < (b - a).norm() and (half - b).norm() < (b - a).norm()
    nudged = net(photo, torch.tensor([0.501, 0.499, 0.0]))
    assert (nudged - half).abs().max() < 1e-2
    # Per-image style vectors: each image of the batch in its own style.
    both = net(photo, torch.stack([torch.eye(3)[0], torch.eye(3)[1]]))
    assert torch.allclose(both[0], a[0], atol=1e-6) and torch.allclose(both[1], b[1], atol=1e-6)


def test_any_size_and_bad_style_shapes(photo):
    net = _net()
    for h, w in ((1, 1), (5, 9), (33, 17)):
        assert net(torch.rand(1, 3, h, w), torch.eye(3)[2]).shape == (1, 3, h, w)
    with pytest.raises(ValueError, match="style weights must be"):
        net(photo, torch.ones(2))
    with pytest.raises(ValueError, match="needs style weights"):
        net(photo)


def test_with_styles_appends_new_styles_only(photo):
    net = _net(2)
    bigger = net.with_styles(["beta", "delta"])
    assert bigger.style_names == ["alpha", "beta", "delta"] and bigger.num_styles == 3
    for k in range(2):
        assert torch.equal(bigger(photo, torch.eye(3)[k]), net(photo, torch.eye(2)[k]))
    mean = net.downsampling[0].norm.weight.mean(0)
    assert torch.equal(bigger.downsampling[0].norm.weight[2], mean)


def test_blend_labels_give_each_weight_as_precisely_as_it_needs():
    """Output files are named after the label: 0.999 and 0.996 both made candy100-mosaic0."""
    assert style_label([0.999, 0.001], ["candy", "mosaic"]) == "candy99.9-mosaic0.1"
    assert style_label(torch.tensor([0.996, 0.004]), ["candy", "mosaic"]) == "candy99.6-mosaic0.4"
    assert style_label(torch.tensor([0.7, 0.3, 0.0]), NAMES) == "alpha70-beta30"  # float32's 0.7 reads 70
    assert style_label(resolve_style("alpha,beta,gamma", NAMES), NAMES) == "alpha33.3333-beta33.3333-gamma33.3333"
    long = [f"a_rather_long_style_name_{i}" for i in range(3)]
    labels = {style_label([0.25, 0.25, 0.5], long), style_label([0.25, 0.5, 0.25], long)}
    assert len(labels) == 2
    assert all(len(x) == 64 and x.startswith("a_rather_long_style_name_025-a_rather") for x in labels)


@settings(max_examples=examples(200), deadline=None)
@given(raw=st.lists(st.floats(0, 1e6) | st.just(0.0) | st.floats(1e-9, 1e-5), min_size=3, max_size=3).filter(
    lambda v: sum(v) > 1e-6), long=st.booleans())
def test_a_blend_label_states_every_weight_to_a_millionth(raw, long):
    """Whatever the weights, the label names each style used with its weight in percent to within
    0.00005 % (so blends a millionth apart are named apart), in at most 64 characters."""
    import re
    w = resolve_style(raw, NAMES)
    names = [n * 9 for n in NAMES] if long else NAMES
    label = style_label(w, names)
    assert len(label) <= 64
    used = [(n, v) for n, v in zip(names, w.tolist()) if v > 0]
    if len(used) == 1:
        assert label == used[0][0]
    elif not long or len(label) < 64:
        parts = re.findall(r"([a-z]+)(\d+(?:\.\d+)?)(?:-|$)", label)
        assert "-".join(n + p for n, p in parts) == label and [n for n, _ in parts] == [n for n, _ in used]
        assert all(abs(float(p) - 100 * v) <= 5e-5 + 1e-9 for (_, p), (_, v) in zip(parts, used)), (label, w)


def test_resolve_style_forms_and_errors():
    assert resolve_style("beta", NAMES).tolist() == [0, 1, 0]
    assert resolve_style(2, NAMES).tolist() == [0, 0, 1]
    assert resolve_style("1", NAMES).tolist() == [0, 1, 0]
    assert resolve_style({"alpha": 3, "gamma": 1}, NAMES).tolist() == [0.75, 0, 0.25]
    assert resolve_style([1, 1, 2], NAMES).tolist() == [0.25, 0.25, 0.5]
    assert torch.allclose(resolve_style("alpha:0.7,beta:0.3", NAMES), torch.tensor([0.7, 0.3, 0.0]))
    assert style_label(torch.tensor([0.7, 0.3, 0.0]), NAMES) == "alpha70-beta30"
    cases = [("delta", "unknown style 'delta'; this model's styles: alpha, beta, gamma"),
             ("alpha:x", "'x' is not a number"), (7, "out of range 0..2"),
             ([1, 2], "2 given, the model has 3 styles"), ([1, -1, 1], "must be >= 0"),
             ({"alpha": 0}, "positive sum")]
    for spec, message in cases:
        with pytest.raises(StyleError, match=message.replace("(", r"\(").replace(")", r"\)")):
            resolve_style(spec, NAMES)


def test_style_errors_show_names_from_the_model_escaped_and_bounded():
    """resolve_style's "N given" error listed the model's names raw and whole: an escape from a
    model file reached the terminal, and a thousand names made a message of megabytes."""
    names = ["candy", "\x1b[31mRED\x1b[0m\u202eevil", "a\r\nerror: forged"] + [f"s{i}" + "x" * 500 for i in range(1000)]
    with pytest.raises(StyleError, match="2 given, the model has 1003 styles") as e:
        resolve_style([1, 2], names)
    message = str(e.value)
    assert "\x1b" not in message and "\u202e" not in message and "\n" not in message and "\r" not in message
    assert "\\x1b[31mRED" in message and "(1003 in all)" in message and len(message) < 2000, message[:300]


def test_a_blend_gives_every_style_a_weight_or_none():
    # candy:0.7,mosaic once meant mosaic at weight 1 (a silent 41/59 blend); now an error naming it
    with pytest.raises(StyleError, match="beta has no weight"):
        resolve_style("alpha:0.7,beta", NAMES)
    with pytest.raises(StyleError, match="alpha, gamma has no weight"):
        resolve_style("alpha,beta:2,gamma", NAMES)
    with pytest.raises(StyleError, match="alpha is named twice"):
        resolve_style("alpha:0.5,alpha:0.5", NAMES)
    for spec in (",", "alpha,", ":0.5"):  # once "'' is named twice" or "no style ''"
        with pytest.raises(StyleError, match=f"^style '{spec}' has an empty style name; write a blend as"):
            resolve_style(spec, NAMES)
    assert resolve_style("alpha,gamma", NAMES).tolist() == [0.5, 0, 0.5]      # none weighted: equal
    assert resolve_style("gamma:3", NAMES).tolist() == [0, 0, 1]               # one name, weighted


@settings(max_examples=examples(40), deadline=None)
@given(st.text(alphabet="abeghlmpt:,.0123456789 -", max_size=30))
def test_style_text_is_a_blend_or_one_style_error(text):
    try:
        w = resolve_style(text, NAMES)
    except StyleError:
        return
    assert w.shape == (3,) and abs(float(w.sum()) - 1) < 1e-5
    items = [i for i in text.split(",")]
    assert len(items) == 1 or len({":" in i for i in items}) == 1 or text.strip().isdecimal()


# -- training -------------------------------------------------------------------------------------

def _values(root: Path, train_dir: Path, styles: list[Path], **overrides) -> dict:
    v = tiny_values(root / "models", train_dir, styles[0], max_steps=4, naming="two",
                    model_type="johnson_multi", model_args={"base_channels": 8, "num_residual": 1},
                    style_images=[str(s) for s in styles], val_every=2, val_images=2)
    v.pop("style_image")
    v.update(overrides)
    return v


@pytest.fixture(scope="module")
def styles(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("styles")
    return [make_photo(d / f"{n}.png", (56, 40 + 8 * i), seed=50 + i) for i, n in enumerate(NAMES)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, train_dir, styles):
    """A 2-style network trained 4 steps, then gamma added with frozen convolutions (2 steps)."""
    root = tmp_path_factory.mktemp("multi")
    v = _values(root, train_dir, styles[:2], val_dir=str(train_dir), style_weights=[1.0, 2.0])
    first = train(train_config_from_dict(v, "test"), progress=False)
    added = dict(v, naming="three", style_images=[str(styles[2])], style_weights=[], max_steps=2,
                 init_from=str(first.model_file), freeze="convolutions")
    second = train(train_config_from_dict(added, "test"), progress=False)
    return root, v, first, second


def test_training_learns_each_style_and_logs_per_style(trained, photo):
    root, _, first, _ = trained
    net, ckpt = load_model(first.model_file)
    assert isinstance(net, MultiStyleNet) and net.style_names == ["alpha", "beta"] == ckpt["style_names"]
    assert (net(photo, torch.eye(2)[0]) - net(photo, torch.eye(2)[1])).abs().max() > 1e-4
    assert net.thumbnails.shape == (2, 3, 64, 64) and net.thumbnails.float().std() > 5  # the style images
    acc = EventAccumulator(str(first.run_dir), size_guidance={"images": 0, "scalars": 0}).Reload()
    scalars, images = set(acc.Tags()["scalars"]), set(acc.Tags()["images"])
    for name in ("alpha", "beta"):
        assert {f"loss/{name}/total", f"loss/{name}/style", f"val/{name}/total"} <= scalars
        assert {f"samples/stylized/{name}", f"val/stylized/{name}", f"style/{name}"} <= images
    assert {"loss/total", "val/total"} <= scalars
    # Round robin: steps 1, 3 train alpha and 2, 4 beta, so each style's curve has points.
    assert len(acc.Scalars("loss/alpha/total")) >= 1 and len(acc.Scalars("loss/beta/total")) >= 1


def test_adding_a_style_with_frozen_convolutions(trained):
    _, _, first, second = trained
    old, new = load_model(first.model_file)[0].state_dict(), load_model(second.model_file)[0]
    assert new.style_names == ["alpha", "beta", "gamma"]
    changed = []
    for key, value in new.state_dict().items():
        if key == "thumbnails":
            assert torch.equal(value[:2], old[key]) and value[2].float().std() > 5
        elif key.endswith((".norm.weight", ".norm.bias")):
            assert torch.equal(value[:2], old[key]), f"{key}: an old style changed"
            changed.append(not torch.equal(value[2], old[key].mean(0)))
        else:
            assert torch.equal(value, old[key]), f"{key}: a frozen weight changed"
    assert all(changed), "every norm of the new style should have trained"


def test_multistyle_resume_is_exact(tmp_path, train_dir, styles):
    v = _values(tmp_path, train_dir, styles[:2], max_steps=4, checkpoint_every=2)
    whole = train(train_config_from_dict(dict(v, naming="whole"), "test"), progress=False)
    half = dict(v, naming="halves", max_steps=2)
    train(train_config_from_dict(half, "test"), progress=False)
    rest = train(train_config_from_dict(dict(half, max_steps=4), "test"), resume=True, progress=False)
    a, b = read_checkpoint(whole.model_file), read_checkpoint(rest.model_file)
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key
    assert b["style_names"] == ["alpha", "beta"]


@pytest.mark.parametrize("change, message", [
    (dict(model_type="johnson"), "key 'style_images' needs a multi-style network: set model_type: johnson_multi"),
    (dict(style_images=[]), "johnson_multi is a multi-style network: list its styles in style_images"),
    (dict(style_weights=[1.0]), "key 'style_weights' has 1 weights for 2 style_images"),
    (dict(style_weights=[1.0, -1.0]), "key 'style_weights' must be finite numbers >= 0"),
    (dict(model_args={"num_styles": 5}), "sets num_styles, which comes from style_images"),
    (dict(style_image="x.jpg"), "key 'style_images' and style_image are both set"),
    (dict(freeze="convolutions"), "key 'freeze' is 'convolutions' without init_from"),
    (dict(freeze="everything"), "key 'freeze'"),
])
def test_config_errors(tmp_path, train_dir, styles, change, message):
    v = _values(tmp_path, train_dir, styles[:2])
    v.update(change)
    if not v["style_images"] and "style_image" not in v:
        v["style_image"] = str(styles[0])
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        train_config_from_dict(v, "conf.yml")


def test_set_up_errors(tmp_path, train_dir, styles, trained):
    _, _, first, _ = trained
    twice = _values(tmp_path, train_dir, [styles[0], styles[0]])
    with pytest.raises(ConfigError, match="^test: key 'style_images' names the style alpha more than once"):
        train_config_from_dict(twice, "test")  # refused when loading, naming where the config came from
    made = dataclasses.replace(train_config_from_dict(_values(tmp_path, train_dir, styles[:2]), "test"),
                               style_images=(str(styles[0]), str(styles[0])))
    with pytest.raises(ConfigError, match="names the style alpha more than once"):  # a config made without the loader
        train(made, progress=False)
    single = tiny_values(tmp_path / "m", train_dir, styles[0], max_steps=1, naming="one")
    one = train(train_config_from_dict(single, "test"), progress=False)
    onto_single = _values(tmp_path, train_dir, styles[:1], naming="x", init_from=str(one.model_file))
    with pytest.raises(ConfigError, match="is a johnson network \\(one style\\); styles can be added to a multi-style"):
        train(train_config_from_dict(onto_single, "test"), progress=False)
    # The other way round: a one-style config cannot start from a multi-style model.
    from_multi = tiny_values(tmp_path / "m", train_dir, styles[0], max_steps=1, naming="two", init_from=str(first.model_file))
    with pytest.raises(ConfigError, match="is a johnson_multi network, the config trains model_type johnson; set "
                                          "model_type: johnson_multi and list the styles to add in style_images "
                                          "\\(its own styles are kept\\)$"):
        train(train_config_from_dict(from_multi, "test"), progress=False)


def test_frozen_convolutions_refuse_a_style_the_model_already_holds(tmp_path, train_dir, styles, trained):
    """freeze: convolutions keeps every style of init_from exactly: a style listed again would
    train its norm rows, so it is refused before any work (the recipe lists only new styles)."""
    _, _, first, _ = trained
    again = _values(tmp_path, train_dir, styles, naming="again", init_from=str(first.model_file), freeze="convolutions")
    with pytest.raises(ConfigError, match="already holds the style\\(s\\) alpha, beta, which style_images lists "
                                          "again; with freeze: convolutions its styles stay exactly as they are"):
        train(train_config_from_dict(again, "test"), progress=False)
    assert not (tmp_path / "models" / "again").exists()
    # Another width than init_from's is said too (the network's own arguments are kept).
    wide = dict(again, style_images=[str(styles[2])], model_args={"base_channels": 4, "num_residual": 1})
    with pytest.raises(ConfigError, match="with base_channels 8 \\(the config: 4\\); set model_type: johnson_multi "
                                          "and model_args: \\{'base_channels': 8, 'num_residual': 1\\} to add styles"):
        train(train_config_from_dict(wide, "test"), progress=False)


def _resume_refused(capsys, conf: Path, checkpoint: Path, *fragments: str) -> None:
    code, err = in_process(capsys, train_main, "-c", conf, "--resume", checkpoint, "--set", "max_steps=10",
                           "--no_progress")
    assert_clean_in_process(code, err, *fragments)
    assert sum(line.startswith("error: ") for line in err.splitlines()) == 1 and "Training " not in err, err


def test_resume_with_a_checkpoint_of_another_network_is_refused(tmp_path, train_dir, style_file, styles, trained,
                                                               capsys):
    """--resume continues the run that wrote the checkpoint: another network type, width or
    style list is refused in one line before any work (a 2-style run's finished model was
    replaced by a one-style network, and the reverse ended in a ValueError traceback)."""
    root, v, first, second = trained
    models = tmp_path / "models"
    shutil.copytree(first.run_dir, models / "two")  # the finished 2-style run, resumed onto below
    one = train(train_config_from_dict(tiny_values(models, train_dir, style_file, naming="one", max_steps=2,
                                                   model_args=SMALL), "test"), progress=False)
    one_ckpt, two_ckpt = one.run_dir / "checkpoints" / "step_00000002.pth", models / "two" / "checkpoints" / "step_00000004.pth"
    before = {p: p.read_bytes() for p in (models / "two").rglob("*.pth")}
    multi = dict(v, model_path=str(models))
    conf = lambda name, **change: write_config(tmp_path / f"{name}.yml", **{**multi, **change})  # noqa: E731
    fix = "Resume with its run's config ("
    _resume_refused(capsys, conf("two"), one_ckpt, "holds a johnson network, the config trains model_type johnson_multi",
                    f"{fix}{one.run_dir / 'config.yml'})", f"--init_from {one_ckpt} with model_type: johnson")
    single = write_config(tmp_path / "one.yml", **tiny_values(models, train_dir, style_file, naming="one", model_args=SMALL))
    _resume_refused(capsys, single, two_ckpt, "holds a johnson_multi network, the config trains model_type johnson",
                    "with model_type: johnson_multi and the styles to add in style_images")
    _resume_refused(capsys, conf("narrow", model_args={"base_channels": 4, "num_residual": 1}), two_ckpt,
                    "with base_channels 8 (the config: 4)", "model_args: {'base_channels': 8, 'num_residual': 1}")
    _resume_refused(capsys, conf("swapped", style_images=[str(styles[1]), str(styles[0])]), two_ckpt,
                    "was trained on the styles alpha, beta (in this order), the config lists beta, alpha")
    _resume_refused(capsys, conf("other", style_images=[str(styles[0]), str(styles[2])]), two_ckpt,
                    "the config lists alpha, gamma", "with only the styles to add in style_images")
    assert {p: p.read_bytes() for p in (models / "two").rglob("*.pth")} == before, "the run was trained"
    assert not (models / "narrow").exists() and not (models / "swapped").exists()
    # A run that added a style (its config lists only the new one) still resumes.
    added = dict(trained[1], naming="three", style_images=[str(styles[2])], style_weights=[], max_steps=3,
                 init_from=str(first.model_file), freeze="convolutions", model_path=str(models))
    shutil.copytree(second.run_dir, models / "three")
    resumed = train(train_config_from_dict(added, "test"), resume=True, progress=False)
    assert read_checkpoint(resumed.model_file)["step"] == 3


def test_damaged_style_names_are_refused(tmp_path, trained):
    _, _, first, _ = trained
    ckpt = read_checkpoint(first.model_file)
    for bad in (["alpha"], ["alpha", "alpha"], "alpha,beta", ["alpha", 3]):
        ckpt["style_names"] = bad
        atomic_torch_save(ckpt, tmp_path / "bad.pth")
        with pytest.raises(CheckpointError, match="style_names is .* expected 2 distinct names"):
            load_model(tmp_path / "bad.pth")


# -- stylizing ------------------------------------------------------------------------------------

def test_stylizer_styles_and_blends(trained):
    _, _, _, second = trained
    s = load_stylizer(second.model_file, device="cpu")
    net = load_model(second.model_file)[0]
    assert s.style_names == ["alpha", "beta", "gamma"] and s.name == "alpha"
    img = Image.new("RGB", (37, 29), (120, 60, 200))
    x = torch.rand(1, 3, 29, 37)
    for spec, w in (("beta", torch.eye(3)[1]), (2, torch.eye(3)[2]), ({"alpha": 1, "gamma": 1}, torch.tensor([.5, 0, .5])),
                    ([0.2, 0.3, 0.5], torch.tensor([.2, .3, .5]))):
        s.set_style(spec)
        assert torch.allclose(s.stylize_tensor(x), net(x, w).clamp(0, 1), atol=1e-4), spec
    out = s.stylize(img, style="alpha:0.5,beta:0.5", tile_size=None)
    assert out.size == img.size and s.name == "alpha50-beta50"
    with pytest.raises(StyleError, match="this model's styles: alpha, beta, gamma"):
        s.set_style("delta")


def test_single_style_models_refuse_a_style(trained, tmp_path, train_dir, styles):
    single = tiny_values(tmp_path / "m", train_dir, styles[0], max_steps=1, naming="one")
    one = train(train_config_from_dict(single, "test"), progress=False)
    s = load_stylizer(one.model_file, device="cpu")
    assert s.style_names == [] and s.style is None
    with pytest.raises(FastNSTError, match="has one style"):
        s.set_style("alpha")


def test_eval_style_flags(trained, tmp_path, capsys):
    _, _, _, second = trained
    photo = make_photo(tmp_path / "p.jpg", (40, 30))
    model = str(second.model_file)
    capsys.readouterr()
    assert eval_cmd.main(["--model_file", model, "--list_styles"]) == 0
    assert capsys.readouterr().out.split() == ["0", "alpha", "1", "beta", "2", "gamma"]
    code, _ = in_process(capsys, eval_cmd.main, "--model_file", model, "--image_file", str(photo),
                         "--style", "beta:1,gamma:3", "--output_file", f"{tmp_path}/out/", "--device", "cpu")
    assert code == 0 and (tmp_path / "out" / "p_beta25-gamma75.jpg").is_file()
    # Blends whose weights round to the same percent: both files named p_alpha100-beta0.jpg, the second
    # run's replacing the first's.
    for blend in ("alpha:0.999,beta:0.001", "alpha:0.996,beta:0.004"):
        code, _ = in_process(capsys, eval_cmd.main, "--model_file", model, "--image_file", str(photo),
                             "--style", blend, "--output_file", f"{tmp_path}/near/", "--device", "cpu")
        assert code == 0
    assert sorted(p.name for p in (tmp_path / "near").iterdir()) == ["p_alpha99.6-beta0.4.jpg",
                                                                     "p_alpha99.9-beta0.1.jpg"]
    code, _ = in_process(capsys, eval_cmd.main, "--model_file", model, "--image_file", str(photo),
                         "--style_sheet", "--output_file", f"{tmp_path}/out/", "--device", "cpu")
    sheet = Image.open(tmp_path / "out" / "p_styles.jpg")
    assert code == 0 and sheet.width > 4 * 40 and sheet.height > 30  # photo + 3 styles in one row
    code, err = in_process(capsys, eval_cmd.main, "--model_file", model, "--image_file", str(photo),
                           "--style", "delta", "--device", "cpu")
    assert_clean_in_process(code, err, "unknown style 'delta'; this model's styles: alpha, beta, gamma")


def test_report_shows_each_style_of_a_multistyle_model(trained, tmp_path, train_dir, styles):
    from fast_nst.report import write_report

    _, _, first, _ = trained
    page = write_report([str(first.model_file)], str(train_dir), str(tmp_path / "report"), style=styles[0],
                        loss_model_weights="random", device="cpu", max_size=48)
    html = Path(page).read_text()
    assert "two_alpha" in html and "two_beta" in html
    assert Image.open(tmp_path / "report" / "sheet.jpg").width > 3 * 48  # photo + 2 styles + style image


def test_numpy_and_0d_tensor_indices_are_indices():
    """np.int64(1) and torch.tensor(1) used to be read as one weight ("1 given, the model has 3")."""
    import numpy as np

    names = ["a", "b", "c"]
    assert resolve_style(np.int64(1), names).tolist() == [0.0, 1.0, 0.0]
    assert resolve_style(torch.tensor(2), names).tolist() == [0.0, 0.0, 1.0]
    assert resolve_style(torch.tensor([0.0, 1.0, 1.0]), names).tolist() == [0.0, 0.5, 0.5]
    with pytest.raises(StyleError, match="out of range 0..2"):
        resolve_style(np.int32(3), names)
