"""`compressor eval` and `compressor bench` on the fixtures, with values checked."""
import json
import re

import numpy as np
import pytest

from conftest import FIXTURES

MANIFEST = json.loads((FIXTURES / "fixtures.json").read_text())


@pytest.mark.parametrize("name", ["mlp", "cnn_residual", "mobile_cnn"])
def test_eval_accuracy_matches_the_manifest(name, compressor):
    entry = MANIFEST[name]
    (feed,) = entry["inputs"].values()
    r = compressor("eval", FIXTURES / entry["file"], "--data", FIXTURES / feed, "--labels", FIXTURES / entry["labels"],
                   "--reference", FIXTURES / entry["file"], "--json")
    m = json.loads(r.stdout)
    assert m["samples"] == 360
    assert round(m["accuracy"], 4) == entry["accuracy"]
    assert m["agreement"] == 1 and m["meanCosine"] == 1 and m["maxAbsError"] == 0 and m["sqnrDb"] == 1e308


def test_eval_directory_of_samples_in_name_order(compressor, tmp_path):
    x, y = np.load(FIXTURES / "data/digits_x.npy"), np.load(FIXTURES / "data/digits_y.npy")
    for i in range(0, 360, 40):  # batches of 40, names sorted the same as the rows
        np.save(tmp_path / f"batch_{i:03d}.npy", x[i:i + 40])
    r = compressor("eval", FIXTURES / "mlp.onnx", "--data", tmp_path, "--labels", FIXTURES / "data/digits_y.npy", "--json")
    assert round(json.loads(r.stdout)["accuracy"], 4) == MANIFEST["mlp"]["accuracy"]


def test_eval_against_a_reference(compressor):
    r = compressor("eval", FIXTURES / "float16.onnx", "--reference", FIXTURES / "mlp.onnx",
                   "--data", FIXTURES / "data/digits_x.npy", "--json")
    m = json.loads(r.stdout)
    assert m["agreement"] == 1
    assert m["meanCosine"] > 0.99999
    assert 60 < m["sqnrDb"] < 90
    assert 0 < m["maxAbsError"] < 0.05


