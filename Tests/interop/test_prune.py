"""`compressor prune`: unstructured and N:M sparsity exactly as asked, structured channel pruning
that ONNX Runtime runs with the executor's outputs, reports that add up, and refusals."""
import json

import jsonschema
import numpy as np
import onnx
import pytest

from conftest import FIXTURES, ort_outputs
from test_quantize import MANIFEST, SCHEMA, pass_changes
from test_quantize_modes import check_runs_alike, feeds_of

TEST_DATA = {"mlp": "digits_x.npy", "cnn_residual": "digits_img.npy", "mobile_cnn": "digits_img.npy",
             "transformer_block": "digits_tokens.npz"}


def weights(path):
    return {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


@pytest.mark.parametrize("name", ["mlp", "cnn_residual", "mobile_cnn", "transformer_block"])
def test_unstructured_sparsity_is_exact(name, compressor, tmp_path):
    out, report = tmp_path / "p.onnx", tmp_path / "p.json"
    compressor("prune", FIXTURES / MANIFEST[name]["file"], "--sparsity", "0.5", "-o", out, "--report", report)
    r = json.loads(report.read_text())
    jsonschema.validate(r, SCHEMA)
    rows = pass_changes(r, "prune-unstructured")
    pruned = [c for c in rows if c["action"] == "pruned"]
    assert pruned and all(abs(c["values"]["sparsity"] - 0.5) <= 0.5 / c["values"]["parameters"] + 1e-9 for c in pruned)
    skipped = [c["detail"] for c in rows if c["action"] == "skipped"]
    assert any(d.startswith("first layer") for d in skipped) and any(d.startswith("last layer") for d in skipped)
    # Zeros deflate: the update shipped over the air shrinks.
    assert r["output"]["deflatedBytes"] < 0.85 * r["input"]["deflatedBytes"]
    check_runs_alike(compressor, out, name, tmp_path)


def test_global_and_overrides(compressor, tmp_path):
    out, report = tmp_path / "p.onnx", tmp_path / "p.json"
    compressor("prune", FIXTURES / "mlp.onnx", "--sparsity", "0.6", "--global", "--prune-first-last",
               "--overrides", "gemm_3=0.1", "-o", out, "--report", report)
    rows = {c["target"]: c["values"] for c in pass_changes(json.loads(report.read_text()), "prune-unstructured") if c["action"] == "pruned"}
    assert rows["gemm_3"]["sparsity"] == pytest.approx(0.1, abs=1 / 640)
    pooled = rows["gemm_1"]["zeros"] + rows["gemm_2"]["zeros"]
    assert pooled == round(0.6 * (rows["gemm_1"]["parameters"] + rows["gemm_2"]["parameters"]))
    assert rows["gemm_1"]["sparsity"] != pytest.approx(rows["gemm_2"]["sparsity"], abs=0.01)  # one threshold, different sparsities


def reference_prune(layers, count):
    """The `count` smallest |w| over `layers` (in order) set to zero; ties go to the earlier layer,
    then the earlier position — a stable sort by magnitude."""
    flat = np.concatenate([w.reshape(-1) for w in layers])
    flat[np.argsort(np.abs(flat), kind="stable")[:count]] = 0
    out, at = [], 0
    for w in layers:
        out.append(flat[at:at + w.size].reshape(w.shape))
        at += w.size
    return out


@pytest.mark.parametrize("global_", [False, True])
def test_unstructured_zeros_exactly_the_smallest(global_, compressor, tmp_path):
    """Magnitudes on a coarse grid (many ties, negative zero, tiny subnormal values) through a
    four-layer MatMul chain: the weights written are exactly those of a stable sort by |w|."""
    from onnx import TensorProto, helper
    rng = np.random.default_rng(3)
    shapes = [(16, 24), (24, 40), (40, 24), (24, 8)]
    ws = []
    for s in shapes:
        w = (rng.integers(-6, 7, size=s) * 0.125).astype(np.float32)
        w.reshape(-1)[:3] = [-0.0, 1e-40, -1e-40]
        ws.append(w)
    nodes = [helper.make_node("MatMul", ["x" if i == 0 else f"h{i}", f"w{i}"], [f"h{i + 1}"], name=f"mm{i}") for i in range(4)]
    graph = helper.make_graph(nodes, "ties", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("h4", TensorProto.FLOAT, [1, 8])],
                              [onnx.numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(ws)])
    model = tmp_path / "ties.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(model))
    out = tmp_path / "p.onnx"
    compressor("prune", model, "--sparsity", "0.37", "--prune-first-last", *(["--global"] if global_ else []), "-o", out)
    got = weights(out)
    if global_:
        expected = reference_prune(ws, round(0.37 * sum(w.size for w in ws)))
    else:
        expected = [reference_prune([w], round(0.37 * w.size))[0] for w in ws]
    for i, e in enumerate(expected):
        np.testing.assert_array_equal(got[f"w{i}"], e)


