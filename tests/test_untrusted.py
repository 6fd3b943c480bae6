"""The boundary for outside data (fast_nst/core/untrusted/): property tests of each parser (any
input ends in a value or one FastNSTError, within a memory budget) and the hostile files and
values each class of problem was found with (docs/reliability.md, "The boundary for outside data").
"""

from __future__ import annotations

import json
import math
import os
import pickle
import pickletools
import tempfile
import tracemalloc
import unicodedata
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import assert_clean_in_process, examples, in_process, make_photo, memory_cap, set_declared_size
from fast_nst.commands.eval import main as eval_main
from fast_nst.core.config import MAX_NAMING_BYTES, TrainConfig, load_config, parse_override
from fast_nst.core.errors import CheckpointError, ConfigError, FastNSTError
from fast_nst.core.untrusted import (FLOAT32_MAX, finite_float, load_json, load_torch_file, load_yaml,
                                     read_json_file, shown)
from fast_nst.core.untrusted.structured import MAX_DEPTH, MAX_YAML_NODES, json_depth
from fast_nst.io.checkpoint import atomic_torch_save, make_checkpoint, read_checkpoint
from fast_nst.nets.multistyle import MultiStyleArgs, MultiStyleNet, StyleError, resolve_style

# A parser may use this much Python memory on any input here: the inputs are a few kB, so
# anything near it is an expansion (anchors, repr) that the boundary exists to stop.
MEMORY_BUDGET = 32 << 20
PROPERTY = settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _ends_well(call, *errors: type[BaseException]):
    """Run ``call()`` under tracemalloc: (its value or the FastNSTError it raised); fails on any
    other exception or a peak over MEMORY_BUDGET."""
    tracemalloc.start()
    try:
        return call()
    except FastNSTError as e:
        assert len(str(e)) < 2000 and "\n" not in str(e).strip(), str(e)[:300]
        return e
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < MEMORY_BUDGET, f"peak {peak:,} bytes"


# ---- text: shown() --------------------------------------------------------------------------------

@PROPERTY
@given(st.text(max_size=400), st.integers(min_value=4, max_value=300))
def test_shown_is_one_printable_bounded_line(text, limit):
    out = shown(text, limit)
    assert len(out) <= limit
    assert not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn") for c in out)
    if len(text) <= limit and all(c.isprintable() and unicodedata.category(c) not in ("Cf", "Co", "Cn")
                                  for c in text):
        assert out == text  # printable text is left as it is


# ---- structured: YAML -----------------------------------------------------------------------------

yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=30)


@PROPERTY
@given(yaml_values)
def test_yaml_of_plain_values_reads_back(value):
    text = yaml.safe_dump(value)
    assert load_yaml(text, "x.yml") == value


@PROPERTY
@given(st.text(alphabet="[]{}-:,&*ab !\n'\"#|>", max_size=300))
def test_any_yaml_text_ends_in_a_value_or_one_error(text):
    _ends_well(lambda: load_yaml(text, "x.yml"))


@PROPERTY
@given(st.integers(1, 3000), st.sampled_from(["[", "{a: ", "- "]))
def test_yaml_nesting_is_bounded(depth, opener):
    closer = {"[": "]", "{a: ": "}", "- ": ""}[opener]  # "- - 1": block sequences on one line
    text = opener * depth + "1" + closer * depth
    result = _ends_well(lambda: load_yaml(text, "deep.yml"))
    assert isinstance(result, ConfigError) == (depth >= MAX_DEPTH), str(result)[:200]
    if isinstance(result, ConfigError):
        assert "nested more than" in str(result)


@PROPERTY
@given(st.integers(1, 12), st.integers(1, 12))
def test_yaml_aliases_expand_within_the_budget_or_are_refused(levels, width):
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels)]
    text = "\n".join(lines)
    result = _ends_well(lambda: load_yaml(text, "bomb.yml"))
    expanded = sum(width ** k for k in range(1, levels + 1))
    if isinstance(result, ConfigError):
        assert "expand to more than" in str(result) and expanded > MAX_YAML_NODES / 2
    else:
        assert expanded <= 2 * MAX_YAML_NODES


