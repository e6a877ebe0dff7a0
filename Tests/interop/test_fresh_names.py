"""Generated names never collide: a model whose value and node names already hold every suffix
the passes generate (`W.scale`, `X.quantized`, `Y.int32`, `W.low_rank_a`, `…_2` …) goes through
every transforming command; ONNX Runtime loads each result, its outputs match the float model's,
and the exporter's own values come out untouched."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import ort_outputs

# Every suffix a pass appends to a value or node name (see the passes' NameScope.fresh calls),
# and the counter NameScope adds when a name is taken.
SUFFIXES = [".int8", ".scale", ".zero_point", ".quantized", ".dequantized", ".dequantize", ".quantize",
            ".dynamic_quantize", ".int32", ".float", ".rescale", ".unbiased", ".cast", ".bias", ".channels",
            ".low_rank", ".low_rank_a", ".low_rank_b", ".int4", ".nbits", ".weight", ".folded", ".folded_bias",
            ".scale_2", ".int8_2", ".quantized_2"]


def crowded_model():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 128)).astype(np.float32) * 0.1
    b = rng.standard_normal(128).astype(np.float32) * 0.1
    w2 = rng.standard_normal((128, 32)).astype(np.float32) * 0.1
    cw = rng.standard_normal((16, 3, 3, 3)).astype(np.float32) * 0.3
    cb = rng.standard_normal(16).astype(np.float32) * 0.1
    nodes = [
        helper.make_node("MatMul", ["X", "W"], ["Y"], name="Y"),
        helper.make_node("Add", ["Y", "B"], ["Z"], name="Z"),
        helper.make_node("Relu", ["Z"], ["R"], name="R"),
        helper.make_node("MatMul", ["R", "W2"], ["out"], name="out"),
        helper.make_node("Conv", ["I", "CW", "CB"], ["C"], name="C", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["C"], ["C2"], name="C2"),
        helper.make_node("GlobalAveragePool", ["C2"], ["pooled"], name="pooled"),
    ]
    side = []
    for base in ["X", "W", "B", "Y", "Z", "R", "W2", "out", "I", "CW", "CB", "C", "C2", "pooled"]:
        for suffix in SUFFIXES:
            name = base + suffix
            nodes.append(helper.make_node("Identity", ["X"], [name], name=name))
            side.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, 64]))
    graph = helper.make_graph(
        nodes, "crowded",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 64]),
         helper.make_tensor_value_info("I", TensorProto.FLOAT, [None, 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, 32]),
         helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [None, 16, 1, 1])] + side,
        [numpy_helper.from_array(a, n) for a, n in ((w, "W"), (b, "B"), (w2, "W2"), (cw, "CW"), (cb, "CB"))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture(scope="module")
def crowded(tmp_path_factory):
    d = tmp_path_factory.mktemp("crowded")
    path = d / "crowded.onnx"
    onnx.save(crowded_model(), path)
    rng = np.random.default_rng(1)
    feeds = {"X": rng.standard_normal((16, 64)).astype(np.float32),
             "I": rng.standard_normal((16, 3, 8, 8)).astype(np.float32)}
    data = d / "data"
    data.mkdir()
    for i in range(4):
        np.savez(data / f"{i}.npz", X=feeds["X"][i * 4:(i + 1) * 4], I=feeds["I"][i * 4:(i + 1) * 4])
    return path, data, feeds


@pytest.mark.parametrize("args", [
    # Static with minmax ranges: the bound below is on the worst element, which the default
    # (auto) trades for a lower mean error where clipping a tail pays.
    ["quantize"], ["quantize", "--mode", "dynamic"], ["quantize", "--mode", "static", "--calibration", "minmax", "--data", "{data}"],
    ["quantize", "--mode", "static", "--calibration", "minmax", "--format", "qoperator", "--data", "{data}"],
    ["quantize", "--bits", "4", "--format", "matmulnbits"], ["factorize", "--rank", "8"], ["optimize"],
    ["prune", "--structured", "--ratio", "0.25", "--channel-multiple", "1"], ["prune", "--pattern", "2:4"],
], ids=lambda a: "-".join(x for x in a if not x.startswith("{")))
def test_passes_take_fresh_names(args, crowded, compressor, tmp_path):
    path, data, feeds = crowded
    out = tmp_path / "out.onnx"
    compressor(args[0], path, *[a.format(data=data) for a in args[1:]], "-o", out)
    onnx.checker.check_model(str(out), full_check=True)
    model = onnx.load(str(out))
    produced = [o for n in model.graph.node for o in n.output if o]
    assert len(produced) == len(set(produced)), "a value is produced twice"
    ours = dict(zip([o.name for o in model.graph.output], ort_outputs(out, feeds)))
    reference = dict(zip([o.name for o in crowded_model().graph.output], ort_outputs(path, feeds)))
    assert set(ours) == set(reference)
    for name, want in reference.items():
        if name in ("out", "pooled"):
            # Quantized: close to the float model. Pruned or factorized random weights: only
            # the same shape (how close is those commands' own tests' business).
            assert ours[name].shape == want.shape and np.all(np.isfinite(ours[name]))
            if args[0] in ("quantize", "optimize"):
                err = np.max(np.abs(ours[name] - want)) / np.max(np.abs(want))
                assert err < (0.25 if "4" in args else 0.05), (name, err)
        else:
            np.testing.assert_array_equal(ours[name], want, err_msg=name)
