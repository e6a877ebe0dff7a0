#!/usr/bin/env python3
"""Seed corpora for the libFuzzer targets (make fuzz), generated from the fixtures and the
graph-fuzz regressions: every Fixtures/*.onnx and Tests/fuzz/regressions/*.onnx for fuzz-onnx
and fuzz-shapes; small .npy, .npz and .pb samples cut from Fixtures/data for fuzz-data (the first
byte of a fuzz-data input picks the format: 0 .npy, 1 .npz, 2 .pb); the example recipes and two
recipes with anchors, repeats and JSON for fuzz-recipe.

  python Tests/fuzz/seed_corpora.py DIR    # writes DIR/fuzz-onnx, DIR/fuzz-shapes, DIR/fuzz-data, DIR/fuzz-recipe
"""
import io
import json
import pathlib
import sys

import numpy as np
from onnx import numpy_helper

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent


def main(out):
    out = pathlib.Path(out)
    models = sorted((ROOT / "Fixtures").glob("*.onnx")) + sorted((ROOT / "Tests/fuzz/regressions").glob("*.onnx"))
    for target in ("fuzz-onnx", "fuzz-shapes"):
        d = out / target
        d.mkdir(parents=True, exist_ok=True)
        for m in models:
            if m.stat().st_size <= 256 << 10:
                (d / f"seed-{m.stem}.onnx").write_bytes(m.read_bytes())
    d = out / "fuzz-data"
    d.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for f in sorted((ROOT / "Fixtures/data").iterdir()):
        if f.suffix == ".npy":
            arrays[f.stem] = np.load(f)[:2]
        elif f.suffix == ".npz":
            with np.load(f) as z:
                for k in z.files:
                    arrays[f"{f.stem}.{k}"] = z[k][:2]
    arrays["scalar"] = np.array(3.5, np.float32)
    arrays["empty"] = np.zeros((0, 4), np.float32)
    arrays["f16"] = np.arange(6, dtype=np.float16).reshape(2, 3)
    arrays["bool"] = np.array([True, False])
    arrays["fortran"] = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3))
    for name, a in arrays.items():
        b = io.BytesIO()
        np.save(b, a)
        (d / f"seed-{name}.npy").write_bytes(b"\x00" + b.getvalue())
        b = io.BytesIO()
        np.savez(b, x=a, y=a.reshape(-1)[:1])
        (d / f"seed-{name}.npz").write_bytes(b"\x01" + b.getvalue())
        b = io.BytesIO()
        np.savez_compressed(b, x=a)
        (d / f"seed-{name}.z.npz").write_bytes(b"\x01" + b.getvalue())
        (d / f"seed-{name}.pb").write_bytes(b"\x02" + numpy_helper.from_array(np.ascontiguousarray(a), name).SerializeToString())
    d = out / "fuzz-recipe"
    d.mkdir(parents=True, exist_ok=True)
    recipes = sorted((ROOT / "examples").glob("*.yaml"))
    for r in recipes:
        text = r.read_text()
        (d / f"seed-{r.stem}.yaml").write_text(text)
    # Anchors, aliases, repeats, flow style and JSON, which the examples do not use.
    (d / "seed-anchors.yaml").write_text(
        "model: m.onnx\ndata: d.npz\n"
        "steps:\n  - repeat: 2\n    steps: [optimize, {prune: &p {sparsity: 0.5}}, {prune: *p}]\n"
        "  - quantize: {mode: static, keep: true}\n")
    (d / "seed-json.json").write_text(json.dumps(
        {"model": "m.onnx", "data": "d.npz", "steps": ["optimize", {"quantize": {"mode": "dynamic"}}]}))
    print(f"seeded {out}: {len(models)} models, {len(arrays)} arrays, {len(recipes)} recipes")


if __name__ == "__main__":
    main(sys.argv[1])