@PROPERTY
@given(st.lists(st.text(alphabet="abcxyz_\u00e9\u4e2d", min_size=1, max_size=5), min_size=2, max_size=6, unique=True),
       st.data())
def test_yaml_duplicate_keys_are_refused_naming_key_and_lines(keys, data):
    twice = data.draw(st.sampled_from(keys))
    lines = [f"{k}: {i}" for i, k in enumerate(keys)] + [f"{twice}: again"]
    with pytest.raises(ConfigError, match="given twice") as e:
        load_yaml("\n".join(lines), "dup.yml")
    assert f"'{twice}'" in str(e.value) and f"lines {keys.index(twice) + 1} and {len(keys) + 1}" in str(e.value)


def test_yaml_merge_keys_override_without_being_duplicates():
    text = "base: &b {x: 1, y: 2}\nrun:\n  <<: *b\n  x: 3\n"
    assert load_yaml(text, "m.yml") == {"base": {"x": 1, "y": 2}, "run": {"x": 3, "y": 2}}


# ---- structured: JSON -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(alphabet="ab[]{}\"\\", max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=20)


def _depth(value) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@PROPERTY
@given(json_values)
def test_json_depth_scan_counts_brackets_outside_strings(value):
    text = json.dumps(value)
    assert json_depth(text) == _depth(value)
    assert load_json(text, "x.json", FastNSTError) == value


@PROPERTY
@given(st.integers(1, 6000), st.booleans())
def test_json_nesting_is_bounded_before_parsing(depth, objects):
    text = ('{"a":' * depth + "1" + "}" * depth) if objects else ("[" * depth + "]" * depth)
    result = _ends_well(lambda: load_json(text, "deep.json", ConfigError, max_depth=10))
    assert isinstance(result, ConfigError) == (depth > 10)


@PROPERTY
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_any_json_bytes_end_in_a_value_or_one_error(data):
    _ends_well(lambda: load_json(data, "x.json", FastNSTError, max_bytes=150))


# ---- numbers ----------------------------------------------------------------------------------------

@PROPERTY
@given(st.one_of(st.floats(), st.integers(min_value=-10**400, max_value=10**400), st.text(max_size=20),
                 st.booleans(), st.none()))
def test_finite_float_is_a_float32_number_or_one_error(value):
    result = _ends_well(lambda: finite_float(value, "a weight", StyleError, low=0.0))
    if not isinstance(result, FastNSTError):
        assert math.isfinite(result) and 0.0 <= result <= FLOAT32_MAX
        assert torch.isfinite(torch.tensor(result, dtype=torch.float32))


@pytest.mark.parametrize("spec", ["candy:1e39", "candy:1e39,mosaic:1", {"candy": 1e39}, {"candy": 10**400}])
def test_a_style_weight_beyond_float32_is_one_clear_error(spec):
    with pytest.raises(StyleError, match="must be a finite number of magnitude at most 3.403e"):
        resolve_style(spec, ["candy", "mosaic"])
    assert resolve_style("candy:3e38,mosaic:0", ["candy", "mosaic"]).tolist() == [1.0, 0.0]


# ---- archives: every torch.load -------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("ckpt") / "small.pth"
    torch.save({"w": torch.zeros(4), "names": ["a"]}, path)
    return path.read_bytes()


