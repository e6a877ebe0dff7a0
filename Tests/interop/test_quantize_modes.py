"""`compressor quantize --mode static|dynamic`: calibrated QDQ and QOperator models and run-time
(dynamic) quantization pass the onnx checker, run in ONNX Runtime with the same outputs as in
compressor's runtime, keep the float model's quality, and report every node and activation."""
import json

import jsonschema
import numpy as np
import onnx
import pytest

from conftest import FIXTURES, ROOT, ort_outputs
from test_quantize import MANIFEST, SCHEMA, cosine, pass_changes, _linear_model

CALIBRATION = {"mlp": "calib_x.npy", "constant_weights": "calib_x.npy", "external_data": "calib_x.npy",
               "float16": "calib_x.npy", "if_model": "calib_x.npy", "loop_scan": "calib_x.npy",
               "cnn_residual": "calib_img.npy", "mobile_cnn": "calib_img.npy", "opset9": "calib_img.npy",
               "transformer_block": "calib_tokens.npz"}
EVAL = {"transformer_block": "digits_tokens.npz"}


def feeds_of(name):
    return {k: np.load(FIXTURES / v) for k, v in MANIFEST[name]["inputs"].items()}


def agreement(a, b):
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return float(np.mean(a.argmax(-1) == b.argmax(-1)))


def check_runs_alike(compressor, out, name, tmp_path):
    """The onnx checker passes; ONNX Runtime and compressor agree on ≥ 99.9% of top-1 answers."""
    onnx.checker.check_model(str(out), full_check=True)
    feeds = feeds_of(name)
    theirs = ort_outputs(out, feeds)
    args = [f"--input={k}={FIXTURES / v}" for k, v in MANIFEST[name]["inputs"].items()]
    compressor("run", out, *args, "-o", tmp_path / "ours.npz")
    ours = np.load(tmp_path / "ours.npz")[onnx.load(str(out)).graph.output[0].name]
    assert agreement(ours, theirs[0]) >= 0.999
    scale = float(np.max(np.abs(theirs[0])))
    # Integer requantization inside ONNX Runtime's QLinear kernels rounds differently by a step at most.
    assert float(np.max(np.abs(ours - theirs[0]))) <= 0.02 * scale
    return theirs


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
@pytest.mark.parametrize("name", ["mlp", "cnn_residual", "mobile_cnn", "transformer_block"])
def test_static_keeps_quality(name, fmt, compressor, tmp_path):
    entry = MANIFEST[name]
    out, report = tmp_path / "s.onnx", tmp_path / "s.json"
    data = FIXTURES / "data" / CALIBRATION[name]
    evaluation = FIXTURES / "data" / EVAL.get(name, list(entry["inputs"].values())[0].split("/")[-1])
    compressor("quantize", FIXTURES / entry["file"], "--mode", "static", "--format", fmt, "--data", data,
               "--eval-data", evaluation, "--labels", FIXTURES / entry["labels"], "-o", out, "--report", report)
    quantized = check_runs_alike(compressor, out, name, tmp_path)
    reference = ort_outputs(FIXTURES / entry["file"], feeds_of(name))
    labels = np.load(FIXTURES / entry["labels"])
    accuracy = float((quantized[0].argmax(-1) == labels).mean())
    if name in ("mlp", "cnn_residual"):
        assert accuracy >= entry["accuracy"] - 0.005, (name, accuracy)
    if name == "transformer_block":
        assert cosine(reference[0], quantized[0]) >= 0.99
    r = json.loads(report.read_text())
    jsonschema.validate(r, SCHEMA)
    # The report's quality section is compressor's own measurement of the same thing.
    assert r["quality"]["samples"] == len(labels)
    assert abs(r["quality"]["compressed"]["accuracy"] - accuracy) <= 0.01
    assert r["quality"]["float"]["accuracy"] == pytest.approx(entry["accuracy"], abs=1e-4)
    calibrated = [c for c in pass_changes(r, "quantize-static") if c["action"] == "calibrated"]
    assert calibrated and all(c["values"]["scale"] > 0 and c["values"]["lo"] <= 0 <= c["values"]["hi"] for c in calibrated)
    assert all(c["values"]["samples"] == 128 for c in calibrated)
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    if fmt == "qoperator" and name == "mlp":  # Gemm only: ONNX has no integer Gemm
        assert {c["detail"] for c in pass_changes(r, "qdq-to-qoperator")} == {"ONNX has no integer Gemm; kept in QDQ form"}
    elif fmt == "qoperator":
        assert "QLinearConv" in ops or "QLinearMatMul" in ops
    else:
        assert "QuantizeLinear" in ops and not ops & {"QLinearConv", "QLinearMatMul"}


def test_static_groups_fold_in_onnx_runtime(compressor, tmp_path):
    """The QDQ layout is the one ONNX Runtime turns into integer kernels: Conv groups become QLinearConv."""
    import onnxruntime as ort
    out = tmp_path / "s.onnx"
    compressor("quantize", FIXTURES / "cnn_residual.onnx", "--mode", "static", "--data", FIXTURES / "data/calib_img.npy", "-o", out)
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "ort.onnx")
    ort.InferenceSession(str(out), opts, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "ort.onnx")).graph.node]
    assert ops.count("QLinearConv") >= 3


@pytest.mark.parametrize("name", ["mlp", "cnn_residual", "mobile_cnn", "transformer_block", "constant_weights", "if_model",
                                  "external_data", "float16", "opset9", "loop_scan"])
def test_dynamic_keeps_quality(name, compressor, tmp_path):
    entry = MANIFEST[name]
    out, report = tmp_path / "d.onnx", tmp_path / "d.json"
    compressor("quantize", FIXTURES / entry["file"], "--mode", "dynamic", "-o", out, "--report", report)
    quantized = check_runs_alike(compressor, out, name, tmp_path)
    reference = ort_outputs(FIXTURES / entry["file"], feeds_of(name))
    assert cosine(reference[0], quantized[0]) >= 0.99
    r = json.loads(report.read_text())
    jsonschema.validate(r, SCHEMA)
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    rows = pass_changes(r, "quantize-dynamic")
    if name == "if_model":  # the MatMuls are inside the branches: weight-only there, and said so
        assert rows and all(c["detail"] == "inside a subgraph: its weight is left to the weight-only pass" for c in rows)
        assert any(c["action"] == "quantized" for c in pass_changes(r, "quantize-weights"))
    elif name == "float16":
        assert rows and all(c["detail"].endswith("is float16, not float") for c in rows)
    elif name == "opset9":
        assert rows and all(c["detail"] == "opset 9 has no DynamicQuantizeLinear (needs 11)" for c in rows)
    elif name == "loop_scan":
        assert "MatMulInteger" in ops or all(c["action"] == "skipped" for c in rows)
    else:
        assert "DynamicQuantizeLinear" in ops and ops & {"MatMulInteger", "ConvInteger"}


