#!/usr/bin/env python3
"""Graph-level fuzzing: small semantic mutations of real models, through every subcommand.

The wire-level fuzzers (MutationFuzzTests, `make fuzz`) corrupt bytes; most of those models are
refused by the reader. This one edits models at the IR level with onnx — an input dimension set
to -1 or 2^62, an integer attribute set to 0 / -7 / 2^31, an int64 shape constant changed, an
initializer's dims disagreeing with its data, a node input rewired, a node deleted, attribute
types swapped, empty tensors, huge ranks, outer-scope names removed from subgraphs, dtypes
changed — so that the models pass the reader and reach the passes and the runtime. Each mutant
goes through a few subcommands (inspect --shapes, convert, optimize, quantize in every mode,
prune in every mode, factorize, run, eval, bench, distill).

A run fails when the process ends by a signal (a Swift trap, an abort, ASan's report with
abort_on_error), exits 70 (internal error), exits with a code outside design.md's table, prints
anything but one `compressor: error:` line on failure, or times out. Failures are saved under
--out with the model, the command line and stderr; --minimize shrinks each to a regression case.

  python Tests/fuzz/mutate_graphs.py --compressor .build/debug/compressor [--seconds N | --runs N]
         [--seed S] [--models fixtures,realmodels] [--jobs 2] [--out DIR] [--minimize]
  python Tests/fuzz/mutate_graphs.py --minimize-case DIR/case-… --compressor BIN
"""
import argparse
import concurrent.futures
import copy
import json
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto, AttributeProto

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FIXTURES = ROOT / "Fixtures"
REALMODELS = pathlib.Path(os.environ.get("REALMODELS_CACHE", pathlib.Path.home() / ".cache/compressor-realmodels"))

# Exit codes of design.md; anything else (1, 70, a signal) is a failure.
EXPECTED_CODES = {0, 2, 64, 65, 66, 69, 73, 74}
SPECIAL_INTS = [0, -1, -7, 1, 2, 3, 7, 100_000, 2**31 - 1, 2**31, 2**32, 2**62, 2**63 - 1, -(2**63), -(2**31)]
SPECIAL_DIMS = [-1, -7, 0, 1, 2**31, 2**62, 2**63 - 1, 100_000]
# Real models whose samples make a run take seconds in the sanitizer build are left out.
REALMODEL_MAX_BYTES = 25_000_000


# ----------------------------------------------------------------------------------------------
# Mutations. Each takes (model, rng) and edits the model in place; returns a description, or None
# when the model offers nothing to mutate that way.

def all_graphs(g):
    """g and every subgraph inside it."""
    yield g
    for n in g.node:
        for a in n.attribute:
            if a.type == AttributeProto.GRAPH:
                yield from all_graphs(a.g)
            elif a.type == AttributeProto.GRAPHS:
                for sub in a.graphs:
                    yield from all_graphs(sub)


def all_nodes(m):
    for g in all_graphs(m.graph):
        for n in g.node:
            yield g, n


def feed_inputs(g):
    inits = {t.name for t in g.initializer}
    return [i for i in g.input if i.name not in inits]


def value_names(g):
    names = [i.name for i in g.input] + [t.name for t in g.initializer]
    for n in g.node:
        names += [o for o in n.output if o]
    return names


def pick(rng, seq):
    seq = list(seq)
    return rng.choice(seq) if seq else None


def mut_input_dim(m, rng):
    inputs = [i for i in feed_inputs(m.graph) if i.type.HasField("tensor_type")]
    i = pick(rng, inputs)
    if i is None:
        return None
    shape = i.type.tensor_type.shape
    if not shape.dim:
        shape.dim.add().dim_value = rng.choice(SPECIAL_DIMS)
        return f"input {i.name}: rank 0 -> 1"
    d = rng.randrange(len(shape.dim))
    if rng.random() < 0.15:
        shape.dim[d].dim_param = rng.choice(["N", "batch", "?", ""])
        return f"input {i.name} dim {d} symbolic"
    v = rng.choice(SPECIAL_DIMS)
    shape.dim[d].dim_value = v
    return f"input {i.name} dim {d} = {v}"


def int_attributes(m):
    out = []
    for _, n in all_nodes(m):
        for a in n.attribute:
            if a.type in (AttributeProto.INT, AttributeProto.INTS):
                out.append((n, a))
    return out


def mut_int_attr(m, rng):
    choice = pick(rng, int_attributes(m))
    if choice is None:
        return None
    n, a = choice
    v = rng.choice(SPECIAL_INTS)
    if a.type == AttributeProto.INT:
        a.i = v
        return f"{n.op_type} {n.name} {a.name} = {v}"
    r = rng.random()
    if r < 0.15:
        a.ints.append(v)
        return f"{n.op_type} {n.name} {a.name} += [{v}]"
    if r < 0.3 and a.ints:
        del a.ints[-1]
        return f"{n.op_type} {n.name} {a.name} drops its last element"
    if not a.ints:
        a.ints.append(v)
    else:
        a.ints[rng.randrange(len(a.ints))] = v
    return f"{n.op_type} {n.name} {a.name} = {list(a.ints)}"


def integer_tensors(m):
    """Small integer tensors: initializers and Constant values (shape constants, axes, indices)."""
    out = []
    for g in all_graphs(m.graph):
        for t in g.initializer:
            if t.data_type in (TensorProto.INT64, TensorProto.INT32) and t.data_location != TensorProto.EXTERNAL \
                    and np.prod(t.dims, dtype=np.int64) <= 64:
                out.append(t)
        for n in g.node:
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value" and a.t.data_type in (TensorProto.INT64, TensorProto.INT32) \
                            and np.prod(a.t.dims, dtype=np.int64) <= 64:
                        out.append(a.t)
    return out