@settings(max_examples=examples(25), deadline=None)
@given(st.data())
def test_any_damaged_archive_ends_in_one_checkpoint_error(small_ckpt, data):
    """Truncated, overwritten or size-lying copies of a real archive: a value or one
    CheckpointError, never PyTorch's advice to load with weights_only=False."""
    raw = bytearray(small_ckpt)
    kind = data.draw(st.sampled_from(["cut", "flip", "declare", "junk"]))
    if kind == "cut":
        raw = raw[:data.draw(st.integers(0, len(raw)))]
    elif kind == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    elif kind == "junk":
        raw = bytearray(data.draw(st.binary(max_size=300)))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.pth"
        path.write_bytes(bytes(raw))
        if kind == "declare":
            with zipfile.ZipFile(path) as zf:
                member = data.draw(st.sampled_from([i.filename for i in zf.infolist()]))
            set_declared_size(path, member, data.draw(st.integers(0, 0xFFFF_FFFF)))
        with memory_cap():
            result = _ends_well(lambda: load_torch_file(path, 1 << 30))
    if isinstance(result, FastNSTError):
        assert isinstance(result, CheckpointError) and "weights_only" not in str(result)


_PLAIN_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=examples(25), deadline=None)
@given(_PLAIN_VALUES, st.integers(0, pickle.HIGHEST_PROTOCOL), st.data())
def test_any_plain_pickle_is_named_one_and_any_cut_copy_is_damaged(value, protocol, data):
    """pickle.dump's files of any protocol are plain pickles (protocol 0's, text-looking, were
    "a text file"; protocol 1's "unreadable binary data"); every cut copy is damaged, not code,
    and a protocol 0 or 1 one cut after its first memo record (PUT) is a cut pickle."""
    raw = pickle.dumps(value, protocol=protocol)
    cut = data.draw(st.integers(1, len(raw) - 1))
    ops = [(op.name, pos) for op, _, pos in pickletools.genops(raw)]
    put = next((i for i, (name, _) in enumerate(ops) if "PUT" in name), None)
    pickle_told = protocol < 2 and put is not None and cut > ops[put + 1][1]
    with tempfile.TemporaryDirectory() as d:
        whole, short = Path(d) / "whole.pth", Path(d) / "short.pth"
        whole.write_bytes(raw)
        short.write_bytes(raw[:cut])
        with pytest.raises(CheckpointError, match=r"not a PyTorch checkpoint: a plain Python pickle"):
            load_torch_file(whole, 1 << 20)
        with pytest.raises(CheckpointError, match=r"not a PyTorch checkpoint, or the file is damaged") as e:
            load_torch_file(short, 1 << 20)
        if pickle_told:
            assert "a Python pickle of protocol" in str(e.value) and "that is cut short" in str(e.value)


def test_an_archive_whose_zip64_record_claims_several_disks_is_one_error(small_ckpt, tmp_path):
    """Found by the property above: zipfile.is_zipfile raises (BadZipFile) instead of answering
    for a zip64 end-record locator that counts 2 disks; was a traceback."""
    raw = bytearray(small_ckpt)
    at = raw.rfind(b"PK\x06\x07")
    assert at > 0, "torch writes zip64 end records"
    raw[at + 16:at + 20] = (2).to_bytes(4, "little")  # total number of disks
    path = tmp_path / "disks.pth"
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="damaged .a zip archive that is truncated or corrupt"):
        load_torch_file(path, 1 << 30)


@pytest.mark.parametrize("head, said", [(b"X\x00\x00\x00\x02", "not a pickle, or a truncated one"),
                                        (b"\x80\x02X\xff\xff\xff\x7f", "a Python pickle that is cut short"),
                                        (b"\x80\x02B\xff\xff\xff\x7f", "a Python pickle that is cut short")])
def test_a_few_bytes_declaring_a_huge_string_allocate_nothing_like_it(tmp_path, head, said):
    """Found by the property above: a file that is not a zip archive goes to torch.load's older
    format, a plain pickle, whose string and bytes records carry their length; read from the
    file, that length was allocated before reading (32 MB, 2 GB for 5 bytes). Read from memory:
    one CheckpointError, within the budget. Checkpoints in that older format still load."""
    path = tmp_path / "short.pth"
    path.write_bytes(head)
    error = _ends_well(lambda: load_torch_file(path, 1 << 30))
    assert isinstance(error, CheckpointError) and said in str(error)
    torch.save({"w": torch.arange(4.0)}, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    assert torch.equal(_ends_well(lambda: load_torch_file(tmp_path / "old.pth", 1 << 30))["w"], torch.arange(4.0))


_ANY_DTYPE = st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.complex64,
                               torch.complex128, torch.int64, torch.int32, torch.uint8, torch.uint16, torch.bool,
                               torch.float8_e4m3fn])


