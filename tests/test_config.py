import pytest
import yaml

from fast_nst.core.config import TrainConfig, save_config
from fast_nst.training import load_train_config as load_config, train_config_from_dict as config_from_dict
from fast_nst.core.errors import ConfigError

from conftest import REPO, write_config


def test_defaults_and_naming_from_file_stem(tmp_path):
    path = write_config(tmp_path / "starry.yml", style_image="s.jpg")
    cfg = load_config(path)
    assert cfg.naming == "starry"
    assert (cfg.image_size, cfg.batch_size, cfg.epochs, cfg.lr) == (256, 4, 2, 3e-4)
    assert cfg.content_layers == ("relu2_2",)
    assert cfg.style_layers == ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
    assert cfg.train_dir == "data/train2014" and cfg.model_path == "models"
    assert cfg.loss_model_file == "" and cfg.model_type == "johnson" and dict(cfg.model_args) == {}


def test_unknown_key_names_key_and_file(tmp_path):
    path = write_config(tmp_path / "a.yml", style_image="s.jpg", styel_weight=3)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "styel_weight" in str(e.value) and str(path) in str(e.value)
    assert "did you mean 'style_weight'" in str(e.value)


@pytest.mark.parametrize("key,value,fragment", [
    ("batch_size", "four", "must be int"),
    ("batch_size", 2.5, "must be int"),
    ("lr", [1], "must be float"),
    ("content_layers", 3, "must be list of str"),
    ("max_steps", "many", "must be int or null"),
    ("loss_model_weights", "pretrained", "'imagenet' | 'random'"),
    ("batch_size", 0, "must be > 0"),
    ("style_layers", ["relu9_1"], "unknown layer 'relu9_1'"),
    ("loss_model", "vgg15", "choose one of: vgg16"),
    ("device", "tpu", "choose one of: auto, cpu, cuda"),
    ("style_layer_weights", [1.0], "give one per layer"),
    ("image_size", 8, "at least 16"),
])
def test_wrong_types_and_values_name_key_and_file(tmp_path, key, value, fragment):
    path = write_config(tmp_path / "b.yml", style_image="s.jpg", **{key: value})
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert f"'{key}" in msg and str(path) in msg and fragment in msg


def test_set_overrides_layer_on_top(tmp_path):
    path = write_config(tmp_path / "c.yml", style_image="s.jpg", lr=0.01, batch_size=8)
    cfg = load_config(path, ["lr=5e-4", "max_steps=7", "style_layers=relu1_2,relu3_3",
                             "style_layer_weights=[1, 2.5]", "device=cpu", "style_size=null"])
    assert cfg.lr == 5e-4 and cfg.batch_size == 8 and cfg.max_steps == 7
    assert cfg.style_layers == ("relu1_2", "relu3_3") and cfg.style_layer_weights == (1.0, 2.5)
    assert cfg.style_size is None and cfg.device == "cpu"
    assert cfg.total_weight_for("relu3_3") == pytest.approx(cfg.style_weight * 2.5)


