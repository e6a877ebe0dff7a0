"""Our hand-written onnx.proto must agree with the onnx wheel on every field it declares."""
import pathlib
import re

import onnx.onnx_data_pb2 as data
import onnx.onnx_ml_pb2 as ml

PROTO = pathlib.Path(__file__).resolve().parents[2] / "Sources/CONNX/proto/onnx.proto"


def parse_schema(text):
    """(qualified message name, field name) -> (number, label, type) from our proto file."""
    fields, enums, stack = {}, {}, []
    for raw in text.splitlines():
        line = raw.split("//")[0].strip()
        m = re.match(r"(message|enum|oneof)\s+(\w+)\s*\{", line)
        if m:
            stack.append((m.group(1), m.group(2)))
            continue
        if line.startswith("}"):
            stack.pop()
            continue
        names = [n for kind, n in stack if kind != "oneof"]
        if not names:
            continue
        m = re.match(r"(optional|repeated)?\s*([\w.]+)\s+(\w+)\s*=\s*(\d+)", line)
        if m and stack[-1][0] in ("message", "oneof"):
            fields[(".".join(names), m.group(3))] = (int(m.group(4)), m.group(1) or "optional", m.group(2))
            continue
        m = re.match(r"(\w+)\s*=\s*(-?\d+)\s*;", line)
        if m and stack[-1][0] == "enum":
            enums[(".".join(names), m.group(1))] = int(m.group(2))
    return fields, enums


def test_every_field_matches_the_onnx_wheel():
    fields, enums = parse_schema(PROTO.read_text())
    assert len(fields) >= 115
    desc = ml.DESCRIPTOR
    for (msg, name), (number, label, _type) in fields.items():
        # SequenceProto, MapProto and OptionalProto (test data) live in onnx-data.proto.
        top = msg.split(".")[0]
        d = (desc if top in desc.message_types_by_name else data.DESCRIPTOR).message_types_by_name[top]
        for part in msg.split(".")[1:]:
            d = d.nested_types_by_name[part]
        f = d.fields_by_name[name]
        assert f.number == number, (msg, name)
        want_repeated = label == "repeated"
        is_repeated = f.label == f.LABEL_REPEATED if hasattr(f, "label") else f.is_repeated
        assert is_repeated == want_repeated, (msg, name)
    for (enum_path, name), value in enums.items():
        parts = enum_path.split(".")
        if len(parts) == 1:
            e = desc.enum_types_by_name[parts[0]]
        else:
            d = (desc if parts[0] in desc.message_types_by_name else data.DESCRIPTOR).message_types_by_name[parts[0]]
            for part in parts[1:-1]:
                d = d.nested_types_by_name[part]
            e = d.enum_types_by_name[parts[-1]]
        assert e.values_by_name[name].number == value, (enum_path, name)


def test_every_ir10_message_is_declared():
    fields, _ = parse_schema(PROTO.read_text())
    declared = {m for m, _ in fields}
    for name in ["ModelProto", "GraphProto", "NodeProto", "AttributeProto", "TensorProto",
                 "TensorProto.Segment", "SparseTensorProto", "ValueInfoProto", "TypeProto.Tensor",
                 "TypeProto.Sequence", "TypeProto.Map", "TypeProto.Optional", "TypeProto.SparseTensor",
                 "OperatorSetIdProto", "FunctionProto", "TrainingInfoProto", "StringStringEntryProto",
                 "TensorShapeProto", "TensorShapeProto.Dimension", "TensorAnnotation"]:
        assert name in declared, name
    # every field of these messages that existed by IR 10 is present
    for name in ["ModelProto", "GraphProto", "NodeProto", "AttributeProto", "TensorProto", "FunctionProto",
                 "ValueInfoProto", "TypeProto", "SparseTensorProto", "TrainingInfoProto"]:
        d = ml.DESCRIPTOR.message_types_by_name[name]
        ir11 = {"device_configurations", "configuration"}
        missing = [f.name for f in d.fields if (name, f.name) not in fields and f.name not in ir11]
        assert not missing, (name, missing)