@PROPERTY
@given(st.data())
def test_any_state_dict_fits_the_network_or_is_one_error(data):
    """weights.check_state passes exactly the states load_state_dict takes without changing a
    kind of number (every name, every shape, real floats for float weights), and names the
    first that does not fit in one line otherwise."""
    from fast_nst.core.untrusted.weights import check_state, spec_of
    from fast_nst.nets.johnson import TransformNet, TransformNetArgs

    net = TransformNet(TransformNetArgs(base_channels=1, num_residual=1))
    expected = spec_of(net.state_dict())
    names = data.draw(st.lists(st.sampled_from([*expected, "extra.weight"]), unique=True, min_size=len(expected) - 2))
    state = {}
    for name in names:
        dtype, shape = expected.get(name, (torch.float32, (2,)))
        if data.draw(st.booleans()):
            dtype = data.draw(_ANY_DTYPE)
        if data.draw(st.integers(0, 4)) == 0:
            shape = data.draw(st.lists(st.integers(0, 3), max_size=4))
        state[name] = torch.zeros(shape, dtype=dtype)
    try:
        check_state(spec_of(state), expected, "m.pth", "the transform net (johnson)")
    except FastNSTError as e:
        message = str(e)
        assert isinstance(e, CheckpointError) and message.startswith("m.pth: weights do not fit the transform net")
        assert "\n" not in message and len(message) < 600, message
        return
    assert set(state) == set(expected)
    assert all(v.is_floating_point() and not v.is_complex() and v.dtype != torch.float8_e4m3fn for v in state.values())
    net.load_state_dict(state)


@PROPERTY
@given(st.binary(max_size=3000), st.integers(0, 1 << 40), st.binary(max_size=100))
def test_read_at_most_reads_what_read_would_without_allocating_the_limit(tmp_path_factory, content, limit, grown):
    """read_at_most(f, limit) returns f.read(limit), also for a file that grows after it was
    opened, and allocates about what it returns, not ``limit``."""
    from fast_nst.core.untrusted.paths import read_at_most

    path = tmp_path_factory.mktemp("read") / "f"
    path.write_bytes(content)
    with open(path, "rb") as f, open(path, "rb") as g:
        with open(path, "ab") as more:
            more.write(grown)
        expected = g.read(limit) if limit < 1 << 20 else (content + grown)[:limit]
        data = _ends_well(lambda: read_at_most(f, limit))
    assert data == expected


def test_a_pickle_that_asks_for_code_is_refused_in_our_words(tmp_path):
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as zf:  # torch.save's layout, with a pickle that calls os.system
        zf.writestr("evil/data.pkl", pickle.dumps(os.system, protocol=2))
        zf.writestr("evil/version", "3\n")
        zf.writestr("evil/byteorder", "little")
    with pytest.raises(CheckpointError, match="refused: it asks to run code") as e:
        load_torch_file(path, 1 << 20)
    assert "weights_only" not in str(e.value) and "nothing from this file was executed" in str(e.value)


@pytest.mark.parametrize("version", [0, -1, -1e30, True, "2"])
def test_format_versions_fast_nst_never_wrote_are_refused(tmp_path, version):
    net = MultiStyleNet(MultiStyleArgs(2, base_channels=8, num_residual=1))
    ckpt = {**make_checkpoint(net, TrainConfig(naming="m"), step=1), "format_version": version}
    atomic_torch_save(ckpt, tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match="format_version"):
        read_checkpoint(tmp_path / "m.pth")


# ---- configs ----------------------------------------------------------------------------------------

