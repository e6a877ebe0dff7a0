#!/usr/bin/env python3
"""compressor benchmarks: each measures compressor and its peer in the same run and prints
ratios (these machines are shared and noisy, so absolute times mean little).

  io-convert      compressor convert vs onnx.load + onnx.save on a ~90 MB transformer-sized
                  model: wall time ratio, and compressor's peak RSS relative to the file size
  io-external     the same with external data: peak RSS relative to the data size
  runtime-*       `compressor bench` latency (p50) and peak RSS against ONNX Runtime's
                  InferenceSession on the same model and input, with 1 and 2 threads
  realmodels      the same on every model of the real-model suite (Tests/realmodels) at batch 1
                  and 8, ORT with and without its graph optimizations, and static-quantization
                  calibration on the largest suite model (bench/realmodels.py); `--only realmodels`

  static-quality  static int8 quality on every suite model, default flags, against ORT
                  quantize_static with each calibration method (bench/static_quality.py)
  distill-*       `compressor distill` training throughput (samples/s over the whole command)
                  against PyTorch training the same student (same weights, loss, optimizer,
                  schedule, batch size, 1 thread) on the same teacher outputs, same run

Models are generated here (bench/out/), never committed.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from onnx import TensorProto, helper, numpy_helper

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "out"


def transformer_sized_model(path, layers=6, hidden=512, ffn=2048, vocab=8000, seed=0):
    """A BERT-style encoder graph with random weights (~90 MB): embeddings, attention
    projections and feed-forward MatMuls with [in, out] weights, decomposed LayerNorm."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    w = lambda name, *shape: inits.append(numpy_helper.from_array((rng.standard_normal(shape) * 0.02).astype(np.float32), name))
    w("embed", vocab, hidden)
    nodes.append(helper.make_node("Gather", ["embed", "ids"], ["x0"], name="embed"))
    x = "x0"
    for l in range(layers):
        p = f"layer{l}"
        for proj in "qkvo":
            w(f"{p}.{proj}.weight", hidden, hidden)
            w(f"{p}.{proj}.bias", hidden)
        for proj in "qkv":
            nodes.append(helper.make_node("MatMul", [x, f"{p}.{proj}.weight"], [f"{p}.{proj}.mm"], name=f"{p}.{proj}"))
            nodes.append(helper.make_node("Add", [f"{p}.{proj}.mm", f"{p}.{proj}.bias"], [f"{p}.{proj}.out"], name=f"{p}.{proj}.add"))
        nodes.append(helper.make_node("Transpose", [f"{p}.k.out"], [f"{p}.kt"], name=f"{p}.kt", perm=[0, 2, 1]))
        nodes.append(helper.make_node("MatMul", [f"{p}.q.out", f"{p}.kt"], [f"{p}.scores"], name=f"{p}.qk"))
        nodes.append(helper.make_node("Softmax", [f"{p}.scores"], [f"{p}.probs"], name=f"{p}.softmax", axis=-1))
        nodes.append(helper.make_node("MatMul", [f"{p}.probs", f"{p}.v.out"], [f"{p}.ctx"], name=f"{p}.pv"))
        nodes.append(helper.make_node("MatMul", [f"{p}.ctx", f"{p}.o.weight"], [f"{p}.o.mm"], name=f"{p}.o"))
        nodes.append(helper.make_node("Add", [f"{p}.o.mm", f"{p}.o.bias"], [f"{p}.attn"], name=f"{p}.o.add"))
        nodes.append(helper.make_node("Add", [x, f"{p}.attn"], [f"{p}.res1"], name=f"{p}.res1"))
        w(f"{p}.ffn1.weight", hidden, ffn)
        w(f"{p}.ffn1.bias", ffn)
        w(f"{p}.ffn2.weight", ffn, hidden)
        w(f"{p}.ffn2.bias", hidden)
        nodes.append(helper.make_node("MatMul", [f"{p}.res1", f"{p}.ffn1.weight"], [f"{p}.f1"], name=f"{p}.ffn1"))
        nodes.append(helper.make_node("Add", [f"{p}.f1", f"{p}.ffn1.bias"], [f"{p}.f1b"], name=f"{p}.ffn1.add"))
        nodes.append(helper.make_node("Relu", [f"{p}.f1b"], [f"{p}.f1r"], name=f"{p}.relu"))
        nodes.append(helper.make_node("MatMul", [f"{p}.f1r", f"{p}.ffn2.weight"], [f"{p}.f2"], name=f"{p}.ffn2"))
        nodes.append(helper.make_node("Add", [f"{p}.f2", f"{p}.ffn2.bias"], [f"{p}.f2b"], name=f"{p}.ffn2.add"))
        nodes.append(helper.make_node("Add", [f"{p}.res1", f"{p}.f2b"], [f"{p}.out"], name=f"{p}.res2"))
        x = f"{p}.out"
    graph = helper.make_graph(nodes, "bench_encoder", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", "seq", hidden])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # ONNX Runtime runs it for static-quantization calibration
    return model


def measure(cmd):
    """Wall seconds and peak RSS (bytes) of one command. Peak RSS comes from GNU time, whose
    small process is the parent: Linux carries the high-water mark across exec, so a child
    forked from this (large) Python process would report this process's peak."""
    with tempfile.NamedTemporaryFile("r") as report:
        start = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-o", report.name, "-f", "%M"] + cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if r.returncode != 0:
            raise RuntimeError(f"{cmd} failed: {r.stderr}")
        peak_kib = int(report.read().strip().splitlines()[-1])
    return wall, peak_kib * 1024, r.stdout


PEER = """
import sys, time, onnx
t = time.perf_counter()
m = onnx.load(sys.argv[1])
if sys.argv[3] == "external":
    onnx.save(m, sys.argv[2], save_as_external_data=True, all_tensors_to_one_file=True,
              location=sys.argv[2].split("/")[-1] + ".data", size_threshold=1024)
else:
    onnx.save(m, sys.argv[2])
print(time.perf_counter() - t)
"""


ORT_PEER = """
import sys, time, json, numpy as np, onnxruntime as ort
path, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
batch = int(sys.argv[4]) if len(sys.argv) > 4 else 1
fill = int(sys.argv[5]) if len(sys.argv) > 5 else 1  # any other symbolic dimension
o = ort.SessionOptions()
o.intra_op_num_threads = threads
o.inter_op_num_threads = 1
s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
feeds = {}
rng = np.random.default_rng(0)
for i in s.get_inputs():
    shape = [d if isinstance(d, int) else (batch if k == 0 else fill) for k, d in enumerate(i.shape)]
    feeds[i.name] = rng.integers(0, 2, shape).astype(np.int64) if "int64" in i.type else rng.random(shape, dtype=np.float32)
for _ in range(3):
    s.run(None, feeds)
times = []
for _ in range(runs):
    t = time.perf_counter(); s.run(None, feeds); times.append((time.perf_counter() - t) * 1000)
print(json.dumps({"p50Ms": float(np.median(times))}))
"""


def runtime_benchmarks(args):
    import models
    out = {}
    for name, build in [("resnet-cnn-224", models.resnet), ("mobilenet-cnn-224", models.mobilenet), ("bert-6x384-seq128", models.bert)]:
        path = OUT / f"{name}.onnx"
        if not path.exists():
            onnx.save(build(), str(path))
        out[name] = {}
        for threads in (1, 2):
            # Three alternating rounds, each tool keeping its best p50: the machine is shared, and
            # a burst of someone else's work during one tool's turn would decide a single round.
            ours_p50, ort_p50, ours_rss, ort_rss = [], [], 0, 0
            for _ in range(3):
                _, rss, text = measure([args.compressor, "bench", str(path), "--runs", str(args.runtime_runs), "--threads", str(threads), "--json"])
                ours_p50.append(json.loads(text)["p50Ms"])
                ours_rss = max(ours_rss, rss)
                _, rss, text = measure([sys.executable, "-c", ORT_PEER, str(path), str(threads), str(args.runtime_runs)])
                ort_p50.append(json.loads(text)["p50Ms"])
                ort_rss = max(ort_rss, rss)
            out[name][threads] = {"compressorP50Ms": min(ours_p50), "ortP50Ms": min(ort_p50),
                                  "latencyRatio": min(ours_p50) / min(ort_p50),
                                  "compressorPeakRSS": ours_rss, "ortPeakRSS": ort_rss, "rssRatio": ours_rss / ort_rss}
    return out


def prune_benchmark(args):
    """Structured pruning at 30%: parameters, MACs and ONNX Runtime latency (1 thread, same run)
    of the pruned model against the original, on the CNN/transformer fixtures and the generated
    benchmark models."""
    import models
    fixtures = HERE.parent / "Fixtures"
    sources = [(n, fixtures / f"{n}.onnx") for n in ("cnn_residual", "mobile_cnn", "transformer_block")]
    for name, build in [("resnet-cnn-224", models.resnet), ("mobilenet-cnn-224", models.mobilenet), ("bert-6x384-seq128", models.bert)]:
        path = OUT / f"{name}.onnx"
        if not path.exists():
            onnx.save(build(), str(path))
        sources.append((name, path))
    # The fixtures also pruned by exactly 30% (--channel-multiple 1): the default keeps whole
    # 16-channel blocks, and the exact counts show what leaving them costs in ONNX Runtime.
    sources += [(f"{n} exact", p) for n, p in sources[:3]]
    rows = {}
    for name, src in sources:
        stem = name.replace(" ", "-")
        pruned, report = OUT / f"{stem}.pruned.onnx", OUT / f"{stem}.prune.json"
        clean(pruned)
        extra = ["--channel-multiple", "1"] if name.endswith(" exact") else []
        if "transformer" in name or "bert" in name:
            extra.append("--heads")
        subprocess.run([args.compressor, "prune", str(src), "--structured", "--ratio", "0.3", "-o", str(pruned),
                        "--report", str(report), "--force"] + extra, check=True, capture_output=True)
        r = json.loads(report.read_text())
        # Fixtures run a batch of 256 samples of their data's size (8×8 images, 64 tokens) so that
        # compute, not session overhead, is timed; the two models alternate three times and each
        # keeps its best p50 (shared machine).
        batch = "256" if src.parent == fixtures else "1"
        fill = "64" if "transformer" in name else "8"
        times = {str(src): [], str(pruned): []}
        for _ in range(3):
            for p in times:
                times[p].append(json.loads(measure([sys.executable, "-c", ORT_PEER, p, "1", str(args.runtime_runs), batch, fill])[2])["p50Ms"])
        before, after = min(times[str(src)]), min(times[str(pruned)])
        rows[name] = {"parameterRatio": r["output"]["parameters"] / r["input"]["parameters"],
                      "macRatio": (r["output"].get("macs") or 0) / max(r["input"].get("macs") or 1, 1),
                      "ortMsBefore": before, "ortMsAfter": after, "ortLatencyRatio": after / before}
        clean(pruned)
    return rows


NUMPY_SVD = """
import sys, time, numpy as np, onnx
from onnx import numpy_helper
w = numpy_helper.to_array(onnx.load(sys.argv[1]).graph.initializer[0])
t = time.perf_counter()
np.linalg.svd(w, full_matrices=False)  # LAPACK gesdd, float32 (sgesdd)
print(time.perf_counter() - t)
"""


def factorize_benchmark(args):
    """SVD of a 4096×4096 float32 weight: `compressor factorize` (the whole command: read, gesdd,
    factors, write) against NumPy's np.linalg.svd (gesdd alone), both with 2 threads, same run."""
    path = OUT / "matmul4096.onnx"
    if not path.exists():
        rng = np.random.default_rng(2)
        w = rng.standard_normal((4096, 4096)).astype(np.float32)
        g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "svd",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4096])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4096])],
                              [numpy_helper.from_array(w, "W")])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        onnx.save(m, str(path))
    out = OUT / "matmul4096.lowrank.onnx"
    ours, peer = [], []
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2")
    for _ in range(max(1, args.runs - 1)):
        clean(out)
        start = time.perf_counter()
        subprocess.run([args.compressor, "factorize", str(path), "--rank", "1024", "--threads", "2", "-o", str(out)],
                       check=True, capture_output=True)
        ours.append(time.perf_counter() - start)
        r = subprocess.run([sys.executable, "-c", NUMPY_SVD, str(path)], check=True, capture_output=True, text=True, env=env)
        peer.append(float(r.stdout.strip().splitlines()[-1]))
    clean(out)
    return {"compressorSeconds": min(ours), "numpySvdSeconds": min(peer), "ratio": min(ours) / min(peer)}


