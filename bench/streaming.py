#!/usr/bin/env python3
"""Streaming scale: a generated 3 GB external-data model through inspect, convert (external data
to external data), weight-only quantize and prune --sparsity, with each command's peak RSS and
its ratio to the data size (design.md: weight-only passes on a multi-gigabyte model need little
more memory than its largest tensor). The largest tensor is printed beside it for reference.

The model is written tensor by tensor (numpy never holds more than one), under bench/out/streaming
(≈ 3 GB input, ≈ 7 GB of outputs; removed afterwards unless --keep).

  python bench/streaming.py --compressor .build/release/compressor [--gib 3] [--keep]
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "out" / "streaming"


def generate(path, gib, hidden=4096, width=8192, seed=0):
    """A chain of MatMul → Relu layers with [hidden, width] / [width, hidden] float weights of
    128 MiB each, stored in one external data file, until the data reaches `gib` GiB."""
    per = hidden * width * 4
    layers = max(2, int(round(gib * (1 << 30) / per)))
    data_name = path.name + ".data"
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    offset = 0
    x = "x"
    with open(path.parent / data_name, "wb") as data:
        for i in range(layers):
            shape = (hidden, width) if i % 2 == 0 else (width, hidden)
            w = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)
            data.write(w.tobytes())
            t = TensorProto(name=f"w{i}", data_type=TensorProto.FLOAT, dims=list(shape))
            t.data_location = TensorProto.EXTERNAL
            for k, v in (("location", data_name), ("offset", str(offset)), ("length", str(w.nbytes))):
                e = t.external_data.add()
                e.key, e.value = k, v
            offset += w.nbytes
            inits.append(t)
            y = f"h{i}"
            nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [y + "_mm"], name=f"mm{i}"))
            nodes.append(helper.make_node("Relu", [y + "_mm"], [y], name=f"relu{i}"))
            x = y
            del w
    out_dim = hidden if layers % 2 == 0 else width
    g = helper.make_graph(nodes, "streaming", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", hidden])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["n", out_dim])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="bench/streaming.py")
    m.ir_version = 8
    path.write_bytes(m.SerializeToString())
    return offset, per


def measure(cmd):
    """Wall seconds and peak RSS (bytes) of one command, from GNU time (its small process is the
    parent, so the high-water mark is the command's own, not this Python process's)."""
    with tempfile.NamedTemporaryFile("r") as report:
        start = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-o", report.name, "-f", "%M"] + cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({r.returncode}): {r.stderr}")
        peak_kib = int(report.read().strip().splitlines()[-1])
    return wall, peak_kib * 1024


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--compressor", required=True)
    p.add_argument("--gib", type=float, default=3.0)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    binary = str(pathlib.Path(args.compressor).resolve())
    OUT.mkdir(parents=True, exist_ok=True)
    model = OUT / "model.onnx"
    started = time.perf_counter()
    data_bytes, largest = generate(model, args.gib)
    print(f"generated {model} with {data_bytes / 2**30:.2f} GiB of external data "
          f"(largest tensor {largest / 2**20:.0f} MiB) in {time.perf_counter() - started:.0f} s", flush=True)
    commands = {
        "inspect": [binary, "inspect", model],
        "convert": [binary, "convert", model, OUT / "converted.onnx", "--external-data", "--force"],
        "quantize": [binary, "quantize", model, "-o", OUT / "quantized.onnx", "--force"],
        "prune": [binary, "prune", model, "-o", OUT / "pruned.onnx", "--sparsity", "0.5", "--force"],
    }
    results = {}
    try:
        for name, cmd in commands.items():
            wall, peak = measure([str(c) for c in cmd])
            results[name] = dict(seconds=round(wall, 1), peakRSSBytes=peak, peakRSSOverData=round(peak / data_bytes, 4),
                                 peakRSSOverLargestTensor=round(peak / largest, 2))
            print(f"{name:9s} {wall:7.1f} s  peak RSS {peak / 2**20:7.0f} MiB  = {peak / data_bytes:.3f} × the data, "
                  f"{peak / largest:.2f} × the largest tensor", flush=True)
            for f in OUT.iterdir():  # outputs are not needed once measured; disk is finite
                if f.name not in (model.name, model.name + ".data"):
                    f.unlink()
    finally:
        if not args.keep:
            shutil.rmtree(OUT, ignore_errors=True)
    summary = dict(dataBytes=data_bytes, largestTensorBytes=largest, commands=results)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    worst = max(r["peakRSSBytes"] for r in results.values())
    print(f"worst peak RSS {worst / 2**20:.0f} MiB for {data_bytes / 2**30:.2f} GiB of data "
          f"({'under' if worst < 1 << 30 else 'OVER'} 1 GiB)")
    return 0 if worst < 1 << 30 else 1


if __name__ == "__main__":
    sys.exit(main())
