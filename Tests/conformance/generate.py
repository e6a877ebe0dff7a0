#!/usr/bin/env python3
"""Writes the conformance suites that the onnx wheel holds as code rather than files, in the
layout of its other test data (CASE/model.onnx, CASE/test_data_set_N/{input,output}_K.pb, and
CASE/tolerance.json with the case's rtol and atol):

- OUT/node: every case the wheel's node-case collector yields. Values are written as the wheel's
  own `backend-test-tools generate-data` writes them: a sequence- or optional-typed input or
  output as a SequenceProto or OptionalProto, a value the collector hands over as a TensorProto
  (the float8, 4-bit and 2-bit Cast and Quantize cases) as that TensorProto, others from numpy.
- OUT/light: the wheel's light_*.onnx models with the inputs its backend runner generates for
  them (arange(n)/n in the input's shape, unknown dimensions 1) and their stored outputs."""
import json
import pathlib
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnx.backend.test.case import model as model_cases
from onnx.backend.test.case import node


def serialize(value, type_proto, name):
    """The test-data message for `value` of a graph input or output of `type_proto`."""
    if type_proto.HasField("sequence_type"):
        elem = type_proto.sequence_type.elem_type
        dtype = onnx.SequenceProto.TENSOR if elem.HasField("tensor_type") else None
        return numpy_helper.from_list(list(value), name, dtype)
    if type_proto.HasField("optional_type"):
        if value is None:
            return numpy_helper.from_optional(None, name, onnx.OptionalProto.UNDEFINED)
        return numpy_helper.from_optional(value, name)
    if isinstance(value, TensorProto):
        return value
    return numpy_helper.from_array(np.asarray(value), name)


def write_case(d, model, data_sets, rtol, atol):
    d.mkdir(parents=True)
    onnx.save(model, str(d / "model.onnx"))
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    for n, (ins, outs) in enumerate(data_sets):
        s = d / f"test_data_set_{n}"
        s.mkdir()
        for k, v in enumerate(ins):
            (s / f"input_{k}.pb").write_bytes(serialize(v, inputs[k].type, inputs[k].name).SerializeToString())
        for k, v in enumerate(outs):
            o = model.graph.output[k]
            (s / f"output_{k}.pb").write_bytes(serialize(v, o.type, o.name).SerializeToString())
    (d / "tolerance.json").write_text(json.dumps({"rtol": rtol, "atol": atol}) + "\n")


def node_suite(out):
    out.mkdir(parents=True, exist_ok=True)
    cases = node.collect_testcases(None)
    for case in cases:
        d = out / case.name
        if not d.exists():
            write_case(d, case.model, case.data_sets, case.rtol, case.atol)
    print(f"{len(cases)} node cases", file=sys.stderr)


def dummy_input(value_info):
    """What onnx's backend runner feeds a light model: arange(n)/n, unknown dimensions 1."""
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in value_info.type.tensor_type.shape.dim)
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


def light_suite(out):
    data = pathlib.Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for case in model_cases.collect_testcases():
        if case.kind != "real" or not (case.url or "").startswith("onnx/backend/test/data/light/"):
            continue
        path = data / f"light_{case.model_name}.onnx"
        d = out / case.name
        if d.exists() or not path.exists():
            count += path.exists()
            continue
        model = onnx.load(str(path))
        inits = {i.name for i in model.graph.initializer}
        inputs = [dummy_input(i) for i in model.graph.input if i.name not in inits]
        outputs = []
        for k in range(len(model.graph.output)):
            t = TensorProto()
            t.ParseFromString((data / f"light_{case.model_name}_output_{k}.pb").read_bytes())
            outputs.append(t)
        write_case(d, model, [(inputs, outputs)], case.rtol, case.atol)
        count += 1
    print(f"{count} light models", file=sys.stderr)


def main(out):
    out = pathlib.Path(out)
    node_suite(out / "node")
    light_suite(out / "light")


if __name__ == "__main__":
    main(sys.argv[1])