def mut_shape_const(m, rng):
    t = pick(rng, integer_tensors(m))
    if t is None:
        return None
    try:
        a = numpy_helper.to_array(t).copy()
    except Exception:
        return None
    if a.size == 0:
        a = np.array([rng.choice(SPECIAL_INTS)], dtype=a.dtype)
    else:
        flat = a.reshape(-1)
        info = np.iinfo(a.dtype)
        v = rng.choice(SPECIAL_INTS)
        flat[rng.randrange(flat.size)] = min(max(v, info.min), info.max)
        if rng.random() < 0.2:
            flat = np.append(flat, 1)
        a = flat.reshape(-1) if flat.size != a.size else flat.reshape(a.shape)
    new = numpy_helper.from_array(a, t.name)
    t.CopyFrom(new)
    return f"integer tensor {t.name} = {a.reshape(-1)[:8].tolist()}"


def mut_init_dims(m, rng):
    inits = [t for g in all_graphs(m.graph) for t in g.initializer]
    t = pick(rng, inits)
    if t is None:
        return None
    r = rng.random()
    if r < 0.3 and t.dims:
        t.dims[rng.randrange(len(t.dims))] *= 2
    elif r < 0.5:
        t.dims.append(rng.choice([1, 2, 0]))
    elif r < 0.7 and t.dims:
        del t.dims[rng.randrange(len(t.dims))]
    elif t.dims:
        t.dims[rng.randrange(len(t.dims))] = rng.choice(SPECIAL_DIMS)
    return f"initializer {t.name} dims = {list(t.dims)} (data unchanged)"


def mut_rewire(m, rng):
    g = pick(rng, [g for g in all_graphs(m.graph) if g.node])
    if g is None:
        return None
    ni = rng.randrange(len(g.node))
    n = g.node[ni]
    names = value_names(g)
    r = rng.random()
    if r < 0.1 and n.output:
        src = n.output[0]  # a self-loop
    elif r < 0.2:
        src = "no_such_value"
    elif r < 0.35:
        later = [o for k in g.node[ni + 1:] for o in k.output if o]  # likely a cycle
        src = pick(rng, later) or pick(rng, names)
    else:
        src = pick(rng, names)
    if src is None:
        return None
    if n.input and rng.random() < 0.9:
        k = rng.randrange(len(n.input))
        n.input[k] = src
        return f"{n.op_type} {n.name} input {k} <- {src}"
    n.input.append(src)
    return f"{n.op_type} {n.name} gains input {src}"


def mut_delete_node(m, rng):
    g = pick(rng, [g for g in all_graphs(m.graph) if g.node])
    if g is None:
        return None
    i = rng.randrange(len(g.node))
    n = g.node[i]
    del g.node[i]
    return f"deleted {n.op_type} {n.name}"


def mut_attr_type(m, rng):
    attrs = [(n, a) for _, n in all_nodes(m) for a in n.attribute]
    choice = pick(rng, attrs)
    if choice is None:
        return None
    n, a = choice
    old = a.type
    new = rng.choice([t for t in (AttributeProto.INT, AttributeProto.FLOAT, AttributeProto.STRING, AttributeProto.INTS,
                                  AttributeProto.FLOATS, AttributeProto.TENSOR, AttributeProto.STRINGS) if t != old])
    value = (list(a.ints) or [a.i] or [1]) if old in (AttributeProto.INT, AttributeProto.INTS) else [1]
    name = a.name
    a.Clear()
    a.name = name
    a.type = new
    if new == AttributeProto.INT:
        a.i = value[0]
    elif new == AttributeProto.FLOAT:
        a.f = float(rng.choice([0.0, -1.0, 1e30, float("nan"), float("inf")]))
    elif new == AttributeProto.STRING:
        a.s = b"garbage"
    elif new == AttributeProto.INTS:
        a.ints.extend(value)
    elif new == AttributeProto.FLOATS:
        a.floats.extend([float(v) for v in value])
    elif new == AttributeProto.TENSOR:
        a.t.CopyFrom(numpy_helper.from_array(np.array(value, dtype=np.int64), "t"))
    elif new == AttributeProto.STRINGS:
        a.strings.extend([b"a", b"b"])
    return f"{n.op_type} {n.name} attribute {name}: type {old} -> {new}"


def mut_empty_tensor(m, rng):
    if rng.random() < 0.7:
        inits = [t for g in all_graphs(m.graph) for t in g.initializer if t.data_location != TensorProto.EXTERNAL]
        t = pick(rng, inits)
        if t is None:
            return None
        dims = list(t.dims) or [1]
        dims[rng.randrange(len(dims))] = 0
        dt = t.data_type
        name = t.name
        t.Clear()
        t.name, t.data_type = name, dt
        t.dims.extend(dims)
        return f"initializer {name} emptied, dims {dims}"
    inputs = [i for i in feed_inputs(m.graph) if i.type.HasField("tensor_type") and i.type.tensor_type.shape.dim]
    i = pick(rng, inputs)
    if i is None:
        return None
    for d in i.type.tensor_type.shape.dim:
        if rng.random() < 0.5:
            d.dim_value = 0
    i.type.tensor_type.shape.dim[0].dim_value = 0
    return f"input {i.name} has a 0 dimension"


def mut_huge_rank(m, rng):
    rank = rng.choice([9, 33, 64, 300])
    r = rng.random()
    if r < 0.4:
        inputs = [i for i in feed_inputs(m.graph) if i.type.HasField("tensor_type")]
        i = pick(rng, inputs)
        if i is None:
            return None
        shape = i.type.tensor_type.shape
        while len(shape.dim) < rank:
            shape.dim.add().dim_value = 1
        return f"input {i.name} rank {rank}"
    if r < 0.7:
        t = pick(rng, integer_tensors(m))
        if t is None or len(t.dims) != 1:
            return None
        try:
            a = numpy_helper.to_array(t)
        except Exception:
            return None
        t.CopyFrom(numpy_helper.from_array(np.concatenate([a, np.ones(rank, dtype=a.dtype)]), t.name))
        return f"integer tensor {t.name} gains {rank} ones"
    inits = [t for g in all_graphs(m.graph) for t in g.initializer]
    t = pick(rng, inits)
    if t is None:
        return None
    while len(t.dims) < rank:
        t.dims.insert(0, 1)
    return f"initializer {t.name} rank {rank}"