@pytest.mark.parametrize("name", ["constant_weights", "float16", "if_model", "loop_scan", "opset9", "external_data"])
def test_static_works_on_every_fixture(name, compressor, tmp_path):
    entry = MANIFEST[name]
    out, report = tmp_path / "s.onnx", tmp_path / "s.json"
    r = compressor("quantize", FIXTURES / entry["file"], "--mode", "static", "--data", FIXTURES / "data" / CALIBRATION[name],
                   "-o", out, "--report", report)
    check_runs_alike(compressor, out, name, tmp_path)
    rep = json.loads(report.read_text())
    jsonschema.validate(rep, SCHEMA)
    rows = pass_changes(rep, "quantize-static")
    reference = ort_outputs(FIXTURES / entry["file"], feeds_of(name))[0]
    quantized = ort_outputs(out, feeds_of(name))[0]
    assert cosine(reference, quantized) >= 0.99
    if name == "opset9":
        assert rows and all(c["action"] == "skipped" and "needs 10" in c["detail"] for c in rows)
        assert "nothing was quantized" in r.stderr
    if name == "float16":
        assert any(c["action"] == "skipped" and "float16" in c["detail"] for c in rows)
    if name in ("constant_weights", "external_data"):
        assert sum(c["action"] == "quantized" for c in rows) == 3


def test_opset_upgrade_for_per_channel_weights(compressor, tmp_path):
    """Below opset 13 a model is converted to 13 when some weight becomes per-channel, and
    --keep-opset keeps it per tensor; both say so in the summary line and the report."""
    rng = np.random.default_rng(5)
    h = onnx.helper
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    g = h.make_graph([h.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), h.make_node("Relu", ["c"], ["r"]),
                      h.make_node("Squeeze", ["r"], ["y"], axes=[0])], "g",
                     [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8, 6, 6])],
                     [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], [onnx.numpy_helper.from_array(w, "w")])
    src = tmp_path / "conv11.onnx"
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 11)], ir_version=6), str(src))
    x = {"x": rng.standard_normal((1, 8, 6, 6)).astype(np.float32)}
    reference = ort_outputs(src, x)[0]
    results = {}
    for keep in (False, True):
        out, report = tmp_path / f"q{keep}.onnx", tmp_path / f"q{keep}.json"
        r = compressor("quantize", src, "-o", out, "--report", report, *(["--keep-opset"] if keep else []))
        rep = json.loads(report.read_text())
        jsonschema.validate(rep, SCHEMA)
        conversion = pass_changes(rep, "convert-opset")
        weight = [c for c in pass_changes(rep, "quantize-weights") if c["action"] == "quantized"]
        opset = [(o.domain, o.version) for o in onnx.load(str(out)).opset_import]
        if keep:
            assert ", opset 11 kept (--keep-opset): int8 weights per tensor" in r.stderr
            assert conversion == [{"action": "skipped", "detail": "opset 11 kept (--keep-opset); 13 is needed for per-channel weights",
                                   "target": "model", "values": {"from": 11, "to": 11}}]
            assert opset == [("", 11)] and "per-tensor" in weight[0]["detail"]
        else:
            assert ", opset 11 → 13 for per-channel weights" in r.stderr
            assert conversion[0]["detail"] == ("default domain opset 11 → 13 for per-channel weights, IR version 6 → 7; "
                                               "1 node(s) rewritten, 2 unchanged")
            assert conversion[1]["target"] == "Squeeze:y" and conversion[1]["action"] == "converted"
            assert opset == [("", 13)] and "per-channel (axis 0, 16 scales)" in weight[0]["detail"]
        results[keep] = (cosine(reference, ort_outputs(out, x)[0]), weight[0]["values"]["sqnrDb"])
    assert results[False][1] > results[True][1]  # per-channel weights are closer to the float ones
    # A model the converter cannot convert exactly keeps its opset and per-tensor weights, with a warning naming the node.
    g = h.make_graph([h.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
                      h.make_node("Resize", ["c", "s"], ["y"], mode="nearest", name="rs")], "g",
                     [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8, 6, 6]),
                      h.make_tensor_value_info("s", onnx.TensorProto.FLOAT, [4])],
                     [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], [onnx.numpy_helper.from_array(w, "w")])
    src10 = tmp_path / "resize10.onnx"
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 10)], ir_version=5), str(src10))
    r = compressor("quantize", src10, "-o", tmp_path / "r10.onnx")
    assert ", opset 10 kept: int8 weights per tensor" in r.stderr
    assert r.stderr.splitlines()[1] == (
        "compressor: warning: opset 10 kept (13 is needed for per-channel weights): node 'rs' (Resize): no exact conversion "
        "from opset 10 to 11: nearest mode rounds down when an axis grows and up when it shrinks, and the scales are computed at run time")
    # A model with no weight large enough for per-channel stays at its opset.
    r = compressor("quantize", FIXTURES / "opset9.onnx", "-o", tmp_path / "small.onnx", "--report", tmp_path / "small.json")
    assert "opset 9" not in r.stderr.splitlines()[0]
    assert pass_changes(json.loads((tmp_path / "small.json").read_text()), "convert-opset")[0]["detail"] == \
        "opset 9 kept: nothing here needs 13 for per-channel weights"


