"""How config files and ``--set`` values are read: YAML 1.1's surprises (numbers and dates that
are none, comments in command-line values, tabs), bounds on what a config may hold, and
property tests of ``--set`` and of the saved config's round trip."""

from __future__ import annotations

import math
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import examples, write_config
from fast_nst.core.config import MAX_BASE_DEPTH, TrainConfig, config_from_dict, parse_override, save_config
from fast_nst.core.config import load_config as load_schema_only
from fast_nst.core.config_checks import is_device_name
from fast_nst.core.errors import ConfigError, FastNSTError
from fast_nst.training import load_train_config as load_config

PROPERTY = settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
BASE = ["style_image=s.jpg", "naming=n"]


# ---- --set of a key of text: the text as typed -------------------------------------------------

@pytest.mark.parametrize("override, key, value", [
    ("naming=2020", "naming", "2020"),  # YAML: an int ("must be str")
    ("naming=yes", "naming", "yes"),  # YAML 1.1: true
    ("naming=2020-01-01", "naming", "2020-01-01"),  # YAML: a date
    ("style_image=my #1.jpg", "style_image", "my #1.jpg"),  # YAML: 'my', the rest a comment
    ("style_image=- x.jpg", "style_image", "- x.jpg"),  # YAML: a list
    ("sample_images=a #1.jpg", "sample_images", ("a #1.jpg",)),
    ("style_image='quoted name.jpg'", "style_image", "quoted name.jpg"),  # YAML quotes still unquote
    ("sample_images=[a.jpg, 'b #2.jpg']", "sample_images", ("a.jpg", "b #2.jpg")),
    ("device=cuda:0", "device", "cuda:0"),
])
def test_set_of_a_text_key_takes_the_text_as_typed(override, key, value):
    assert getattr(load_schema_only(None, BASE + [override]), key) == value


def test_set_of_a_list_in_broken_brackets_is_a_yaml_error_not_one_odd_path():
    """'[a #1.jpg, b]' was not YAML, so it became the path list ['[a #1.jpg', 'b']."""
    with pytest.raises(ConfigError, match=r"^--set sample_images: not valid YAML"):
        load_schema_only(None, BASE + ["sample_images=[a #1.jpg, b]"])


_PLAIN_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).map(str.strip).filter(
    lambda s: s and not s.startswith(("'", '"', "[")))


@PROPERTY
@given(_PLAIN_TEXT, st.sampled_from(["style_image", "train_dir", "init_from", "loss_model_file", "val_dir"]))
def test_set_text_reads_back_as_typed(text, key):
    assert parse_override(f"{key}={text}") == (key, text)
    home = text == "~" or text.startswith("~/")  # ~/ is the home folder, as in a file
    assert getattr(load_schema_only(None, BASE + [f"{key}={text}"]), key) == (os.path.expanduser(text) if home else text)


# ---- lists: a file's text is one item, --set's plain text splits at commas -----------------------

def test_a_text_for_a_list_in_a_file_is_one_item_not_split_at_its_commas(tmp_path):
    """'style_images: a,b.jpg' trained two styles, 'a' and 'b.jpg'; a file writes a list as one."""
    path = tmp_path / "c.yml"
    path.write_text('model_type: johnson_multi\nstyle_images: a,b.jpg\nsample_images: "x, y.jpg"\n')
    cfg = load_config(path)
    assert (cfg.style_images, cfg.sample_images) == (("a,b.jpg",), ("x, y.jpg",))


@pytest.mark.parametrize("override, key, value", [
    ("sample_images=a.jpg,b.jpg", "sample_images", ("a.jpg", "b.jpg")),  # the shell's word: split
    ("style_layers=relu1_2, relu3_3", "style_layers", ("relu1_2", "relu3_3")),
    ("style_layer_weights=1,2.5,1,1", "style_layer_weights", (1.0, 2.5, 1.0, 1.0)),
    ("sample_images='my,photo.jpg'", "sample_images", ("my,photo.jpg",)),  # YAML-quoted: one text, as in a file
    ("sample_images=['my,photo.jpg', b.jpg]", "sample_images", ("my,photo.jpg", "b.jpg")),
    ("sample_images=", "sample_images", ()),  # empty: none
])
def test_set_of_a_list_as_plain_text_splits_at_commas(override, key, value):
    assert getattr(load_schema_only(None, BASE + [override]), key) == value


