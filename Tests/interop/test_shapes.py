"""Static shape inference (`inspect --shapes`) against what ONNX Runtime computes.

For every fixture and every model of the real-model suite (the cache Tests/realmodels/fetch.py
builds; skipped when it is missing): without bindings every node output has a shape, symbolic
where the inputs are, with no unknown ("?") dimension; bound to the model's natural input shapes,
every node output's inferred shape equals the one ONNX Runtime produces (every node output made a
graph output, graph optimizations off), the unbound symbolic shapes evaluated at those sizes equal
it too, and the MAC total equals the count from ORT's shapes — the count the executor-based
inference used to make by running the model (main graph only, as that did). The executor-based
inference itself survives only as the cross-check in Tests/RuntimeTests/ShapeInferenceTests.swift.
"""
import json
import math
import os
import re
import pathlib
import subprocess
import sys
from fractions import Fraction

import jsonschema
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import FIXTURES, ROOT, ort_outputs

CACHE = pathlib.Path(os.environ.get("COMPRESSOR_REALMODELS", "/tmp/rmc"))
FIXTURE_INFO = json.loads((FIXTURES / "fixtures.json").read_text())
SCHEMA = json.loads((ROOT / "docs" / "inspect.schema.json").read_text())

# Models whose inferred shapes keep unknown ("?") dimensions until the inputs are bound, and why.
UNKNOWN_WHEN_UNBOUND = {
    # torch exported `x.squeeze(-1)` of the encoder's length-dependent last dimension as an If
    # (squeeze when it is 1, else keep it): the rank of what follows depends on the input length.
    "silero-vad": "an If whose branches differ in rank on the input length",
}
# Models whose sizes stay fresh symbols when bound (sizes only the data decides), and why.
# Any other symbol left after binding every input is a failure.
DATA_DEPENDENT = {
    # Boxes over the score threshold (NonZero) and those NonMaxSuppression keeps.
    "ssdlite320": "NonZero and NonMaxSuppression",
}


def real_models():
    manifest = CACHE / "manifest.json"
    if not manifest.exists():
        return []
    return json.loads(manifest.read_text())["models"]


def fixture_cases():
    cases = []
    for name, info in sorted(FIXTURE_INFO.items()):
        feeds = {}
        for input_name, data in info["inputs"].items():
            arrays = np.load(FIXTURES / data)
            feeds[input_name] = arrays[:3]
        cases.append(pytest.param(FIXTURES / info["file"], feeds if info.get("ortRuns", True) else None, id=f"fixture-{name}"))
    return cases


def real_cases():
    cases = []
    for entry in real_models():
        path = pathlib.Path(entry["path"])
        check = sorted((path.parent / "check").iterdir()) if (path.parent / "check").exists() else []
        feeds = None
        if check and check[0].suffix == ".npz":
            feeds = dict(np.load(check[0]))
        elif check:
            feeds = {next(iter(entry["inputs"])): np.load(check[0])}
        cases.append(pytest.param(path, feeds, id=entry["name"]))
    return cases


def ort_shapes(path, feeds):
    """Every main-graph value's shape as ONNX Runtime computes it for `feeds`."""
    model = onnx.load(str(path))
    declared = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for o in node.output:
            if o and o not in declared:
                model.graph.output.append(onnx.ValueInfoProto(name=o))
                declared.add(o)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    types = {i.name: i.type for i in session.get_inputs()}
    dtypes = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
              "tensor(int32)": np.int32, "tensor(double)": np.float64, "tensor(bool)": np.bool_, "tensor(uint8)": np.uint8}
    inputs = {k: np.asarray(v).astype(dtypes.get(types[k], None)) for k, v in feeds.items() if k in types}
    outputs = session.run(None, inputs)
    shapes = {o.name: list(np.asarray(v).shape) for o, v in zip(session.get_outputs(), outputs)}
    for t in model.graph.initializer:
        shapes.setdefault(t.name, list(t.dims))
    for k, v in inputs.items():
        shapes.setdefault(k, list(v.shape))
    return model, shapes