def mut_outer_scope(m, rng):
    """A subgraph reads a name from an enclosing graph: rename the reference, or delete the producer."""
    cases = []
    for g in all_graphs(m.graph):
        for n in g.node:
            for a in n.attribute:
                subs = [a.g] if a.type == AttributeProto.GRAPH else list(a.graphs)
                for sub in subs:
                    local = set(value_names(sub))
                    for sn in sub.node:
                        for k, name in enumerate(sn.input):
                            if name and name not in local:
                                cases.append((g, sub, sn, k, name))
    c = pick(rng, cases)
    if c is None:
        return None
    g, sub, sn, k, name = c
    if rng.random() < 0.5:
        sn.input[k] = name + "_removed"
        return f"subgraph node {sn.name} reads missing outer name {name}_removed"
    for i, n in enumerate(g.node):
        if name in n.output:
            del g.node[i]
            return f"deleted {n.op_type} {n.name}, producer of outer-scope {name}"
    for i, t in enumerate(g.initializer):
        if t.name == name:
            del g.initializer[i]
            return f"deleted initializer {name}, read by a subgraph"
    sn.input[k] = name + "_removed"
    return f"subgraph node {sn.name} reads missing outer name {name}_removed"


SAME_WIDTH = {
    TensorProto.FLOAT: [TensorProto.INT32, TensorProto.UINT32],
    TensorProto.INT32: [TensorProto.FLOAT, TensorProto.UINT32],
    TensorProto.INT64: [TensorProto.DOUBLE, TensorProto.UINT64],
    TensorProto.DOUBLE: [TensorProto.INT64],
    TensorProto.FLOAT16: [TensorProto.INT16, TensorProto.BFLOAT16, TensorProto.UINT16],
    TensorProto.UINT8: [TensorProto.INT8, TensorProto.BOOL],
    TensorProto.INT8: [TensorProto.UINT8, TensorProto.BOOL],
}
ALL_TYPES = [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 16, 8, 0, 22, 999]


def mut_dtype(m, rng):
    r = rng.random()
    if r < 0.45:
        t = pick(rng, [t for g in all_graphs(m.graph) for t in g.initializer if t.data_type != TensorProto.STRING])
        if t is None:
            return None
        old = t.data_type
        has_raw = t.HasField("raw_data") or t.data_location == TensorProto.EXTERNAL
        t.data_type = rng.choice(SAME_WIDTH.get(old, ALL_TYPES)) if has_raw and rng.random() < 0.8 else rng.choice(ALL_TYPES)
        return f"initializer {t.name} dtype {old} -> {t.data_type}"
    if r < 0.7:
        vis = [i for i in list(m.graph.input) + list(m.graph.output) if i.type.HasField("tensor_type")]
        i = pick(rng, vis)
        if i is None:
            return None
        i.type.tensor_type.elem_type = rng.choice(ALL_TYPES)
        return f"value {i.name} elem_type {i.type.tensor_type.elem_type}"
    casts = [n for _, n in all_nodes(m) if n.op_type in ("Cast", "ConstantOfShape", "EyeLike", "RandomNormal",
                                                             "RandomUniform", "RandomNormalLike", "Multinomial")]
    n = pick(rng, casts)
    if n is None:
        # A Constant's value changes type (data reinterpreted where widths match).
        consts = [n for _, n in all_nodes(m) if n.op_type == "Constant"]
        n = pick(rng, consts)
        if n is None:
            return None
        for a in n.attribute:
            if a.name == "value":
                a.t.data_type = rng.choice(SAME_WIDTH.get(a.t.data_type, ALL_TYPES))
                return f"Constant {n.name} dtype {a.t.data_type}"
        return None
    for a in n.attribute:
        if a.name in ("to", "dtype"):
            a.i = rng.choice(ALL_TYPES)
            return f"{n.op_type} {n.name} {a.name} = {a.i}"
    n.attribute.append(helper.make_attribute("to" if n.op_type == "Cast" else "dtype", rng.choice(ALL_TYPES)))
    return f"{n.op_type} {n.name} gains a dtype"


def mut_op_type(m, rng):
    """A node becomes another operator of the model (its inputs and attributes stay)."""
    ops = sorted({n.op_type for _, n in all_nodes(m)} | {"Reshape", "Expand", "Tile", "Pad", "Resize", "Gather",
                                                          "Slice", "Concat", "Transpose", "Conv", "MatMul", "Gemm",
                                                          "ConstantOfShape", "Range", "OneHot", "Split", "Squeeze",
                                                          "Unsqueeze", "TopK", "CumSum", "ReduceSum", "Softmax",
                                                          "LayerNormalization", "BatchNormalization", "MaxPool",
                                                          "AveragePool", "ConvTranspose", "Einsum", "Where", "Flatten"})
    nodes = [n for _, n in all_nodes(m)]
    n = pick(rng, nodes)
    if n is None:
        return None
    old = n.op_type
    n.op_type = rng.choice(ops)
    return f"{old} {n.name} becomes {n.op_type}"


def mut_dup_node(m, rng):
    g = pick(rng, [g for g in all_graphs(m.graph) if g.node])
    if g is None:
        return None
    n = g.node[rng.randrange(len(g.node))]
    dup = copy.deepcopy(n)
    dup.name = n.name + "_dup"
    g.node.append(dup)
    return f"duplicated {n.op_type} {n.name} (same outputs)"


