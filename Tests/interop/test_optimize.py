"""`compressor optimize`: ONNX Runtime gives the same outputs before and after, every change is
reported, and the report matches docs/report-schema.json."""
import json

import jsonschema
import numpy as np
import onnx
import pytest

from conftest import FIXTURES, ROOT, ort_outputs

MANIFEST = json.loads((FIXTURES / "fixtures.json").read_text())
SCHEMA = json.loads((ROOT / "docs" / "report-schema.json").read_text())


@pytest.mark.parametrize("name", sorted(k for k, v in MANIFEST.items() if v.get("ortRuns", True)))
def test_optimized_models_compute_the_same(name, compressor, tmp_path):
    entry = MANIFEST[name]
    out, report = tmp_path / "opt.onnx", tmp_path / "report.json"
    compressor("optimize", FIXTURES / entry["file"], "-o", out, "--report", report)
    onnx.checker.check_model(str(out))
    r = json.loads(report.read_text())
    jsonschema.validate(r, SCHEMA)
    feeds = {k: np.load(FIXTURES / v) for k, v in entry["inputs"].items()}
    for a, b in zip(ort_outputs(FIXTURES / entry["file"], feeds), ort_outputs(out, feeds)):
        scale = max(float(np.max(np.abs(a))), 1e-6)
        assert float(np.max(np.abs(a.astype(np.float64) - b))) <= 1e-5 * scale


def test_constant_weights_become_initializers(compressor, tmp_path):
    out, report = tmp_path / "opt.onnx", tmp_path / "r.json"
    compressor("optimize", FIXTURES / "constant_weights.onnx", "-o", out, "--report", report)
    m = onnx.load(str(out))
    assert [n.op_type for n in m.graph.node] == ["Gemm", "Relu", "Gemm", "Relu", "Gemm"]
    assert sorted(i.name for i in m.graph.initializer) == ["l1.bias", "l1.weight", "l2.bias", "l2.weight", "l3.bias", "l3.weight"]
    r = json.loads(report.read_text())
    assert (r["input"]["nodes"], r["input"]["initializers"]) == (13, 0)
    assert (r["output"]["nodes"], r["output"]["initializers"]) == (5, 6)
    actions = [(c["target"], c["action"]) for c in r["passes"][0]["changes"]]
    assert ("identity_l1_w", "removed") in actions and ("cast_l2_w", "folded") in actions
    assert sum(a == "moved to initializer" for _, a in actions) == 6


def test_batchnorm_is_folded(compressor, tmp_path):
    out, report = tmp_path / "opt.onnx", tmp_path / "r.json"
    compressor("optimize", FIXTURES / "cnn_residual.onnx", "-o", out, "--report", report)
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert "BatchNormalization" not in ops and ops.count("Conv") == 4
    passes = {p["pass"]: p for p in json.loads(report.read_text())["passes"]}
    folded = [c for c in passes["fold-batchnorm"]["changes"] if c["action"] == "folded"]
    assert [c["target"] for c in folded] == ["b1", "b2", "b3", "b4"]


def test_default_output_name_and_refusals(compressor, tmp_path):
    src = tmp_path / "m.onnx"
    src.write_bytes((FIXTURES / "mlp.onnx").read_bytes())
    compressor("optimize", src)
    assert (tmp_path / "m.optimized.onnx").exists()
    r = compressor("optimize", src, check=False)
    assert r.returncode == 73
    assert r.stderr == f"compressor: error: {tmp_path}/m.optimized.onnx exists (use --force to replace it)\n"


def _foldable_model():
    """Weights reached through Transpose and a Reshape whose shape is computed from Shape/Gather/
    Concat of a weight, plus a ConstantOfShape that would grow the model if folded."""
    h, T = onnx.helper, onnx.TensorProto
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 8)).astype(np.float32)
    nodes = [
        h.make_node("Transpose", ["Wt"], ["W"], name="transpose_w", perm=[1, 0]),
        h.make_node("MatMul", ["x", "W"], ["y0"], name="mm"),
        h.make_node("Shape", ["Wt"], ["wshape"], name="shape_w"),
        h.make_node("Gather", ["wshape", "zero"], ["rows"], name="rows", axis=0),
        h.make_node("Concat", ["minus_one", "rows"], ["target"], name="target", axis=0),
        h.make_node("Reshape", ["y0", "target"], ["y"], name="reshape"),
        h.make_node("ConstantOfShape", ["big_shape"], ["big"], name="big", value=h.make_tensor("v", T.FLOAT, [1], [1.0])),
        h.make_node("ReduceSum", ["big"], ["s"], name="sum", keepdims=0),
        h.make_node("Mul", ["y", "s"], ["out"], name="scale"),
    ]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, ["n", 16])],
                     [h.make_tensor_value_info("out", T.FLOAT, ["n", 8])],
                     [onnx.numpy_helper.from_array(w.T.copy(), "Wt"), onnx.numpy_helper.from_array(np.array([0], np.int64), "zero"),
                      onnx.numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
                      onnx.numpy_helper.from_array(np.array([64, 64], np.int64), "big_shape")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def test_constants_are_folded_and_shapes_recorded(compressor, tmp_path):
    src, out, report = tmp_path / "m.onnx", tmp_path / "opt.onnx", tmp_path / "r.json"
    onnx.save(_foldable_model(), str(src))
    compressor("optimize", src, "-o", out, "--report", report)
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    assert [n.op_type for n in m.graph.node] == ["MatMul", "Reshape", "ConstantOfShape", "ReduceSum", "Mul"]
    r = json.loads(report.read_text())
    jsonschema.validate(r, SCHEMA)
    rows = {c["target"]: c for p in r["passes"] if p["pass"] == "fold-constants" for c in p["changes"]}
    assert {t for t, c in rows.items() if c["action"] == "folded"} == {"transpose_w", "shape_w", "rows", "target"}
    assert rows["big"]["action"] == "skipped" and rows["big"]["detail"] == "folding would store 16384 bytes for 16 of inputs"
    shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in m.graph.value_info}
    assert shapes["y0"] == ["n", 8] and shapes["big"] == [64, 64] and shapes["s"] == []
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    np.testing.assert_allclose(ort_outputs(out, {"x": x})[0], ort_outputs(src, {"x": x})[0], rtol=1e-5)