_ITEM = _PLAIN_TEXT.filter(lambda s: "," not in s)


@PROPERTY
@given(st.lists(_ITEM, min_size=1, max_size=4))
def test_list_text_splits_on_the_command_line_only(items):
    joined = ",".join(items)
    assert parse_override(f"sample_images={joined}") == ("sample_images", items)
    assert config_from_dict({"naming": "n", "style_image": "s.jpg", "sample_images": joined},
                            "test").sample_images == (joined,)


# ---- empty and home-folder paths ----------------------------------------------------------------

@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_model_path_is_refused_naming_the_file(tmp_path, value):
    """'' wrote the run folder into the current folder, under no 'models'."""
    path = write_config(tmp_path / "m.yml", style_image="s.jpg", model_path=value)
    with pytest.raises(ConfigError, match=rf"^{path}: key 'model_path' is empty; set it to the folder run folders "
                                          r"go in \(e.g. models; '\.' for the current folder\)$"):
        load_config(path)
    assert load_config(path, ["model_path=."]).model_path == "."


@pytest.mark.parametrize("key, what", [
    ("style_image", "a path or https URL of the style painting"), ("style_dir", "a folder of paintings"),
    ("val_dir", "a folder of held-out photos"), ("init_from", "a trained model's .pth"),
    ("loss_model_file", "the loss network's weights file"),
])
def test_an_optional_path_of_only_spaces_is_refused_naming_the_file(tmp_path, key, what):
    """'  ' passed the config and failed at train start as a missing file named '  '."""
    values = {"style_image": "s.jpg", key: "  "}
    if key == "style_dir":
        values.update(model_type="adain", style_image="")
    path = write_config(tmp_path / "b.yml", **values)
    with pytest.raises(ConfigError, match=rf"^{path}: key '{key}' holds only white space \('  '\); "
                                          rf"give {re.escape(what)}, or leave it empty \(''"):
        load_config(path)
    with pytest.raises(ConfigError, match=rf"^--set {key}=' ': key '{key}' holds only white space \(' '\)"):
        load_config(path, [f"{key}=' '"])  # YAML quotes keep the space (--set strips a bare one)