@pytest.mark.parametrize("method", ["percentile", "percentile:99.9", "entropy", "mse"])
def test_histogram_calibration_methods(method, compressor, tmp_path):
    out, report = tmp_path / "s.onnx", tmp_path / "s.json"
    compressor("quantize", FIXTURES / "cnn_residual.onnx", "--mode", "static", "--calibration", method,
               "--data", FIXTURES / "data/calib_img.npy", "--calibration-samples", "64", "-o", out, "--report", report)
    check_runs_alike(compressor, out, "cnn_residual", tmp_path)
    labels = np.load(FIXTURES / "data/digits_y.npy")
    accuracy = float((ort_outputs(out, feeds_of("cnn_residual"))[0].argmax(-1) == labels).mean())
    assert accuracy >= MANIFEST["cnn_residual"]["accuracy"] - 0.01
    rows = [c for c in pass_changes(json.loads(report.read_text()), "quantize-static") if c["action"] == "calibrated"]
    assert all(c["values"]["samples"] == 64 for c in rows)
    # Histogram methods clip some tail of some activation, and say how much.
    assert any(c["values"]["clippedFraction"] > 0 for c in rows)
    assert all(c["values"]["hi"] <= c["values"]["observedMax"] + 1e-6 for c in rows)


def _attention_scores_model():
    """x → MatMul(W) → Add(mask with -inf and -1e9) → MatMul(W2): the masked sum is a quantized input."""
    h = onnx.helper
    rng = np.random.default_rng(3)
    nodes = [h.make_node("MatMul", ["x", "W"], ["s"], name="proj"),
             h.make_node("Add", ["s", "mask"], ["masked"], name="mask_add"),
             h.make_node("MatMul", ["masked", "W2"], ["y"], name="out")]
    mask = np.zeros((1, 16), np.float32)
    mask[0, 3], mask[0, 5] = -np.inf, -1e9
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 16])],
                     [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 16])],
                     [onnx.numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), "W"),
                      onnx.numpy_helper.from_array(mask, "mask"),
                      onnx.numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), "W2")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def test_infinite_and_mask_values_are_left_out_of_ranges(compressor, tmp_path):
    src, out, report = tmp_path / "m.onnx", tmp_path / "q.onnx", tmp_path / "q.json"
    onnx.save(_attention_scores_model(), str(src))
    x = np.random.default_rng(4).standard_normal((10, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    compressor("quantize", src, "--mode", "static", "--data", tmp_path / "x.npy", "-o", out, "--report", report)
    row = [c for c in pass_changes(json.loads(report.read_text()), "quantize-static") if c["target"] == "masked"][0]
    assert row["values"]["excluded"] == 20  # two mask columns × 10 samples
    assert np.isfinite(row["values"]["scale"]) and row["values"]["observedMin"] > -1e6
    assert "20 non-finite or |x| ≥ 1e6 values left out of the range" in row["detail"]


def test_constant_activation_gets_finite_scale(compressor, tmp_path):
    """bad-inputs 30: min == max."""
    src, out, report = tmp_path / "m.onnx", tmp_path / "q.onnx", tmp_path / "q.json"
    m = _linear_model(np.ones((32, 16), np.float32))
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "n"
    onnx.save(m, str(src))
    for name in ("zeros", "twos"):
        np.save(tmp_path / f"{name}.npy", np.full((4, 32), 0.0 if name == "zeros" else 2.5, np.float32))
        compressor("quantize", src, "--mode", "static", "--data", tmp_path / f"{name}.npy", "-o", out, "--report", report, "--force")
        row = [c for c in pass_changes(json.loads(report.read_text()), "quantize-static") if c["target"] == "x"][0]
        assert row["values"]["scale"] > 0 and np.isfinite(row["values"]["scale"])
        y = ort_outputs(out, {"x": np.full((1, 32), 0.0 if name == "zeros" else 2.5, np.float32)})[0]
        assert np.all(np.isfinite(y))
        assert np.allclose(y, 0.0 if name == "zeros" else 80.0, rtol=0.02)


def test_include_exclude(compressor, tmp_path):
    out, report = tmp_path / "s.onnx", tmp_path / "s.json"
    compressor("quantize", FIXTURES / "cnn_residual.onnx", "--mode", "static", "--data", FIXTURES / "data/calib_img.npy",
               "--exclude", "Gemm", "--exclude", "c[12]", "-o", out, "--report", report)
    rows = pass_changes(json.loads(report.read_text()), "quantize-static")
    skipped = {c["target"]: c["detail"] for c in rows if c["action"] == "skipped"}
    assert any(d == "excluded by --exclude 'Gemm'" for d in skipped.values())
    assert skipped["c1"] == skipped["c2"] == "excluded by --exclude 'c[12]'" and skipped["fc"] == "excluded by --exclude 'Gemm'"
    assert {c["target"] for c in rows if c["action"] == "quantized"} == {"c3", "c4"}
    compressor("quantize", FIXTURES / "mlp.onnx", "--mode", "dynamic", "--include", "MatMul", "-o", out, "--report", report, "--force")
    rows = pass_changes(json.loads(report.read_text()), "quantize-dynamic")
    assert all(c["action"] == "skipped" and c["detail"] == "not matched by --include" for c in rows)


def test_bad_data_and_flags(compressor, tmp_path):
    (tmp_path / "empty").mkdir()
    r = compressor("quantize", FIXTURES / "mlp.onnx", "--mode", "static", "--data", tmp_path / "empty", "-o", tmp_path / "o.onnx", check=False)
    assert r.returncode == 64 and r.stderr == f"compressor: error: {tmp_path / 'empty'} holds no .npy, .npz or .pb files\n"
    r = compressor("quantize", FIXTURES / "mlp.onnx", "--mode", "static", "--data", FIXTURES / "data/calib_img.npy",
                   "-o", tmp_path / "o.onnx", check=False)
    assert r.returncode == 65 and r.stderr == (f"compressor: error: {FIXTURES / 'data/calib_img.npy'}: input 'input' has shape "
                                               "[8, 1, 8, 8] but the model expects [batch, 64]\n")
    np.save(tmp_path / "none.npy", np.zeros((0, 64), np.float32))
    r = compressor("quantize", FIXTURES / "mlp.onnx", "--mode", "static", "--data", tmp_path / "none.npy", "-o", tmp_path / "o.onnx", check=False)
    assert r.returncode == 64 and r.stderr == "compressor: error: the calibration data holds no samples\n"
    r = compressor("quantize", FIXTURES / "mlp.onnx", "--axis", "2", "-o", tmp_path / "o.onnx", check=False)
    assert r.returncode == 64 and r.stderr == "compressor: error: --axis 2 is out of range for weight 'l1.weight' of rank 2 (gemm_1)\n"
    r = compressor("quantize", FIXTURES / "mlp.onnx", "--calibration", "percentile:40", "--mode", "static", "--data", tmp_path, check=False)
    assert r.returncode == 64
    assert not (tmp_path / "o.onnx").exists()


def test_axis_override_and_single_element(compressor, tmp_path):
    """bad-inputs 29: --axis 0 / -2 for a MatMul weight gives per-row scales; a 1-element channel axis works."""
    src, out, report = tmp_path / "m.onnx", tmp_path / "q.onnx", tmp_path / "q.json"
    w = np.random.default_rng(5).standard_normal((32, 16)).astype(np.float32)
    onnx.save(_linear_model(w), str(src))
    for axis in ("0", "-2"):
        compressor("quantize", src, f"--axis={axis}", "-o", out, "--force")
        scale = {i.name: i for i in onnx.load(str(out)).graph.initializer}["W.scale"]
        assert list(scale.dims) == [32]
    one = np.random.default_rng(6).standard_normal((256, 1)).astype(np.float32)
    onnx.save(_linear_model(one), str(src))
    compressor("quantize", src, "-o", out, "--force")
    x = np.random.default_rng(7).standard_normal((1, 256)).astype(np.float32)
    assert cosine(ort_outputs(src, {"x": x})[0].T, ort_outputs(out, {"x": x})[0].T) >= 0.999


def test_target_keeps_the_fewest_sensitive_nodes_float(compressor_release, tmp_path):
    """`--target cosine>=X` above what full static int8 reaches: a few of the most sensitive nodes
    stay float — fewer than excluding the op type would — the report's quality section meets the
    target, and ONNX Runtime measures the same quality on the written model. (The search runs the
    model some fifty times: the optimized build.)"""
    compressor = compressor_release
    entry = MANIFEST["transformer_block"]
    model, data = FIXTURES / entry["file"], FIXTURES / "data" / CALIBRATION["transformer_block"]
    evaluation = FIXTURES / "data" / EVAL["transformer_block"]
    common = ["--mode", "static", "--data", data, "--eval-data", evaluation, "--eval-samples", "64"]
    compressor("quantize", model, *common, "--target", "none", "-o", tmp_path / "all.onnx", "--report", tmp_path / "all.json")
    everything = json.loads((tmp_path / "all.json").read_text())["quality"]["compressed"]["meanCosine"]
    goal = round(everything + (1 - everything) * 0.6, 6)
    out, report = tmp_path / "t.onnx", tmp_path / "t.json"
    r = compressor("quantize", model, *common, "--target", f"cosine>={goal}", "-o", out, "--report", report)
    rep = json.loads(report.read_text())
    jsonschema.validate(rep, SCHEMA)
    changes = pass_changes(rep, "quantize-static")
    (target,) = [c for c in changes if c["action"] == "target"]
    floats = [c["target"] for c in changes if c["action"] == "kept float"]
    matmuls = sum(n.op_type == "MatMul" for n in onnx.load(str(model)).graph.node)
    assert target["values"]["met"] == 1 and target["values"]["allQuantized"] == pytest.approx(everything, abs=1e-9)
    assert 1 <= len(floats) == target["values"]["floatNodes"] < matmuls
    assert len([c for c in changes if c["action"] == "sensitivity"]) == target["values"]["candidates"]
    assert rep["quality"]["compressed"]["meanCosine"] == pytest.approx(target["values"]["score"], abs=1e-9)
    assert rep["quality"]["compressed"]["meanCosine"] >= goal
    assert f"{len(floats)} of {int(target['values']['candidates'])} nodes kept float for the target" in r.stderr
    assert rep["gates"][0]["passed"] and rep["gates"][0]["gate"] == "cosine"
    feeds = {k: np.load(evaluation)[k][:64] for k in np.load(evaluation).files}
    theirs = cosine(ort_outputs(model, feeds)[0], ort_outputs(out, feeds)[0])
    assert theirs >= goal - 2e-4, (theirs, goal)


def test_unmet_target_writes_the_best_and_exits_2(compressor_release, tmp_path):
    """The float model meets any target, so a target goes unmet when the search runs out of time
    (--max-seconds): the best model so far and the report are written, and the gate exits 2."""
    compressor = compressor_release
    entry = MANIFEST["transformer_block"]
    out, report = tmp_path / "t.onnx", tmp_path / "t.json"
    r = compressor("quantize", FIXTURES / entry["file"], "--mode", "static", "--data", FIXTURES / "data" / CALIBRATION["transformer_block"],
                   "--eval-samples", "16", "--target", "cosine>=1", "--max-seconds", "0.001", "-o", out, "--report", report, check=False)
    assert r.returncode == 2, r.stderr
    assert out.exists() and report.exists()
    (target,) = [c for c in pass_changes(json.loads(report.read_text()), "quantize-static") if c["action"] == "target"]
    assert target["values"]["met"] == 0 and target["values"]["score"] < 1 and target["values"]["stoppedEarly"] == 1
    assert target["detail"].startswith("cosine>=1 not met: cosine 0.") and "short with every candidate tried" in target["detail"]
    assert target["detail"].endswith("stopped at the time limit (--max-seconds) with the best so far")
    assert "compressor: gate failed: cosine" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--target", "cosine>=0.99"], "--target needs --mode static (it chooses which nodes stay float)"),
    (["--mode", "static", "--data", "D", "--target", "size<=0.5"],
     "--target 'size<=0.5': the target is cosine>=X, agreement>=X, iou>=X[@T] or accuracy-drop<=X, not 'size'"),
    (["--mode", "static", "--data", "D", "--target", "accuracy>=0.9"],
     "--target 'accuracy>=0.9': the target is cosine>=X, agreement>=X, iou>=X[@T] or accuracy-drop<=X, not 'accuracy'"),
    (["--mode", "static", "--data", "D", "--target", "cosine"], "--target 'cosine' is not cosine>=X, agreement>=X, iou>=X[@T] or accuracy-drop<=X"),
    (["--mode", "static", "--data", "D", "--target", "accuracy-drop>=1"], "--target 'accuracy-drop>=1': accuracy-drop is an upper bound (<=)"),
    (["--mode", "static", "--data", "D", "--target", "accuracy-drop<=1"], "--target accuracy-drop needs --labels (accuracy is measured against them)"),
    (["--mode", "static", "--data", "D", "--target", "cosine>=0.9@0.3"], "--target 'cosine>=0.9@0.3': only iou takes a threshold (@T), not cosine"),
    (["--mode", "static", "--data", "D", "--max-seconds", "0"], "--max-seconds must be positive, not 0"),
    (["--mode", "static", "--data", "D", "--target", "cosine>=1.5"], "--target 'cosine>=1.5': cosine must be in [0, 1] (or 0%…100%), not 1.5"),
])
def test_target_refusals(args, message, compressor, tmp_path):
    r = compressor("quantize", FIXTURES / "mlp.onnx", *args, "-o", tmp_path / "x.onnx", check=False)
    assert r.returncode == 64 and r.stderr.startswith(f"compressor: error: {message}\n"), r.stderr


