"""Static int8 quality on the real-model suite: `compressor quantize --mode static --data calib`
with no other flag, against ONNX Runtime's `quantize_static` with each of its calibration methods
(MinMax, Entropy, Percentile, Distribution; QDQ, per-channel int8 weights, uint8 activations — the
same format as ours), on the same calibration samples, judged by ONNX Runtime on the model's 8
held-out samples with the real-model table's measures (Tests/realmodels/run.py `quality`).

The issue's bar: classifiers and embeddings top-1 agreement >= 0.99 or cosine >= 0.99, the
thresholded maps of segmenters IoU >= 0.95, the final detections of detectors (boxes, scores and
labels after NMS) F1 >= 0.95 of boxes matched to the float model's at IoU 0.5; and better than
every ORT method that runs.

  python bench/run.py --only static-quality [--realmodels-only a,b] [--static-extra "--calibration minmax"]
"""
import concurrent.futures
import json
import pathlib
import shlex
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "Tests" / "realmodels"))
import fetch  # noqa: E402
from run import Model, quality  # noqa: E402

ORT_METHODS = ("MinMax", "Entropy", "Percentile", "Distribution")
TIMEOUT = 1200

ORT_STATIC = """
import sys, pathlib, numpy as np, onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
src, dst, calib, method = sys.argv[1:5]
names = [i.name for i in ort.InferenceSession(src, providers=["CPUExecutionProvider"]).get_inputs()]
def load(p):
    if p.suffix == ".npy":
        return {names[0]: np.load(p)}
    with np.load(p) as z:
        return {k: z[k] for k in z.files if k in names}
samples = [load(p) for p in sorted(pathlib.Path(calib).iterdir())]

class Reader(CalibrationDataReader):
    def __init__(self):
        self.it = iter(samples)
    def get_next(self):
        return next(self.it, None)

quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, calibrate_method=getattr(CalibrationMethod, method))
"""


def measure(model, path):
    session = Model.session(path)
    outputs = [session.run(None, s) for s in model.samples]
    return quality(model, outputs)


def figure(text):
    """The number the bar is about: agreement or cosine (the better of the two, as the bar allows)
    for classifiers, IoU for maps, cosine otherwise."""
    words = text.split()
    values = dict(zip(words[::2], (float(w) for w in words[1::2]))) if len(words) % 2 == 0 else {}
    if "iou" in values:
        return values["iou"], 0.95
    if "f1" in values:
        return values["f1"], 0.95
    return max(values.get("top1", 0.0), values.get("cos", 0.0)), 0.99


def ours(binary, model, work, extra):
    out = work / f"{model.name}.ours.onnx"
    argv = [binary, "quantize", str(model.path), "--mode", "static", "--data", str(model.folder / "calib"),
            "-o", str(out), "--threads", "1"] + extra
    started = time.monotonic()
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"status": "timeout"}
    seconds = time.monotonic() - started
    if r.returncode not in (0, 2):
        return {"status": f"exit {r.returncode}", "detail": r.stderr.strip().splitlines()[-1:] or [""], "seconds": seconds}
    try:
        return {"status": "ok", "quality": measure(model, out), "seconds": seconds, "exit": r.returncode}
    finally:
        for p in (out, pathlib.Path(str(out) + ".data")):
            p.unlink(missing_ok=True)


def theirs(model, work, method):
    out = work / f"{model.name}.ort-{method}.onnx"
    started = time.monotonic()
    try:
        r = subprocess.run([sys.executable, "-c", ORT_STATIC, str(model.path), str(out), str(model.folder / "calib"), method],
                           capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"status": "timeout"}
    seconds = time.monotonic() - started
    if r.returncode != 0:
        last = [l for l in r.stderr.strip().splitlines() if l.strip()][-1:] or [""]
        return {"status": "failed", "detail": last[0][:160], "seconds": seconds}
    try:
        return {"status": "ok", "quality": measure(model, out), "seconds": seconds}
    except Exception as e:  # ORT cannot run its own output
        return {"status": "ORT cannot run it", "detail": str(e).splitlines()[0][:160]}
    finally:
        for p in (out, pathlib.Path(str(out) + ".data")):
            p.unlink(missing_ok=True)


def main(args, out_dir):
    cache = pathlib.Path(args.realmodels_cache or fetch.default_cache())
    entries = json.loads((cache / "manifest.json").read_text())["models"]
    only = set(filter(None, args.realmodels_only.split(",")))
    entries = [e for e in entries if not only or e["name"] in only]
    extra = shlex.split(args.static_extra)
    binary = str(pathlib.Path(args.compressor).resolve())
    rows = {}
    with tempfile.TemporaryDirectory() as tmp, concurrent.futures.ThreadPoolExecutor(2) as pool:
        work = pathlib.Path(tmp)
        for e in entries:
            try:
                model = Model(e)
            except Exception as ex:
                print(f"static-quality: {e['name']}: ORT cannot run the original: {ex}", file=sys.stderr)
                continue
            jobs = {"compressor": pool.submit(ours, binary, model, work, extra)}
            if not args.static_no_ort:
                jobs.update({m: pool.submit(theirs, model, work, m) for m in ORT_METHODS})
            row = {k: f.result() for k, f in jobs.items()}
            rows[e["name"]] = row
            print(f"{e['name']:22} " + "  ".join(f"{k}: {r.get('quality', r['status'])}" for k, r in row.items()), flush=True)
    (out_dir / "static_quality.json").write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    print_table(rows, extra)


def print_table(rows, extra):
    print()
    print(f"static int8 quality (compressor quantize --mode static --data calib {' '.join(extra)}) vs ORT quantize_static,"
          " held-out samples:")
    cols = ["compressor"] + list(ORT_METHODS)
    print(f"{'model':22}" + "".join(f"{c:>14}" for c in cols) + "   bar  met  best")
    met = better = counted = 0
    for name, row in rows.items():
        cells, values = [], {}
        for c in cols:
            r = row.get(c)
            if r is None:
                cells.append("-")
            elif r["status"] != "ok":
                cells.append(r["status"][:12])
            else:
                v, bar = figure(r["quality"])
                values[c] = (v, bar)
                cells.append(f"{v:.4f}")
        if "compressor" not in values:
            print(f"{name:22}" + "".join(f"{c:>14}" for c in cells))
            continue
        v, bar = values["compressor"]
        counted += 1
        ok = v >= bar
        wins = all(v >= values[c][0] for c in values if c != "compressor")
        met += ok
        better += wins
        print(f"{name:22}" + "".join(f"{c:>14}" for c in cells) + f"  {bar:.2f}  {'yes' if ok else 'NO ':3}  {'yes' if wins else 'no'}")
    print(f"bar met on {met} of {counted} models; at least as good as every ORT method on {better} of {counted}")