def test_a_leading_tilde_is_the_home_folder_in_every_path_and_in_base(tmp_path, monkeypatch):
    """base: ~/x.yml looked for a folder named '~' next to the file; so did every path key."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    write_config(home / "shared.yml", style_image="~/art/s.jpg", lr=0.002)
    child = write_config(tmp_path / "runs" / "child.yml", base="~/shared.yml", train_dir="~/coco",
                         model_path="~", sample_images=["~/p.jpg", "~user/q.jpg", "a~/r.jpg"], val_dir="~/val")
    cfg = load_config(child, ["init_from=~/m.pth", "loss_model_file=~/vgg.pth"])
    assert cfg.lr == 0.002 and cfg.style_image == str(home / "art" / "s.jpg")
    assert (cfg.train_dir, cfg.model_path, cfg.val_dir) == (str(home / "coco"), str(home), str(home / "val"))
    assert cfg.sample_images == (str(home / "p.jpg"), "~user/q.jpg", "a~/r.jpg")  # ~user: as written
    assert (cfg.init_from, cfg.loss_model_file) == (str(home / "m.pth"), str(home / "vgg.pth"))
    assert load_config("~/shared.yml").naming == "shared"  # the file itself, from Python
    multi = load_config(None, BASE + ["style_image=", "model_type=johnson_multi", "style_images=~/a.jpg,~/b.jpg"])
    assert multi.style_images == (str(home / "a.jpg"), str(home / "b.jpg"))


# ---- --set KEY= of a key that takes a value -------------------------------------------------------

@pytest.mark.parametrize("override, message", [
    ("lr=", "lr needs a number after '='"),  # was: must be float, got ''
    ("max_steps=", "max_steps needs a whole number \\(or null\\) after '='"),
    ("compile=", "compile needs true or false after '='"),
    ("precision=", "precision needs one of fp32, bf16, fp16 after '='"),
    ("model_args=", "model_args needs a mapping such as {base_channels: 16} \\({} for none\\) after '='"),
])
def test_an_empty_set_value_says_the_key_needs_one(override, message):
    with pytest.raises(ConfigError, match=rf"^--set {override}: {message}$"):
        load_config(None, BASE + [override])


@PROPERTY
@given(st.integers(1, 2 ** 63 - 1), st.floats(min_value=1e-30, max_value=1e30),
       st.lists(st.floats(min_value=0, max_value=1e6), min_size=4, max_size=4), st.booleans())
def test_set_numbers_lists_and_booleans_read_back(steps, lr, weights, compile_):
    cfg = load_schema_only(None, BASE + [f"max_steps={steps}", f"lr={lr!r}", f"style_layer_weights={weights!r}",
                                         f"compile={str(compile_).lower()}"])
    assert (cfg.max_steps, cfg.lr, cfg.style_layer_weights, cfg.compile) == (steps, lr, tuple(weights), compile_)


_KEYS = sorted(TrainConfig.__dataclass_fields__) + ["LR", "base", "model_args.x", ""]
_YAMLISH = st.text(alphabet="[]{}-:,&*!|>'\"#%@`?~ .0123456789abexnul_\t", max_size=40)


@PROPERTY
@given(st.lists(st.tuples(st.sampled_from(_KEYS), _YAMLISH | st.sampled_from(
    ["0x" + "f" * 5000, "9" * 5000, "2020-02-30", ".nan", "-.inf", "1e400", "{a: {b: 1}}", "null"])), max_size=4))
def test_any_set_ends_in_a_config_or_one_config_error(pairs):
    """Never another exception (int() of 5000 digits, str() of a 20,000-bit int, a date that is
    none all were ValueError tracebacks), and the message is one bounded line."""
    try:
        load_config(None, BASE + [f"{k}={v}" for k, v in pairs])
    except FastNSTError as e:
        assert isinstance(e, ConfigError)
        assert len(str(e)) < 1500 and "\n" not in str(e), str(e)[:300]


_FREE_TEXT = st.text(st.characters(), max_size=30)  # surrogates, controls, NEL, BOM included


@PROPERTY
@given(style=_FREE_TEXT.filter(str.strip), train=_FREE_TEXT.filter(str.strip), samples=st.lists(
    _FREE_TEXT.filter(str.strip), max_size=3), lr=st.floats(min_value=1e-300, max_value=1e300),
    seed=st.integers(-2 ** 63, 2 ** 63 - 1), weights=st.none() | st.lists(
    st.floats(min_value=0, max_value=1e300), min_size=4, max_size=4), width=st.integers(1, 64))
def test_a_saved_config_loads_back_as_the_same_config(tmp_path_factory, style, train, samples, lr, seed,
                                                       weights, width):
    cfg = config_from_dict(dict(style_image=style, train_dir=train, sample_images=samples, lr=lr, seed=seed,
                                style_layer_weights=weights, model_args={"base_channels": width}, naming="n"),
                           "test")
    path = tmp_path_factory.mktemp("saved") / "config.yml"
    save_config(cfg, path)
    assert load_config(path) == cfg


# ---- YAML values that are no value --------------------------------------------------------------

@pytest.mark.parametrize("line, message", [
    ("naming: 2020-02-30\n", r"'2020-02-30' \(line 2\) reads as a number or a date but is none \(day is out of range for "
                             r"month\); quote it to give text"),
    ("seed: " + "9" * 5000 + "\n", r"line 2 holds an integer of more than 4,300 digits; no setting takes one"),
])
def test_numbers_and_dates_yaml_cannot_build_name_the_file_and_line(tmp_path, line, message):
    """Both were ValueError tracebacks (Python refuses int() of over 4300 digits)."""
    path = tmp_path / "c.yml"
    path.write_text("style_image: s.jpg\n" + line)
    with pytest.raises(ConfigError, match=rf"^{path}: {message}"):
        load_config(path)


@pytest.mark.parametrize("override, got", [
    ("seed=0x" + "f" * 5000, "an integer of 20,000 bits"),  # 20,000 bits: str() of it raised ValueError
    ("image_size=-0x" + "f" * 5000, "an integer of 20,000 bits"),
    ("max_steps=18446744073709551616", "18446744073709551616"),
])
def test_whole_numbers_beyond_64_bits_are_refused_without_printing_them(override, got):
    with pytest.raises(ConfigError, match=rf"key '\w+' must be a whole number from -2\*\*63 to 2\*\*63 - 1, "
                                          rf"got {got}$") as e:
        load_config(None, BASE + [override])
    assert len(str(e.value)) < 300


def test_a_huge_model_args_number_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"key 'model_args.base_channels' must be a whole number from -2\*\*63"):
        load_config(None, BASE + ["model_args={base_channels: 0x" + "f" * 3000 + "}"])


def test_tabs_say_that_yaml_wants_spaces(tmp_path):
    path = tmp_path / "t.yml"
    path.write_text("style_image:\ts.jpg\n")
    with pytest.raises(ConfigError, match=r"not valid YAML: .*\(YAML indents and separates with spaces, not tabs\)"):
        load_config(path)


def test_a_text_key_given_a_number_says_to_quote_it(tmp_path):
    path = write_config(tmp_path / "q.yml", style_image="s.jpg", naming=2020)
    with pytest.raises(ConfigError, match=r"key 'naming' must be str, got 2020 \(int\); put it in quotes"):
        load_config(path)


# ---- values caught before training, naming the key and file -------------------------------------

@pytest.mark.parametrize("weights", [[1, -1, 1, 1], [1, ".nan", 1, 1], [1, ".inf", 1, 1]])
def test_style_layer_weights_must_be_finite_and_not_negative(tmp_path, weights):
    """NaN and inf trained until the loss was NaN; a negative weight rewarded unlike textures."""
    path = tmp_path / "w.yml"
    path.write_text(f"style_image: s.jpg\nstyle_layer_weights: [{', '.join(map(str, weights))}]\n")
    with pytest.raises(ConfigError, match=rf"^{path}: key 'style_layer_weights' must be finite numbers >= 0"):
        load_config(path)


@pytest.mark.parametrize("key", ["style_layers", "content_layers"])
def test_a_layer_listed_twice_is_refused(key):
    """style_layers [relu1_2, relu1_2] with weights [1, 5] weighed both by 1: total_weight_for
    looks a layer up by its first entry."""
    with pytest.raises(ConfigError, match=rf"^--set {key}=\[relu1_2, relu1_2\]: key '{key}' lists relu1_2 more "
                                          "than once"):
        load_config(None, BASE + [f"{key}=[relu1_2, relu1_2]"])


@pytest.mark.parametrize("overrides, key, number", [
    (["sample_images=['', a.jpg]"], "sample_images", 1),
    (["model_type=johnson_multi", "style_image=", "style_images=[a.jpg, ' ']"], "style_images", 2),
])
def test_an_empty_path_in_a_list_is_refused(overrides, key, number):
    """'' is the current folder: training stopped with 'image . is a folder' under style_image."""
    with pytest.raises(ConfigError, match=rf"key '{key}' has an empty entry \(number {number}\)"):
        load_config(None, BASE + overrides)


@pytest.mark.parametrize("name, ok", [("cuda:1", True), ("cuda:\u0661", False), ("cuda:" + "9" * 5000, False),
                                      ("cuda:999999", True), ("cuda:", False)])
def test_device_index_is_ascii_digits_of_bounded_length(name, ok):
    """'cuda:\u0661' passed (isdigit), int() read it as 1 and torch.device refused it; 5000
    digits ended in int()'s ValueError."""
    assert is_device_name(name) is ok