# 439 bytes: 9 levels of 9 aliases, 9**9 (387 million) strings once expanded; the coercion's error
# message used to repr it all (58 MB, or a MemoryError).
BILLION_LAUGHS = "\n".join(["style_layers: &a [" + ", ".join(["lol"] * 9) + "]"]
                           + [f"x{i}: &{c} [" + ", ".join([f"*{p}"] * 9) + "]"
                              for i, (p, c) in enumerate(zip("abcdefgh", "bcdefghi"))]).replace(
    "x7: &i", "style_image: &i")


def test_config_anchors_do_not_expand_into_memory_or_messages(tmp_path):
    path = tmp_path / "laughs.yml"
    path.write_text(BILLION_LAUGHS)
    assert path.stat().st_size < 600
    with memory_cap(1 << 30):
        e = _ends_well(lambda: load_config(path))
    assert isinstance(e, ConfigError) and "expand to more than" in str(e)
    # Below the expansion cap, a wrong type names the value briefly (quote), not in full.
    path.write_text("content_layers: &a [" + ", ".join(["x" * 50] * 9) + "]\nnaming: [*a, *a, *a, *a, *a, *a]\n")
    with pytest.raises(ConfigError, match="key 'naming' must be str") as e:
        load_config(path)
    assert len(str(e.value)) < 300


