"""A BERT exported by torch and optimized by onnxruntime.transformers.optimizer (model_type bert)
runs in compressor's runtime and matches ONNX Runtime, and `quantize` handles it in every mode
(exit 0, and ONNX Runtime runs what it writes).

The model is the real-model suite's MiniLM (all-MiniLM-L6-v2, real weights). Its export uses
scaled_dot_product_attention, so the optimizer fuses SkipLayerNormalization and BiasGelu but not
the attention; with BERT_EAGER naming an export with eager attention
(Tests/interop/export_bert_eager.py) the optimizer also fuses Attention and
EmbedLayerNormalization, and the same checks run on that model."""
import collections
import os
import pathlib
import sys
import types

import numpy as np
import onnx
import pytest

MINILM = pathlib.Path.home() / ".cache/compressor-realmodels/minilm-l6"
SOURCES = [("sdpa", MINILM / "model.onnx")]
if os.environ.get("BERT_EAGER"):
    SOURCES.append(("eager", pathlib.Path(os.environ["BERT_EAGER"])))


def optimize(src, dst):
    # onnxruntime.transformers imports torch only to ask whether it is a ROCm build.
    sys.modules.setdefault("torch", types.SimpleNamespace(version=types.SimpleNamespace(hip=None)))
    from onnxruntime.transformers import optimizer
    optimizer.optimize_model(str(src), model_type="bert", num_heads=12, hidden_size=384, opt_level=2,
                             use_gpu=False).save_model_to_file(str(dst))
    return collections.Counter(n.op_type for n in onnx.load(str(dst), load_external_data=False).graph.node
                               if n.domain == "com.microsoft")


def session(path):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module", params=SOURCES, ids=[s[0] for s in SOURCES])
def optimized(request, tmp_path_factory):
    name, src = request.param
    if not src.exists():
        pytest.skip(f"{src} is not there (make realmodels)")
    dst = tmp_path_factory.mktemp(name) / "bert.opt.onnx"
    fused = optimize(src, dst)
    assert fused["SkipLayerNormalization"] == 12 and fused["BiasGelu"] == 6, fused
    if name == "eager":
        assert fused["Attention"] == 6 and fused["EmbedLayerNormalization"] == 1, fused
    return dst


def samples():
    return sorted((MINILM / "check").glob("*.npz"))[:4]


def test_runs_and_matches_onnx_runtime(optimized, compressor, tmp_path):
    ref = session(optimized)
    names = [o.name for o in ref.get_outputs()]
    for f in samples():
        expected = ref.run(None, dict(np.load(f)))
        compressor("run", optimized, f"--input={f}", "-o", tmp_path / "out.npz", "--force")
        got = np.load(tmp_path / "out.npz")
        for name, e in zip(names, expected):
            err = float(np.max(np.abs(got[name] - e))) / float(np.max(np.abs(e)))
            assert err < 1e-4, f"{f.name} {name}: relative error {err:.2e}"


@pytest.mark.parametrize("mode", ["weight-only", "dynamic", "static"])
def test_quantize_every_mode(optimized, mode, compressor_release, tmp_path):
    out = tmp_path / f"bert.{mode}.onnx"
    extra = ["--data", MINILM / "calib", "--calibration-samples", "2", "--eval-samples", "2"] if mode == "static" else []
    compressor_release("quantize", optimized, "--mode", mode, *extra, "-o", out)
    ref, quantized = session(optimized), session(out)
    for f in samples()[:2]:
        feeds = dict(np.load(f))
        a = ref.run(["sentence_embedding"], feeds)[0]
        b = quantized.run(["sentence_embedding"], feeds)[0]
        cosine = float(np.min(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))
        assert cosine > 0.9, f"{mode}: sentence-embedding cosine {cosine:.4f}"