def _detections_model(path, extra_rows=0, shift=0.0):
    """x [1, 8] → [2 + extra_rows, 4]: an output whose first axis is not the batch (one row per
    detection, as after NMS); `shift` moves the second row's first value."""
    from onnx import TensorProto, helper, numpy_helper
    import onnx
    inits = [numpy_helper.from_array(np.array([-1, 4], np.int64), "shape"),
             numpy_helper.from_array(np.array([[0, 0, 0, 0, shift, 0, 0, 0] + [0] * 4 * extra_rows], np.float32), "delta")]
    nodes = []
    x = "x"
    if extra_rows:
        inits.append(numpy_helper.from_array(np.ones((1, 4 * extra_rows), np.float32), "pad"))
        nodes.append(helper.make_node("Concat", ["x", "pad"], ["padded"], axis=1))
        x = "padded"
    nodes += [helper.make_node("Add", [x, "delta"], ["moved"]), helper.make_node("Reshape", ["moved", "shape"], ["boxes"])]
    graph = helper.make_graph(nodes, "detections", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", 4])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))


def test_eval_compares_a_sample_whole_when_the_output_is_not_batched(compressor, tmp_path):
    """A sample is an input row: boxes [N, 4] of one image are one vector for the cosine (not N
    samples of four coordinates), and an image whose detections differ in number from the
    reference's is a sample with cosine 0, not an error."""
    rng = np.random.default_rng(3)
    samples = [rng.uniform(1, 5, (1, 8)).astype(np.float32) for _ in range(3)]
    data = tmp_path / "data"
    data.mkdir()
    for i, s in enumerate(samples):
        np.save(data / f"{i}.npy", s)
    _detections_model(tmp_path / "ref.onnx")
    _detections_model(tmp_path / "moved.onnx", shift=6.0)
    _detections_model(tmp_path / "more.onnx", extra_rows=1)
    m = json.loads(compressor("eval", tmp_path / "moved.onnx", "--reference", tmp_path / "ref.onnx", "--data", data, "--json").stdout)
    expected = []
    for s in samples:
        a, b = s.ravel().astype(np.float64), s.ravel().astype(np.float64).copy()
        b[4] += 6
        expected.append(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert m["samples"] == 3 and m["meanCosine"] == pytest.approx(np.mean(expected), abs=1e-6)
    m = json.loads(compressor("eval", tmp_path / "more.onnx", "--reference", tmp_path / "ref.onnx", "--data", data, "--json").stdout)
    assert m["samples"] == 3 and m["meanCosine"] == 0 and m["agreement"] == 0


def test_eval_label_count_mismatch(compressor, tmp_path):
    labels = tmp_path / "y.npy"
    np.save(labels, np.zeros(10, np.int64))
    r = compressor("eval", FIXTURES / "mlp.onnx", "--data", FIXTURES / "data/digits_x.npy", "--labels", labels, check=False)
    assert r.returncode == 65
    assert r.stderr == f"compressor: error: {labels}: 10 labels for 360 samples\n"


def test_eval_needs_labels_or_reference(compressor):
    r = compressor("eval", FIXTURES / "mlp.onnx", "--data", FIXTURES / "data/digits_x.npy", check=False)
    assert r.returncode == 64
    assert r.stderr.startswith("compressor: error: give --labels, --reference, or both\n")


def test_eval_empty_data_directory(compressor, tmp_path):
    r = compressor("eval", FIXTURES / "mlp.onnx", "--data", tmp_path, "--reference", FIXTURES / "mlp.onnx", check=False)
    assert r.returncode == 64
    assert r.stderr == f"compressor: error: {tmp_path} holds no .npy, .npz or .pb files\n"


def test_bench_reports_latency_and_memory(compressor):
    r = compressor("bench", FIXTURES / "transformer_block.onnx", "--input-shape", "input_ids=1x64",
                   "--input-shape", "attention_mask=1x64", "--runs", "5", "--json")
    m = json.loads(r.stdout)
    assert m["runs"] == 5 and m["threads"] == 1
    assert 0 < m["p50Ms"] <= m["p95Ms"]
    assert m["peakActivationBytes"] > 0 and m["peakRSSBytes"] > m["peakActivationBytes"]


def test_bench_profile_lists_operators_and_the_slowest_nodes(compressor):
    """`--profile` (stderr): one line per operator type, then the (up to ten) slowest nodes, each
    with its time per run and share; the shares of the operator lines add up to 100%. The executor
    runs cnn_residual as 7 nodes (BatchNormalization, Relu and the residual Adds folded into the
    convolutions)."""
    r = compressor("bench", FIXTURES / "cnn_residual.onnx", "--input-shape", "image=1x1x8x8", "--runs", "3", "--profile")
    lines = r.stderr.splitlines()
    split = lines.index("slowest nodes:")
    ops, nodes = lines[:split], lines[split + 1:]
    pattern = re.compile(r"^(\S+)  [0-9.e-]+ ms/run  ([0-9.]+)%$")
    shares = {pattern.match(line).group(1): float(pattern.match(line).group(2)) for line in ops}
    assert {"Conv", "Gemm", "GlobalAveragePool"} <= set(shares) and sum(shares.values()) == pytest.approx(100, abs=0.5)
    assert len(nodes) == 7 and all(re.match(r"^  node '\w+' \(\w+\)  [0-9.e-]+ ms/run  [0-9.]+%$", n) for n in nodes)
    assert any(n.startswith("  node 'c2' (Conv)") for n in nodes)
    # --profile-nodes limits the list: the three slowest, in the same order.
    r = compressor("bench", FIXTURES / "cnn_residual.onnx", "--input-shape", "image=1x1x8x8", "--runs", "3", "--profile",
                   "--profile-nodes", "3")
    lines = r.stderr.splitlines()
    assert len(lines) - lines.index("slowest nodes:") - 1 == 3


def _cpu_flags():
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.parametrize("chosen", ["Haswell", "Prescott"])
def test_an_openblas_core_in_the_environment_is_kept(chosen, compressor):
    """OPENBLAS_CORETYPE set by a user or an administrator is what OpenBLAS runs with, even
    where compressor would pick faster kernels (OPENBLAS_VERBOSE=2 prints the core on load)."""
    import os
    r = compressor("bench", FIXTURES / "mlp.onnx", "--runs", "1", "--warmup", "0",
                   env={**os.environ, "OPENBLAS_CORETYPE": chosen, "OPENBLAS_VERBOSE": "2"})
    assert re.findall(r"Core: (\w+)", r.stdout + r.stderr)[-1] == chosen


def test_unset_openblas_core_gets_the_widest_kernels_the_cpu_runs(compressor):
    """With OPENBLAS_CORETYPE unset, a CPU OpenBLAS 0.3.21 does not recognize (this machine's
    Xeon is taken for a Prescott) still gets AVX-512 kernels where it has AVX-512 F/CD/BW/DQ/VL,
    AVX2 ones where it has AVX2 and FMA."""
    import os
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    r = compressor("bench", FIXTURES / "mlp.onnx", "--runs", "1", "--warmup", "0", env={**env, "OPENBLAS_VERBOSE": "2"})
    core = re.findall(r"Core: (\w+)", r.stdout + r.stderr)[-1].lower()
    flags = _cpu_flags()
    if {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        assert core in ("skylakex", "cooperlake", "sapphirerapids"), core
    elif {"avx2", "fma"} <= flags:
        assert core in ("haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"), core