TORCH_PEER = """
import json, sys, time, numpy as np, onnx, onnxruntime as ort, torch
from onnx import numpy_helper
torch.set_num_threads(1)
torch.manual_seed(0)
student, teacher, data, epochs, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
x = np.load(data)
s = ort.InferenceSession(teacher, providers=["CPUExecutionProvider"])
soft = torch.from_numpy(s.run(None, {s.get_inputs()[0].name: x})[0])  # the teacher runs once, as compressor's does
w = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in onnx.load(student).graph.initializer}
if "c1.weight" in w:
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.b1 = torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8, momentum=0.1)
            self.c2, self.b2 = torch.nn.Conv2d(8, 16, 3, padding=1, stride=2), torch.nn.BatchNorm2d(16, momentum=0.1)
            self.fc = torch.nn.Linear(16, 10)
        def forward(self, x):
            h = torch.relu(self.b1(self.c1(x)))
            h = torch.relu(self.b2(self.c2(h)))
            return self.fc(h.mean((2, 3)))
else:
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2 = torch.nn.Linear(64, 32), torch.nn.Linear(32, 10)
        def forward(self, x):
            return self.l2(torch.relu(self.l1(x.flatten(1))))
net = Net()
net.load_state_dict({k: v for k, v in w.items()}, strict=False)
net.train()
xs = torch.from_numpy(x)
opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0)
steps = epochs * ((len(xs) + batch - 1) // batch)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
T = 4.0
g = torch.Generator().manual_seed(0)
start = time.perf_counter()
for _ in range(epochs):
    perm = torch.randperm(len(xs), generator=g)
    for i in range(0, len(xs), batch):
        idx = perm[i:i + batch]
        out = net(xs[idx])
        loss = torch.nn.functional.kl_div(torch.log_softmax(out / T, -1), torch.softmax(soft[idx] / T, -1), reduction="batchmean") * T * T
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
print(json.dumps({"seconds": time.perf_counter() - start, "samples": epochs * len(xs)}))
"""


