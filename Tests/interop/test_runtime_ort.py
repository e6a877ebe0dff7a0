"""compressor's own executor agrees with ONNX Runtime on every fixture: outputs within 1e-4
relative to the output's scale (float16 models: one float16 rounding step, 2e-3).

The reference runs with ONNX Runtime's graph optimizations off: its optimizer fuses, for example,
DequantizeLinear + MatMul into a kernel that rounds differently (0.5% on opset21), and the ONNX
semantics, not one runtime's fusions, are what compressor's numbers must reproduce."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import FIXTURES

MANIFEST = json.loads((FIXTURES / "fixtures.json").read_text())
RUNNABLE = sorted(k for k, v in MANIFEST.items() if v.get("ortRuns", True))


@pytest.mark.parametrize("name", RUNNABLE)
def test_outputs_match_onnx_runtime(name, compressor, tmp_path):
    entry = MANIFEST[name]
    feeds = {k: np.load(FIXTURES / v) for k, v in entry["inputs"].items()}
    args = [f"--input={k}={FIXTURES / v}" for k, v in entry["inputs"].items()]
    out = tmp_path / "out.npz"
    compressor("run", FIXTURES / entry["file"], *args, "-o", out)
    ours = np.load(out)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(FIXTURES / entry["file"]), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    tolerance = 2e-3 if name == "float16" else 1e-4
    for o_name, ref in zip(names, sess.run(None, feeds)):
        got = ours[o_name]
        assert got.shape == ref.shape and got.dtype == ref.dtype, o_name
        scale = max(float(np.max(np.abs(ref))), 1e-6)
        err = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
        assert err <= tolerance * scale, f"{o_name}: max abs error {err} vs scale {scale}"
    if "accuracy" in entry:
        labels = np.load(FIXTURES / entry["labels"])
        assert round(float((ours[names[0]].argmax(-1) == labels).mean()), 4) == entry["accuracy"]


def test_run_prints_a_summary(compressor):
    r = compressor("run", FIXTURES / "mlp.onnx", "--input", FIXTURES / "data/digits_x.npy", "--json")
    summary = json.loads(r.stdout)
    assert summary["outputs"][0]["name"] == "logits"
    assert summary["outputs"][0]["shape"] == [360, 10]
    assert summary["peakActivationBytes"] > 0


def npy_header(text):
    """A version 1.0 .npy header for `text`, padded as numpy pads it."""
    pad = (64 - (10 + len(text) + 1) % 64) % 64
    body = (text + " " * pad + "\n").encode()
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body


@pytest.mark.parametrize("contents,message", [
    (b"", "not a valid .npy file: wrong magic"),
    (b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'", "truncated header"),
    (npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (360, 64), }") + b"\0" * 16,
     "the header promises shape [360, 64] of float (92160 bytes) but 16 bytes follow"),
    (npy_header("{'descr': '<f4', 'fortran_order': True, 'shape': (360, 64), }"),
     "Fortran-ordered arrays are not supported"),
    (npy_header("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }") + b"\0" * 8, "dtype <c8 is not supported"),
])
def test_bad_npy_inputs(contents, message, compressor, tmp_path):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(contents)
    r = compressor("run", FIXTURES / "mlp.onnx", "--input", bad, check=False)
    assert r.returncode == 65, r.stderr
    assert r.stderr.startswith(f"compressor: error: {bad}: ") and message in r.stderr, r.stderr


def test_wrong_input_type_and_shape(compressor, tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, np.zeros((2, 63), np.float32))
    r = compressor("run", FIXTURES / "mlp.onnx", "--input", p, check=False)
    assert r.returncode == 65
    assert r.stderr == "compressor: error: input 'input' has shape [2, 63] but the model expects [batch, 64]\n"
    np.save(p, np.zeros((2, 64), np.float64))
    r = compressor("run", FIXTURES / "mlp.onnx", "--input", p, check=False)
    assert r.stderr == "compressor: error: input 'input' is double but the model expects float\n"


def test_nan_inputs_propagate(compressor, tmp_path):
    x = np.load(FIXTURES / "data/digits_x.npy")[:4].copy()
    x[0, 0] = np.nan
    p, out = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(p, x)
    compressor("run", FIXTURES / "mlp.onnx", "--input", p, "-o", out)
    y = np.load(out)
    assert np.isnan(y[0]).all() and np.isfinite(y[1:]).all()


def test_npz_inputs_stored_and_deflated(compressor, tmp_path):
    ids, mask = np.load(FIXTURES / "data/digits_tokens.npy"), np.load(FIXTURES / "data/digits_mask.npy")
    for save in (np.savez, np.savez_compressed):
        p = tmp_path / f"{save.__name__}.npz"
        save(p, input_ids=ids, attention_mask=mask)
        out = tmp_path / "out.npy"
        compressor("run", FIXTURES / "transformer_block.onnx", "--input", p, "-o", out, "--force")
        labels = np.load(FIXTURES / "data/digits_y.npy")
        assert round(float((np.load(out).argmax(-1) == labels).mean()), 4) == MANIFEST["transformer_block"]["accuracy"]


def test_npz_zip_bomb_is_refused(compressor, tmp_path):
    """A member whose header promises more than it inflates to, or the reverse, is refused."""
    import zipfile
    p = tmp_path / "bomb.npz"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("input.npy", b"\0" * (50 << 20))
    data = bytearray(p.read_bytes())
    # Understate the uncompressed size in the central directory: inflate must stop at it.
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24:cd + 28] = (1000).to_bytes(4, "little")
    p.write_bytes(bytes(data))
    r = compressor("run", FIXTURES / "mlp.onnx", "--input", p, check=False)
    assert r.returncode == 65, r.stderr
    assert "does not inflate to its declared 1000 bytes" in r.stderr


def _compare(compressor, model, entry, tmp_path, tolerance):
    feeds = {k: np.load(FIXTURES / v) for k, v in entry["inputs"].items()}
    args = [f"--input={k}={FIXTURES / v}" for k, v in entry["inputs"].items()]
    out = tmp_path / "out.npz"
    compressor("run", model, *args, "-o", out, "--force")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    got = np.load(out)["logits"]
    scale = float(np.max(np.abs(ref)))
    assert float(np.max(np.abs(got - ref))) <= tolerance * scale
    return got


@pytest.mark.parametrize("name", ["transformer_block", "mlp"])
def test_models_quantized_by_onnx_runtime_run_the_same(name, compressor, tmp_path):
    """Already-quantized models (ONNX Runtime's dynamic int8 and 4-bit MatMulNBits) run in
    compressor's executor with ONNX Runtime's results."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    entry = MANIFEST[name]
    dyn = tmp_path / "dynamic.onnx"
    quantize_dynamic(str(FIXTURES / entry["file"]), str(dyn), weight_type=QuantType.QInt8)
    ops = {n.op_type for n in onnx.load(str(dyn)).graph.node}
    assert "DynamicQuantizeLinear" in ops and "MatMulInteger" in ops, ops
    _compare(compressor, dyn, entry, tmp_path, 1e-4)
    if name == "transformer_block":
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
        q = MatMulNBitsQuantizer(onnx.load(str(FIXTURES / entry["file"])), block_size=16, is_symmetric=False)
        q.process()
        nbits = tmp_path / "nbits.onnx"
        onnx.save(q.model.model, str(nbits))
        assert any(n.op_type == "MatMulNBits" for n in q.model.model.graph.node)
        _compare(compressor, nbits, entry, tmp_path, 1e-4)


@pytest.mark.parametrize("name", ["cnn_residual", "mobile_cnn", "transformer_block"])
def test_results_do_not_depend_on_the_thread_count(name, compressor, tmp_path):
    entry = MANIFEST[name]
    args = [f"--input={k}={FIXTURES / v}" for k, v in entry["inputs"].items()]
    outs = []
    for threads in (1, 2):
        out = tmp_path / f"t{threads}.npz"
        compressor("run", FIXTURES / entry["file"], *args, "-o", out, "--threads", threads)
        outs.append({k: v.tobytes() for k, v in np.load(out).items()})
    assert outs[0] == outs[1]


def _tiny(nodes, inits, inputs=()):
    g = onnx.helper.make_graph(nodes, "hostile", list(inputs),
                               [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], inits)
    m = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize("case,message", [
    ("constant_of_shape_overflow", "has more elements than fit in 64 bits"),
    ("constant_of_shape_huge", "more than the memory budget of"),
    ("expand_huge", "more than the memory budget of"),
    ("reshape_overflow", "cannot reshape [1] to"),
    ("endless_loop", "ran 1000 iterations without ending"),
])
def test_hostile_models_are_refused_not_crashed(case, message, compressor, tmp_path):
    """Shapes computed from tensor values cannot make the runtime trap, exhaust memory or hang."""
    h = onnx.helper
    i64 = lambda name, v: onnx.numpy_helper.from_array(np.array(v, np.int64), name)
    if case == "constant_of_shape_overflow":
        m = _tiny([h.make_node("ConstantOfShape", ["s"], ["y"])], [i64("s", [1 << 33, 1 << 33])])
    elif case == "constant_of_shape_huge":
        m = _tiny([h.make_node("ConstantOfShape", ["s"], ["y"])], [i64("s", [1 << 40])])
    elif case == "expand_huge":
        m = _tiny([h.make_node("Expand", ["x", "s"], ["y"])],
                  [onnx.numpy_helper.from_array(np.zeros(1, np.float32), "x"), i64("s", [1 << 20, 1 << 20])])
    elif case == "reshape_overflow":
        m = _tiny([h.make_node("Reshape", ["x", "s"], ["y"])],
                  [onnx.numpy_helper.from_array(np.zeros(1, np.float32), "x"), i64("s", [1 << 33, 1 << 33, 0])])
    else:
        body = h.make_graph([h.make_node("Identity", ["c"], ["c_out"]), h.make_node("Identity", ["v"], ["v_out"])], "body",
                            [h.make_tensor_value_info("i", onnx.TensorProto.INT64, []),
                             h.make_tensor_value_info("c", onnx.TensorProto.BOOL, []),
                             h.make_tensor_value_info("v", onnx.TensorProto.FLOAT, [1])],
                            [h.make_tensor_value_info("c_out", onnx.TensorProto.BOOL, []),
                             h.make_tensor_value_info("v_out", onnx.TensorProto.FLOAT, [1])])
        m = _tiny([h.make_node("Loop", ["", "cond", "x"], ["y"], body=body)],
                  [onnx.numpy_helper.from_array(np.array(True), "cond"), onnx.numpy_helper.from_array(np.zeros(1, np.float32), "x")])
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    import os
    r = compressor("run", path, check=False, timeout=600, env=dict(os.environ, COMPRESSOR_LOOP_LIMIT="1000"))
    assert r.returncode == 65, r.stderr
    assert r.stderr.startswith("compressor: error: ") and message in r.stderr and r.stderr.count("\n") == 1, r.stderr
