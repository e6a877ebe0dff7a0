#!/usr/bin/env python3
"""Per-channel int8 (the model converted to opset 13 first, quantize's default) against per-tensor
int8 (--keep-opset) on the real-model suite's models below opset 13: the weights' SQNR from the
quantize reports and the suite's quality figure against the float model (Tests/realmodels/run.py:
IoU for segmenters, top-1 agreement for classifiers, cosine otherwise) on the held-out samples.

  python bench/quantize_opset.py --compressor .build/release/compressor [--cache /tmp/rmc]
         [--only NAME,…] [--modes weight-only,weight-only-asymmetric,static]

weight-only-asymmetric is weight-only with --no-symmetric-weights (uint8 with a zero point per
channel, or per tensor).
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Tests" / "realmodels"))
import run  # noqa: E402  (the suite runner: its Model, sessions and quality measure)


def weight_sqnr(report):
    values = [c["values"]["sqnrDb"] for p in report["passes"] if p["pass"] in ("quantize-weights", "quantize-static")
              for c in p["changes"] if c["action"] == "quantized" and "sqnrDb" in c.get("values", {})]
    return np.array(values)


def measure(binary, model, mode, keep, tmp):
    out = pathlib.Path(tmp) / f"{model.name}.{mode}.{'keep' if keep else 'upgrade'}.onnx"
    report = out.with_suffix(".json")
    argv = [binary, "quantize", str(model.path), "-o", str(out), "--report", str(report), "--force", "--eval-samples", "0",
            "--mode", mode.replace("-asymmetric", "")]
    if mode.endswith("-asymmetric"):
        argv.append("--no-symmetric-weights")
    if mode == "static":
        argv += ["--data", str(model.folder / "calib"), "--calibration", "percentile"]
    if keep:
        argv.append("--keep-opset")
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": r.stderr.strip()}
    session = run.Model.session(out)
    outputs = [session.run(None, s) for s in model.samples]
    sqnr = weight_sqnr(json.loads(report.read_text()))
    return {"quality": run.quality(model, outputs), "weights": len(sqnr),
            "sqnr_mean": float(sqnr.mean()) if sqnr.size else None, "sqnr_min": float(sqnr.min()) if sqnr.size else None,
            "summary": r.stderr.strip().splitlines()[0]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--compressor", required=True)
    ap.add_argument("--cache", type=pathlib.Path, default=pathlib.Path("/tmp/rmc"))
    ap.add_argument("--only", default="")
    ap.add_argument("--modes", default="weight-only")
    args = ap.parse_args()
    manifest = json.loads((args.cache / "manifest.json").read_text())
    only = set(filter(None, args.only.split(",")))
    entries = [e for e in manifest["models"] if e.get("opset", 99) < 13 and (not only or e["name"] in only)]
    print("| model | opset | mode | per-channel (opset 13): quality | weight SQNR mean / min dB | "
          "per-tensor (--keep-opset): quality | weight SQNR mean / min dB |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for e in entries:
            model = run.Model(e)
            for mode in args.modes.split(","):
                up = measure(args.compressor, model, mode, False, tmp)
                keep = measure(args.compressor, model, mode, True, tmp)
                def cells(m):
                    if "error" in m:
                        return f"error: {m['error'][:80]}", ""
                    if not m["weights"]:
                        return m["quality"], "none quantized"
                    return m["quality"], f"{m['sqnr_mean']:.1f} / {m['sqnr_min']:.1f} ({m['weights']})"
                print(f"| {e['name']} | {e['opset']} | {mode} | {' | '.join(cells(up))} | {' | '.join(cells(keep))} |", flush=True)


if __name__ == "__main__":
    main()