def distill_benchmark(args):
    """Training throughput of the two student fixtures, compressor vs PyTorch, 1 thread each."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise SystemExit("the distill benchmark needs torch: .venv/bin/pip install -r Fixtures/requirements.txt")
    fixtures = HERE.parent / "Fixtures"
    rows = {}
    for student, teacher, data, epochs in (("student_mlp", "cnn_residual", "train_img.npy", 30), ("student_cnn", "cnn_residual", "train_img.npy", 10)):
        ours, peer = [], []
        out = OUT / f"{student}.distilled.onnx"
        for _ in range(args.runs):
            clean(out)
            cmd = [args.compressor, "distill", "--student", str(fixtures / f"{student}.onnx"), "--teacher", str(fixtures / f"{teacher}.onnx"),
                   "--data", str(fixtures / "data" / data), "--epochs", str(epochs), "--batch-size", "32", "--threads", "1",
                   "--quiet", "-o", str(out)]
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            samples = epochs * len(np.load(fixtures / "data" / data, mmap_mode="r"))
            ours.append(samples / (time.perf_counter() - start))
            r = subprocess.run([sys.executable, "-c", TORCH_PEER, str(fixtures / f"{student}.onnx"), str(fixtures / f"{teacher}.onnx"),
                                str(fixtures / "data" / data), str(epochs), "32"], check=True, capture_output=True, text=True)
            p = json.loads(r.stdout.strip().splitlines()[-1])
            peer.append(p["samples"] / p["seconds"])
        clean(out)
        rows[student] = {"compressorSamplesPerSecond": max(ours), "torchSamplesPerSecond": max(peer), "ratio": max(ours) / max(peer)}
    return rows


def print_distill(rows):
    print()
    print(f"{'distill (KD, batch 32, 1 thread)':<34}{'compressor samples/s':>22}{'PyTorch samples/s':>20}{'ratio':>8}")
    for name, r in rows.items():
        print(f"{name:<34}{r['compressorSamplesPerSecond']:>22.0f}{r['torchSamplesPerSecond']:>20.0f}{r['ratio']:>7.2f}x")
    print("compressor: the whole command (read, teacher once, train, write); PyTorch: the training loop alone; best of runs (target >= 0.5x)")


def print_factorize(r):
    print()
    print(f"factorize 4096x4096 (whole command) {r['compressorSeconds']:.2f}s vs NumPy gesdd alone {r['numpySvdSeconds']:.2f}s "
          f"= {r['ratio']:.2f}x (target <= 1.5x); 2 threads each, best of runs")


def print_prune(rows):
    print()
    print(f"{'prune --structured 0.3 (+ --heads)':<36}{'params':>9}{'MACs':>9}{'ORT ms before':>15}{'after':>9}{'latency':>10}")
    for name, r in rows.items():
        print(f"{name:<36}{r['parameterRatio']:>8.2f}x{r['macRatio']:>8.2f}x{r['ortMsBefore']:>15.3f}{r['ortMsAfter']:>9.3f}{r['ortLatencyRatio']:>9.2f}x")
    print("ratios: pruned / original; ONNX Runtime, 1 thread, best p50 of 3 alternating runs (fixtures: batch 256 of 8×8 images or 64 tokens)")


def clean(*paths):
    for p in paths:
        for q in (p, pathlib.Path(str(p) + ".data")):
            if q.exists():
                q.unlink()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--compressor")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--runtime-runs", type=int, default=20)
    ap.add_argument("--only", choices=["io", "runtime", "realmodels", "static-quality", "quantize", "prune", "factorize", "distill"],
                    help="run one group of benchmarks")
    ap.add_argument("--realmodels-only", default="", help="realmodels: these suite models only (comma-separated)")
    ap.add_argument("--realmodels-cache", default="", help="realmodels: the suite's cache (default: fetch.py's)")
    ap.add_argument("--realmodel-rounds", type=int, default=3, help="realmodels: alternating rounds (one fewer above 100 ms)")
    ap.add_argument("--realmodel-seconds", type=float, default=0.3, help="realmodels: timed seconds per tool and round")
    ap.add_argument("--calibration-samples", type=int, default=64)
    ap.add_argument("--static-extra", default="", help="static-quality: more flags for compressor quantize")
    ap.add_argument("--static-no-ort", action="store_true", help="static-quality: compressor only")
    ap.add_argument("--generate", nargs=2, metavar=("MODEL", "EXTERNAL_MODEL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate:
        model_path, ext_path = map(pathlib.Path, args.generate)
        m = transformer_sized_model(model_path)
        onnx.save(m, str(model_path))
        clean(ext_path)
        onnx.save(m, str(ext_path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=ext_path.name + ".data", size_threshold=1024)
        return
    OUT.mkdir(exist_ok=True)
    if args.compressor is None:
        args.compressor = str(HERE.parent / ".build" / "release" / "compressor")
    if args.only == "runtime":
        print_runtime(runtime_benchmarks(args))
        return
    if args.only == "realmodels":
        import realmodels
        realmodels.main(args, OUT)
        return
    if args.only == "static-quality":
        import static_quality
        static_quality.main(args, OUT)
        return
    if args.only == "prune":
        print_prune(prune_benchmark(args))
        return
    if args.only == "factorize":
        print_factorize(factorize_benchmark(args))
        return
    if args.only == "distill":
        print_distill(distill_benchmark(args))
        return
    model_path = OUT / "encoder.onnx"
    ext_path = OUT / "encoder_ext.onnx"
    if not model_path.exists() or onnx.load(str(model_path), load_external_data=False).ir_version > 8:
        # In a child process, so that this one stays small while measuring the others.
        subprocess.run([sys.executable, __file__, "--generate", str(model_path), str(ext_path)], check=True)
    if args.only == "quantize":
        print_quantize(quantize_benchmark(args, model_path))
        print_static(static_quantize_benchmark(args, model_path))
        return
    size = model_path.stat().st_size
    data_size = pathlib.Path(str(ext_path) + ".data").stat().st_size
    results = {"modelBytes": size, "externalDataBytes": data_size}

    def bench(name, src, external):
        ours, peer_wall, peer_inproc, our_rss, peer_rss = [], [], [], [], []
        for _ in range(args.runs):
            a, b = OUT / f"{name}.compressor.onnx", OUT / f"{name}.peer.onnx"
            clean(a, b)
            cmd = [args.compressor, "convert", str(src), str(a)] + (["--external-data"] if external else [])
            wall, rss, _ = measure(cmd)
            ours.append(wall)
            our_rss.append(rss)
            wall, rss, out = measure([sys.executable, "-c", PEER, str(src), str(b), "external" if external else "inline"])
            peer_wall.append(wall)
            peer_inproc.append(float(out.strip()))
            peer_rss.append(rss)
            clean(a, b)
        r = {
            "compressorSeconds": statistics.median(ours),
            "peerLoadSaveSeconds": statistics.median(peer_inproc),
            "peerProcessSeconds": statistics.median(peer_wall),
            "compressorPeakRSS": max(our_rss),
            "peerPeakRSS": max(peer_rss),
        }
        r["timeRatioVsLoadSave"] = r["compressorSeconds"] / r["peerLoadSaveSeconds"]
        r["timeRatioVsPeerProcess"] = r["compressorSeconds"] / r["peerProcessSeconds"]
        r["rssRatioVsPeer"] = r["compressorPeakRSS"] / r["peerPeakRSS"]
        return r

    results["io-convert"] = bench("inline", model_path, False)
    results["io-convert"]["rssOverFileSize"] = results["io-convert"]["compressorPeakRSS"] / size
    results["io-external"] = bench("external", ext_path, True)
    results["io-external"]["rssOverDataSize"] = results["io-external"]["compressorPeakRSS"] / data_size

    results["quantize"] = quantize_benchmark(args, model_path)
    results["static"] = static_quantize_benchmark(args, model_path)
    results["runtime"] = runtime_benchmarks(args)
    results["prune"] = prune_benchmark(args)
    results["factorize"] = factorize_benchmark(args)
    results["distill"] = distill_benchmark(args)

    (OUT / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    c, e = results["io-convert"], results["io-external"]
    print(f"model {size / 2**20:.1f} MiB (external data {data_size / 2**20:.1f} MiB), median of {args.runs} runs")
    print(f"{'benchmark':<14}{'time vs onnx.load+save':>24}{'vs whole python process':>26}{'RSS vs peer':>14}{'RSS vs size':>14}")
    print(f"{'io-convert':<14}{c['timeRatioVsLoadSave']:>23.2f}x{c['timeRatioVsPeerProcess']:>25.2f}x{c['rssRatioVsPeer']:>13.2f}x{c['rssOverFileSize']:>13.2f}x")
    print(f"{'io-external':<14}{e['timeRatioVsLoadSave']:>23.2f}x{e['timeRatioVsPeerProcess']:>25.2f}x{e['rssRatioVsPeer']:>13.2f}x{e['rssOverDataSize']:>13.2f}x")
    print("targets: io-convert time <= 0.33x, RSS <= 2.2x file size; io-external RSS <= 0.5x data size")
    print_quantize(results["quantize"])
    print_static(results["static"])
    print_runtime(results["runtime"])
    print_prune(results["prune"])
    print_factorize(results["factorize"])
    print_distill(results["distill"])


ORT_QUANTIZE = """
import sys, time
from onnxruntime.quantization import QuantType, quantize_dynamic
t = time.perf_counter()
quantize_dynamic(sys.argv[1], sys.argv[2], weight_type=QuantType.QInt8)
print(time.perf_counter() - t)
"""


def quantize_benchmark(args, model_path):
    ours, peer, ours_rss, peer_rss = [], [], [], []
    a, b = OUT / "encoder.int8.onnx", OUT / "encoder.ort-int8.onnx"
    for _ in range(args.runs):
        clean(a, b)
        wall, rss, _ = measure([args.compressor, "quantize", str(model_path), "-o", str(a)])
        ours.append(wall)
        ours_rss.append(rss)
        wall, rss, out = measure([sys.executable, "-c", ORT_QUANTIZE, str(model_path), str(b)])
        peer.append(float(out.strip()))
        peer_rss.append(rss)
    size = model_path.stat().st_size
    result = {"compressorSizeRatio": a.stat().st_size / size, "ortSizeRatio": b.stat().st_size / size,
              "compressorSeconds": statistics.median(ours), "ortSeconds": statistics.median(peer),
              "timeRatio": statistics.median(ours) / statistics.median(peer), "rssRatio": max(ours_rss) / max(peer_rss)}
    clean(a, b)
    return result


ORT_STATIC = """
import sys, time, numpy as np
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
src, dst, data, method = sys.argv[1:5]
ids = np.load(data)