def test_model_args_are_checked_when_loading_naming_the_file(tmp_path):
    """They were checked only when training started, blamed on 'config'."""
    path = write_config(tmp_path / "m.yml", style_image="s.jpg", model_args={"base_chanels": 16})
    with pytest.raises(ConfigError, match=rf"^{path}: key 'model_args' unknown argument\(s\) base_chanels for "
                                          "model_type johnson"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"^--set seed=-1: key 'seed' gives the adain network's encoder its "
                                          r"encoder_seed: encoder_seed must be a whole number from 0"):
        load_config(None, BASE + ["model_type=adain", "style_image=", "style_dir=p", "seed=-1"])


def test_adain_style_layers_past_the_encoder_are_refused_when_loading_naming_the_file(tmp_path):
    """Checked only when training began, blamed on 'config'."""
    path = write_config(tmp_path / "a.yml", model_type="adain", style_dir="art", model_args={"encoder_layer": "relu3_1"},
                        style_layers=["relu1_1", "relu4_1"])
    with pytest.raises(ConfigError, match=rf"^{path}: key 'style_layers' names relu4_1, deeper than the encoder's last "
                                          r"layer relu3_1 \(model_args encoder_layer\); Huang & Belongie match relu1_1, "
                                          r"relu2_1, relu3_1$"):
        load_config(path)
    assert load_config(path, ["style_layers=relu1_1,relu3_1"]).style_layers == ("relu1_1", "relu3_1")