@pytest.mark.parametrize("pattern", ["2:4", "4:8"])
def test_n_m_pattern_is_exact(pattern, compressor, tmp_path):
    n, m = map(int, pattern.split(":"))
    out, report = tmp_path / "p.onnx", tmp_path / "p.json"
    compressor("prune", FIXTURES / "transformer_block.onnx", "--pattern", pattern, "--prune-first-last", "-o", out, "--report", report)
    rows = [c for c in pass_changes(json.loads(report.read_text()), "prune-n-m") if c["action"] == "pruned"]
    assert len(rows) == 7
    w = weights(out)
    for c in rows:
        name = c["detail"].split("'")[1]
        k_major = w[name].reshape(-1, m, w[name].shape[-1]) if w[name].ndim == 2 else None
        nonzero = (k_major != 0).sum(axis=1)
        assert nonzero.max() <= n and c["values"]["sparsity"] == pytest.approx(1 - n / m, abs=1e-9)
    check_runs_alike(compressor, out, "transformer_block", tmp_path)


@pytest.mark.parametrize("name", ["cnn_residual", "mobile_cnn", "transformer_block", "mlp"])
def test_structured_pruning_shrinks_consistently(name, compressor, tmp_path):
    out, report = tmp_path / "p.onnx", tmp_path / "p.json"
    data = FIXTURES / "data" / TEST_DATA[name]
    compressor("prune", FIXTURES / MANIFEST[name]["file"], "--structured", "--ratio", "0.3", "--channel-multiple", "1", "--data", data,
               "--labels", FIXTURES / "data/digits_y.npy", "-o", out, "--report", report)
    check_runs_alike(compressor, out, name, tmp_path)
    r = json.loads(report.read_text())
    jsonschema.validate(r, SCHEMA)
    groups = [c for c in pass_changes(r, "prune-channels") if c["action"] == "pruned"]
    assert groups
    for g in groups:
        before, after = g["values"]["channelsBefore"], g["values"]["channelsAfter"]
        assert after == before - int(before * 0.3)
    assert r["output"]["parameters"] < r["input"]["parameters"] and r["output"]["macs"] < r["input"]["macs"]
    # The report's parameter count is the model's.
    params = sum(int(np.prod(t.shape)) for t in weights(out).values())
    assert params == r["output"]["parameters"]
    assert r["quality"]["samples"] == 360
    # Graph outputs keep their width.
    out_shape = ort_outputs(out, feeds_of(name))[0].shape
    assert out_shape == ort_outputs(FIXTURES / MANIFEST[name]["file"], feeds_of(name))[0].shape


@pytest.mark.parametrize("name,expected", [
    ("cnn_residual", {"c4": (32, 16)}),
    ("mobile_cnn", {"up": (8, 6), "se1": (4, 3)}),
    ("transformer_block", {"ffn1_matmul": (64, 48)}),
])
def test_default_structured_pruning_keeps_whole_blocks(name, expected, compressor, tmp_path):
    """`--ratio 0.3` with the defaults (16-channel blocks, + --heads): the groups that can lose a
    block do, smaller groups lose floor(30%), the model runs alike in ONNX Runtime, and the report's
    parameter count is the model's."""
    out, report = tmp_path / "p.onnx", tmp_path / "p.json"
    heads = ["--heads"] if name == "transformer_block" else []
    compressor("prune", FIXTURES / MANIFEST[name]["file"], "--structured", "--ratio", "0.3", *heads, "-o", out, "--report", report)
    check_runs_alike(compressor, out, name, tmp_path)
    r = json.loads(report.read_text())
    pruned = {c["target"]: (c["values"]["channelsBefore"], c["values"]["channelsAfter"])
              for c in pass_changes(r, "prune-channels") if c["action"] == "pruned"}
    assert pruned == expected
    if heads:
        assert [c["detail"] for c in pass_changes(r, "prune-heads") if c["action"] == "pruned"][0].startswith("1 of 2 heads removed")
    assert sum(int(np.prod(t.shape)) for t in weights(out).values()) == r["output"]["parameters"] < r["input"]["parameters"]


