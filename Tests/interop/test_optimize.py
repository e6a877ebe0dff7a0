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
    folded = [c for c in json.loads(report.read_text())["passes"][1]["changes"] if c["action"] == "folded"]
    assert [c["target"] for c in folded] == ["b1", "b2", "b3", "b4"]


def test_default_output_name_and_refusals(compressor, tmp_path):
    src = tmp_path / "m.onnx"
    src.write_bytes((FIXTURES / "mlp.onnx").read_bytes())
    compressor("optimize", src)
    assert (tmp_path / "m.optimized.onnx").exists()
    r = compressor("optimize", src, check=False)
    assert r.returncode == 73
    assert r.stderr == f"compressor: error: {tmp_path}/m.optimized.onnx exists (use --force to replace it)\n"