def mut_drop_attr(m, rng):
    nodes = [n for _, n in all_nodes(m) if n.attribute]
    n = pick(rng, nodes)
    if n is None:
        return None
    i = rng.randrange(len(n.attribute))
    name = n.attribute[i].name
    del n.attribute[i]
    return f"{n.op_type} {n.name} loses attribute {name}"


def mut_opset(m, rng):
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            old = o.version
            o.version = rng.choice([7, 9, 10, 11, 12, 13, 17, 18, 19, 21])
            return f"opset {old} -> {o.version}"
    return None


def mut_inputs_arity(m, rng):
    nodes = [n for _, n in all_nodes(m)]
    n = pick(rng, nodes)
    if n is None:
        return None
    r = rng.random()
    if r < 0.4 and n.input:
        del n.input[-1]
        return f"{n.op_type} {n.name} loses its last input"
    if r < 0.6 and len(n.input) > 1:
        a, b = rng.sample(range(len(n.input)), 2)
        n.input[a], n.input[b] = n.input[b], n.input[a]
        return f"{n.op_type} {n.name} inputs {a} and {b} swapped"
    if r < 0.8 and n.input:
        n.input[rng.randrange(len(n.input))] = ""
        return f"{n.op_type} {n.name} an input omitted"
    if r < 0.9 and n.output:
        n.output.append(n.output[0] + "_extra")
        return f"{n.op_type} {n.name} gains an output"
    if n.output:
        del n.output[-1]
        return f"{n.op_type} {n.name} loses an output"
    return None


def mut_value_info(m, rng):
    """Wrong shapes declared for intermediate values and outputs."""
    outs = [n.output[0] for n in m.graph.node if n.output and n.output[0]]
    name = pick(rng, outs)
    if name is None:
        return None
    rank = rng.choice([0, 1, 2, 4, 9])
    dims = [rng.choice([1, 3, 0, -1, 2**40]) for _ in range(rank)]
    m.graph.value_info.append(helper.make_tensor_value_info(name, rng.choice([1, 7, 10]), dims))
    return f"value_info {name} declared {dims}"


def mut_float_values(m, rng):
    inits = [t for g in all_graphs(m.graph) for t in g.initializer
             if t.data_type == TensorProto.FLOAT and t.data_location != TensorProto.EXTERNAL and np.prod(t.dims) > 0]
    t = pick(rng, inits)
    if t is None:
        return None
    try:
        a = numpy_helper.to_array(t).copy()
    except Exception:
        return None
    v = rng.choice([np.nan, np.inf, -np.inf, 0.0, 3.4e38, -3.4e38, 1e-45])
    if rng.random() < 0.3:
        a[...] = v
    else:
        a.reshape(-1)[rng.randrange(a.size)] = v
    t.CopyFrom(numpy_helper.from_array(a.astype(np.float32), t.name))
    return f"initializer {t.name} holds {v}"


MUTATIONS = {
    "input_dim": mut_input_dim, "int_attr": mut_int_attr, "shape_const": mut_shape_const, "init_dims": mut_init_dims,
    "rewire": mut_rewire, "delete_node": mut_delete_node, "attr_type": mut_attr_type, "empty_tensor": mut_empty_tensor,
    "huge_rank": mut_huge_rank, "outer_scope": mut_outer_scope, "dtype": mut_dtype, "op_type": mut_op_type,
    "dup_node": mut_dup_node, "drop_attr": mut_drop_attr, "opset": mut_opset, "inputs_arity": mut_inputs_arity,
    "value_info": mut_value_info, "float_values": mut_float_values,
}
# The kinds are drawn more often than the extras.
WEIGHTS = {"input_dim": 3, "int_attr": 4, "shape_const": 4, "init_dims": 2, "rewire": 2, "delete_node": 2,
           "attr_type": 2, "empty_tensor": 2, "huge_rank": 2, "outer_scope": 2, "dtype": 2, "op_type": 3,
           "dup_node": 1, "drop_attr": 1, "opset": 1, "inputs_arity": 1, "value_info": 1, "float_values": 1}


def mutate(model, rng, count):
    m = copy.deepcopy(model)
    done = []
    kinds = list(WEIGHTS)
    weights = [WEIGHTS[k] for k in kinds]
    tries = 0
    while len(done) < count and tries < count * 10:
        tries += 1
        kind = rng.choices(kinds, weights)[0]
        try:
            what = MUTATIONS[kind](m, rng)
        except (ValueError, TypeError, OverflowError, IndexError):
            what = None
        if what:
            done.append(f"{kind}: {what}")
    return m, done


# ----------------------------------------------------------------------------------------------
# Base models and the commands run on them.

class Base:
    """A model to mutate, and data matching its original inputs."""

    def __init__(self, name, path, inputs, data, labels=None, small=True):
        self.name = name
        self.path = pathlib.Path(path)
        self.model = onnx.load(str(path), load_external_data=False)
        self.inputs = inputs          # input name -> one .npy/.npz file for `run`
        self.data = data              # a data file or directory for calibration / eval
        self.labels = labels
        self.small = small
        self.external = sorted({e.value for g in all_graphs(self.model.graph) for t in g.initializer
                                for e in t.external_data if e.key == "location"})


def fixture_bases(work):
    spec = json.loads((FIXTURES / "fixtures.json").read_text())
    bases = []
    small = work / "fixture-data"
    small.mkdir(parents=True, exist_ok=True)
    for name, entry in sorted(spec.items()):
        inputs = {}
        npz = {}
        for input_name, rel in entry.get("inputs", {}).items():
            a = np.load(FIXTURES / rel)[:8]
            p = small / f"{name}.{input_name.replace('/', '_')}.npy"
            np.save(p, a)
            inputs[input_name] = p
            npz[input_name] = a
        data = None
        if npz:
            data = small / f"{name}.npz"
            np.savez(data, **npz)
        labels = None
        if entry.get("labels"):
            labels = small / f"{name}.labels.npy"
            np.save(labels, np.load(FIXTURES / entry["labels"])[:8])
        bases.append(Base(name, FIXTURES / entry["file"], inputs, data, labels))
    return bases


