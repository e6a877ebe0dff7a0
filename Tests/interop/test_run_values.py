"""`compressor run` with sequence and optional values: inputs from SequenceProto / OptionalProto
.pb files and from .npz members NAME.0, NAME.1, …; outputs saved as NAME.0, NAME.1, … and
described by type and length in --json."""
import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEQ = helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, None))


def save(tmp_path, nodes, inputs, outputs, opset=18):
    m = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs), opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    return path


def test_sequence_outputs_are_saved_by_position_and_described(compressor, tmp_path):
    path = save(tmp_path, [helper.make_node("SplitToSequence", ["x"], ["parts"], axis=1, keepdims=0),
                           helper.make_node("SequenceLength", ["parts"], ["n"])],
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                [helper.make_value_info("parts", SEQ), helper.make_tensor_value_info("n", TensorProto.INT64, [])])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.save(tmp_path / "x.npy", x)
    r = compressor("run", path, f"--input=x={tmp_path / 'x.npy'}", "-o", tmp_path / "out.npz", "--json")
    got = np.load(tmp_path / "out.npz")
    assert sorted(got.files) == ["n", "parts.0", "parts.1", "parts.2"]
    for k in range(3):
        np.testing.assert_array_equal(got[f"parts.{k}"], x[:, k])
    described = json.loads(r.stdout)["outputs"][0]
    assert described["type"] == "seq(tensor(float))" and described["length"] == 3
    assert [e["shape"] for e in described["elements"]] == [[2], [2], [2]]


def test_sequence_and_optional_inputs_from_pb_and_npz(compressor, tmp_path):
    path = save(tmp_path, [helper.make_node("ConcatFromSequence", ["s"], ["y"], axis=0),
                           helper.make_node("OptionalHasElement", ["o"], ["has"])],
                [helper.make_value_info("s", SEQ), helper.make_value_info("o", helper.make_optional_type_proto(SEQ))],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, None), helper.make_tensor_value_info("has", TensorProto.BOOL, [])])
    parts = [np.array([1, 2], np.float32), np.array([3], np.float32)]
    (tmp_path / "s.pb").write_bytes(numpy_helper.from_list(parts, "s").SerializeToString())
    (tmp_path / "o.pb").write_bytes(numpy_helper.from_optional(None, "o", onnx.OptionalProto.UNDEFINED).SerializeToString())
    compressor("run", path, f"--input=s={tmp_path / 's.pb'}", f"--input=o={tmp_path / 'o.pb'}", "-o", tmp_path / "a.npz")
    got = np.load(tmp_path / "a.npz")
    np.testing.assert_array_equal(got["y"], [1, 2, 3])
    assert not bool(got["has"])
    # The same sequence as .npz members s.0, s.1; the optional holding a sequence.
    np.savez(tmp_path / "in.npz", **{"s.0": parts[0], "s.1": parts[1]})
    (tmp_path / "o2.pb").write_bytes(numpy_helper.from_optional(parts, "o").SerializeToString())
    compressor("run", path, f"--input={tmp_path / 'in.npz'}", f"--input=o={tmp_path / 'o2.pb'}", "-o", tmp_path / "b.npz")
    got = np.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(got["y"], [1, 2, 3])
    assert bool(got["has"])


def test_a_tensor_where_a_sequence_is_expected_is_65(compressor, tmp_path):
    path = save(tmp_path, [helper.make_node("SequenceLength", ["s"], ["n"])], [helper.make_value_info("s", SEQ)],
                [helper.make_tensor_value_info("n", TensorProto.INT64, [])])
    np.save(tmp_path / "s.npy", np.zeros(3, np.float32))
    r = compressor("run", path, f"--input=s={tmp_path / 's.npy'}", check=False)
    assert r.returncode == 65, r.stderr
    assert "input 's' is a tensor(float) but the model expects seq(tensor(float))" in r.stderr, r.stderr