class Reader(CalibrationDataReader):
    def __init__(self):
        self.rows = iter(range(len(ids)))
    def get_next(self):
        i = next(self.rows, None)
        return None if i is None else {"ids": ids[i:i + 1]}

t = time.perf_counter()
quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, calibrate_method=getattr(CalibrationMethod, method))
print(time.perf_counter() - t)
"""


def static_quantize_benchmark(args, model_path):
    """compressor --mode static vs ORT quantize_static (QDQ, per-channel, u8 activations), both
    calibrating on the same samples with the same method; then compressor's percentile
    calibration on 4x the samples, to show its memory does not grow with them."""
    rng = np.random.default_rng(1)
    n = args.calibration_samples
    data, data4 = OUT / "calib_ids.npy", OUT / "calib_ids_4x.npy"
    np.save(data, rng.integers(0, 8000, (n, 128)).astype(np.int64))
    np.save(data4, rng.integers(0, 8000, (4 * n, 128)).astype(np.int64))
    a, b = OUT / "encoder.static.onnx", OUT / "encoder.ort-static.onnx"
    result = {"samples": n}
    for method, ort_method in (("minmax", "MinMax"), ("percentile", "Percentile")):
        clean(a, b)
        # ONNX Runtime uses both cores; so does compressor. Without the quality section ORT has none.
        ours, ours_rss, _ = measure([args.compressor, "quantize", str(model_path), "--mode", "static", "--data", str(data),
                                     "--calibration", method, "-o", str(a), "--threads", "2", "--eval-samples", "0"])
        wall, peer_rss, out = measure([sys.executable, "-c", ORT_STATIC, str(model_path), str(b), str(data), ort_method])
        peer = float(out.strip().splitlines()[-1])
        result[method] = {"compressorSeconds": ours, "ortSeconds": peer, "ortProcessSeconds": wall,
                          "compressorPeakRSS": ours_rss, "ortPeakRSS": peer_rss,
                          "timeRatio": ours / peer, "rssRatio": ours_rss / peer_rss,
                          "compressorSizeRatio": a.stat().st_size / model_path.stat().st_size,
                          "ortSizeRatio": b.stat().st_size / model_path.stat().st_size}
    clean(a)
    ours4, rss4, _ = measure([args.compressor, "quantize", str(model_path), "--mode", "static", "--data", str(data4),
                              "--calibration", "percentile", "-o", str(a), "--threads", "2", "--eval-samples", "0"])
    result["percentile4x"] = {"compressorSeconds": ours4, "compressorPeakRSS": rss4,
                              "rssGrowth": rss4 / result["percentile"]["compressorPeakRSS"]}
    clean(a)
    wq, rq, _ = measure([args.compressor, "quantize", str(model_path), "--mode", "static", "--data", str(data),
                         "--calibration", "percentile", "-o", str(a), "--threads", "2"])
    result["percentileWithQuality"] = {"compressorSeconds": wq, "compressorPeakRSS": rq}
    result["fixtures"] = fixture_quality(args)
    clean(a, b)
    return result


FIXTURE_PEER = """
import json, sys, numpy as np, onnx, onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
src, dst, calib, ours, test, labels = sys.argv[1:7]
calib = dict(np.load(calib)) if calib.endswith(".npz") else {ort.InferenceSession(src).get_inputs()[0].name: np.load(calib)}
test = dict(np.load(test)) if test.endswith(".npz") else {ort.InferenceSession(src).get_inputs()[0].name: np.load(test)}