def realmodel_bases(work, only=None):
    manifest = REALMODELS / "manifest.json"
    if not manifest.exists():
        return []
    bases = []
    for entry in json.loads(manifest.read_text())["models"]:
        path = pathlib.Path(entry["path"])
        if not path.exists() or entry["bytes"] > REALMODEL_MAX_BYTES or (only and entry["name"] not in only):
            continue
        folder = path.parent
        samples = sorted((folder / "check").iterdir()) if (folder / "check").exists() else []
        if not samples:
            continue
        # Copied: the cache is read-only for this tool, and mutants are written beside the copy.
        copy_dir = work / "realmodels" / entry["name"]
        copy_dir.mkdir(parents=True, exist_ok=True)
        local = copy_dir / "model.onnx"
        if not local.exists():
            shutil.copy(path, local)
        data_dir = copy_dir / "data"
        if not data_dir.exists():
            data_dir.mkdir()
            for s in samples[:2]:
                shutil.copy(s, data_dir / s.name)
        first = sorted(data_dir.iterdir())[0]
        names = list(entry["inputs"])
        inputs = {n: first for n in names} if first.suffix == ".npz" else {names[0]: first}
        bases.append(Base(entry["name"], local, inputs, data_dir, small=entry["bytes"] < 5_000_000))
    return bases


# (weight, arguments, needs data): {m} mutant, {o} output model, {d} data, {r} the original model
COMMANDS = [
    (3, ["inspect", "{m}", "--shapes", "--json"], False),
    (1, ["inspect", "{m}"], False),
    (2, ["convert", "{m}", "{o}"], False),
    (1, ["convert", "{m}", "{o}", "--external-data", "--size-threshold", "0"], False),
    (1, ["convert", "{m}", "{o}", "--opset", "21"], False),
    (1, ["convert", "{m}", "{o}", "--opset", "11"], False),
    (2, ["optimize", "{m}", "-o", "{o}"], False),
    (3, ["quantize", "{m}", "-o", "{o}"], False),
    (1, ["quantize", "{m}", "-o", "{o}", "--bits", "4"], False),
    (1, ["quantize", "{m}", "-o", "{o}", "--bits", "4", "--format", "matmulnbits"], False),
    (2, ["quantize", "{m}", "-o", "{o}", "--mode", "dynamic"], False),
    (2, ["quantize", "{m}", "-o", "{o}", "--mode", "static", "--data", "{d}", "--calibration-samples", "4", "--eval-samples", "2"], True),
    (1, ["quantize", "{m}", "-o", "{o}", "--mode", "static", "--data", "{d}", "--calibration", "entropy", "--calibration-samples", "4", "--eval-samples", "0"], True),
    (1, ["quantize", "{m}", "-o", "{o}", "--mode", "static", "--format", "qoperator", "--data", "{d}", "--calibration", "percentile", "--calibration-samples", "4", "--eval-samples", "0"], True),
    (2, ["prune", "{m}", "-o", "{o}", "--sparsity", "0.5"], False),
    (1, ["prune", "{m}", "-o", "{o}", "--sparsity", "0.5", "--global", "--prune-first-last"], False),
    (1, ["prune", "{m}", "-o", "{o}", "--pattern", "2:4"], False),
    (3, ["prune", "{m}", "-o", "{o}", "--structured", "--ratio", "0.3", "--channel-multiple", "1"], False),
    (1, ["prune", "{m}", "-o", "{o}", "--structured", "--ratio", "0.5", "--heads"], False),
    (1, ["prune", "{m}", "-o", "{o}", "--structured", "--ratio", "0.3", "--criterion", "activation", "--data", "{d}"], True),
    (1, ["prune", "{m}", "-o", "{o}", "--structured", "--target-macs", "0.8", "--data", "{d}"], True),
    (2, ["factorize", "{m}", "-o", "{o}", "--rank-ratio", "0.5"], False),
    (1, ["factorize", "{m}", "-o", "{o}", "--energy", "0.9"], False),
    (1, ["factorize", "{m}", "-o", "{o}", "--target-params", "0.5", "--data", "{d}"], True),
    (3, ["run", "{m}", "{inputs}"], True),
    (2, ["eval", "{m}", "--data", "{d}", "--reference", "{r}", "--json"], True),
    (2, ["bench", "{m}", "--runs", "1", "--warmup", "0"], False),
    (1, ["bench", "{m}", "--runs", "1", "--warmup", "0", "{inputs}"], True),
    (1, ["distill", "--student", "{m}", "--teacher", "{r}", "--data", "{d}", "--epochs", "1", "--batch-size", "4", "--quiet", "-o", "{o}"], True),
]
# Only on the small models: training, factorization, and the structured search to a MACs target
# (a minute and more on a detector of the real-model suite, in the release build).
SLOW = {"distill", "factorize", "--target-macs"}


def command_line(binary, template, base, mutant, out):
    argv = [str(binary)]
    for a in template:
        if a == "{inputs}":
            argv += [f"--input={n}={p}" for n, p in base.inputs.items()]
            continue
        argv.append(a.format(m=mutant, o=out, d=base.data, r=base.path))
    if MAX_MEMORY:
        argv += ["--max-memory", MAX_MEMORY]
    if template[0] in ("quantize", "prune", "factorize", "distill", "optimize") and base.labels and "--data" in template \
            and template[0] != "distill":
        argv += ["--labels", str(base.labels)]
    return argv


