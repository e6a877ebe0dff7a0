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