def test_config_nesting_and_duplicate_keys(tmp_path):
    deep = tmp_path / "deep.yml"
    deep.write_text("model_args: " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(ConfigError, match="nested more than 32 levels"):
        load_config(deep)
    with pytest.raises(ConfigError, match="nested more than 32 levels"):
        load_config(None, ["style_image=a.jpg", "model_args=" + "{a: " * 3000 + "1" + "}" * 3000])
    dup = tmp_path / "dup.yml"
    dup.write_text("style_image: a.jpg\nlr: 0.001\nstyle_weight: 1e5\nlr: 0.1\n")
    with pytest.raises(ConfigError, match="dup.yml: key 'lr' is given twice \\(lines 2 and 4\\)"):
        load_config(dup)
    assert parse_override("naming=a: b: c") == ("naming", "a: b: c")  # not YAML: the text itself


def test_config_files_are_bounded_in_bytes(tmp_path):
    big = tmp_path / "big.yml"
    big.write_text("style_image: a.jpg\n" + "#" * (2 << 20) + "\n")
    with pytest.raises(ConfigError, match="big.yml is 2,097,172 bytes, more than the limit of 1,048,576"):
        load_config(big)


def test_naming_is_limited_in_bytes_at_config_time():
    four_byte = "\U00020000" * 61  # 61 characters (under the 64-character limit), 244 bytes
    with pytest.raises(ConfigError, match=f"is 244 bytes in UTF-8 .61 characters.*at most {MAX_NAMING_BYTES} bytes"):
        load_config(None, ["style_image=a.jpg", f"naming={four_byte}"])
    assert load_config(None, ["style_image=a.jpg", "naming=" + "\u00e9" * 64]).naming == "\u00e9" * 64  # 128 bytes


# ---- JSON read by the library ----------------------------------------------------------------------

def test_onnx_style_names_nested_deep_are_a_problem_not_a_traceback():
    from fast_nst.stylize.onnx_stylizer import _parse_style_names

    names, problem = _parse_style_names("[" * 1500 + "]" * 1500, 16)
    assert names == [] and "is not JSON of a flat list of names" in problem
    assert _parse_style_names('["a", "b"]', 2) == (["a", "b"], "")


def test_cache_index_nested_deep_is_ignored_with_a_warning(tmp_path):
    from fast_nst.training.cache import cache_dir, open_cache

    folder = cache_dir(tmp_path, 32)
    folder.mkdir(parents=True)
    (folder / "index.json").write_text("[" * 5000 + "]" * 5000)
    with pytest.warns(UserWarning, match="Ignoring unreadable cache .*nested 5000 levels deep"):
        assert open_cache(tmp_path, 32, []) is None


def test_lock_file_json_is_bounded(tmp_path):
    from fast_nst.training.lock import LOCK_FILE, RunLock

    lock = tmp_path / LOCK_FILE
    lock.write_text("[" * 5000 + "]" * 5000)
    assert RunLock(tmp_path)._holder() is None
    lock.write_text('{"pid": 1, "host": "h"}')
    assert RunLock(tmp_path)._holder() == {"pid": 1, "host": "h"}
    lock.write_text('{"pid": [[1]]}')
    with pytest.raises(FastNSTError, match="nested 3 levels deep; at most 2"):
        read_json_file(lock, "a lock file", FastNSTError, max_depth=2)


# ---- style names from model files -------------------------------------------------------------------

HOSTILE_NAMES = ["\x1b]0;pwned\x07\x1b[2J", "evil\u202eexe.jpg", "a\r\nerror: forged line", "nul\x00x"]


@pytest.fixture
def hostile_multi(tmp_path) -> Path:
    torch.manual_seed(0)
    net = MultiStyleNet(MultiStyleArgs(len(HOSTILE_NAMES), base_channels=8, num_residual=1))
    net.style_names = list(HOSTILE_NAMES)
    cfg = TrainConfig(naming="multi\x1b[31m", model_type="johnson_multi", style_images=("a.jpg",) * 4)
    atomic_torch_save(make_checkpoint(net, cfg, step=1), tmp_path / "multi.pth")
    return tmp_path / "multi.pth"


def _raw_control(text: str) -> list[str]:
    return [c for c in text if unicodedata.category(c) in ("Cc", "Cf") and c != "\n"]


def test_style_names_reach_the_terminal_escaped(hostile_multi, tmp_path, capsys):
    assert eval_main(["--model_file", str(hostile_multi), "--list_styles"]) == 0
    out = capsys.readouterr().out
    assert not _raw_control(out) and len(out.strip().splitlines()) == len(HOSTILE_NAMES)
    assert "\\x1b]0;pwned\\x07" in out and "evil\\u202eexe.jpg" in out
    photo = make_photo(tmp_path / "p.png", (20, 16))
    code, err = in_process(capsys, eval_main, "--model_file", hostile_multi, "--image_file", photo,
                           "--output_file", tmp_path / "o.png", "--device", "cpu")
    assert code == 0 and not _raw_control(err) and len(err.strip().splitlines()) == 1, err  # no forged line
    code, err = in_process(capsys, eval_main, "--model_file", hostile_multi, "--image_file", photo,
                           "--output_file", tmp_path / "o.png", "--device", "cpu", "--style", "nope")
    assert_clean_in_process(code, err, "unknown style 'nope'")
    assert not _raw_control(err) and len(err.strip().splitlines()) == 1
    code, err = in_process(capsys, eval_main, "--model_file", hostile_multi, "--image_file", photo,
                           "--output_file", tmp_path / "o.png", "--device", "cpu", "--style", "nope:1e39")
    assert_clean_in_process(code, err, "must be a finite number")


def test_app_blend_field_and_style_choices(hostile_multi, tmp_path):
    from fast_nst.commands.app import AppSession, _model_controls

    session = AppSession({"m": hostile_multi}, "cpu", tmp_path)
    photo = make_photo(tmp_path / "p.png", (20, 16))
    with pytest.raises(StyleError, match="must be a finite number of magnitude"):
        session.stylize("m", str(photo), blend=f"{HOSTILE_NAMES[1]}:1e39")

    class FakeGradio:  # gr.update returns its arguments
        update = staticmethod(lambda **kw: kw)

    summary, style, *_ = _model_controls(FakeGradio, session, "m")
    labels, values = zip(*style["choices"])
    assert list(values) == HOSTILE_NAMES  # what set_style is given: the model's own names
    assert not _raw_control(summary + "".join(labels))
    out, _ = session.stylize("m", str(photo), style=HOSTILE_NAMES[2])
    assert out.is_file()


# ---- paths named inside model files -----------------------------------------------------------------

@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory) -> Path:
    """A user's VGG16 weights file (features only, seeded random weights)."""
    from fast_nst.lossnet.vgg import random_features

    path = tmp_path_factory.mktemp("mine") / "my-vgg16.pth"
    torch.save(random_features("vgg16", 3).state_dict(), path)
    return path