def classify(code, stderr, timed_out):
    """'ok' or the kind of failure."""
    if timed_out:
        return "timeout"
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    if "ERROR: AddressSanitizer" in stderr or "runtime error:" in stderr:
        return "sanitizer"
    if code == 70:
        return "internal"
    if code not in EXPECTED_CODES:
        return f"exit {code}"
    if code != 0:
        lines = [l for l in stderr.splitlines() if l.strip()]
        errors = [l for l in lines if l.startswith("compressor: error: ")]
        if len(errors) != 1:
            return "format"
    return "ok"


def signature(kind, stderr):
    """What distinguishes one bug from another: the failure and the first telling line."""
    for pattern in (r"Fatal error: .*", r"ERROR: AddressSanitizer: [\w-]+", r"runtime error: .*", r"compressor: error: .*"):
        found = re.search(pattern, stderr)
        if found:
            line = re.sub(r"0x[0-9a-f]+", "0x…", found.group(0))
            line = re.sub(r"/tmp/[^ ,:']+", "PATH", line)
            return f"{kind}: {line[:200]}"
    return kind


def run_one(argv, timeout, env):
    try:
        r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout, env=env)
        stderr = r.stderr.decode("utf-8", "replace")
        return r.returncode, stderr, False
    except subprocess.TimeoutExpired as e:
        return None, (e.stderr or b"").decode("utf-8", "replace"), True


def fuzz_env(extra=None):
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "abort_on_error=1:detect_leaks=0:allocator_may_return_null=1")
    env.setdefault("SWIFT_BACKTRACE", "enable=no")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    # A Loop whose trip count was mutated to 2^63 runs as told; stop it early (exit 65).
    env.setdefault("COMPRESSOR_LOOP_LIMIT", "10000")
    env.update(extra or {})
    return env


def write_mutant(model, path, base):
    onnx.save(model, str(path))
    for loc in base.external:
        src = base.path.parent / loc
        dst = path.parent / loc
        if src.exists() and not dst.exists():
            shutil.copy(src, dst)


def job(args_tuple):
    """One mutant through `per_mutant` commands (runs in a worker process)."""
    binary, base_index, seed, per_mutant, timeout, work = args_tuple
    base = BASES[base_index]
    rng = random.Random(seed)
    mutant, what = mutate(base.model, rng, rng.choice([1, 1, 2, 3]))
    d = pathlib.Path(work) / f"m{seed}"
    d.mkdir(parents=True, exist_ok=True)
    path = d / "mutant.onnx"
    try:
        write_mutant(mutant, path, base)
    except Exception as e:  # onnx refuses to serialize (e.g. a value out of range): not a run
        shutil.rmtree(d, ignore_errors=True)
        return []
    results = []
    choices = [c for c in COMMANDS if not (c[2] and base.data is None) and (HAS_OPSET or "--opset" not in c[1])
               and not (SLOW.intersection(c[1]) and not base.small)]
    weights = [c[0] for c in choices]
    env = fuzz_env()
    for k in range(per_mutant):
        _, template, _ = rng.choices(choices, weights)[0]
        out = d / f"out{k}.onnx"
        argv = command_line(binary, template, base, path, out)
        started = time.monotonic()
        code, stderr, timed_out = run_one(argv, timeout, env)
        seconds = time.monotonic() - started
        kind = classify(code if code is not None else 0, stderr, timed_out)
        leftovers = [p.name for p in d.iterdir() if ".tmp-" in p.name]
        if kind == "ok" and leftovers:
            kind = "leftover"
        entry = dict(base=base.name, seed=seed, mutations=what, argv=argv[1:], code=code, kind=kind,
                     seconds=round(seconds, 3))
        if kind != "ok":
            entry["stderr"] = stderr[-4000:]
            entry["signature"] = signature(kind, stderr)
            entry["case"] = str(pathlib.Path(work).parent / "failures" / f"case-{seed}-{k}")
            case = pathlib.Path(work).parent / "failures" / f"case-{seed}-{k}"
            case.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, case / "mutant.onnx")
            for loc in base.external:
                if (d / loc).exists():
                    shutil.copy(d / loc, case / loc)
            (case / "case.json").write_text(json.dumps(dict(entry, base_path=str(base.path),
                                                            inputs={n: str(p) for n, p in base.inputs.items()},
                                                            data=str(base.data) if base.data else None,
                                                            labels=str(base.labels) if base.labels else None),
                                                       indent=1))
        if code is not None and code != 0:
            entry["error"] = (stderr.strip().splitlines() or [""])[-1][:300]
        results.append(entry)
        for p in d.iterdir():
            if p.name.startswith("out") or ".tmp-" in p.name or p.name.endswith(".json"):
                if p.is_file():
                    p.unlink()
    shutil.rmtree(d, ignore_errors=True)
    return results


BASES = []
HAS_OPSET = False
# Mutants that declare 2^31-wide inputs are legal and would be computed; a small budget makes
# them fail fast (65) instead of running for minutes.
MAX_MEMORY = None


def init_worker(bases, has_opset, max_memory):
    global BASES, HAS_OPSET, MAX_MEMORY
    BASES = bases
    HAS_OPSET = has_opset
    MAX_MEMORY = max_memory


def supports_opset(binary):
    """`convert --opset` arrives with the opset converter; until then those commands are skipped."""
    r = subprocess.run([binary, "convert", "--help"], capture_output=True, text=True)
    return "--opset" in r.stdout