def macs_from_shapes(model, shapes):
    """MACs of Conv, ConvTranspose, Gemm, MatMul, their quantized forms and the recurrent ops."""
    total = 0
    for node in model.graph.node:
        def shape(i):
            return shapes.get(node.input[i]) if i < len(node.input) and node.input[i] else None
        y = shapes.get(node.output[0]) if node.output else None
        op = node.op_type
        if op in ("Conv", "ConvInteger", "QLinearConv"):
            w = shape(3 if op == "QLinearConv" else 1)
            total += int(np.prod(y)) * int(np.prod(w[1:]))
        elif op == "ConvTranspose":
            total += int(np.prod(shape(0))) * int(np.prod(shape(1)[1:]))
        elif op in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul", "MatMulNBits", "DynamicQuantizeMatMul"):
            x = shape(0)
            trans_a = any(a.name == "transA" and a.i for a in node.attribute)
            total += int(np.prod(y)) * (x[0] if op == "Gemm" and trans_a else x[-1])
        elif op in ("LSTM", "GRU", "RNN", "DynamicQuantizeLSTM"):
            x = shape(0)
            total += x[0] * x[1] * (int(np.prod(shape(1))) + int(np.prod(shape(2))))
    return total


def symbol_values(summary, feeds):
    """What each input symbol stands for in `feeds`: a named dimension is its name, an unnamed one
    <input>_dim<axis> (the name kept to letters, digits and underscores)."""
    values = {}
    for i in summary["inputs"]:
        if i["name"] not in feeds or i.get("shape") is None:
            continue
        for axis, (d, n) in enumerate(zip(i["shape"], np.asarray(feeds[i["name"]]).shape)):
            if d.isdigit():
                continue
            if d.strip("? ") == "":
                base = "".join(ch if ch.isalnum() else "_" for ch in i["name"])
                d = f"{base if base[0].isalpha() or base[0] == '_' else 'input_' + base}_dim{axis}"
            values[d] = n
    return values


def evaluate(expression, values):
    """An inferred dimension's value: the printed grammar is Python's with exact division."""
    names = sorted(values, key=len, reverse=True)
    for k, name in enumerate(names):
        expression = re.sub(r"(?<![\w.:])" + re.escape(name) + r"(?![\w.:])", f"__s{k}", expression)
    scope = {f"__s{k}": Fraction(values[name]) for k, name in enumerate(names)}
    scope.update(floor=math.floor, ceil=math.ceil, min=min, max=max)
    return int(eval(expression, {"__builtins__": {}}, scope))


def input_shape_flags(path, feeds):
    model = onnx.load(str(path), load_external_data=False)
    initialized = {t.name for t in model.graph.initializer}
    flags = []
    for i in model.graph.input:
        if i.name in initialized or i.name not in feeds or np.asarray(feeds[i.name]).ndim == 0:
            continue
        flags += ["--input-shape", f"{i.name}=" + "x".join(map(str, np.asarray(feeds[i.name]).shape))]
    return flags


def outputs_of(summary):
    return [(n, o) for n in summary["shapes"]["nodes"] for o in n["outputs"] if o["name"]]


@pytest.mark.parametrize("path,feeds", fixture_cases() + real_cases())
def test_static_shapes_match_onnx_runtime(path, feeds, compressor):
    name = path.stem if path.parent == FIXTURES else path.parent.name
    summary = json.loads(compressor("inspect", "--shapes", "--json", path).stdout)
    jsonschema.validate(summary, SCHEMA)
    symbolic = summary["shapes"]
    unknown = [(n["name"] or n["opType"], o["name"], o.get("shape")) for n, o in outputs_of({"shapes": symbolic})
               if o.get("shape") is None or "?" in o["shape"]]
    if name in UNKNOWN_WHEN_UNBOUND:
        assert unknown, f"{name} is listed in UNKNOWN_WHEN_UNBOUND but has no unknown dimension"
    else:
        assert unknown == [], f"{name}: {len(unknown)} outputs with unknown dimensions, first {unknown[:5]}"
    if feeds is None:
        return

    bound = json.loads(compressor("inspect", "--shapes", "--json", *input_shape_flags(path, feeds), path).stdout)["shapes"]
    assert bound["unboundSymbols"] == []
    if bound["dataDependentSymbols"]:
        assert name in DATA_DEPENDENT, f"{name}: data-dependent sizes {bound['dataDependentSymbols']}"
    model, actual = ort_shapes(path, feeds)
    mismatched, data_dependent = [], 0
    for node, output in outputs_of({"shapes": bound}):
        expected = actual.get(output["name"])
        if expected is None:
            continue
        inferred = output["shape"]
        if len(inferred) == len(expected) and any(not d.lstrip("-").isdigit() for d in inferred):
            data_dependent += 1
            if all(d == str(e) for d, e in zip(inferred, expected) if d.lstrip("-").isdigit()):
                continue
        if inferred != [str(d) for d in expected]:
            mismatched.append((node["name"] or node["opType"], node["opType"], output["name"], inferred, expected))
    assert mismatched == [], f"{name}: {len(mismatched)} shapes differ from ORT's, first {mismatched[:5]}"
    assert data_dependent == 0 or name in DATA_DEPENDENT
    # The symbolic shapes themselves, evaluated at the inputs' sizes.
    values = symbol_values(summary, feeds)
    wrong = []
    for node, output in outputs_of({"shapes": symbolic}):
        expected, inferred = actual.get(output["name"]), output.get("shape")
        if expected is None or inferred is None or len(inferred) != len(expected):
            continue
        for d, e in zip(inferred, expected):
            if d != "?" and not set(symbolic["dataDependentSymbols"]) & set(re.findall(r"[A-Za-z_][\w.:]*", d)) and evaluate(d, values) != e:
                wrong.append((node["name"] or node["opType"], output["name"], inferred, expected))
                break
    assert wrong == [], f"{name}: {len(wrong)} symbolic shapes evaluate wrongly at {values}, first {wrong[:5]}"
    if "macsExpression" in symbolic and not symbolic["dataDependentSymbols"] and not symbolic["incomplete"]:
        assert evaluate(symbolic["macsExpression"], values) == bound["macs"]
    if "macs" in bound:
        assert bound["macs"] == macs_from_shapes(model, actual)
    else:
        assert name in DATA_DEPENDENT, f"{name}: MACs {bound.get('macsExpression')} are not a number"