def test_structured_groups_found(compressor, tmp_path):
    """Residual sums, depthwise convs, squeeze-excitation, Concat and ConvTranspose are each one group."""
    report = tmp_path / "p.json"
    compressor("prune", FIXTURES / "mobile_cnn.onnx", "--structured", "--ratio", "0.3", "--channel-multiple", "1",
               "-o", tmp_path / "p.onnx", "--report", report)
    rows = {c["target"]: c for c in pass_changes(json.loads(report.read_text()), "prune-channels") if c["action"] != "resized"}
    assert rows["pw+stem+se2"]["action"] == "pruned" and rows["up"]["action"] == "pruned" and rows["se1"]["action"] == "pruned"
    assert rows["head"]["detail"] == "group of 10 channels: it is the graph output 'logits'"
    m = onnx.load(str(tmp_path / "p.onnx"))
    dw = [n for n in m.graph.node if n.name == "dw"][0]
    assert {a.name: a.i for a in dw.attribute}["group"] == 12
    report = tmp_path / "t.json"
    compressor("prune", FIXTURES / "transformer_block.onnx", "--structured", "--ratio", "0.3", "-o", tmp_path / "t.onnx", "--report", report)
    rows = {c["target"]: c for c in pass_changes(json.loads(report.read_text()), "prune-channels") if c["action"] != "resized"}
    assert rows["ffn1_matmul"]["action"] == "pruned"
    assert rows["q_matmul"]["detail"] == "group of 32 channels: read by Reshape q_reshape"


@pytest.mark.parametrize("criterion", ["l2", "bn-scale", "activation"])
def test_criteria(criterion, compressor, tmp_path):
    out, report = tmp_path / "p.onnx", tmp_path / "p.json"
    compressor("prune", FIXTURES / "cnn_residual.onnx", "--structured", "--ratio", "0.25", "--channel-multiple", "1", "--criterion", criterion,
               "--data", FIXTURES / "data/calib_img.npy", "-o", out, "--report", report)
    rows = [c for c in pass_changes(json.loads(report.read_text()), "prune-channels") if c["action"] == "pruned"]
    assert len(rows) == 3 and all(f"({criterion})" in c["detail"] for c in rows)
    check_runs_alike(compressor, out, "cnn_residual", tmp_path)


def test_kept_channels_are_whole_blocks_of_16(compressor, tmp_path):
    """By default a group keeps whole blocks of 16 channels (ONNX Runtime's AVX-512 blocks), the
    nearest to the ratio: 32 × 0.7 = 22.4 keeps 16; 16 × 0.7 = 11.2 is nearer 16 than nothing: the
    group is left whole, and says why. With 8-channel blocks the 16-channel groups keep 8."""
    report = tmp_path / "p.json"
    compressor("prune", FIXTURES / "cnn_residual.onnx", "--structured", "--ratio", "0.3", "-o", tmp_path / "p.onnx", "--report", report)
    rows = {c["target"]: c for c in pass_changes(json.loads(report.read_text()), "prune-channels") if c["action"] != "resized"}
    assert rows["c4"]["values"] == {"channelsBefore": 32, "channelsAfter": 16}
    assert rows["c2"]["action"] == "skipped" and rows["c2"]["detail"] == "group of 16 channels: 16 kept after rounding to the nearest multiple of 16"
    compressor("prune", FIXTURES / "cnn_residual.onnx", "--structured", "--ratio", "0.3", "--channel-multiple", "8",
               "-o", tmp_path / "p8.onnx", "--report", report, "--force")
    rows = {c["target"]: c for c in pass_changes(json.loads(report.read_text()), "prune-channels") if c["action"] != "resized"}
    assert rows["c4"]["values"] == {"channelsBefore": 32, "channelsAfter": 24}
    assert rows["c2"]["values"] == {"channelsBefore": 16, "channelsAfter": 8}
    # At 0.1 every group is nearer whole than one block less (32 × 0.9 = 28.8 keeps 32): nothing to do.
    r = compressor("prune", FIXTURES / "cnn_residual.onnx", "--structured", "--ratio", "0.1", "--channel-multiple", "8",
                   "-o", tmp_path / "p9.onnx", check=False)
    assert r.returncode == 69 and r.stderr.endswith(
        "can be pruned this way: node 'c2' (Conv): group of 16 channels: 16 kept after rounding to the nearest multiple of 8; "
        "c3+c1: group of 16 channels: 16 kept after rounding to the nearest multiple of 8; node 'c4' (Conv): group of 32 "
        "channels: 32 kept after rounding to the nearest multiple of 8 (and 1 more)\n"), r.stderr