def campaign(args):
    work = pathlib.Path(args.out).resolve()
    work.mkdir(parents=True, exist_ok=True)
    sources = set(args.models.split(","))
    bases = []
    if "fixtures" in sources:
        bases += fixture_bases(work)
    if "realmodels" in sources:
        bases += realmodel_bases(work, set(args.realmodels.split(",")) if args.realmodels else None)
    if not bases:
        sys.exit("no models to mutate")
    has_opset = supports_opset(args.compressor)
    init_worker(bases, has_opset, args.max_memory)
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.seconds if args.seconds else None
    runs_wanted = args.runs
    log = open(work / "runs.jsonl", "a")
    totals, failures, signatures = {}, [], {}
    runs = 0
    started = time.monotonic()
    # Fixtures run fast; real models are drawn less often.
    base_weights = [3 if b.path.is_relative_to(FIXTURES) else 1 for b in bases]

    def tasks():
        while True:
            b = rng.choices(range(len(bases)), base_weights)[0]
            yield (args.compressor, b, rng.randrange(2**40), args.per_mutant, args.timeout, str(work / "tmp"))

    def done():
        if deadline and time.monotonic() > deadline:
            return True
        return runs_wanted is not None and runs >= runs_wanted

    with concurrent.futures.ProcessPoolExecutor(args.jobs, initializer=init_worker, initargs=(bases, has_opset, args.max_memory)) as pool:
        pending = set()
        gen = tasks()
        while True:
            while not done() and len(pending) < args.jobs * 2:
                pending.add(pool.submit(job, next(gen)))
            if not pending:
                break
            finished, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
            for f in finished:
                for entry in f.result():
                    runs += 1
                    log.write(json.dumps(entry) + "\n")
                    code = "timeout" if entry["code"] is None else str(entry["code"])
                    totals[code] = totals.get(code, 0) + 1
                    if entry["kind"] != "ok":
                        failures.append(entry)
                        sig = entry["signature"]
                        if sig not in signatures:
                            signatures[sig] = entry
                            print(f"[{runs}] NEW {sig}\n    {entry['base']} seed {entry['seed']}: {entry['mutations']}\n"
                                  f"    {' '.join(entry['argv'])}", flush=True)
            if done() and not pending:
                break
    log.close()
    elapsed = time.monotonic() - started
    summary = dict(runs=runs, seconds=round(elapsed, 1), runs_per_second=round(runs / max(elapsed, 1e-9), 2),
                   exit_codes=dict(sorted(totals.items())),
                   failures=len(failures), by_kind={}, signatures=sorted(signatures))
    for f in failures:
        summary["by_kind"][f["kind"]] = summary["by_kind"].get(f["kind"], 0) + 1
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    shutil.rmtree(work / "tmp", ignore_errors=True)
    if args.minimize:
        for sig, entry in sorted(signatures.items()):
            if entry["kind"] != "timeout":
                minimize_case(args.compressor, entry["case"], timeout=args.timeout)
    hard = [f for f in failures if f["kind"] not in ("ok",) and (args.strict_format or f["kind"] != "format")]
    return 1 if hard else 0


# ----------------------------------------------------------------------------------------------
# Minimization: greedy deletion of nodes, initializers, outputs while the failure keeps its signature.

def reproduce(binary, case, model, timeout):
    d = pathlib.Path(tempfile.mkdtemp(prefix="minimize-"))
    try:
        path = d / "mutant.onnx"
        onnx.save(model, str(path))
        for extra in case["dir"].iterdir():
            if extra.name not in ("mutant.onnx", "case.json", "minimized.onnx") and extra.is_file():
                shutil.copy(extra, d / extra.name)
        argv = [binary] + [str(path) if a == case["mutant"] else (str(d / "out.onnx") if a == case["out"] else a)
                           for a in case["argv"]]
        code, stderr, timed_out = run_one(argv, timeout, fuzz_env())
        kind = classify(code if code is not None else 0, stderr, timed_out)
        return signature(kind, stderr) if kind != "ok" else None
    finally:
        shutil.rmtree(d, ignore_errors=True)