def test_bad_override_names_the_override(tmp_path):
    path = write_config(tmp_path / "d.yml", style_image="s.jpg")
    with pytest.raises(ConfigError, match=r"--set batch_size=x: key 'batch_size' must be int"):
        load_config(path, ["batch_size=x"])
    with pytest.raises(ConfigError, match="unknown key 'bogus'"):
        load_config(path, ["bogus=1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(path, ["max_steps"])
    # A lone string (not a list) used to be read one character at a time: "--set 'b'".
    for overrides in ("batch_size=4", None, [4]):
        with pytest.raises(ConfigError, match=r"^overrides: expected a list of KEY=VALUE strings"):
            load_config(path, overrides)
    assert load_config(path, (o for o in ["batch_size=4"])).batch_size == 4


def test_yaml_1e5_without_dot_is_a_float(tmp_path):
    path = tmp_path / "e.yml"
    path.write_text("style_image: s.jpg\nstyle_weight: 1e5\n")
    assert load_config(path).style_weight == 1e5


def test_base_file_is_merged_and_child_wins(tmp_path):
    write_config(tmp_path / "base.yml", style_image="base.jpg", lr=0.002, batch_size=8)
    child = write_config(tmp_path / "child.yml", base="base.yml", batch_size=2)
    cfg = load_config(child)
    assert (cfg.style_image, cfg.lr, cfg.batch_size, cfg.naming) == ("base.jpg", 0.002, 2, "child")
    write_config(tmp_path / "bad_base.yml", wat=1)
    with pytest.raises(ConfigError, match="bad_base.yml: unknown key 'wat'"):
        load_config(write_config(tmp_path / "c2.yml", base="bad_base.yml"))


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("style_image: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="Config file not found"):
        load_config(tmp_path / "nope.yml")
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(bad)


def test_saved_config_roundtrips(tmp_path):
    cfg = load_config(write_config(tmp_path / "f.yml", style_image="s.jpg"), ["style_layer_weights=[1,2,3,4]"])
    save_config(cfg, tmp_path / "saved.yml")
    again = load_config(tmp_path / "saved.yml")
    assert again == cfg
    assert yaml.safe_load((tmp_path / "saved.yml").read_text())["style_layers"] == list(cfg.style_layers)


def test_config_is_frozen():
    with pytest.raises(Exception):
        TrainConfig(style_image="x").lr = 3  # type: ignore[misc]


STYLES = ["wave", "udnie", "mosaic", "candy", "the_scream", "starry_night", "la_muse", "feathers",
          "composition_vii", "rain_princess", "the_shipwreck_of_the_minotaur"]


@pytest.mark.parametrize("name", STYLES)
def test_shipped_style_configs_load(name):
    path = REPO / "conf" / f"{name}.yml"
    cfg = load_config(path)
    assert cfg.naming == name == path.stem
    assert cfg.style_image.startswith("https://raw.githubusercontent.com/")
    assert "style_weight" in yaml.safe_load(path.read_text())


def test_missing_required_key_names_the_config_file(tmp_path):
    path = write_config(tmp_path / "empty_style.yml", lr=0.01)
    with pytest.raises(ConfigError, match=r"empty_style\.yml: key 'style_image' is required"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"--set: key 'style_image' is required"):
        load_config(None, ["naming=x"])
    # A config rebuilt from a mapping (a checkpoint's, an API caller's) blames that mapping.
    with pytest.raises(ConfigError, match=r"^model\.pth: key 'naming' must be a plain name"):
        config_from_dict({"style_image": "s.jpg"}, "model.pth")


def test_missing_base_names_the_file_that_refers_to_it(tmp_path):
    child = write_config(tmp_path / "child.yml", base="nowhere.yml", style_image="s.jpg")
    with pytest.raises(ConfigError, match=r"nowhere\.yml \(named by 'base:' in .*child\.yml\)"):
        load_config(child)


def test_naming_is_not_inherited_from_a_base_file(tmp_path):
    write_config(tmp_path / "candy.yml", style_image="candy.jpg", naming="candy")
    strong = write_config(tmp_path / "candy_strong.yml", base="candy.yml", style_weight=2e5)
    assert load_config(strong).naming == "candy_strong"
    named = write_config(tmp_path / "named.yml", base="candy.yml", naming="mine")
    assert load_config(named).naming == "mine"
    assert load_config(strong, ["naming=cli"]).naming == "cli"


def test_every_shipped_config_loads_and_names_its_loss_network():
    """conf/*.yml pass every check, train against the Caffe VGG16 their weights were tuned for,
    and say so; multi11 lists the same styles at the same weights."""
    from pathlib import Path

    from fast_nst.training import load_train_config

    conf = Path(__file__).resolve().parent.parent / "conf"
    singles = {}
    for path in sorted(conf.glob("*.yml")):
        cfg = load_train_config(path)
        if cfg.model_type == "adain":  # the paper's recipe: VGG-19, its own weights
            assert (cfg.loss_model, cfg.style_weight, cfg.lr, cfg.resize_to) == ("vgg19", 10.0, 1e-4, 512)
            continue
        assert cfg.loss_model == "vgg16_caffe" and cfg.loss_weights_for == "caffe", path
        assert "tuned" in path.read_text(), f"{path} should say what its weights were tuned against"
        if cfg.model_type == "johnson":
            singles[cfg.style_image] = cfg.style_weight
    multi = load_train_config(conf / "multi11.yml")
    assert len(singles) == 11 and set(multi.style_images) == set(singles)
    for src, w in zip(multi.style_images, multi.style_weights):
        assert w * multi.style_weight == pytest.approx(singles[src], rel=1e-2), src


@pytest.mark.parametrize("override, message", [
    ("image_size=6000", "image_size. must be at most 2048 px, got 6000"),  # was: an allocation traceback
    ("image_size=20000", "image_size. must be at most 2048 px, got 20000"),  # was: every photo "unreadable"
    ("resize_to=20000", "resize_to. must be at most 4096 px, got 20000"),
])
def test_training_sizes_are_bounded_with_the_reason(override, message):
    with pytest.raises(ConfigError, match=message) as e:
        load_config(None, ["style_image=s.jpg", "naming=s", override])
    assert "the papers train at 256" in str(e.value)
    assert load_config(None, ["style_image=s.jpg", "naming=s", "image_size=2048"]).image_size == 2048


@pytest.mark.parametrize("seed", ["18446744073709551616", "-9223372036854775809", "18446744073709551615",
                                  "9223372036854775808"])
def test_seed_is_bounded_so_every_seed_derived_from_it_is_valid(seed):
    """Out of torch's range the seed ended in "Overflow when unpacking long long"; 2**64 - 1 trained
    until the first epoch boundary, where seed + epoch overflowed (20k steps into COCO)."""
    with pytest.raises(ConfigError, match=rf"^--set seed={seed}: key 'seed' must be a whole number from -2\*\*63 "
                                          rf"to 2\*\*63 - 1, got {seed}$"):
        load_config(None, ["style_image=s.jpg", "naming=s", f"seed={seed}"])


def test_the_largest_seed_seeds_everything_training_derives_from_it():
    import random

    import torch

    from fast_nst.core.config_checks import SEED_LIMIT
    from fast_nst.nets.adain import AdaINArgs
    from fast_nst.training.arbitrary import PAINTING_SEED_OFFSET
    from fast_nst.training.data import ResumableSampler

    for seed in (SEED_LIMIT - 1, -SEED_LIMIT):  # negative seeds worked before the bound: runs resume
        seed = load_config(None, ["style_image=s.jpg", "naming=s", f"seed={seed}"]).seed
        torch.Generator().manual_seed(seed)
        random.seed(seed)
        for sampler_seed in (seed, seed + PAINTING_SEED_OFFSET):  # the photos' and the paintings' order
            batches = iter(ResumableSampler(2, 1, sampler_seed))
            assert len([next(batches) for _ in range(10)]) == 10  # across epoch boundaries: seed + epoch
    AdaINArgs(encoder_seed=SEED_LIMIT - 1)  # a random encoder for arbitrary-style runs


def test_an_empty_train_dir_is_refused_not_the_current_folder():
    """"" for train_dir trained on every image below the current folder (for val_dir "" is none)."""
    with pytest.raises(ConfigError, match=r"^--set train_dir=: key 'train_dir' is empty; set it to the folder "
                                          r"of training photos"):
        load_config(None, ["style_image=s.jpg", "naming=s", "train_dir="])
    assert load_config(None, ["style_image=s.jpg", "naming=s", "val_dir="]).val_dir == ""


# ---- overrides that change what another key must fit ----------------------------------------------

def test_set_style_images_on_multi11_gives_every_style_one_weight():
    """conf/multi11.yml's 11 style_weights are for its own paintings: --set style_images with
    two styles trains them at weight 1 each and says so."""
    multi11 = REPO / "conf" / "multi11.yml"
    with pytest.warns(UserWarning, match=r"--set style_images gives 2 styles; the 11 style_weights of "
                                         r".*multi11.yml were for its own styles.*--set 'style_weights=\[w1, w2, \.\.\.\]' "
                                         r"\(quoted for the shell\)"):
        cfg = load_config(multi11, ["style_images=[a.jpg, b.jpg]"])
    assert cfg.style_images == ("a.jpg", "b.jpg") and cfg.style_weights == ()
    same = load_config(multi11, ["style_images=[" + ", ".join(f"s{i}.jpg" for i in range(11)) + "]"])
    assert same.style_weights == load_config(multi11).style_weights  # 11 local copies: weights kept
    both = load_config(multi11, ["style_images=[a.jpg, b.jpg]", "style_weights=[1, 3]"])
    assert both.style_weights == (1.0, 3.0)
    with pytest.warns(UserWarning, match="--set style_images gives 2 styles"):  # as the shell gives it: the same
        assert load_config(multi11, ["style_images=a.jpg,b.jpg"]).style_weights == ()


@pytest.mark.parametrize("overrides,message", [
    (["style_weights=[1, 2]"], "--set style_weights=[1, 2]: key 'style_weights' has 2 weights for 11 "
                               "style_images; give one per style or [] (style_images set by {conf})"),
    (["style_images=[a.jpg, b.jpg]", "style_weights=[1]"],
     "--set style_weights=[1]: key 'style_weights' has 1 weights for 2 style_images; give one per style "
     "or [] (style_images set by --set style_images=[a.jpg, b.jpg])"),
])
def test_a_weight_count_error_names_both_sources(overrides, message):
    multi11 = REPO / "conf" / "multi11.yml"
    with pytest.raises(ConfigError) as e:
        load_config(multi11, overrides)
    assert str(e.value) == message.format(conf=multi11)


def test_set_style_layers_names_itself_when_the_files_layer_weights_no_longer_fit(tmp_path):
    path = write_config(tmp_path / "a.yml", style_image="s.jpg", style_layer_weights=[1, 2, 3, 4])
    with pytest.raises(ConfigError) as e:
        load_config(path, ["style_layers=[relu1_2, relu2_2]"])
    assert str(e.value) == (f"{path}: key 'style_layer_weights' has 4 weights for 2 style_layers; give one "
                            "per layer or null (style_layers set by --set style_layers=[relu1_2, relu2_2])")


def test_train_checks_a_config_made_without_the_loader():
    """TrainConfig is public: one made directly (or by dataclasses.replace) used to reach the
    trainer unchecked (TypeError from deep inside, torch's 'Invalid learning rate: nan')."""
    import dataclasses

    from fast_nst.training import train

    cfg = load_config(None, ["style_image=x.jpg", "naming=t"])
    with pytest.raises(ConfigError, match="the TrainConfig given to train\\(\\): key 'batch_size' must be int"):
        train(dataclasses.replace(cfg, batch_size="x"))
    with pytest.raises(ConfigError, match="key 'lr' must be a finite number > 0, got nan"):
        train(dataclasses.replace(cfg, lr=float("nan")))
    with pytest.raises(ConfigError, match="train\\(\\) takes a TrainConfig .* got dict"):
        train(cfg.to_dict())


def test_an_int_past_floats_range_is_refused_by_the_range_check():
    """10**400 as lr used to end in Python's OverflowError converting it to float."""
    with pytest.raises(ConfigError, match="key 'lr' must be a finite number > 0, got inf"):
        config_from_dict({"style_image": "x", "naming": "t", "lr": 10 ** 400}, "api")
