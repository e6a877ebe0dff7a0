"""The real-model latency benchmark (`bench/run.py --only realmodels`): `compressor bench` against
ONNX Runtime's InferenceSession on every model of the real-model suite (Tests/realmodels, cache
built by fetch.py), at its natural input size, batch 1 and 8 (8 where every input's leading
dimension is free), 1 and 2 threads. ORT runs with ORT_ENABLE_ALL (the ratio's denominator) and
with ORT_DISABLE_ALL (shown: what ORT's graph fusions are worth). The three alternate within a
round and each keeps its best p50 over the rounds (the machine is shared and noisy). Inputs are
the suite's own samples (check/000 at batch 1, calib/000–007 at batch 8), so data-dependent
shapes (NMS, top-k) are those of real data.

Then the calibration benchmark: static quantization (QDQ, per-channel, uint8 activations, minmax)
of the suite's largest model on 64 samples, `compressor quantize --mode static` against ORT's
quantize_static, same samples, same run.
"""
import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "Tests" / "realmodels"))
import fetch  # noqa: E402

ORT_REAL = """
import json, sys, time, numpy as np, onnxruntime as ort
ort.set_default_logger_severity(3)
path, feeds_path, threads, runs, warmup, level = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
with np.load(feeds_path) as z:
    feeds = {k: z[k] for k in z.files}
o = ort.SessionOptions()
o.intra_op_num_threads = threads
o.inter_op_num_threads = 1
o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL if level == "all" else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
for _ in range(warmup):
    s.run(None, feeds)
times = []
for _ in range(runs):
    t = time.perf_counter(); s.run(None, feeds); times.append((time.perf_counter() - t) * 1000)
print(json.dumps({"p50Ms": float(np.median(times))}))
"""

# ONNX Runtime's timings come from one long-lived process (a Python start and an onnxruntime import
# cost more than most of these models' runs): it answers one JSON request per line, keeping the
# sessions of the current model. Its peak RSS is measured apart, by ORT_REAL in a fresh process.
ORT_SERVER = """
import json, sys, time, numpy as np, onnxruntime as ort
ort.set_default_logger_severity(3)
sessions, feeds_cache = {}, {}
for line in sys.stdin:
    q = json.loads(line)
    if q.get("reset"):
        sessions.clear(); feeds_cache.clear()
        print(json.dumps({}), flush=True)
        continue
    try:
        if q["feeds"] not in feeds_cache:
            with np.load(q["feeds"]) as z:
                feeds_cache[q["feeds"]] = {k: z[k] for k in z.files}
        feeds = feeds_cache[q["feeds"]]
        key = (q["model"], q["threads"], q["level"])
        if key not in sessions:
            o = ort.SessionOptions()
            o.intra_op_num_threads = q["threads"]
            o.inter_op_num_threads = 1
            o.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if q["level"] == "all"
                                          else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
            sessions[key] = ort.InferenceSession(q["model"], o, providers=["CPUExecutionProvider"])
        s = sessions[key]
        for _ in range(q["warmup"]):
            s.run(None, feeds)
        times = []
        for _ in range(q["runs"]):
            t = time.perf_counter(); s.run(None, feeds); times.append((time.perf_counter() - t) * 1000)
        print(json.dumps({"p50Ms": float(np.median(times))}), flush=True)
    except Exception as e:
        print(json.dumps({"error": str(e).splitlines()[0][:200]}), flush=True)
"""