def test_symbolic_shapes_read_as_expressions(compressor):
    """A stride-2 convolution's output is ceil(h/2); costs and memory follow as expressions."""
    shapes = json.loads(compressor("inspect", "--shapes", "--json", FIXTURES / "cnn_residual.onnx").stdout)["shapes"]
    jsonschema.validate({"shapes": shapes}, {"type": "object", "properties": {"shapes": SCHEMA["properties"]["shapes"]},
                                             "$defs": SCHEMA["$defs"]})
    by_output = {o["name"]: o["shape"] for _, o in outputs_of({"shapes": shapes})}
    assert by_output["h3"] == ["batch", "16", "height", "width"]
    assert by_output["c4_conv"] == ["batch", "32", "ceil(height/2)", "ceil(width/2)"]
    assert by_output["logits"] == ["batch", "10"]
    assert shapes["unboundSymbols"] == ["batch", "height", "width"]
    assert shapes["macsExpression"] == "4752*batch*height*width+4608*batch*ceil(height/2)*ceil(width/2)+320*batch"
    assert shapes["flopsExpression"] == "9504*batch*height*width+9216*batch*ceil(height/2)*ceil(width/2)+640*batch"
    assert shapes["peakActivationBytesExpression"] == "max(192*batch*height*width, 256*batch*ceil(height/2)*ceil(width/2))"
    assert "macs" not in shapes and not shapes["incomplete"]
    text = compressor("inspect", "--shapes", FIXTURES / "cnn_residual.onnx").stdout
    assert "  c4 (Conv)  c4_conv float[batch, 32, ceil(height/2), ceil(width/2)]  4608*batch*ceil(height/2)*ceil(width/2) MACs\n" in text
    # Bound, the same model has numbers, and 8×8 digits halve to 4×4.
    bound = json.loads(compressor("inspect", "--shapes", "--json", "--input-shape", "image=2x1x8x8",
                                  FIXTURES / "cnn_residual.onnx").stdout)["shapes"]
    assert {o["name"]: o["shape"] for _, o in outputs_of({"shapes": bound})}["c4_conv"] == ["2", "32", "4", "4"]
    assert bound["macs"] == 2 * (4752 * 64 + 4608 * 16 + 320)
    assert "macsExpression" not in bound


EXPECTED_REAL = {
    # YOLOv8: five stride-2 stages; the three heads' anchors concatenate to 21 cells per 32×32 block
    # (400 + 1600 + 6400 at 640×640 = 21·20·20: the sizes agree whenever the model can run).
    "yolov8n-nudenet": {
        "output0": ["batch", "22", "21*ceil(height/32)*ceil(width/32)"],
        "/model.0/conv/Conv_output_0": ["batch", "16", "ceil(height/2)", "ceil(width/2)"],
        "macs": "432*batch*ceil(height/2)*ceil(width/2)+11776*batch*ceil(height/4)*ceil(width/4)"
                "+67584*batch*ceil(height/8)*ceil(width/8)+270336*batch*ceil(height/16)*ceil(width/16)"
                "+7099328*batch*ceil(height/32)*ceil(width/32)",
    },
    # PaddleOCR's detector: the /32 feature map upsampled back by 32.
    "pp-ocrv4-det": {
        "sigmoid_0.tmp_0": ["p2o.DynamicDimension.0", "1", "32*ceil(p2o.DynamicDimension.1/32)", "32*ceil(p2o.DynamicDimension.2/32)"],
    },
    # GPT-2 with a KV cache: keys grow by the new tokens.
    "gpt2-kv": {
        "present.0.key": ["batch", "4", "past_sequence+sequence", "16"],
        "macs": "256*batch*past_sequence*sequence+256*batch*sequence*sequence+418304*batch*sequence",
    },
    # DeepLabV3: the logits resized to the input's own height and width (Shape → Slice → Concat → Resize).
    "deeplabv3-mobilenet": {"out": ["batch", "21", "height", "width"]},
    # SSDlite: boxes over the score threshold, then at most 300 of those NMS keeps.
    "ssdlite320": {"scores": ["min(nms_1, 300)"]},
}