def minimize_case(binary, case_dir, timeout=60, budget=400):
    case_dir = pathlib.Path(case_dir)
    entry = json.loads((case_dir / "case.json").read_text())
    model = onnx.load(str(case_dir / "mutant.onnx"), load_external_data=False)
    mutant_arg = next(a for a in entry["argv"] if a.endswith("mutant.onnx"))
    out_arg = next((a for a in entry["argv"] if re.search(r"out\d+\.onnx$", a)), None)
    case = dict(dir=case_dir, argv=entry["argv"], mutant=mutant_arg, out=out_arg)
    want = reproduce(binary, case, model, timeout)
    if want is None:
        print(f"{case_dir}: does not reproduce")
        return None
    attempts = 0

    def still(m):
        nonlocal attempts
        attempts += 1
        return reproduce(binary, case, m, timeout) == want

    g = model.graph
    # Nodes, in chunks then one by one (ddmin-style).
    chunk = max(1, len(g.node) // 2)
    while chunk >= 1 and attempts < budget:
        i = 0
        while i < len(model.graph.node) and attempts < budget:
            trial = copy.deepcopy(model)
            del trial.graph.node[i:i + chunk]
            prune_unused(trial)
            if still(trial):
                model = trial
            else:
                i += chunk
        chunk //= 2
    for field in ("output", "value_info"):
        i = 0
        while i < len(getattr(model.graph, field)) and attempts < budget:
            trial = copy.deepcopy(model)
            if field == "output" and len(trial.graph.output) == 1:
                break
            del getattr(trial.graph, field)[i]
            if still(trial):
                model = trial
            else:
                i += 1
    prune_unused_checked = copy.deepcopy(model)
    prune_unused(prune_unused_checked)
    if still(prune_unused_checked):
        model = prune_unused_checked
    out = case_dir / "minimized.onnx"
    onnx.save(model, str(out))
    print(f"{case_dir}: {want}\n  minimized to {len(model.graph.node)} nodes, {out.stat().st_size} bytes "
          f"({attempts} attempts)")
    return out


def prune_unused(m):
    """Drops initializers that nothing reads any more (keeps inputs: run names them)."""
    used = set()
    for g in all_graphs(m.graph):
        for n in g.node:
            used.update(n.input)
        used.update(o.name for o in g.output)
    keep = [t for t in m.graph.initializer if t.name in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    feeds = {i.name for i in m.graph.input}
    inits = {t.name for t in m.graph.initializer}
    # IR-3 style inputs that named removed initializers
    keep_inputs = [i for i in m.graph.input if i.name in used or i.name not in inits]
    del m.graph.input[:]
    m.graph.input.extend(keep_inputs)


REGRESSIONS = HERE / "regressions"


def promote(binary, case_dir, name, note):
    """Commits a failure as a regression case: its (minimized) model, small data it needs, the
    command line with placeholders, and what the fixed binary answers (exit code, error line)."""
    case_dir = pathlib.Path(case_dir)
    entry = json.loads((case_dir / "case.json").read_text())
    model = case_dir / "minimized.onnx" if (case_dir / "minimized.onnx").exists() else case_dir / "mutant.onnx"
    REGRESSIONS.mkdir(exist_ok=True)
    (REGRESSIONS / "data").mkdir(exist_ok=True)
    shutil.copy(model, REGRESSIONS / f"{name}.onnx")
    for extra in case_dir.iterdir():  # external data beside the model
        if extra.name not in ("mutant.onnx", "minimized.onnx", "case.json"):
            shutil.copy(extra, REGRESSIONS / extra.name)
    args = []
    for a in entry["argv"]:
        prefix, sep, value = a.partition("=") if a.startswith("--input=") else ("", "", a)
        if prefix:
            name_part, _, path = value.rpartition("=")
            value = path
        if value.endswith("mutant.onnx"):
            value = "{model}"
        elif re.search(r"out\d+\.onnx$", value):
            value = "{out}"
        elif "/fixture-data/" in value or "/realmodels/" in value:
            src = pathlib.Path(value)
            dst = REGRESSIONS / "data" / (src.name if "/fixture-data/" in value else f"{src.parent.parent.name}.{src.name}")
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True)
            else:
                shutil.copy(src, dst)
            value = "{data}/" + dst.name
        elif value.startswith(str(FIXTURES) + "/"):
            value = "{fixtures}/" + value[len(str(FIXTURES)) + 1:]
        elif value == entry.get("base_path"):  # a real model, the reference of eval and distill
            src = pathlib.Path(value)
            shutil.copy(src, REGRESSIONS / "data" / f"{src.parent.name}.onnx")
            value = "{data}/" + f"{src.parent.name}.onnx"
        args.append(f"{prefix}={name_part}={value}" if prefix else value)
    out = str(pathlib.Path(tempfile.mkdtemp()) / "out.onnx")
    argv = [binary] + [a.replace("{model}", str(REGRESSIONS / f"{name}.onnx")).replace("{data}", str(REGRESSIONS / "data"))
                       .replace("{fixtures}", str(FIXTURES)).replace("{out}", out) for a in args]
    r = subprocess.run(argv, capture_output=True, text=True, env=fuzz_env(), timeout=600)
    error = (r.stderr.strip().splitlines() or [""])[-1]
    manifest = REGRESSIONS / "regressions.json"
    cases = json.loads(manifest.read_text()) if manifest.exists() else []
    cases = [c for c in cases if c["name"] != name]
    # The error line without paths: what the test compares.
    detail = (error.removeprefix("compressor: error: ").replace(str(REGRESSIONS / "data"), "{data}")
              .replace(str(REGRESSIONS / f"{name}.onnx"), "{model}").replace(str(FIXTURES), "{fixtures}").replace(out, "{out}"))
    cases.append(dict(name=name, note=note, mutations=entry["mutations"], found=entry.get("signature", entry["kind"]),
                      args=args, exit=r.returncode, error=detail if r.returncode else ""))
    cases.sort(key=lambda c: c["name"])
    manifest.write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")
    print(f"{name}: exit {r.returncode} {error}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--compressor", required=True)
    p.add_argument("--seconds", type=float)
    p.add_argument("--runs", type=int)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--models", default="fixtures,realmodels")
    p.add_argument("--realmodels", help="only these models of the real-model suite (comma-separated names)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--per-mutant", type=int, default=3, help="commands run on each mutant")
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--max-memory", default="2G", help="--max-memory for every run ('' for the default budget)")
    p.add_argument("--out", default=str(ROOT / ".build/fuzz-graph"))
    p.add_argument("--minimize", action="store_true", help="minimize one failure per signature afterwards")
    p.add_argument("--minimize-case", help="minimize this saved failure directory and exit")
    p.add_argument("--strict-format", action="store_true", help="a failure that is not exactly one error line fails too")
    p.add_argument("--promote", nargs=3, metavar=("CASE", "NAME", "NOTE"),
                   help="commit a saved failure as regression case NAME under Tests/fuzz/regressions")
    p.add_argument("--replay", nargs=2, metavar=("BASE", "SEED"), help="write the mutant of BASE for SEED to --out and exit")
    args = p.parse_args()
    args.compressor = str(pathlib.Path(args.compressor).resolve())
    if args.promote:
        promote(args.compressor, *args.promote)
        return
    if args.replay:
        work = pathlib.Path(args.out).resolve()
        bases = {b.name: b for b in fixture_bases(work) + realmodel_bases(work)}
        base = bases[args.replay[0]]
        rng = random.Random(int(args.replay[1]))
        mutant, what = mutate(base.model, rng, rng.choice([1, 1, 2, 3]))
        write_mutant(mutant, work / "mutant.onnx", base)
        print(work / "mutant.onnx", what)
        return
    if args.minimize_case:
        minimize_case(args.compressor, args.minimize_case, timeout=args.timeout)
        return
    if args.seconds is None and args.runs is None:
        args.runs = 100
    sys.exit(campaign(args))


if __name__ == "__main__":
    main()
