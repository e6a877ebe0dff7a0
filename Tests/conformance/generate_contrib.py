#!/usr/bin/env python3
"""Writes the com.microsoft operator cases of contrib_cases.py as a conformance suite: CASE/model.onnx,
CASE/test_data_set_0/{input,output}_K.pb with ONNX Runtime's outputs as the expected ones, and
CASE/tolerance.json (rtol = the case's tolerance, atol = that tolerance times the largest
magnitude of the expected outputs: the measure Tests/interop/test_contrib_ops.py applies)."""
import json
import pathlib
import sys

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import contrib_cases  # noqa: E402


def main(out):
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cases = contrib_cases.all_cases()
    for c in cases:
        d = out / c["name"]
        if d.exists():
            continue
        m = contrib_cases.build_model(c)
        expected = contrib_cases.ort_run(m, dict(c["inputs"]))
        d.mkdir()
        onnx.save(m, str(d / "model.onnx"))
        s = d / "test_data_set_0"
        s.mkdir()
        for k, (name, a) in enumerate(c["inputs"]):
            (s / f"input_{k}.pb").write_bytes(numpy_helper.from_array(a, name).SerializeToString())
        for k, ((name, _), a) in enumerate(zip(c["outputs"], expected)):
            (s / f"output_{k}.pb").write_bytes(numpy_helper.from_array(a, name).SerializeToString())
        scale = max([float(np.max(np.abs(a))) for a in expected if a.size and a.dtype.kind == "f"] + [1e-6])
        (d / "tolerance.json").write_text(json.dumps({"rtol": c["tolerance"], "atol": c["tolerance"] * scale}) + "\n")
    print(f"{len(cases)} contrib cases", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
