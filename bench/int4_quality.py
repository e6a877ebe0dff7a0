#!/usr/bin/env python3
"""4-bit weights four ways — round-to-nearest, --awq, --gptq, --awq --gptq — on the transformer
fixture and the real-model suite's GPT-2: the mean layer output error from each quantize report
(`awq-total`/`gptq` rows) and ONNX Runtime's cosine against the float model on held-out inputs,
with each run's time as a multiple of the round-to-nearest run's.

  python bench/int4_quality.py --compressor .build/release/compressor [--cache ~/.cache/compressor-realmodels]
         [--format matmulnbits|qdq]

Fixture: calibration on Fixtures/data/calib_tokens.npz (128 sequences), held out the first 256
of digits_tokens.npz. GPT-2: calibration on 64 samples made as the suite makes its 8 (samples.py,
indices 0–63, so the first 8 are its calib/), held out its 8 check/ samples; cosine of the logits
per sample, and agreement as the fraction of next-token argmaxes (8 per sample) that match.
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Tests" / "realmodels"))
import run  # noqa: E402  (the suite runner: its Model and sessions)
import samples  # noqa: E402
import suite  # noqa: E402

METHODS = {"RTN": [], "AWQ": ["--awq"], "GPTQ": ["--gptq"], "AWQ+GPTQ": ["--awq", "--gptq"]}


def cosine_rows(a, b):
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def mean_errors(report):
    """Mean layer output error of the method the run kept, and of plain round-to-nearest."""
    rows = {c["action"]: c["values"] for p in report["passes"] if p["pass"] == "quantize-weights-4bit"
            for c in p["changes"] if c["target"] == "model"}
    if "awq-total" in rows:
        return rows["awq-total"]["meanOutputErrorKept"], rows["awq-total"]["meanOutputErrorRTN"]
    if "gptq" in rows:
        return rows["gptq"]["meanOutputErrorGPTQ"], rows["gptq"]["meanOutputErrorRTN"]
    return None, None


def quantize(binary, src, data, fmt, flags, out):
    report = out.with_suffix(".json")
    argv = [binary, "quantize", str(src), "--bits", "4", "--format", fmt, "--data", str(data), "--eval-samples", "0",
            *flags, "-o", str(out), "--report", str(report), "--force"]
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, text=True)
    return time.perf_counter() - started, json.loads(report.read_text())


def fixture(binary, fmt, tmp):
    src = ROOT / "Fixtures" / "transformer_block.onnx"
    calib, held_out = ROOT / "Fixtures" / "data" / "calib_tokens.npz", ROOT / "Fixtures" / "data" / "digits_tokens.npz"
    feeds = {k: v[:256] for k, v in np.load(held_out).items()}
    reference = run.Model.session(src).run(None, feeds)[0]
    rows = {}
    for name, flags in METHODS.items():
        out = tmp / f"fixture.{name}.onnx"
        seconds, report = quantize(binary, src, calib, fmt, flags, out)
        got = run.Model.session(out).run(None, feeds)[0]
        agree = float(np.mean(got.argmax(-1) == reference.argmax(-1)))
        rows[name] = (seconds, mean_errors(report), cosine_rows(got, reference), agree)
    return rows


def gpt2(binary, fmt, cache, tmp):
    manifest = json.loads((cache / "manifest.json").read_text())
    model = run.Model(next(e for e in manifest["models"] if e["name"] == "gpt2-kv"))
    spec = suite.by_name("gpt2-kv")
    proto_types = {k: v.dtype for k, v in model.samples[0].items()}
    calib = [{name: samples.make(kind, shape, proto_types[name], i, None, name) for name, (shape, kind) in spec["inputs"].items()}
             for i in range(64)]
    data = tmp / "gpt2-calib64.npz"
    np.savez(data, **{n: np.concatenate([s[n] for s in calib]) for n in calib[0]})
    rows = {}
    for name, flags in METHODS.items():
        out = tmp / f"gpt2.{name}.onnx"
        seconds, report = quantize(binary, model.path, data, fmt, flags, out)
        session = run.Model.session(out)
        got = [session.run(None, s)[0] for s in model.samples]
        ref = [r[0] for r in model.reference]
        cos = float(np.mean([cosine_rows(g.reshape(1, -1), r.reshape(1, -1)) for g, r in zip(got, ref)]))
        agree = float(np.mean([np.mean(g.argmax(-1) == r.argmax(-1)) for g, r in zip(got, ref)]))
        rows[name] = (seconds, mean_errors(report), cos, agree)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--compressor", required=True)
    ap.add_argument("--cache", type=pathlib.Path, default=pathlib.Path.home() / ".cache" / "compressor-realmodels")
    ap.add_argument("--format", default="matmulnbits", choices=["matmulnbits", "qdq"])
    args = ap.parse_args()
    print("| model | method | mean layer output error (calibration) | ORT cosine vs float | agreement | time × RTN's |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for label, rows in (("transformer fixture", fixture(args.compressor, args.format, tmp)),
                            ("suite GPT-2", gpt2(args.compressor, args.format, args.cache, tmp))):
            base = rows["RTN"][0]
            for name, (seconds, (kept, rtn), cos, agree) in rows.items():
                # A plain RTN run measures nothing; the AWQ run's report measures RTN too.
                error = rows["AWQ"][1][1] if name == "RTN" else kept
                shown = "" if error is None else f"{error:.4g}"
                print(f"| {label} | {name} | {shown} | {cos:.4f} | {agree:.3f} | {seconds / base:.1f} |", flush=True)


if __name__ == "__main__":
    main()
