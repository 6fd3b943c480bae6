"""ONNX model files through the boundary (fast_nst.core.untrusted.onnx_files): bounded in bytes,
parsed from memory so that paths a model names (external data) are never opened, and hostile
bytes end in a stylizer or one CheckpointError."""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import damaged, examples, load_hostile_onnx
from fast_nst.core.errors import CheckpointError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from fast_nst.stylize.onnx_stylizer import load_onnx_stylizer  # noqa: E402


def _image_graph(bias: np.ndarray) -> "onnx.ModelProto":
    """input (N, 3, H, W) + bias (1, 3, 1, 1) -> output: the smallest image-to-image model."""
    init = numpy_helper.from_array(bias.astype(np.float32).reshape(1, 3, 1, 1), "bias")
    graph = helper.make_graph([helper.make_node("Add", ["input", "bias"], ["output"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                              [init])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    """The smallest model, with metadata as an export has it (text for hostile bytes to damage)."""
    model = _image_graph(np.array([0.1, 0.2, 0.3]))
    helper.set_model_props(model, {"name": "wave", "step": "3"})
    return model.SerializeToString()


def test_a_valid_model_loads_and_runs(model_bytes, tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(model_bytes)
    s = load_onnx_stylizer(path, device="cpu")
    import torch

    out = s.stylize_tensor(torch.zeros(1, 3, 4, 5))
    assert out.shape == (1, 3, 4, 5) and float(out[0, 2, 0, 0]) == pytest.approx(0.3)


def test_external_data_named_by_the_model_is_never_opened(tmp_path):
    """Loaded from a path, onnxruntime would read the weights from the file the model names;
    fast-nst parses the model from memory, where that path means nothing: one line, no read."""
    model = _image_graph(np.full(3, 7.0))
    onnx.save_model(model, str(tmp_path / "ext.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").stat().st_size == 12
    import onnxruntime as ort

    direct = ort.InferenceSession(str(tmp_path / "ext.onnx"), providers=["CPUExecutionProvider"])
    assert direct.run(None, {"input": np.zeros((1, 3, 1, 1), np.float32)})[0].max() == 7.0  # it reads it
    with pytest.raises(CheckpointError, match="not a valid ONNX model") as e:
        load_onnx_stylizer(tmp_path / "ext.onnx", device="cpu")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text", [b"wave", b"input"])
def test_text_that_is_not_utf8_is_one_error(model_bytes, tmp_path, text):
    """onnxruntime loads a model whose text (a metadata value; the input's name) is not UTF-8 and
    fails only when the text is read (Python's UnicodeDecodeError): one CheckpointError line
    saying the file is damaged."""
    assert model_bytes.count(text) >= 1
    path = tmp_path / "bad-text.onnx"
    path.write_bytes(model_bytes.replace(text, b"\xe9" + text[1:]))
    with pytest.raises(CheckpointError, match="the file is damaged .ValueError: its text is not UTF-8") as e:
        load_onnx_stylizer(path, device="cpu")
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_a_model_file_over_the_byte_bound_is_refused_before_reading(model_bytes, tmp_path, monkeypatch):
    import fast_nst.stylize.onnx_stylizer as onnx_stylizer

    path = tmp_path / "big.onnx"
    path.write_bytes(model_bytes)
    monkeypatch.setattr(onnx_stylizer, "MAX_ONNX_BYTES", len(model_bytes) - 1)
    with pytest.raises(CheckpointError, match=f"{len(model_bytes):,} bytes, more than the limit"):
        load_onnx_stylizer(path, device="cpu")


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hostile_model_bytes_end_in_a_stylizer_or_one_error(model_bytes, tmp_path, data):
    """Truncated, bit-flipped, spliced or random bytes: a stylizer or one CheckpointError, within
    a memory cap and a time budget."""
    load_hostile_onnx(damaged(data, model_bytes)[1], tmp_path / "h.onnx")