@pytest.mark.parametrize("name", sorted(EXPECTED_REAL))
def test_real_model_symbolic_shapes(name, compressor):
    entry = next((m for m in real_models() if m["name"] == name), None)
    if entry is None:
        pytest.skip(f"{name} is not in the real-model cache")
    shapes = json.loads(compressor("inspect", "--shapes", "--json", entry["path"]).stdout)["shapes"]
    by_output = {o["name"]: o.get("shape") for _, o in outputs_of({"shapes": shapes})}
    for key, expected in EXPECTED_REAL[name].items():
        assert (shapes["macsExpression"] if key == "macs" else by_output[key]) == expected, key


@pytest.fixture(scope="session")
def node_cases(tmp_path_factory):
    """The ONNX backend node cases (every operator, attribute and opset variant the onnx wheel tests)."""
    built = ROOT / ".build" / "conformance" / "node"
    if built.is_dir() and any((p / "model.onnx").exists() for p in built.iterdir()):
        return built
    # As `make conformance` writes them (OUT/node and OUT/light).
    out = tmp_path_factory.mktemp("conformance")
    subprocess.run([sys.executable, str(ROOT / "Tests" / "conformance" / "generate.py"), str(out)], check=True, capture_output=True)
    return out / "node"


def test_onnx_node_cases_infer_the_expected_shapes(node_cases, compressor):
    """Every case is inferred without error; every output dimension inferred as a number is the
    reference output's, with its element type. (Dimensions that follow from input values the case
    feeds at run time — Reshape targets, TopK's k — are symbols or "?", not checked.)"""
    problems, checked = [], 0
    for case in sorted(p for p in node_cases.iterdir() if (p / "model.onnx").exists()):
        r = compressor("inspect", "--shapes", "--json", case / "model.onnx", check=False)
        if r.returncode != 0:
            problems.append((case.name, r.stderr.strip()))
            continue
        inferred = {o["name"]: o for _, o in outputs_of(json.loads(r.stdout))}
        model = onnx.load(str(case / "model.onnx"), load_external_data=False)
        for k, output in enumerate(model.graph.output):
            ref = case / "test_data_set_0" / f"output_{k}.pb"
            got = inferred.get(output.name)
            # Sequence and optional outputs are stored as SequenceProto/OptionalProto: not tensors.
            if not ref.exists() or got is None or not output.type.HasField("tensor_type"):
                continue
            tensor = onnx.TensorProto()
            tensor.ParseFromString(ref.read_bytes())
            shape, expected = got.get("shape"), [str(d) for d in tensor.dims]
            if shape is None or len(shape) != len(expected) or any(a != b for a, b in zip(shape, expected) if a.isdigit()):
                problems.append((case.name, output.name, shape, expected))
            # ONNX's own type names (FLOAT → float, FLOAT8E4M3FN → float8e4m3fn), as compressor prints them.
            dtype = onnx.TensorProto.DataType.Name(tensor.data_type).lower()
            if tensor.data_type != onnx.TensorProto.STRING and got["type"] != dtype:
                problems.append((case.name, output.name, got["type"], dtype))
            checked += 1
    assert checked > 1500
    assert problems == [], f"{len(problems)} problems, first {problems[:10]}"


def test_recorded_expressions_load_in_onnx_runtime(compressor, tmp_path):
    """optimize records inferred shapes as value_info; expressions become dim_param strings,
    which ONNX Runtime accepts as it accepts any symbol."""
    out = tmp_path / "opt.onnx"
    compressor("optimize", FIXTURES / "cnn_residual.onnx", "-o", out)
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.value_info}
    assert ["batch", 32, "ceil(height/2)", "ceil(width/2)"] in dims.values()
    x = np.random.default_rng(3).standard_normal((2, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(ort_outputs(out, {"image": x})[0], ort_outputs(FIXTURES / "cnn_residual.onnx", {"image": x})[0],
                               rtol=1e-4, atol=1e-5)