def _adain_model(path: Path, **model_args) -> Path:
    from conftest import random_adain_net

    net = random_adain_net("relu2_1")
    ckpt = make_checkpoint(net, TrainConfig(naming="ad", model_type="adain", style_dir="art"), step=1)
    ckpt["model_args"].update(encoder_weights="imagenet", **model_args)
    atomic_torch_save(ckpt, path)
    return path


def test_a_model_file_never_chooses_the_file_its_encoder_is_read_from(tmp_path, monkeypatch, encoder_file, capsys):
    from fast_nst import load_stylizer
    from fast_nst.nets.adain import file_sha256

    secret = tmp_path / "secret.txt"
    secret.write_text("root:$6$hash\n")
    model = _adain_model(tmp_path / "ad.pth", encoder_file=str(secret), encoder_sha256="0" * 16)
    monkeypatch.chdir(tmp_path)  # no pretrained/ here: the registry's default path is missing
    with pytest.raises(CheckpointError) as e:
        load_stylizer(model, device="cpu")
    assert "secret" not in str(e.value) and file_sha256(secret)[:12] not in str(e.value)
    assert "not found at pretrained/vgg16-397923af.pth" in str(e.value) and "--loss_model_file FILE" in str(e.value)
    # The user's own file, checked against the checksum the model records.
    with pytest.raises(CheckpointError, match="trained with an encoder file of sha256 000000000000"):
        load_stylizer(model, device="cpu", loss_model_file=encoder_file)
    good = _adain_model(tmp_path / "good.pth", encoder_file=str(secret), encoder_sha256=file_sha256(encoder_file)[:16])
    assert load_stylizer(good, device="cpu", loss_model_file=encoder_file).style_input == "image"
    assert eval_main(["--model_file", str(good), "--list_styles", "--loss_model_file", str(encoder_file)]) == 0
    assert "arbitrary-style model" in capsys.readouterr().out
    code, err = in_process(capsys, eval_main, "--model_file", good, "--list_styles")
    assert_clean_in_process(code, err, "pretrained/vgg16-397923af.pth", "--loss_model_file")
    assert "secret" not in err
    from fast_nst.commands.export import main as export_main

    code, err = in_process(capsys, export_main, good, "--output", tmp_path / "ad.onnx",
                           "--loss_model_file", tmp_path / "nowhere.pth")
    assert_clean_in_process(code, err, "the file given for it, ", "nowhere.pth, does not exist")
    assert "secret" not in err and not (tmp_path / "ad.onnx").exists()


def test_encoder_files_are_bounded_and_explained_in_our_words(tmp_path, capsys):
    from fast_nst import load_stylizer

    model = _adain_model(tmp_path / "ad.pth")
    text = tmp_path / "page.pth"
    text.write_text("<html>404</html>\n")
    with pytest.raises(CheckpointError, match="page.pth: not a VGG16 weights file, or the file is damaged") as e:
        load_stylizer(model, device="cpu", loss_model_file=text)
    assert "weights_only" not in str(e.value)
    liar = tmp_path / "liar.pth"  # a few hundred bytes declaring 4.3 GB
    torch.save({"features.0.weight": torch.zeros(4)}, liar)
    with zipfile.ZipFile(liar) as zf:
        member = next(i.filename for i in zf.infolist() if "/data/" in i.filename)
    set_declared_size(liar, member, 0xFFFF_FFF0)
    with memory_cap(), pytest.raises(CheckpointError, match="refused: the archive declares 4.3 GB"):
        load_stylizer(model, device="cpu", loss_model_file=liar)
    code, err = in_process(capsys, eval_main, "--model_file", model, "--list_styles", "--loss_model_file", liar)
    assert_clean_in_process(code, err, "declares 4.3 GB", "Nothing was unpacked")


