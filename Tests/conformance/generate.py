#!/usr/bin/env python3
"""Writes the ONNX backend node test cases from the onnx wheel's own case collector, in the layout
of the wheel's other test data: CASE/model.onnx, CASE/test_data_set_N/{input,output}_K.pb, plus
CASE/tolerance.json with the case's rtol and atol. Cases whose values are not plain tensors
(sequences, optionals, maps) are listed in non_tensor.txt instead."""
import json
import pathlib
import sys

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.test.case import node


def main(out):
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cases = node.collect_testcases(None)
    skipped = []
    for case in cases:
        d = out / case.name
        if d.exists():
            continue
        try:
            sets = []
            for inputs, outputs in case.data_sets:
                for v in list(inputs) + list(outputs):
                    if isinstance(v, (list, dict, type(None))):
                        raise TypeError("not a tensor")
                sets.append(([numpy_helper.from_array(np.asarray(v)) for v in inputs],
                             [numpy_helper.from_array(np.asarray(v)) for v in outputs]))
                for v in list(inputs) + list(outputs):
                    a = np.asarray(v) if not isinstance(v, (list, dict, type(None))) else None
                    if a is None or a.dtype == object and a.size and not isinstance(a.flat[0], (str, bytes)):
                        raise TypeError("not a tensor")
        except Exception:
            skipped.append(case.name)
            continue
        d.mkdir()
        onnx.save(case.model, str(d / "model.onnx"))
        for i, (ins, outs) in enumerate(sets):
            s = d / f"test_data_set_{i}"
            s.mkdir()
            for k, t in enumerate(ins):
                (s / f"input_{k}.pb").write_bytes(t.SerializeToString())
            for k, t in enumerate(outs):
                (s / f"output_{k}.pb").write_bytes(t.SerializeToString())
        (d / "tolerance.json").write_text(json.dumps({"rtol": case.rtol, "atol": case.atol}) + "\n")
    (out / "non_tensor.txt").write_text("".join(n + "\n" for n in sorted(skipped)))
    print(f"{len(cases)} node cases; {len(skipped)} with non-tensor values", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
