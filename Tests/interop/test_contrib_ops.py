"""ONNX Runtime's com.microsoft operators in compressor's runtime against ONNX Runtime itself, on
the generated cases of Tests/conformance/contrib_cases.py (several per operator: shapes, masks,
odd sizes, attribute values). Float outputs must be within each case's tolerance (1e-4 unless it
says otherwise) of the expected output's largest magnitude; integer outputs must be equal."""
import pathlib
import sys

import numpy as np
import onnx
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "conformance"))
import contrib_cases  # noqa: E402

CASES = contrib_cases.all_cases()


@pytest.mark.parametrize("c", CASES, ids=[c["name"] for c in CASES])
def test_contrib_operator(c, compressor, tmp_path):
    m = contrib_cases.build_model(c)
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    expected = contrib_cases.ort_run(m, dict(c["inputs"]))
    args = []
    for name, a in c["inputs"]:
        f = tmp_path / f"{name}.npy"
        np.save(f, a)
        args.append(f"--input={name}={f}")
    out = tmp_path / "out.npz"
    compressor("run", path, *args, "-o", out)
    got = np.load(out)
    for (name, _), ref in zip(c["outputs"], expected):
        why = contrib_cases.compare(name, got[name], ref, c["tolerance"])
        assert why is None, why


def test_every_operator_has_three_cases():
    """Every com.microsoft operator (the default-domain cases there check fast paths' exactness)."""
    ops = {}
    for c in CASES:
        if c["domain"] == "com.microsoft":
            ops[c["op"]] = ops.get(c["op"], 0) + 1
    thin = {op: n for op, n in ops.items() if n < 3}
    assert not thin, thin


DDDDOCR = pathlib.Path.home() / ".cache/compressor-realmodels/ddddocr-old-int8"


@pytest.mark.skipif(not (DDDDOCR / "model.onnx").exists(), reason="the real-model cache (make realmodels) is not there")
def test_dynamic_quantize_lstm_of_a_real_model(compressor, tmp_path):
    """ddddocr's common_old.onnx: its DynamicQuantizeLSTM (bidirectional, 512 hidden, int8 weights)
    on the inputs ONNX Runtime computes for it from real samples. (The whole model is not compared:
    it rounds quantization parameters with Floor, and a 1-ulp difference in an earlier Sigmoid
    flips an integer there; the recognized text is the same.)"""
    import onnxruntime as ort
    from onnx import helper
    m = onnx.load(str(DDDDOCR / "model.onnx"))
    lstm = next(n for n in m.graph.node if n.op_type == "DynamicQuantizeLSTM")
    inits = {i.name: i for i in m.graph.initializer}
    fed = [i for i in lstm.input if i and i not in inits]
    probe = onnx.load(str(DDDDOCR / "model.onnx"))
    for name in fed:
        probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    single = helper.make_model(
        helper.make_graph([lstm], "lstm", [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in fed],
                          [helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None) for o in lstm.output],
                          [inits[i] for i in lstm.input if i in inits]),
        opset_imports=m.opset_import)
    single.ir_version = m.ir_version
    path = tmp_path / "lstm.onnx"
    onnx.save(single, str(path))
    for sample in sorted((DDDDOCR / "calib").glob("*.npy"))[:2]:
        values = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(
            None, {"input1": np.load(sample)})[-len(fed):]
        args = []
        for k, (name, v) in enumerate(zip(fed, values)):
            np.save(tmp_path / f"in{k}.npy", v)
            args.append(f"--input={name}={tmp_path / f'in{k}.npy'}")
        expected = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, dict(zip(fed, values)))
        compressor("run", path, *args, "-o", tmp_path / "out.npz", "--force")
        got = np.load(tmp_path / "out.npz")
        for name, ref in zip(lstm.output, expected):
            why = contrib_cases.compare(name, got[name], ref, 1e-5)
            assert why is None, why


BAD = [
    # (case name, changes to the case, words the error must contain)
    ("matmul_nbits_4bit_0", dict(attrs=dict(K=64, N=5, bits=9, block_size=32)), "bits 9"),
    ("matmul_nbits_4bit_0", dict(attrs=dict(K=64, N=5, bits=4, block_size=24)), "block_size"),
    ("gather_block_quantized_0", dict(attrs=dict(gather_axis=5, quantize_axis=1, block_size=16, bits=4)), "axis 5"),
    ("group_query_attention_0", dict(attrs=dict(num_heads=3, kv_num_heads=2)), "num_heads 3"),
    ("rotary_embedding_2", dict(attrs=dict(interleaved=0, rotary_embedding_dim=40, num_heads=3)), "caches cover"),
    ("qlinear_concat_0", dict(attrs=dict(axis=7)), "axis 7"),
]


@pytest.mark.parametrize("name,change,words", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_out_of_range_attributes_are_errors_naming_the_node(name, change, words, compressor, tmp_path):
    c = dict(next(x for x in CASES if x["name"] == name), **change)
    m = contrib_cases.build_model(c)
    m.graph.node[0].name = "bad_node"
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    args = []
    for n, a in c["inputs"]:
        np.save(tmp_path / f"{n}.npy", a)
        args.append(f"--input={n}={tmp_path / f'{n}.npy'}")
    r = compressor("run", path, *args, "-o", tmp_path / "out.npz", check=False)
    assert r.returncode == 65, r.stderr
    assert "bad_node" in r.stderr and words in r.stderr, r.stderr