def test_a_report_never_copies_the_style_image_a_model_file_names(tmp_path, capsys):
    from fast_nst.commands.evaluate import main as evaluate_main
    from fast_nst.nets.johnson import TransformNet, TransformNetArgs

    private = make_photo(tmp_path / "private" / "holiday.png", (40, 32), seed=7)
    net = TransformNet(TransformNetArgs(base_channels=8, num_residual=1))
    atomic_torch_save(make_checkpoint(net, TrainConfig(naming="m", style_image=str(private)), step=1),
                      tmp_path / "m.pth")
    make_photo(tmp_path / "photos" / "p.png", (36, 30))
    out = tmp_path / "report"
    code, err = in_process(capsys, evaluate_main, "--model_file", tmp_path / "m.pth", "--images", tmp_path / "photos",
                           "--output", out, "--loss_model_weights", "random", "--device", "cpu")
    assert code == 0, err
    assert not (out / "styles").exists()
    for f in out.rglob("*"):
        assert not f.is_file() or b"holiday" not in f.read_bytes(), f


def test_evaluate_names_its_own_flags_for_the_loss_network(tmp_path, monkeypatch, capsys):
    import fast_nst.core.untrusted.downloads
    from fast_nst.commands.evaluate import main as evaluate_main
    from fast_nst.core.errors import DownloadError
    from fast_nst.nets.johnson import TransformNet, TransformNetArgs

    def offline(url, dest, *args, **kwargs):
        raise DownloadError(f"cannot download {url}: simulated: network is unreachable")

    monkeypatch.setattr(fast_nst.core.untrusted.downloads, "download_url", offline)
    monkeypatch.chdir(tmp_path)
    net = TransformNet(TransformNetArgs(base_channels=8, num_residual=1))
    cfg = TrainConfig(naming="caffe", style_image="s.jpg", loss_model="vgg16_caffe",
                      loss_model_file=str(tmp_path / "elsewhere" / "vgg16-00b39a1b.pth"))
    atomic_torch_save(make_checkpoint(net, cfg, step=1), tmp_path / "caffe.pth")
    make_photo(tmp_path / "photos" / "p.png", (36, 30))
    code, err = in_process(capsys, evaluate_main, "--model_file", tmp_path / "caffe.pth", "--images",
                           tmp_path / "photos", "--output", tmp_path / "r", "--device", "cpu")
    assert_clean_in_process(code, err, "simulated", "pretrained/vgg16-00b39a1b.pth", "--loss_model_file FILE",
                            "--loss_model_weights random")
    assert "train.py" not in err and "optimize" not in err and "elsewhere" not in err


def test_init_from_a_model_at_the_style_cap_plus_one_style_is_a_config_error(tmp_path, train_dir, style_file):
    from conftest import tiny_values
    from fast_nst.nets.multistyle import MAX_STYLES
    from fast_nst.training.config import train_config_from_dict
    from fast_nst.training.trainer import train

    full = MultiStyleNet(MultiStyleArgs(MAX_STYLES, base_channels=8, num_residual=1))
    full.style_names = [f"s{i}" for i in range(MAX_STYLES)]
    cfg = TrainConfig(naming="full", model_type="johnson_multi", style_images=("a.jpg",))
    atomic_torch_save(make_checkpoint(full, cfg, step=1), tmp_path / "full.pth")
    values = tiny_values(tmp_path / "models", train_dir, style_file, naming="more", model_type="johnson_multi",
                         model_args={"base_channels": 8, "num_residual": 1}, style_images=[str(style_file)],
                         init_from=str(tmp_path / "full.pth"))
    values.pop("style_image")
    with pytest.raises(ConfigError, match=f"has {MAX_STYLES} styles and style_images adds 1, {MAX_STYLES + 1} in all"):
        train(train_config_from_dict(values, "test"), progress=False)
    assert not (tmp_path / "models" / "more" / "more.pth").exists()
