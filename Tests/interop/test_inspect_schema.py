"""`inspect --json` output of every fixture and backend-suite model matches docs/inspect.schema.json."""
import json
import pathlib

import jsonschema
import onnx
import pytest

from conftest import FIXTURES, ROOT

SCHEMA = json.loads((ROOT / "docs" / "inspect.schema.json").read_text())
MODELS = sorted(FIXTURES.glob("*.onnx")) + sorted(
    (pathlib.Path(onnx.__file__).parent / "backend" / "test" / "data" / "pytorch-converted").rglob("model.onnx"))[:20]


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.parent.name + "/" + p.name)
def test_inspect_json_matches_schema(path, compressor):
    summary = json.loads(compressor("inspect", "--json", path).stdout)
    jsonschema.validate(summary, SCHEMA)
    model = onnx.load(str(path), load_external_data=False)
    assert summary["irVersion"] == model.ir_version
    assert [i["name"] for i in summary["inputs"]] == [i.name for i in model.graph.input]
    assert [o["name"] for o in summary["outputs"]] == [o.name for o in model.graph.output]
    assert summary["nodes"] >= len(model.graph.node)


def test_inspect_shapes_carry_symbols_and_count_macs(compressor):
    summary = json.loads(compressor("inspect", "--json", "--shapes", FIXTURES / "transformer_block.onnx").stdout)
    jsonschema.validate(summary, SCHEMA)
    shapes = summary["shapes"]
    assert shapes["unboundSymbols"] == ["batch", "sequence"]
    by_output = {o["name"]: o for n in shapes["nodes"] for o in n["outputs"]}
    assert by_output["tok_emb"]["shape"] == ["batch", "sequence", "32"]
    assert by_output["scores"]["shape"] == ["batch", "2", "sequence", "sequence"]
    assert by_output["logits"]["shape"] == ["batch", "10"]
    assert by_output["ids_shape"] == {"name": "ids_shape", "type": "int64", "shape": ["2"]}


def test_inspect_input_shape_binds_symbols(compressor):
    summary = json.loads(compressor("inspect", "--json", "--input-shape", "image=1x1x8x8", FIXTURES / "cnn_residual.onnx").stdout)
    shapes = summary["shapes"]
    assert shapes["unboundSymbols"] == []
    # 1x1x8x8: c1 16·1·9·64 + c2, c3 16·16·9·64 + c4 32·16·9·16 + fc 32·10
    assert shapes["macs"] == 9216 + 2 * 147456 + 73728 + 320
    assert shapes["flops"] == 2 * shapes["macs"]
    assert shapes["peakActivationBytes"] > 0
    convs = [n for n in shapes["nodes"] if n["opType"] == "Conv"]
    assert [c["outputs"][0]["shape"] for c in convs] == [["1", "16", "8", "8"]] * 3 + [["1", "32", "4", "4"]]


def test_inspect_input_shape_errors(compressor):
    r = compressor("inspect", "--input-shape", "image=1xAx8", FIXTURES / "cnn_residual.onnx", check=False)
    assert r.returncode == 64
    assert r.stderr.startswith("compressor: error: --input-shape 'image=1xAx8' has an invalid dimension\n")
