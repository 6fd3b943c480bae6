"""A checkpoint's entries besides its weights (the training config, style names, provenance) are
plain data, bounded once when the file is read (:func:`check_plain_data`): they are printed,
formatted into model cards and written as JSON. A 46 kB .pth whose config["naming"] nested lists
9 deep and 10 wide through shared references made eval.py spend minutes and gigabytes in str()
and end in MemoryError."""

from __future__ import annotations

import json
import tracemalloc

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import assert_clean_in_process, examples, in_process, make_photo, memory_cap
from fast_nst import load_stylizer
from fast_nst.commands.eval import main as eval_main
from fast_nst.core.errors import CheckpointError, FastNSTError
from fast_nst.core.untrusted import check_plain_data
from fast_nst.io.checkpoint import make_checkpoint, read_checkpoint
from fast_nst.io.publish import export_safetensors
from fast_nst.nets.johnson import TransformNet, TransformNetArgs
from fast_nst.training import load_train_config

PROPERTY = settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
MEMORY_BUDGET = 32 << 20


def _shared_nest(depth: int, width: int, leaf=0):
    """``width ** depth`` leaves through ``depth`` levels of shared lists: tiny pickled."""
    x = [leaf] * width
    for _ in range(depth - 1):
        x = [x] * width
    return x


def _save(path, **config):
    net = TransformNet(TransformNetArgs(base_channels=1, num_residual=1))
    ckpt = make_checkpoint(net, load_train_config(None, ["style_image=styles/wave.jpg", "naming=wave"]), step=3)
    ckpt["config"].update(config)
    torch.save(ckpt, path)
    return path


def _verdict(value, **bounds):
    """None or the FastNSTError of check_plain_data(value), under a memory budget."""
    tracemalloc.start()
    try:
        check_plain_data(value, "m.pth: config", CheckpointError, **bounds)
        return None
    except FastNSTError as e:
        assert len(str(e)) < 300 and "\n" not in str(e), str(e)[:300]
        return e
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < MEMORY_BUDGET, f"peak {peak:,} bytes"


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=5),
                           max_leaves=20)


@PROPERTY
@given(json_values)
def test_plain_data_within_the_bounds_is_accepted(value):
    check_plain_data(value, "m.pth: config", CheckpointError)
    json.dumps(value)  # what the check promises a .safetensors export can do


@PROPERTY
@given(st.integers(1, 12), st.integers(1, 12), st.sampled_from([0, "ab"]))
def test_shared_references_are_counted_each_time_they_are_reached(depth, width, leaf):
    total = sum(width ** level for level in range(depth + 1))  # every list and leaf, as str() walks them
    error = _verdict(_shared_nest(depth, width, leaf), max_nodes=5000, max_depth=20)
    assert (error is not None) == (total > 5000), (total, error)
    if error is not None:
        assert "more than 5,000 values" in str(error)


@pytest.mark.parametrize("value, fragment", [
    ({"naming": torch.zeros(2)}, "a value of type Tensor"),
    ({"naming": b"wave"}, "a value of type bytes"),
    ({"seed": 1 << 5000}, "an integer of 5,001 bits"),
    ({("a", "b"): 1}, "a mapping with a key of type tuple"),
    ({"naming": ["x" * 1000] * 5000}, "more than 4,194,304 characters"),
    ({"a": [[[[1]]]]}, "nested more than 3 levels deep"),
])
def test_what_is_not_plain_data_is_named(value, fragment):
    error = _verdict(value, max_depth=3) if "nested" in fragment else _verdict(value)
    assert error is not None and fragment in str(error), error


def test_a_nested_naming_is_refused_in_one_line_not_expanded(tmp_path, capsys):
    path = _save(tmp_path / "nested.pth", naming=_shared_nest(9, 10))
    assert path.stat().st_size < 50_000
    with memory_cap():
        for load in (read_checkpoint, lambda p: load_stylizer(p, device="cpu"), export_safetensors):
            with pytest.raises(CheckpointError, match="more than 100,000 values") as e:
                load(path)
            assert str(path) in str(e.value) and len(str(e.value)) < 400
        code, err = in_process(capsys, eval_main, "--model_file", path, "--image_file",
                               make_photo(tmp_path / "p.png", (20, 16)), "--output_file", tmp_path / "o.png",
                               "--device", "cpu")
    assert_clean_in_process(code, err, "more than 100,000 values")
    assert err.count("\n") == 1 and not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("naming", [[1, 2], 7, None, {"a": "b"}])
def test_a_naming_that_is_not_a_string_gives_way_to_the_file_name(naming, tmp_path):
    path = _save(tmp_path / "my_model.pth", naming=naming)
    assert load_stylizer(path, device="cpu").name == "my_model"
    assert export_safetensors(path)["name"] == "my_model"
    assert read_checkpoint(path)["config"].get("naming") is None
