"""`compressor factorize`: low-rank Gemm/MatMul factors that ONNX Runtime runs like the executor,
data-aware factors with lower output error than plain SVD at the same budget, and refusals."""
import json

import jsonschema
import numpy as np
import onnx
import pytest

from conftest import FIXTURES, ort_outputs
from test_quantize import SCHEMA, cosine, pass_changes, _linear_model
from test_quantize_modes import check_runs_alike, feeds_of

CALIB = {"mlp": "calib_x.npy", "transformer_block": "calib_tokens.npz"}


@pytest.mark.parametrize("name", ["mlp", "transformer_block"])
def test_target_params_half(name, compressor, tmp_path):
    out, report = tmp_path / "f.onnx", tmp_path / "f.json"
    compressor("factorize", FIXTURES / f"{name}.onnx", "--target-params", "0.5", "--data", FIXTURES / "data" / CALIB[name],
               "-o", out, "--report", report)
    check_runs_alike(compressor, out, name, tmp_path)
    r = json.loads(report.read_text())
    jsonschema.validate(r, SCHEMA)
    assert r["output"]["parameters"] <= 0.5 * r["input"]["parameters"]
    rows = [c for c in pass_changes(r, "factorize-linear") if c["action"] == "factorized"]
    assert rows
    for c in rows:
        v = c["values"]
        assert v["outputError"] < v["plainOutputError"], c["target"]
        assert v["parametersAfter"] < v["parametersBefore"]
    if name == "mlp":
        reference, factored = ort_outputs(FIXTURES / "mlp.onnx", feeds_of(name))[0], ort_outputs(out, feeds_of(name))[0]
        assert cosine(reference, factored) >= 0.99


def test_data_aware_beats_plain_at_the_same_budget(compressor, tmp_path):
    """Both factorizations at --rank-ratio 0.25: the data-aware one has lower output error on the test split."""
    outs = {}
    for mode, extra in (("plain", []), ("aware", ["--data", FIXTURES / "data/calib_x.npy"])):
        outs[mode] = tmp_path / f"{mode}.onnx"
        compressor("factorize", FIXTURES / "mlp.onnx", "--rank-ratio", "0.25", *extra, "-o", outs[mode])
    reference = ort_outputs(FIXTURES / "mlp.onnx", feeds_of("mlp"))[0]
    errors = {m: float(np.linalg.norm(ort_outputs(p, feeds_of("mlp"))[0] - reference)) for m, p in outs.items()}
    assert errors["aware"] < errors["plain"]
    sizes = {m: sum(int(np.prod(i.dims)) for i in onnx.load(str(p)).graph.initializer) for m, p in outs.items()}
    assert sizes["aware"] == sizes["plain"]


def test_factorize_then_quantize(compressor, tmp_path):
    low, q = tmp_path / "low.onnx", tmp_path / "low.int8.onnx"
    compressor("factorize", FIXTURES / "transformer_block.onnx", "--energy", "0.95", "--data", FIXTURES / "data/calib_tokens.npz", "-o", low)
    compressor("quantize", low, "--mode", "static", "--data", FIXTURES / "data/calib_tokens.npz", "-o", q)
    check_runs_alike(compressor, q, "transformer_block", tmp_path)
    reference, result = ort_outputs(FIXTURES / "transformer_block.onnx", feeds_of("transformer_block"))[0], ort_outputs(q, feeds_of("transformer_block"))[0]
    assert cosine(reference, result) >= 0.9


def test_rank_deficient_zero_and_bad_weights(compressor, tmp_path):
    """bad-inputs 31: a rank-2 matrix, a zero matrix, a rank above min(m, n); non-finite weights → 65."""
    rng = np.random.default_rng(0)
    low = (rng.standard_normal((64, 2)) @ rng.standard_normal((2, 48))).astype(np.float32)
    for name, w, args in (("lowrank", low, ["--rank", "4"]), ("zero", np.zeros((64, 48), np.float32), ["--energy", "0.9"]),
                          ("clamped", low, ["--rank", "500"])):
        src, out, report = tmp_path / f"{name}.onnx", tmp_path / f"{name}.lr.onnx", tmp_path / f"{name}.json"
        m = _linear_model(w)
        onnx.save(m, str(src))
        compressor("factorize", src, *args, "-o", out, "--report", report)
        x = rng.standard_normal((1, 64)).astype(np.float32)
        y = ort_outputs(out, {"x": x})[0]
        assert np.all(np.isfinite(y))
        np.testing.assert_allclose(y, ort_outputs(src, {"x": x})[0], atol=1e-3)
        rows = pass_changes(json.loads(report.read_text()), "factorize-linear")
        if name == "clamped":
            assert rows[0]["action"] == "skipped"
            assert rows[0]["detail"] == "rank 48 saves nothing for a 64×48 weight (r·(K+N) ≥ K·N); rank 500 clamped to 48"
        else:
            assert rows[0]["action"] == "factorized"
    w = np.ones((64, 48), np.float32)
    w[3, 4] = np.inf
    onnx.save(_linear_model(w), str(tmp_path / "inf.onnx"))
    r = compressor("factorize", tmp_path / "inf.onnx", "--rank", "4", "-o", tmp_path / "o.onnx", check=False)
    assert r.returncode == 65 and r.stderr == "compressor: error: weight 'W' holds inf at element 148; compressor will not factorize it\n"
    for args, message in ((["--rank", "0"], "--rank must be 1 or more, not 0"), (["--energy", "1.5"], "--energy must be in (0, 1], not 1.5"),
                          ([], "give exactly one of --rank, --rank-ratio, --energy, --target-params or --target-macs"),
                          (["--target-macs", "0.5"], "--target-macs needs --data (to count each layer's MACs)")):
        r = compressor("factorize", FIXTURES / "mlp.onnx", *args, "-o", tmp_path / "o.onnx", check=False)
        assert r.returncode == 64 and r.stderr.splitlines()[0] == f"compressor: error: {message}"
    assert not (tmp_path / "o.onnx").exists()


def test_target_macs(compressor, tmp_path):
    out, report = tmp_path / "f.onnx", tmp_path / "f.json"
    compressor("factorize", FIXTURES / "mlp.onnx", "--target-macs", "0.6", "--data", FIXTURES / "data/calib_x.npy", "-o", out, "--report", report)
    r = json.loads(report.read_text())
    assert r["output"]["macs"] <= 0.6 * r["input"]["macs"] * 1.02
    check_runs_alike(compressor, out, "mlp", tmp_path)