def test_refusals(compressor, tmp_path):
    model = FIXTURES / "mlp.onnx"
    for args, message in [
        (["--sparsity", "1.0"], "--sparsity must be in [0, 1), not 1.0 (that would empty every layer)"),
        (["--sparsity=-0.1"], "--sparsity must be in [0, 1), not -0.1"),
        (["--structured", "--ratio", "1"], "--ratio must be in [0, 1), not 1.0 (that would empty every group)"),
        (["--pattern", "4:2"], "--pattern must be N:M with 0 < N < M (2:4, 4:8), not '4:2'"),
        (["--sparsity", "0.5", "--overrides", "gemm_1=1.5"], "--overrides: ratio 1.5 for 'gemm_1' is outside [0, 1)"),
        ([], "give exactly one of --sparsity, --pattern or --structured"),
    ]:
        r = compressor("prune", model, *args, "-o", tmp_path / "o.onnx", check=False)
        assert r.returncode == 64, args
        assert r.stderr.splitlines()[0] == f"compressor: error: {message}", args
    # A pattern no layer's input dimension divides, and a model without prunable groups: 69.
    r = compressor("prune", model, "--pattern", "3:7", "--prune-first-last", "-o", tmp_path / "o.onnx", check=False)
    assert r.returncode == 69 and "input dimension 64 of weight 'l1.weight' is not a multiple of 7" in r.stderr
    r = compressor("prune", FIXTURES / "if_model.onnx", "--structured", "--ratio", "0.3", "-o", tmp_path / "o.onnx", check=False)
    assert r.returncode == 69 and r.stderr.startswith(f"compressor: error: nothing in {FIXTURES / 'if_model.onnx'} can be pruned this way")
    assert not (tmp_path / "o.onnx").exists()


def test_analyze_reports_without_writing(compressor, tmp_path):
    report = tmp_path / "a.json"
    r = compressor("prune", FIXTURES / "cnn_residual.onnx", "--structured", "--analyze", "--channel-multiple", "1",
                   "--data", FIXTURES / "data/calib_img.npy", "-o", tmp_path / "never.onnx", "--report", report)
    assert not (tmp_path / "never.onnx").exists()
    lines = r.stdout.splitlines()
    assert lines[0] == "group  ratio  loss  MACs  parameters" and len(lines) == 1 + 3 * 7
    rows = [c for c in pass_changes(json.loads(report.read_text()), "prune-search") if c["action"] == "analyzed"]
    by_group = {}
    for c in rows:
        by_group.setdefault(c["target"], []).append(c["values"])
    assert set(by_group) == {"c2", "c3+c1", "c4"}
    for trials in by_group.values():
        macs = [t["macs"] for t in trials]
        assert macs == sorted(macs, reverse=True) and all(t["loss"] >= 0 for t in trials)


@pytest.mark.parametrize("flag,key", [("--target-macs", "macs"), ("--target-params", "parameters")])
def test_budget_is_met(flag, key, compressor, tmp_path):
    out, report = tmp_path / "t.onnx", tmp_path / "t.json"
    compressor("prune", FIXTURES / "cnn_residual.onnx", "--structured", flag, "0.7", "--channel-multiple", "1",
               "--data", FIXTURES / "data/calib_img.npy", "-o", out, "--report", report)
    r = json.loads(report.read_text())
    assert r["output"][key] <= 0.7 * r["input"][key]
    verdict = [c for c in pass_changes(r, "prune-search") if c["action"].startswith("budget")]
    assert verdict[0]["action"] == "budget met" and verdict[0]["values"]["ratio"] <= 0.7
    check_runs_alike(compressor, out, "cnn_residual", tmp_path)


def test_attention_heads(compressor, tmp_path):
    out, report = tmp_path / "h.onnx", tmp_path / "h.json"
    compressor("prune", FIXTURES / "transformer_block.onnx", "--structured", "--heads", "--ratio", "0.5", "--channel-multiple", "1",
               "-o", out, "--report", report)
    check_runs_alike(compressor, out, "transformer_block", tmp_path)
    r = json.loads(report.read_text())
    rows = [c for c in pass_changes(r, "prune-heads")]
    assert [(c["target"], c["action"], c["values"]) for c in rows] == [
        ("ctx_reshape", "pruned", {"headsBefore": 2, "headsAfter": 1})]
    w = weights(out)
    assert w["q.weight"].shape == (32, 16) and w["o.weight"].shape == (16, 32) and w["v.bias"].shape == (16,)
    shapes = {i.name: onnx.numpy_helper.to_array(i).tolist() for i in onnx.load(str(out)).graph.initializer if i.data_type == 7}
    assert shapes["q_reshape.heads1"] == [0, 0, 1, 16] and shapes["ctx_reshape.width16"] == [0, 0, 16]
    assert r["output"]["macs"] < 0.6 * r["input"]["macs"]
