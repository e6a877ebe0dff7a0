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
    rows = [c for c in pass_changes(r, "factorize") if c["action"] == "factorized"]
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
        rows = pass_changes(json.loads(report.read_text()), "factorize")
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


def _conv_model(kernel, pads=(1, 1, 1, 1), strides=(1, 1)):
    h = onnx.helper
    o = kernel.shape[0]
    g = h.make_graph([h.make_node("Conv", ["x", "W", "B"], ["y"], name="conv", pads=list(pads), strides=list(strides))], "g",
                     [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", kernel.shape[1], 12, 10])],
                     [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                     [onnx.numpy_helper.from_array(kernel, "W"), onnx.numpy_helper.from_array(np.arange(o, dtype=np.float32), "B")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
def test_convolution_schemes_are_exact_at_the_kernel_rank(scheme, compressor, tmp_path):
    """A kernel of rank 3 in the scheme's matrix layout factorizes at rank 3 with no error."""
    rng = np.random.default_rng(1)
    o, c, kh, kw = 24, 16, 3, 3
    if scheme == "channel":  # rows (c, i, j), columns o
        kernel = (rng.standard_normal((c * kh * kw, 3)) @ rng.standard_normal((3, o))).T.reshape(o, c, kh, kw)
    else:  # rows (c, i), columns (o, j)
        m = rng.standard_normal((c * kh, 3)) @ rng.standard_normal((3, o * kw))
        kernel = m.reshape(c, kh, o, kw).transpose(2, 0, 1, 3)
    src, out, report = tmp_path / "c.onnx", tmp_path / "c.lr.onnx", tmp_path / "c.json"
    onnx.save(_conv_model(kernel.astype(np.float32), strides=(2, 1)), str(src))
    compressor("factorize", src, "--rank", "3", "--conv-scheme", scheme, "-o", out, "--report", report)
    ops = [(n.op_type, [a.ints for a in n.attribute if a.name == "kernel_shape"][0]) for n in onnx.load(str(out)).graph.node]
    assert ops == ([("Conv", [3, 3]), ("Conv", [1, 1])] if scheme == "channel" else [("Conv", [3, 1]), ("Conv", [1, 3])])
    x = rng.standard_normal((2, c, 12, 10)).astype(np.float32)
    np.testing.assert_allclose(ort_outputs(out, {"x": x})[0], ort_outputs(src, {"x": x})[0], rtol=1e-3, atol=1e-3)
    row = pass_changes(json.loads(report.read_text()), "factorize")[0]
    assert row["values"]["weightError"] < 1e-5 and row["detail"].endswith(f"({scheme} scheme)")


def test_randomized_svd_matches_on_a_low_rank_matrix(compressor, tmp_path):
    rng = np.random.default_rng(2)
    w = (rng.standard_normal((300, 8)) @ rng.standard_normal((8, 200))).astype(np.float32)
    src, out, report = tmp_path / "m.onnx", tmp_path / "m.lr.onnx", tmp_path / "m.json"
    onnx.save(_linear_model(w), str(src))
    compressor("factorize", src, "--rank", "8", "--randomized-above", "1000", "-o", out, "--report", report)
    assert pass_changes(json.loads(report.read_text()), "factorize")[0]["values"]["weightError"] < 1e-4
    x = rng.standard_normal((1, 300)).astype(np.float32)
    np.testing.assert_allclose(ort_outputs(out, {"x": x})[0], ort_outputs(src, {"x": x})[0], rtol=1e-3, atol=1e-3)


def test_data_aware_convolutions(compressor, tmp_path):
    """Channel scheme with --data: whitened by the covariance of each conv's input patches."""
    out, report = tmp_path / "c.onnx", tmp_path / "c.json"
    compressor("factorize", FIXTURES / "cnn_residual.onnx", "--rank-ratio", "0.25", "--data", FIXTURES / "data/calib_img.npy",
               "-o", out, "--report", report)
    check_runs_alike(compressor, out, "cnn_residual", tmp_path)
    rows = [c for c in pass_changes(json.loads(report.read_text()), "factorize") if c["action"] == "factorized"]
    convs = [c for c in rows if c["detail"].endswith("(channel scheme)")]
    assert len(convs) == 4
    assert all(c["values"]["outputError"] < c["values"]["plainOutputError"] for c in convs)
    assert [c["values"]["macsBefore"] for c in convs] == [9216, 147456, 147456, 73728]