def _map_model(path, outlier=1.0):
    """Three convolutions ending in a Sigmoid: a one-channel probability map per 8×8 digit, the
    way text detectors and segmenters end (seeded weights). `outlier` scales one channel of the
    first convolution up and its readers' weights down: the same function, but one activation
    range that per-tensor int8 stretches over all sixteen channels."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(11)
    shapes = [(16, 1, 3, 3), (16, 16, 3, 3), (1, 16, 3, 3)]
    weights = [(rng.standard_normal(s) / np.sqrt(s[1] * 9) * 2).astype(np.float32) for s in shapes]
    biases = [(rng.standard_normal(s[0]) * 0.1).astype(np.float32) for s in shapes]
    weights[0][0] *= outlier
    biases[0][0] *= outlier
    weights[1][:, 0] /= outlier
    inits, nodes, x = [], [], "x"
    for i, s in enumerate(shapes):
        inits += [numpy_helper.from_array(weights[i], f"w{i}"), numpy_helper.from_array(biases[i], f"b{i}")]
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]))
        x = f"c{i}"
        if i < len(shapes) - 1:
            nodes.append(helper.make_node("Relu", [x], [f"r{i}"], name=f"relu{i}"))
            x = f"r{i}"
    nodes.append(helper.make_node("Sigmoid", [x], ["map"], name="sigmoid"))
    graph = helper.make_graph(nodes, "map", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("map", TensorProto.FLOAT, ["N", 1, 8, 8])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))


def pooled_iou(a, b, threshold):
    a, b = a > threshold, b > threshold
    return float(np.logical_and(a, b).sum() / max(np.logical_or(a, b).sum(), 1))


def test_iou_target_and_gate(compressor_release, tmp_path):
    """`--gate iou>=X@T` measures the IoU of the maps above T pooled over the samples, as ONNX
    Runtime's outputs give it; `--target iou>=X@T` between full int8 and float is met with some
    nodes float, and ONNX Runtime measures the written model at the target."""
    compressor = compressor_release
    src = tmp_path / "map.onnx"
    _map_model(src, outlier=30)
    calib, evaluation = FIXTURES / "data" / "calib_img.npy", FIXTURES / "data" / "digits_img.npy"
    common = ["--mode", "static", "--data", calib, "--eval-data", evaluation, "--eval-samples", "256"]
    feeds = {"x": np.load(evaluation)[:256]}
    reference = ort_outputs(src, feeds)[0]
    assert 0.05 < float((reference > 0.5).mean()) < 0.95
    r = compressor("quantize", src, *common, "--target", "none", "--gate", "iou>=0@0.5", "-o", tmp_path / "all.onnx",
                   "--report", tmp_path / "all.json")
    rep = json.loads((tmp_path / "all.json").read_text())
    everything = rep["quality"]["compressed"]["iou@0.5"]
    assert everything == pytest.approx(pooled_iou(ort_outputs(tmp_path / "all.onnx", feeds)[0], reference, 0.5), abs=2e-3)
    assert rep["gates"][0]["gate"] == "iou" and rep["gates"][0]["value"] == everything and "iou@0.5 0." in r.stderr
    assert everything < 0.999
    goal = round(everything + (1 - everything) * 0.5, 4)
    out, report = tmp_path / "t.onnx", tmp_path / "t.json"
    compressor("quantize", src, *common, "--target", f"iou>={goal}@0.5", "-o", out, "--report", report)
    rep = json.loads(report.read_text())
    (target,) = [c for c in pass_changes(rep, "quantize-static") if c["action"] == "target"]
    assert target["values"]["met"] == 1 and 1 <= target["values"]["floatNodes"] <= 3
    assert target["detail"].startswith(f"iou>={goal}@0.5 met: iou ")
    assert rep["gates"][0]["passed"] and rep["gates"][0]["gate"] == "iou"
    assert pooled_iou(ort_outputs(out, feeds)[0], reference, 0.5) >= goal - 2e-3


def test_accuracy_drop_target(compressor, tmp_path):
    """`--target accuracy-drop<=X` with labels: met, and the implied gate measures the same drop."""
    entry = MANIFEST["mlp"]
    out, report = tmp_path / "t.onnx", tmp_path / "t.json"
    compressor("quantize", FIXTURES / entry["file"], "--mode", "static", "--data", FIXTURES / "data" / CALIBRATION["mlp"],
               "--eval-data", FIXTURES / "data" / "digits_x.npy", "--labels", FIXTURES / entry["labels"],
               "--target", "accuracy-drop<=0.5", "-o", out, "--report", report)
    rep = json.loads(report.read_text())
    (target,) = [c for c in pass_changes(rep, "quantize-static") if c["action"] == "target"]
    drop = (rep["quality"]["float"]["accuracy"] - rep["quality"]["compressed"]["accuracy"]) * 100
    assert target["values"]["met"] == 1 and target["values"]["score"] == pytest.approx(drop, abs=1e-6) and drop <= 0.5
    assert rep["gates"][0]["gate"] == "accuracy-drop" and rep["gates"][0]["passed"]


def test_default_floor_is_kept_and_is_not_a_gate(compressor_release, tmp_path):
    """Static int8 with no --target keeps cosine >= 0.995 on the quality data — the mean less two
    standard errors over the samples (the map model with
    an outlier channel falls below it with every node quantized): nodes stay float, the report
    says it is the default floor, there is no gate; --target none quantizes every node."""
    compressor = compressor_release
    src = tmp_path / "map.onnx"
    _map_model(src, outlier=60)
    common = ["--mode", "static", "--data", FIXTURES / "data" / "calib_img.npy",
              "--eval-data", FIXTURES / "data" / "digits_img.npy", "--eval-samples", "256"]
    compressor("quantize", src, *common, "--target", "none", "-o", tmp_path / "all.onnx", "--report", tmp_path / "all.json")
    rep = json.loads((tmp_path / "all.json").read_text())
    assert not [c for c in pass_changes(rep, "quantize-static") if c["action"] in ("target", "kept float")]
    assert rep["quality"]["compressed"]["meanCosine"] < 0.995
    r = compressor("quantize", src, *common, "-o", tmp_path / "d.onnx", "--report", tmp_path / "d.json")
    rep = json.loads((tmp_path / "d.json").read_text())
    (target,) = [c for c in pass_changes(rep, "quantize-static") if c["action"] == "target"]
    # The floor holds for the mean less two standard errors over the 256 quality samples.
    assert target["detail"].startswith("cosine>=0.995 (the default floor; not a gate) met: cosine lower bound 0.99")
    assert 0.995 <= target["values"]["score"] < rep["quality"]["compressed"]["meanCosine"]
    assert 1 <= target["values"]["floatNodes"] < 3
    assert not rep.get("gates") and "gate" not in r.stderr
    feeds = {"x": np.load(FIXTURES / "data" / "digits_img.npy")[:256]}
    assert cosine(ort_outputs(src, feeds)[0].reshape(256, -1), ort_outputs(tmp_path / "d.onnx", feeds)[0].reshape(256, -1)) >= 0.995 - 2e-4


def test_overrides_reproduce_a_search_and_steer_calibration(compressor, tmp_path):
    """--save-overrides writes the nodes the floor kept float; --overrides with --target none
    writes the same model byte for byte without searching (GPTQ's levels included); an override's calibration method
    applies to its node's activations, and skip with weights: float leaves the weight float."""
    src = tmp_path / "map.onnx"
    _map_model(src, outlier=60)
    common = ["--mode", "static", "--data", FIXTURES / "data" / "calib_img.npy",
              "--eval-data", FIXTURES / "data" / "digits_img.npy", "--eval-samples", "256"]
    saved = tmp_path / "decisions.yaml"
    compressor("quantize", src, *common, "-o", tmp_path / "a.onnx", "--save-overrides", saved, "--report", tmp_path / "a.json")
    searched = pass_changes(json.loads((tmp_path / "a.json").read_text()), "quantize-static")
    floats = [c["target"] for c in searched if c["action"] == "kept float"]
    # Nodes kept float keep GPTQ's int8 weights; the replay rounds them the same way.
    assert [c for c in searched if c["action"] == "rounded by GPTQ"]
    text = saved.read_text()
    assert floats and text.startswith("# written by compressor quantize map.onnx;")
    assert text.splitlines()[1:] == ["nodes:"] + [f'  "{name}": {{skip: true}}' for name in floats]
    compressor("quantize", src, *common, "--overrides", saved, "--target", "none", "-o", tmp_path / "b.onnx")
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()

    steer = tmp_path / "steer.yaml"
    steer.write_text('nodes:\n  conv2: {skip: true, weights: float}\n  Conv: {calibration: "percentile:99.9"}\n')
    compressor("quantize", src, *common, "--overrides", steer, "--target", "none", "-o", tmp_path / "c.onnx",
               "--report", tmp_path / "c.json")
    rep = json.loads((tmp_path / "c.json").read_text())
    static = pass_changes(rep, "quantize-static")
    assert [c["detail"] for c in static if c["target"] == "conv2"] == ["kept float by --overrides 'conv2', its weight too"]
    ranges = {c["target"]: c for c in static if c["action"] == "calibrated"}
    assert set(ranges) == {"x", "r0", "r1"} and all(r["values"]["clippedFraction"] > 0 for r in ranges.values())
    initializers = {i.name for i in onnx.load(str(tmp_path / "c.onnx")).graph.initializer}
    assert "w2" in initializers and "w2.int8" not in initializers


@pytest.mark.parametrize("opset", [13, 21])
def test_overrides_bits_scheme_and_weight_granularity(opset, compressor, tmp_path):
    """--overrides bits: 16 gives a node 16-bit activations (ONNX Runtime's com.microsoft
    QuantizeLinear below opset 21, the standard one from 21), which recovers most of what int8
    loses on an outlier channel; scheme: symmetric gives int8 zero points of 0 and weights:
    per-tensor one weight scale. ONNX Runtime runs each model and agrees with the report's score."""
    src = tmp_path / "map.onnx"
    _map_model(src, outlier=60)
    if opset != 13:
        m = onnx.load(str(src))
        m.opset_import[0].version = opset
        m.ir_version = 10
        onnx.save(m, str(src))
    common = ["--mode", "static", "--data", FIXTURES / "data" / "calib_img.npy", "--target", "none",
              "--eval-data", FIXTURES / "data" / "digits_img.npy", "--eval-samples", "256"]
    feeds = {"x": np.load(FIXTURES / "data" / "digits_img.npy")[:256]}
    reference = ort_outputs(src, feeds)[0].reshape(256, -1)
    scores = {}
    for name, text in [("plain", None), ("wide", "nodes:\n  conv1: {bits: 16}\n"),
                       ("symmetric", "nodes:\n  Conv: {scheme: symmetric, weights: per-tensor}\n")]:
        out, report = tmp_path / f"{name}.onnx", tmp_path / f"{name}.json"
        extra = []
        if text:
            (tmp_path / f"{name}.yaml").write_text(text)
            extra = ["--overrides", tmp_path / f"{name}.yaml"]
        compressor("quantize", src, *common, *extra, "-o", out, "--report", report)
        rep = json.loads(report.read_text())
        scores[name] = cosine(reference, ort_outputs(out, feeds)[0].reshape(256, -1))
        assert abs(scores[name] - rep["quality"]["compressed"]["meanCosine"]) < 2e-3, (name, scores[name])
        model = onnx.load(str(out))
        inits = {t.name: t for t in model.graph.initializer}
        pairs = {n.input[0]: n for n in model.graph.node if n.op_type == "QuantizeLinear"}
        types = {v: onnx.helper.tensor_dtype_to_np_dtype(inits[q.input[2]].data_type) for v, q in pairs.items()}
        if name == "wide":
            # conv1 reads r0 and writes r1 (after its Relu): both 16-bit; x and c2 stay 8-bit.
            assert types == {"x": np.uint8, "r0": np.uint16, "r1": np.uint16, "c2": np.uint8}
            assert {pairs[v].domain for v in ("r0", "r1")} == {"com.microsoft" if opset < 21 else ""}
            assert ("com.microsoft" in {o.domain for o in model.opset_import}) == (opset < 21)
            # QLinearConv takes 8-bit activations only: every Conv touching r0 or r1 stays QDQ.
            compressor("quantize", src, *common, *extra, "--format", "qoperator", "-o", tmp_path / "q.onnx",
                       "--report", tmp_path / "q.json")
            skipped = {c["target"]: c["detail"] for c in pass_changes(json.loads((tmp_path / "q.json").read_text()), "qdq-to-qoperator")}
            assert skipped == {f"conv{i}": "its activations are not 8-bit (QLinear operators take 8-bit activations only)" for i in range(3)}
            assert cosine(reference, ort_outputs(tmp_path / "q.onnx", feeds)[0].reshape(256, -1)) == pytest.approx(scores[name], abs=1e-5)
        elif name == "symmetric":
            assert set(types.values()) == {np.dtype(np.int8)}
            assert all(onnx.numpy_helper.to_array(inits[q.input[2]]) == 0 for q in pairs.values())
            scales = [inits[n.input[1]] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith("w")]
            assert len(scales) == 3 and all(list(t.dims) == [] for t in scales)
    assert scores["wide"] > scores["plain"] + 0.004 and scores["wide"] >= 0.996, scores


@pytest.mark.parametrize("text, message", [
    ("nodes:\n  conv0: {skip: maybe}\n", "skip of 'conv0' must be true or false, not 'maybe', {f}:2:17"),
    ("nodes:\n  conv0: {weights: float}\n", "'conv0': weights: float goes with skip: true, {f}:2:3"),
    ("nodes:\n  conv0: {precision: 4}\n", "unknown field 'precision' for 'conv0' (skip, weights, bits, scheme, calibration), {f}:2:11"),
    ("nodes:\n  conv0: {bits: 4}\n", "bits of 'conv0' must be 8 or 16 (activations), not '4', {f}:2:17"),
    ("nodes:\n  conv0: {scheme: affine}\n", "scheme of 'conv0' must be symmetric or asymmetric, not 'affine', {f}:2:19"),
    ("nodes:\n  conv0: {weights: int4}\n", "weights of 'conv0' must be int8, per-tensor or float, not 'int4', {f}:2:20"),
    ("nodes:\n  conv0: {skip: true, bits: 16}\n",
     "'conv0': skip: true leaves the node float; bits, scheme, calibration and weights: per-tensor are for quantized nodes, {f}:2:3"),
    ("layers: {}\n", "unknown key 'layers' (the overrides file has one key, nodes), {f}:1:1"),
    ("nodes:\n  conv0: {calibration: kl}\n", "calibration of 'conv0' must be minmax, percentile[:P], entropy, mse or auto, not 'kl', {f}:2:24"),
])
def test_overrides_refusals(text, message, compressor, tmp_path):
    f = tmp_path / "o.yaml"
    f.write_text(text)
    r = compressor("quantize", FIXTURES / "mlp.onnx", "--mode", "static", "--data", FIXTURES / "data" / "calib_x.npy",
                   "--overrides", f, "-o", tmp_path / "x.onnx", check=False)
    assert r.returncode == 64 and r.stderr == f"compressor: error: {message.format(f=f)}\n", r.stderr


@pytest.mark.parametrize("name,pairs", [("cnn_residual", ["c3", "fc"]), ("mobile_cnn", ["se2"])])
def test_equalization_and_bias_correction_on_cnn_fixtures(name, pairs, compressor, tmp_path):
    """--equalize --bias-correction on the CNN fixtures: ONNX Runtime's accuracy of the result is
    at least that of plain static int8 and within 0.3 points of float; the report names the
    equalized pairs (never through HardSwish or Clip), each corrected bias, and both scores."""
    entry = MANIFEST[name]
    common = ["--mode", "static", "--data", FIXTURES / "data" / CALIBRATION[name], "--eval-data", FIXTURES / "data" / "digits_img.npy",
              "--labels", FIXTURES / entry["labels"], "--target", "none"]
    compressor("quantize", FIXTURES / entry["file"], *common, "-o", tmp_path / "plain.onnx")
    compressor("quantize", FIXTURES / entry["file"], *common, "--equalize", "--bias-correction", "-o", tmp_path / "a.onnx",
               "--report", tmp_path / "a.json")
    check_runs_alike(compressor, tmp_path / "a.onnx", name, tmp_path)
    feeds, labels = feeds_of(name), np.load(FIXTURES / entry["labels"])

    def accuracy(path):
        return float((ort_outputs(path, feeds)[0].argmax(-1) == labels).mean())
    plain, with_algorithms, float_accuracy = accuracy(tmp_path / "plain.onnx"), accuracy(tmp_path / "a.onnx"), accuracy(FIXTURES / entry["file"])
    assert with_algorithms >= plain and with_algorithms >= float_accuracy - 0.003, (plain, with_algorithms, float_accuracy)
    rep = json.loads((tmp_path / "a.json").read_text())
    jsonschema.validate(rep, SCHEMA)
    changes = pass_changes(rep, "quantize-static")
    assert [c["target"] for c in changes if c["action"] == "equalized"] == pairs
    quantized = [c["target"] for c in changes if c["action"] == "quantized"]
    assert sorted(c["target"] for c in changes if c["action"] == "bias corrected") == sorted(quantized)
    (compared,) = [c for c in changes if c["action"] == "algorithms"]
    assert compared["detail"].startswith("cosine ") and "with cross-layer equalization and bias correction" in compared["detail"]
    assert compared["values"]["withAlgorithms"] >= compared["values"]["plain"] - 1e-4
    assert compared["values"]["withAlgorithms"] == pytest.approx(rep["quality"]["compressed"]["meanCosine"], abs=1e-6)


def test_algorithm_flags_need_static(compressor, tmp_path):
    r = compressor("quantize", FIXTURES / "mlp.onnx", "--equalize", "-o", tmp_path / "o.onnx", check=False)
    assert r.returncode == 64 and r.stderr.startswith("compressor: error: --equalize needs --mode static\n")


def test_smoothing_runs_in_onnx_runtime_and_is_kept_only_when_better(compressor, tmp_path):
    """--smooth-alpha on the transformer fixture. Without quality data it is applied as asked:
    a float Mul by 1/s before each group of MatMuls (their LayerNorms have other readers), and
    ONNX Runtime runs the result as compressor does, close to float. With quality data it is
    measured against plain PTQ; here plain measures better, so the model written is plain PTQ's,
    byte for byte, and the report says why."""
    entry = MANIFEST["transformer_block"]
    src, calib = FIXTURES / entry["file"], FIXTURES / "data" / CALIBRATION["transformer_block"]
    evaluation = FIXTURES / "data" / EVAL["transformer_block"]
    compressor("quantize", src, "--mode", "static", "--data", calib, "--eval-samples", "0", "--smooth-alpha", "0.5",
               "-o", tmp_path / "s.onnx", "--report", tmp_path / "s.json")
    changes = pass_changes(json.loads((tmp_path / "s.json").read_text()), "quantize-static")
    smoothed = [c for c in changes if c["action"] == "smoothed"]
    assert [c["target"] for c in smoothed] == ["x0", "ctx", "x1", "gelu", "pooled"]
    assert all("a Mul by 1/s before them" in c["detail"] and c["values"]["spreadAfter"] < c["values"]["spreadBefore"] for c in smoothed)
    assert not [c for c in changes if c["action"] == "algorithms"]
    assert sum(n.op_type == "Mul" and n.name.endswith(".smooth") for n in onnx.load(str(tmp_path / "s.onnx")).graph.node) == 5
    check_runs_alike(compressor, tmp_path / "s.onnx", "transformer_block", tmp_path)
    feeds = {k: v for k, v in np.load(evaluation).items()}
    assert cosine(ort_outputs(src, feeds)[0], ort_outputs(tmp_path / "s.onnx", feeds)[0]) >= 0.99

    common = ["--mode", "static", "--data", calib, "--eval-data", evaluation, "--target", "none"]
    compressor("quantize", src, *common, "-o", tmp_path / "plain.onnx")
    compressor("quantize", src, *common, "--smooth-alpha", "0.5", "-o", tmp_path / "m.onnx", "--report", tmp_path / "m.json")
    changes = pass_changes(json.loads((tmp_path / "m.json").read_text()), "quantize-static")
    (compared,) = [c for c in changes if c["action"] == "algorithms"]
    assert compared["values"]["applied"] == 0 and compared["values"]["plain"] > compared["values"]["withAlgorithms"]
    assert compared["detail"].endswith("; not applied: plain PTQ measures better")
    assert not [c for c in changes if c["action"] == "smoothed"]
    assert (tmp_path / "m.onnx").read_bytes() == (tmp_path / "plain.onnx").read_bytes()


@pytest.mark.parametrize("name", ["mobile_cnn", "transformer_block"])
def test_static_gptq_rounds_weights_with_lower_output_error(name, compressor, tmp_path):
    """GPTQ (static's default): each weight the report says GPTQ rounded has a lower layer output error on
    the calibration rows than round-to-nearest (depthwise convolutions, per group, included on
    the CNN); its scales are round-to-nearest's and only its levels differ; the others say why
    they were rounded to nearest; ONNX Runtime runs the result as compressor does, close to
    float on the digits. --no-gptq rounds every weight to nearest."""
    entry = MANIFEST[name]
    src = FIXTURES / entry["file"]
    common = ["--mode", "static", "--data", FIXTURES / "data" / CALIBRATION[name], "--target", "none", "--eval-samples", "0"]
    compressor("quantize", src, *common, "--no-gptq", "-o", tmp_path / "rtn.onnx")
    compressor("quantize", src, *common, "-o", tmp_path / "gptq.onnx", "--report", tmp_path / "g.json")
    rep = json.loads((tmp_path / "g.json").read_text())
    jsonschema.validate(rep, SCHEMA)
    changes = pass_changes(rep, "quantize-static")
    rounded = [c for c in changes if c["action"] == "rounded by GPTQ"]
    assert rounded and all(c["values"]["outputErrorGPTQ"] < c["values"]["outputErrorNearest"] for c in rounded)
    (summary,) = [c for c in changes if c["action"] == "weight rounding"]
    assert summary["values"]["gptq"] == len(rounded)
    reasons = ("calibration rows for", "layer output error", "GPTQ does not handle", "read by several nodes")
    assert all(any(r in c["detail"] for r in reasons) for c in changes if c["action"] == "rounded to nearest")
    if name == "mobile_cnn":
        assert any(c["values"]["inputs"] == 9 for c in rounded)  # a 3 × 3 depthwise weight, one input channel per group

    def inits(path):
        return {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    a, b = inits(tmp_path / "rtn.onnx"), inits(tmp_path / "gptq.onnx")
    assert a.keys() == b.keys()
    changed = [k for k in a if k.endswith(".int8") and not np.array_equal(a[k], b[k])]
    assert changed and all(np.array_equal(a[k.replace(".int8", ".scale")], b[k.replace(".int8", ".scale")]) for k in changed)
    check_runs_alike(compressor, tmp_path / "gptq.onnx", name, tmp_path)
    feeds = feeds_of(name)
    assert cosine(ort_outputs(src, feeds)[0], ort_outputs(tmp_path / "gptq.onnx", feeds)[0]) >= 0.99