def test_two_style_images_of_one_style_name_are_refused_when_loading_naming_the_file(tmp_path):
    """Found only when training began, blamed on 'config'."""
    path = write_config(tmp_path / "m.yml", model_type="johnson_multi", style_images=["a/candy.jpg", "b.jpg",
                                                                                      "b/candy.png"])
    with pytest.raises(ConfigError, match=rf"^{path}: key 'style_images' names the style candy more than once "
                                          r"\(a/candy\.jpg and b/candy\.png; a style is named after its file\); "
                                          r"rename the files or drop the repeats$"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"^--set style_images=x/b\.jpg,b\.jpg: key 'style_images' names the "
                                          r"style b more than once"):
        load_config(path, ["style_images=x/b.jpg,b.jpg"])
    assert load_config(path, ["style_images=a/candy.jpg,b.jpg"]).style_images == ("a/candy.jpg", "b.jpg")


def test_without_a_file_a_default_is_called_the_default_not_set_by_set():
    """With --set alone, keys nobody gave were said to be 'set by --set'."""
    with pytest.raises(ConfigError) as e:
        load_config(None, BASE + ["style_layer_weights=[1, 2]"])
    assert str(e.value) == ("--set style_layer_weights=[1, 2]: key 'style_layer_weights' has 2 weights for 4 "
                            "style_layers; give one per layer or null (style_layers is the default)")
    with pytest.raises(ConfigError, match=r"^--set: key 'style_layers' \(the default\) names relu2_2, relu3_3, "
                                          r"relu4_3, deeper than the encoder's last layer relu2_1"):
        load_config(None, BASE + ["style_image=", "model_type=adain", "style_dir=art",
                                  "model_args={encoder_layer: relu2_1}"])
    with pytest.raises(ConfigError, match=r"^--set: key 'style_image' is required"):  # an empty default: no "(the default)"
        load_config(None, ["naming=n"])


def test_unknown_key_in_another_case_suggests_the_key():
    with pytest.raises(ConfigError, match=r"unknown key 'LR'; did you mean 'lr'\?"):
        load_config(None, BASE + ["LR=0.1"])


# ---- base: chains -------------------------------------------------------------------------------

def test_a_long_chain_of_base_files_is_refused_by_depth(tmp_path):
    """A chain of ~1000 files ended in 'c978.yml: nested too deep.' (a RecursionError)."""
    for i in range(MAX_BASE_DEPTH + 2):
        write_config(tmp_path / f"c{i}.yml", base=f"c{i + 1}.yml")
    write_config(tmp_path / f"c{MAX_BASE_DEPTH + 2}.yml", style_image="s.jpg")
    with pytest.raises(ConfigError, match=rf"c{MAX_BASE_DEPTH}\.yml: 'base' files nest more than {MAX_BASE_DEPTH} "
                                          rf"deep \(from .*c0\.yml\)"):
        load_config(tmp_path / "c0.yml")
    assert load_config(tmp_path / f"c{MAX_BASE_DEPTH - 1}.yml").style_image == "s.jpg"  # 4 files: fine


def test_base_is_relative_to_the_file_naming_it_not_the_current_folder(tmp_path, monkeypatch):
    write_config(tmp_path / "shared" / "base.yml", style_image="s.jpg", lr=0.002)
    child = write_config(tmp_path / "runs" / "child.yml", base="../shared/base.yml")
    monkeypatch.chdir(tmp_path / "runs")
    assert load_config("child.yml").lr == load_config(child).lr == 0.002
    assert not math.isnan(load_config(child).style_weight)