class OrtServer:
    def __init__(self):
        self.p = subprocess.Popen([sys.executable, "-c", ORT_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, **q):
        self.p.stdin.write(json.dumps(q) + "\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def run_measured(cmd, env=None):
    """(returncode, stdout, last stderr line, peak RSS bytes) of one command under GNU time (whose
    small process is the parent: a child forked from this Python process would report its peak)."""
    with tempfile.NamedTemporaryFile("r") as report:
        r = subprocess.run(["/usr/bin/time", "-o", report.name, "-f", "%M"] + cmd, capture_output=True, text=True, env=env)
        lines = report.read().strip().splitlines()
    peak = int(lines[-1]) * 1024 if lines and lines[-1].isdigit() else 0
    err = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
    return r.returncode, r.stdout, err, peak


def load_sample(path, names):
    if path.suffix == ".npy":
        return {names[0]: np.load(path)}
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def model_inputs(path):
    """Names of the inputs that are fed (not initializers) and whether each's leading dimension is free."""
    m = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    out = []
    for i in m.graph.input:
        if i.name in inits:
            continue
        dims = i.type.tensor_type.shape.dim
        free = len(dims) > 0 and not dims[0].HasField("dim_value")
        out.append((i.name, free))
    return out


def feeds_for(entry, batch, workdir):
    """An .npz of the model's inputs at `batch` (None when its batch dimension is not free)."""
    folder = pathlib.Path(entry["path"]).parent
    inputs = model_inputs(entry["path"])
    names = [n for n, _ in inputs]
    if batch == 1:
        feeds = load_sample(sorted((folder / "check").iterdir())[0], names)
    else:
        if not all(free for _, free in inputs):
            return None
        samples = [load_sample(p, names) for p in sorted((folder / "calib").iterdir())[:batch]]
        while len(samples) < batch:
            samples += samples[:batch - len(samples)]
        feeds = {n: np.concatenate([s[n] for s in samples], axis=0) for n in names}
    path = workdir / f"{entry['name']}.b{batch}.npz"
    np.savez(path, **feeds)
    return path


def bench_batch(args, entry, feeds, server, env):
    """One model at one batch, 1 and 2 threads: compressor and ORT (all, disabled) alternate in each
    round, and each keeps its best p50; rows for both thread counts."""
    model = entry["path"]
    cells = {t: {"ours": [], "all": [], "none": []} for t in (1, 2)}
    ours_rss = 0
    runs, warmup, rounds = 3, 1, args.realmodel_rounds
    r = 0
    while r < rounds:
        for threads in (1, 2):
            # ONNX Runtime's pool threads spin for a while after a run: let them park before the
            # next tool's timed runs, which would otherwise share the cores with them.
            time.sleep(0.05)
            code, out, err, rss = run_measured([args.compressor, "bench", model, "--input", str(feeds), "--runs", str(runs),
                                                "--warmup", str(warmup), "--threads", str(threads), "--json"], env)
            if code != 0:
                return [{"status": "unsupported" if code == 69 else f"exit {code}", "detail": err, "threads": 1}]
            cells[threads]["ours"].append(json.loads(out)["p50Ms"])
            ours_rss = max(ours_rss, rss)
            for level in ("all", "none"):
                time.sleep(0.05)
                a = server.ask(model=model, feeds=str(feeds), threads=threads, level=level, runs=runs, warmup=warmup)
                if "error" in a:
                    return [{"status": "ORT failed", "detail": a["error"], "threads": 1}]
                cells[threads][level].append(a["p50Ms"])
        if r == 0:
            # Size the later rounds from the first: about args.realmodel_seconds of timed runs per
            # tool and round, at least 3; models slower than 100 ms get one round fewer, models
            # faster than 1 ms two more (at most 30 runs a round, a 0.1 ms model's p50 came from
            # 3 ms of runs, and one busy moment of the shared machine moved it 2×).
            slowest = max(cells[1]["ours"][0], cells[1]["all"][0])
            runs = max(3, min(3000, int(args.realmodel_seconds * 1000 / max(slowest, 1e-3))))
            warmup = 2 if slowest > 1 else 20
            if slowest > 100:
                rounds = max(2, rounds - 1)
            elif slowest < 1:
                rounds += 2
        r += 1
    server.ask(reset=True)
    code, out, err, ort_rss = run_measured([sys.executable, "-c", ORT_REAL, model, str(feeds), "1", "3", "1", "all"])
    rows = []
    for threads, c in cells.items():
        ours, ort_all, ort_none = min(c["ours"]), min(c["all"]), min(c["none"])
        rows.append({"status": "ok", "threads": threads, "compressorMs": ours, "ortMs": ort_all, "ortNoOptMs": ort_none,
                     "ratio": ours / ort_all, "ratioNoOpt": ours / ort_none, "compressorPeakRSS": ours_rss,
                     "ortPeakRSS": ort_rss, "rssRatio": ours_rss / max(ort_rss, 1)})
    return rows


def latency_benchmark(args):
    cache = pathlib.Path(args.realmodels_cache or fetch.default_cache())
    manifest = json.loads((cache / "manifest.json").read_text())
    entries = manifest["models"]
    if args.realmodels_only:
        wanted = set(args.realmodels_only.split(","))
        entries = [e for e in entries if e["name"] in wanted]
    env = dict(os.environ)
    rows = []
    server = OrtServer()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = pathlib.Path(tmp)
            for entry in entries:
                for batch in (1, 8):
                    feeds = feeds_for(entry, batch, workdir)
                    if feeds is None:
                        continue
                    started = time.monotonic()
                    cells = bench_batch(args, entry, feeds, server, env)
                    feeds.unlink()
                    for cell in cells:
                        cell.update(model=entry["name"], batch=batch, seconds=time.monotonic() - started)
                        rows.append(cell)
                        print(format_row(cell), file=sys.stderr, flush=True)
                    if cells[0]["status"] != "ok":
                        break
    finally:
        server.close()
    return rows


def format_row(r):
    head = f"{r['model']:<22}{r['batch']:>6}{r['threads']:>8}"
    if r["status"] != "ok":
        return head + f"  {r['status']}: {r.get('detail', '')[:90]}"
    return (head + f"{r['compressorMs']:>12.2f}{r['ortMs']:>10.2f}{r['ortNoOptMs']:>10.2f}"
            f"{r['ratio']:>9.2f}x{r['ratioNoOpt']:>9.2f}x{r['rssRatio']:>8.2f}x")


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def print_latency(rows, coretype):
    print()
    print(f"real-model suite: compressor bench vs ONNX Runtime, best p50 of alternating rounds "
          f"(OPENBLAS_CORETYPE={coretype or 'unset'})")
    print(f"{'model':<22}{'batch':>6}{'threads':>8}{'ours ms':>12}{'ORT ms':>10}{'ORT-no':>10}{'ratio':>10}{'vs no-opt':>10}{'RSS':>9}")
    for r in rows:
        print(format_row(r))
    ok = [r for r in rows if r["status"] == "ok"]
    for threads in (1, 2):
        for batch in (1, 8, None):
            sel = [r for r in ok if r["threads"] == threads and (batch is None or r["batch"] == batch)]
            if not sel:
                continue
            worst = max(sel, key=lambda r: r["ratio"])
            label = f"batch {batch}" if batch else "all"
            print(f"{threads} thread{'s' if threads > 1 else ' '} {label:<8} geomean {geomean([r['ratio'] for r in sel]):.2f}x "
                  f"(vs ORT_DISABLE_ALL {geomean([r['ratioNoOpt'] for r in sel]):.2f}x), worst {worst['ratio']:.2f}x "
                  f"({worst['model']} b{worst['batch']}), over {len(sel)} cells; peak RSS ratio worst "
                  f"{max(r['rssRatio'] for r in sel):.2f}x")
    skipped = sorted({(r["model"], r["status"], r.get("detail", "")) for r in rows if r["status"] != "ok"})
    for name, status, detail in skipped:
        print(f"not timed: {name}: {status}: {detail}")
    print("targets: 1 thread geomean <= 1.0x, none above 1.5x; 2 threads geomean <= 1.2x, none above 2x; "
          "peak RSS <= ORT's")


ORT_CALIBRATE = """
import sys, time, numpy as np
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
src, dst, data = sys.argv[1:4]
with np.load(data) as z:
    samples = {k: z[k] for k in z.files}
count = len(next(iter(samples.values())))

class Reader(CalibrationDataReader):
    def __init__(self):
        self.rows = iter(range(count))
    def get_next(self):
        i = next(self.rows, None)
        return None if i is None else {k: v[i:i + 1] for k, v in samples.items()}

t = time.perf_counter()
quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
print(time.perf_counter() - t)
"""


def calibration_benchmark(args, out_dir):
    """Static quantization of the suite's largest model on 64 samples (its 8 calibration samples,
    each also flipped and shifted, so no two are equal): compressor (whole command, 2 threads)
    against ORT quantize_static (in-process time, all cores), same run."""
    cache = pathlib.Path(args.realmodels_cache or fetch.default_cache())
    entries = json.loads((cache / "manifest.json").read_text())["models"]
    entry = max(entries, key=lambda e: e["bytes"])
    folder = pathlib.Path(entry["path"]).parent
    names = [n for n, _ in model_inputs(entry["path"])]
    base = [load_sample(p, names) for p in sorted((folder / "calib").iterdir())]
    samples = []
    for k in range(64):
        s = base[k % len(base)]
        variant = k // len(base)
        samples.append({n: (np.roll(v, variant, axis=-1) if v.dtype.kind == "f" else v) for n, v in s.items()})
    data = out_dir / "calib64.npz"
    np.savez(data, **{n: np.concatenate([s[n] for s in samples], axis=0) for n in names})
    ours_out, ort_out = out_dir / "calib.static.onnx", out_dir / "calib.ort-static.onnx"
    for p in (ours_out, ort_out):
        if p.exists():
            p.unlink()
    started = time.perf_counter()
    code, _, err, ours_rss = run_measured([args.compressor, "quantize", entry["path"], "--mode", "static", "--data", str(data),
                                           # ORT's quantize_static rounds weights to nearest: the same here.
                                           "--calibration", "minmax", "--no-gptq", "-o", str(ours_out), "--threads", "2",
                                           "--eval-samples", "0", "--force"])
    ours = time.perf_counter() - started
    if code != 0:
        return {"model": entry["name"], "status": f"exit {code}", "detail": err}
    code, out, err, ort_rss = run_measured([sys.executable, "-c", ORT_CALIBRATE, entry["path"], str(ort_out), str(data)])
    if code != 0:
        return {"model": entry["name"], "status": "ORT failed", "detail": err}
    peer = float(out.strip().splitlines()[-1])
    for p in (ours_out, ort_out, data):
        if p.exists():
            p.unlink()
    return {"model": entry["name"], "status": "ok", "samples": 64, "compressorSeconds": ours, "ortSeconds": peer,
            "ratio": ours / peer, "compressorPeakRSS": ours_rss, "ortPeakRSS": ort_rss}


def print_calibration(r):
    print()
    if r["status"] != "ok":
        print(f"calibration on {r['model']}: {r['status']}: {r.get('detail', '')}")
        return
    print(f"static quantize (minmax, 64 samples) of {r['model']}: compressor {r['compressorSeconds']:.1f}s (whole command) "
          f"vs ORT quantize_static {r['ortSeconds']:.1f}s = {r['ratio']:.2f}x; peak RSS "
          f"{r['compressorPeakRSS'] / 2**20:.0f} vs {r['ortPeakRSS'] / 2**20:.0f} MiB (target <= 0.5x time)")


def main(args, out_dir):
    started = time.monotonic()
    rows = latency_benchmark(args)
    calibration = calibration_benchmark(args, out_dir) if not args.realmodels_only else None
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    (out_dir / "realmodels.json").write_text(json.dumps({"openblasCoretype": coretype, "cells": rows,
                                                          "calibration": calibration}, indent=2, sort_keys=True) + "\n")
    print_latency(rows, coretype)
    if calibration:
        print_calibration(calibration)
    print(f"({(time.monotonic() - started) / 60:.0f} min)")