class Reader(CalibrationDataReader):
    def __init__(self):
        self.rows = iter(range(len(next(iter(calib.values())))))
    def get_next(self):
        i = next(self.rows, None)
        return None if i is None else {k: v[i:i + 1] for k, v in calib.items()}

quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
o = ort.SessionOptions()
o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
run = lambda p: ort.InferenceSession(p, o, providers=["CPUExecutionProvider"]).run(None, test)[0].reshape(len(next(iter(test.values()))), -1)
ref, theirs, mine = run(src), run(dst), run(ours)
y = np.load(labels)
cos = lambda a: float(np.mean(np.sum(a * ref, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(ref, axis=1))))
acc = lambda a: float(np.mean(a.argmax(1) == y))
print(json.dumps({"floatAccuracy": acc(ref), "ortAccuracy": acc(theirs), "ortCosine": cos(theirs),
                  "compressorAccuracy": acc(mine), "compressorCosine": cos(mine)}))
"""


def fixture_quality(args):
    """Static int8 on the torch-trained fixtures, compressor vs ORT quantize_static (MinMax, QDQ,
    per-channel), same calibration samples (the training split), judged by ORT on the test split."""
    fixtures = HERE.parent / "Fixtures"
    rows = {}
    for name, calib, test in (("mlp", "calib_x.npy", "digits_x.npy"), ("cnn_residual", "calib_img.npy", "digits_img.npy"),
                              ("mobile_cnn", "calib_img.npy", "digits_img.npy"),
                              ("transformer_block", "calib_tokens.npz", "digits_tokens.npz")):
        src, ours, theirs = fixtures / f"{name}.onnx", OUT / f"{name}.static.onnx", OUT / f"{name}.ort-static.onnx"
        clean(ours, theirs)
        subprocess.run([args.compressor, "quantize", str(src), "--mode", "static", "--data", str(fixtures / "data" / calib),
                        "-o", str(ours), "--eval-samples", "0"], check=True, capture_output=True)
        r = subprocess.run([sys.executable, "-c", FIXTURE_PEER, str(src), str(theirs), str(fixtures / "data" / calib), str(ours),
                            str(fixtures / "data" / test), str(fixtures / "data" / "digits_y.npy")], check=True, capture_output=True, text=True)
        rows[name] = json.loads(r.stdout.strip().splitlines()[-1])
        clean(ours, theirs)
    return rows


def print_quantize(q):
    print()
    print(f"quantize (weight-only int8, compressor) vs ORT quantize_dynamic (int8), same model, median of runs:")
    print(f"  size vs fp32 input: compressor {q['compressorSizeRatio']:.3f}x, ORT {q['ortSizeRatio']:.3f}x; "
          f"time ratio {q['timeRatio']:.2f}x; peak RSS ratio {q['rssRatio']:.2f}x")
    print("targets: int8 output <= 0.27x of the fp32 input")


def print_static(r):
    print()
    print(f"quantize --mode static vs ORT quantize_static (QDQ, per-channel, uint8 activations), {r['samples']} samples, one run:")
    for method in ("minmax", "percentile"):
        m = r[method]
        print(f"  {method:<11} time {m['compressorSeconds']:.1f}s vs {m['ortSeconds']:.1f}s = {m['timeRatio']:.2f}x; "
              f"peak RSS {m['compressorPeakRSS'] / 2**20:.0f} vs {m['ortPeakRSS'] / 2**20:.0f} MiB = {m['rssRatio']:.2f}x; "
              f"size {m['compressorSizeRatio']:.3f}x vs {m['ortSizeRatio']:.3f}x of fp32")
    g = r["percentile4x"]
    print(f"  percentile on {4 * r['samples']} samples: peak RSS {g['compressorPeakRSS'] / 2**20:.0f} MiB = "
          f"{g['rssGrowth']:.2f}x of {r['samples']} samples ({g['compressorSeconds']:.1f}s)")
    w = r["percentileWithQuality"]
    print(f"  percentile with the quality section (float and int8 models run over the samples too): "
          f"{w['compressorSeconds']:.1f}s, peak RSS {w['compressorPeakRSS'] / 2**20:.0f} MiB")
    print("targets: time <= 0.33x, peak RSS <= 0.5x of ORT's; RSS flat in the number of samples")
    print(f"{'static int8 (minmax)':<22}{'float acc':>10}{'ours acc':>10}{'ORT acc':>10}{'ours cosine':>13}{'ORT cosine':>12}")
    for name, f in r["fixtures"].items():
        print(f"{name:<22}{f['floatAccuracy']:>10.4f}{f['compressorAccuracy']:>10.4f}{f['ortAccuracy']:>10.4f}"
              f"{f['compressorCosine']:>13.4f}{f['ortCosine']:>12.4f}")
    print("targets: accuracy within 0.005 of float (CNN, MLP); transformer mean cosine >= 0.99")


def print_runtime(runtime):
    print()
    print(f"{'runtime':<22}{'threads':>8}{'compressor p50 ms':>19}{'ORT p50 ms':>12}{'latency ratio':>15}{'RSS ratio':>11}")
    for name, rows in runtime.items():
        for t, r in rows.items():
            print(f"{name:<22}{t:>8}{r['compressorP50Ms']:>19.2f}{r['ortP50Ms']:>12.2f}{r['latencyRatio']:>14.2f}x{r['rssRatio']:>10.2f}x")
    print("best p50 of 3 alternating rounds each; targets: latency <= 1.5x ONNX Runtime with 1 thread, <= 2x with 2; peak RSS <= ONNX Runtime's")


if __name__ == "__main__":
    main()
