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
    ops = {}
    for c in CASES:
        ops[c["op"]] = ops.get(c["op"], 0) + 1
    thin = {op: n for op, n in ops.items() if n < 3}
    assert not thin, thin
