#!/usr/bin/env python3
"""Generates every fixture model in this folder, deterministically.

Run with `make fixtures` (needs torch, onnx, onnxruntime, numpy and scikit-learn at generation
time only; compressor itself never runs Python). Classifiers are trained with torch on
scikit-learn's bundled digits data set (8x8 images, 10 classes), then written with
onnx.helper so each graph has exactly the structure real exported models have: unfused
BatchNormalization, depthwise convs, squeeze-excitation, decomposed LayerNorm, GELU by Erf,
additive -inf attention masks, weights in Constant nodes, subgraphs, old and new opsets,
float16, external data. Each model is checked with onnx.checker and its ONNX Runtime outputs
compared with torch's. `fixtures.json` lists every model with its input files and metrics.
"""
import json
import os
import pathlib
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = pathlib.Path(__file__).resolve().parent
DATA = HERE / "data"
torch.manual_seed(0)
np.random.seed(0)
torch.set_num_threads(1)

PRODUCER = ("compressor-fixtures", "1")
MANIFEST = {}


# ----------------------------------------------------------------------------- data

digits = load_digits()
X = (digits.data / 16.0).astype(np.float32)            # [1797, 64] in [0, 1]
Y = digits.target.astype(np.int64)
TOK = digits.data.astype(np.int64)                      # pixel intensities 0..16 as token ids
x_train, x_test, y_train, y_test, t_train, t_test = train_test_split(
    X, Y, TOK, test_size=0.2, random_state=0, stratify=Y)
IMG_TRAIN = x_train.reshape(-1, 1, 8, 8)
IMG_TEST = x_test.reshape(-1, 1, 8, 8)
MASK_TEST = np.ones_like(t_test)
MASK_TEST[::7, 56:] = 0                                  # some padded sequences exercise the mask


def save_npy(name, array):
    DATA.mkdir(exist_ok=True)
    np.save(DATA / name, array, allow_pickle=False)
    return f"data/{name}"


FEEDS = {
    "digits_x": save_npy("digits_x.npy", x_test),
    "digits_img": save_npy("digits_img.npy", IMG_TEST.astype(np.float32)),
    "digits_tokens": save_npy("digits_tokens.npy", t_test),
    "digits_mask": save_npy("digits_mask.npy", MASK_TEST),
    "digits_y": save_npy("digits_y.npy", y_test),
}

# Calibration samples come from the training split, so quantization is judged on data it never
# saw; the transformer's two inputs travel together in .npz files (arrays named like the inputs).
CALIBRATION = 128
MASK_CALIB = np.ones_like(t_train[:CALIBRATION])
MASK_CALIB[::7, 56:] = 0
save_npy("calib_x.npy", x_train[:CALIBRATION])
save_npy("calib_img.npy", IMG_TRAIN[:CALIBRATION].astype(np.float32))
np.savez(DATA / "calib_tokens.npz", input_ids=t_train[:CALIBRATION], attention_mask=MASK_CALIB)
np.savez(DATA / "digits_tokens.npz", input_ids=t_test, attention_mask=MASK_TEST)
if "--data-only" in sys.argv:
    sys.exit(0)


def train(model, inputs, labels, epochs=60, lr=3e-3, batch=64, extra=None):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(labels)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            args = [a[idx] for a in inputs]
            loss = torch.nn.functional.cross_entropy(model(*args), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return model


def t(a):
    return torch.from_numpy(np.asarray(a))


def arr(p):
    return p.detach().numpy().astype(np.float32)


def init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def vinfo(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def finish(name, graph, opset, ir_version, feeds, reference=None, labels=None, extra_opsets=(),
           save=None, check=True):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), *extra_opsets],
                              producer_name=PRODUCER[0], producer_version=PRODUCER[1])
    model.ir_version = ir_version
    if check:
        onnx.checker.check_model(model, full_check=True)
    path = HERE / f"{name}.onnx"
    (save or (lambda m, p: onnx.save(m, p)))(model, str(path))
    entry = {"file": f"{name}.onnx", "inputs": {k: FEEDS[v] for k, v in feeds.items()}}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = sess.run(None, {k: np.load(HERE / FEEDS[v]) for k, v in feeds.items()})
    if reference is not None:
        err = float(np.max(np.abs(outputs[0] - reference)))
        assert err < 1e-3, (name, err)
        entry["maxAbsErrorVsTorch"] = round(err, 7)
    if labels is not None:
        entry["accuracy"] = round(float((outputs[0].argmax(-1) == labels).mean()), 4)
        entry["labels"] = FEEDS["digits_y"]
    MANIFEST[name] = entry
    print(f"{name}: {path.stat().st_size} bytes", {k: v for k, v in entry.items() if k in ("accuracy", "maxAbsErrorVsTorch")})
    return model


# ----------------------------------------------------------------------------- MLP

class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3 = torch.nn.Linear(64, 128), torch.nn.Linear(128, 64), torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.l3(torch.relu(self.l2(torch.relu(self.l1(x)))))


mlp = train(MLP(), [t(x_train)], t(y_train))
with torch.no_grad():
    mlp_ref = mlp(t(x_test)).numpy()
W = {k: arr(v) for k, v in mlp.state_dict().items()}


def mlp_graph(name="mlp", weights_as="initializer", dtype=np.float32):
    """Gemm(transB=1) layers as PyTorch exports them; weights as initializers or Constant nodes."""
    nodes, inits = [], []
    x = "input"
    if dtype == np.float16:
        nodes.append(helper.make_node("Cast", ["input"], ["input_f16"], name="cast_in", to=TensorProto.FLOAT16))
        x = "input_f16"
    for i, layer in enumerate(["l1", "l2", "l3"], 1):
        w, b = W[f"{layer}.weight"].astype(dtype), W[f"{layer}.bias"].astype(dtype)
        wn, bn = f"{layer}.weight", f"{layer}.bias"
        if weights_as == "constant":
            # PaddlePaddle-style: weights are Constant node outputs, some behind Identity or Cast.
            if i == 1:
                nodes.append(helper.make_node("Constant", [], [wn + "_raw"], name=f"const_{layer}_w", value=init(wn + "_raw", w)))
                nodes.append(helper.make_node("Identity", [wn + "_raw"], [wn], name=f"identity_{layer}_w"))
            elif i == 2:
                nodes.append(helper.make_node("Constant", [], [wn + "_f16"], name=f"const_{layer}_w", value=init(wn + "_f16", w.astype(np.float16))))
                nodes.append(helper.make_node("Cast", [wn + "_f16"], [wn], name=f"cast_{layer}_w", to=TensorProto.FLOAT))
                w = w.astype(np.float16).astype(np.float32)
            else:
                nodes.append(helper.make_node("Constant", [], [wn], name=f"const_{layer}_w", value=init(wn, w)))
            nodes.append(helper.make_node("Constant", [], [bn], name=f"const_{layer}_b", value=init(bn, b)))
        else:
            inits += [init(wn, w), init(bn, b)]
        out = "logits_f16" if (i == 3 and dtype == np.float16) else ("logits" if i == 3 else f"h{i}")
        nodes.append(helper.make_node("Gemm", [x, wn, bn], [out + ("" if i == 3 else "_pre")], name=f"gemm_{i}", transB=1))
        if i < 3:
            nodes.append(helper.make_node("Relu", [out + "_pre"], [out], name=f"relu_{i}"))
        x = out
    if dtype == np.float16:
        nodes.append(helper.make_node("Cast", ["logits_f16"], ["logits"], name="cast_out", to=TensorProto.FLOAT))
    return helper.make_graph(nodes, name, [vinfo("input", TensorProto.FLOAT, ["batch", 64])],
                             [vinfo("logits", TensorProto.FLOAT, ["batch", 10])], inits)


finish("mlp", mlp_graph(), 13, 8, {"input": "digits_x"}, mlp_ref, y_test)
finish("constant_weights", mlp_graph("constant_weights", "constant"), 13, 8, {"input": "digits_x"}, None, y_test)
finish("float16", mlp_graph("float16", dtype=np.float16), 13, 8, {"input": "digits_x"}, None, y_test)


def save_external(model, path):
    pathlib.Path(path + ".data").unlink(missing_ok=True)
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
              location=os.path.basename(path) + ".data", size_threshold=1024)


finish("external_data", mlp_graph("external_data"), 13, 8, {"input": "digits_x"}, mlp_ref, y_test, save=save_external)


# ----------------------------------------------------------------------------- CNN with BatchNorm and residual Add

class CNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.BatchNorm2d(16)
        self.c2, self.b2 = torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.BatchNorm2d(16)
        self.c3, self.b3 = torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.BatchNorm2d(16)
        self.c4, self.b4 = torch.nn.Conv2d(16, 32, 3, padding=1, stride=2), torch.nn.BatchNorm2d(32)
        self.fc = torch.nn.Linear(32, 10)

    def forward(self, x):
        h = torch.relu(self.b1(self.c1(x)))
        r = torch.relu(self.b2(self.c2(h)))
        h = torch.relu(self.b3(self.c3(r)) + h)
        h = torch.relu(self.b4(self.c4(h)))
        return self.fc(h.mean((2, 3)))


cnn = train(CNN(), [t(IMG_TRAIN)], t(y_train), epochs=30)
with torch.no_grad():
    cnn_ref = cnn(t(IMG_TEST)).numpy()
C = {k: v.detach().numpy() for k, v in cnn.state_dict().items()}


def conv_bn(nodes, inits, x, conv, bn, out, **attrs):
    inits += [init(f"{conv}.weight", C[f"{conv}.weight"]), init(f"{conv}.bias", C[f"{conv}.bias"])]
    nodes.append(helper.make_node("Conv", [x, f"{conv}.weight", f"{conv}.bias"], [f"{conv}_conv"], name=conv,
                                  kernel_shape=list(C[f"{conv}.weight"].shape[2:]), **attrs))
    for p in ("weight", "bias", "running_mean", "running_var"):
        inits.append(init(f"{bn}.{p}", C[f"{bn}.{p}"].astype(np.float32)))
    nodes.append(helper.make_node("BatchNormalization", [f"{conv}_conv", f"{bn}.weight", f"{bn}.bias", f"{bn}.running_mean",
                                                         f"{bn}.running_var"], [out], name=bn, epsilon=1e-5))


nodes, inits = [], []
conv_bn(nodes, inits, "image", "c1", "b1", "bn1", pads=[1, 1, 1, 1])
nodes.append(helper.make_node("Relu", ["bn1"], ["h1"], name="relu1"))
conv_bn(nodes, inits, "h1", "c2", "b2", "bn2", pads=[1, 1, 1, 1])
nodes.append(helper.make_node("Relu", ["bn2"], ["r2"], name="relu2"))
conv_bn(nodes, inits, "r2", "c3", "b3", "bn3", pads=[1, 1, 1, 1])
nodes.append(helper.make_node("Add", ["bn3", "h1"], ["res"], name="residual_add"))
nodes.append(helper.make_node("Relu", ["res"], ["h3"], name="relu3"))
conv_bn(nodes, inits, "h3", "c4", "b4", "bn4", pads=[1, 1, 1, 1], strides=[2, 2])
nodes.append(helper.make_node("Relu", ["bn4"], ["h4"], name="relu4"))
nodes.append(helper.make_node("GlobalAveragePool", ["h4"], ["gap"], name="gap"))
nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"))
inits += [init("fc.weight", C["fc.weight"]), init("fc.bias", C["fc.bias"])]
nodes.append(helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1))
finish("cnn_residual", helper.make_graph(nodes, "cnn_residual",
                                         [vinfo("image", TensorProto.FLOAT, ["batch", 1, "height", "width"])],
                                         [vinfo("logits", TensorProto.FLOAT, ["batch", 10])], inits),
       13, 8, {"image": "digits_img"}, cnn_ref, y_test)


# ----------------------------------------------------------------------------- mobile CNN

class Mobile(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.stem_bn = torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.BatchNorm2d(16)
        self.dw, self.dw_bn = torch.nn.Conv2d(16, 16, 3, padding=1, groups=16), torch.nn.BatchNorm2d(16)
        self.se1, self.se2 = torch.nn.Conv2d(16, 4, 1), torch.nn.Conv2d(4, 16, 1)
        self.pw, self.pw_bn = torch.nn.Conv2d(16, 16, 1), torch.nn.BatchNorm2d(16)
        self.up = torch.nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.head = torch.nn.Linear(16 + 8, 10)

    def forward(self, x):
        h = torch.nn.functional.hardswish(self.stem_bn(self.stem(x)))
        d = torch.nn.functional.hardswish(self.dw_bn(self.dw(h)))
        g = torch.nn.functional.hardsigmoid(self.se2(torch.relu(self.se1(d.mean((2, 3), keepdim=True)))))
        p = torch.clamp(self.pw_bn(self.pw(d * g)), 0, 6) + h
        u = torch.relu(self.up(p))
        feats = torch.cat([p.mean((2, 3)), u.mean((2, 3))], 1)
        return self.head(feats)


mob = train(Mobile(), [t(IMG_TRAIN)], t(y_train), epochs=80, lr=5e-3)
with torch.no_grad():
    mob_ref = mob(t(IMG_TEST)).numpy()
M = {k: v.detach().numpy() for k, v in mob.state_dict().items()}
nodes, inits = [], []
C = M
conv_bn(nodes, inits, "image", "stem", "stem_bn", "stem_out", pads=[1, 1, 1, 1])
nodes.append(helper.make_node("HardSwish", ["stem_out"], ["h"], name="stem_hswish"))
conv_bn(nodes, inits, "h", "dw", "dw_bn", "dw_out", pads=[1, 1, 1, 1], group=16)
nodes.append(helper.make_node("HardSwish", ["dw_out"], ["d"], name="dw_hswish"))
nodes.append(helper.make_node("GlobalAveragePool", ["d"], ["se_pool"], name="se_pool"))
for conv, x, out in (("se1", "se_pool", "se1_out"), ("se2", "se_relu", "se2_out")):
    inits += [init(f"{conv}.weight", M[f"{conv}.weight"]), init(f"{conv}.bias", M[f"{conv}.bias"])]
    nodes.append(helper.make_node("Conv", [x, f"{conv}.weight", f"{conv}.bias"], [out], name=conv, kernel_shape=[1, 1]))
    if conv == "se1":
        nodes.append(helper.make_node("Relu", ["se1_out"], ["se_relu"], name="se_relu"))
nodes.append(helper.make_node("HardSigmoid", ["se2_out"], ["gate"], name="se_gate", alpha=1 / 6, beta=0.5))
nodes.append(helper.make_node("Mul", ["d", "gate"], ["excited"], name="se_mul"))
conv_bn(nodes, inits, "excited", "pw", "pw_bn", "pw_out")
inits += [init("relu6_min", np.array(0, np.float32)), init("relu6_max", np.array(6, np.float32))]
nodes.append(helper.make_node("Clip", ["pw_out", "relu6_min", "relu6_max"], ["relu6"], name="relu6"))
nodes.append(helper.make_node("Add", ["relu6", "h"], ["p"], name="residual_add"))
inits += [init("up.weight", M["up.weight"]), init("up.bias", M["up.bias"])]
nodes.append(helper.make_node("ConvTranspose", ["p", "up.weight", "up.bias"], ["up_out"], name="up", kernel_shape=[2, 2], strides=[2, 2]))
nodes.append(helper.make_node("Relu", ["up_out"], ["u"], name="up_relu"))
for x in ("p", "u"):
    nodes.append(helper.make_node("GlobalAveragePool", [x], [f"{x}_pool"], name=f"{x}_pool"))
nodes.append(helper.make_node("Concat", ["p_pool", "u_pool"], ["cat"], name="concat", axis=1))
nodes.append(helper.make_node("Flatten", ["cat"], ["feats"], name="flatten"))
inits += [init("head.weight", M["head.weight"]), init("head.bias", M["head.bias"])]
nodes.append(helper.make_node("Gemm", ["feats", "head.weight", "head.bias"], ["logits"], name="head", transB=1))
finish("mobile_cnn", helper.make_graph(nodes, "mobile_cnn", [vinfo("image", TensorProto.FLOAT, ["batch", 1, 8, 8])],
                                       [vinfo("logits", TensorProto.FLOAT, ["batch", 10])], inits),
       14, 8, {"image": "digits_img"}, mob_ref, y_test)


# ----------------------------------------------------------------------------- transformer encoder block

D, H, F, S, V = 32, 2, 64, 64, 17


class Encoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = torch.nn.Embedding(V, D)
        self.pos = torch.nn.Parameter(torch.randn(S, D) * 0.1)
        self.q, self.k, self.v, self.o = (torch.nn.Linear(D, D) for _ in range(4))
        self.ln1, self.ln2 = torch.nn.LayerNorm(D), torch.nn.LayerNorm(D)
        self.f1, self.f2 = torch.nn.Linear(D, F), torch.nn.Linear(F, D)
        self.cls = torch.nn.Linear(D, 10)

    def forward(self, ids, mask):
        b, s = ids.shape
        x = self.tok(ids) + self.pos[:s]
        split = lambda y: y.view(b, s, H, D // H).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = q @ k.transpose(-1, -2) / np.sqrt(D // H)
        scores = scores + torch.where(mask[:, None, None, :] == 0, float("-inf"), 0.0)
        a = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(b, s, D)
        x = self.ln1(x + self.o(a))
        f = self.f2(torch.nn.functional.gelu(self.f1(x)))
        x = self.ln2(x + f)
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return self.cls(pooled)


mask_train = np.ones_like(t_train)
mask_train[::7, 56:] = 0
enc = train(Encoder(), [t(t_train), t(mask_train)], t(y_train), epochs=80)
with torch.no_grad():
    enc_ref = enc(t(t_test), t(MASK_TEST)).numpy()
E = {k: v.detach().numpy() for k, v in enc.state_dict().items()}

nodes, inits = [], []
n = lambda op, ins, outs, name, **kw: nodes.append(helper.make_node(op, ins, outs, name=name, **kw))
c = lambda name, value: inits.append(init(name, value))
c("tok.weight", E["tok.weight"])
c("pos", E["pos"])
c("zero", np.array([0], np.int64))
c("one_axis", np.array([1], np.int64))
n("Gather", ["tok.weight", "input_ids"], ["tok_emb"], "embed")
# Position embeddings sliced to the actual sequence length: Shape -> Gather -> Unsqueeze -> Slice.
n("Shape", ["input_ids"], ["ids_shape"], "shape_ids")
c("idx1", np.array(1, np.int64))
n("Gather", ["ids_shape", "idx1"], ["seq_len"], "seq_len", axis=0)
c("axes0", np.array([0], np.int64))
n("Unsqueeze", ["seq_len", "axes0"], ["seq_len_1d"], "seq_len_1d")
n("Slice", ["pos", "zero", "seq_len_1d", "axes0"], ["pos_s"], "slice_pos")
n("Add", ["tok_emb", "pos_s"], ["x0"], "add_pos")
for proj in "qkvo":
    c(f"{proj}.weight", E[f"{proj}.weight"].T.copy())     # MatMul weights [in, out]
    c(f"{proj}.bias", E[f"{proj}.bias"])
c("heads_shape", np.array([0, 0, H, D // H], np.int64))
for proj in "qkv":
    n("MatMul", ["x0", f"{proj}.weight"], [f"{proj}_mm"], f"{proj}_matmul")
    n("Add", [f"{proj}_mm", f"{proj}.bias"], [f"{proj}_lin"], f"{proj}_bias")
    n("Reshape", [f"{proj}_lin", "heads_shape"], [f"{proj}_heads"], f"{proj}_reshape")
    n("Transpose", [f"{proj}_heads"], [f"{proj}_t"], f"{proj}_transpose", perm=[0, 2, 3, 1] if proj == "k" else [0, 2, 1, 3])
n("MatMul", ["q_t", "k_t"], ["scores_raw"], "qk_matmul")
c("scale", np.array(1 / np.sqrt(D // H), np.float32))
n("Mul", ["scores_raw", "scale"], ["scores"], "scale_scores")
# Additive mask: 0 where attended, -inf where padded.
c("mask_axes", np.array([1, 2], np.int64))
n("Unsqueeze", ["attention_mask", "mask_axes"], ["mask4"], "mask_unsqueeze")
c("zero_i", np.array(0, np.int64))
n("Equal", ["mask4", "zero_i"], ["is_pad"], "mask_equal")
c("neg_inf", np.array(-np.inf, np.float32))
c("zero_f", np.array(0, np.float32))
n("Where", ["is_pad", "neg_inf", "zero_f"], ["mask_add"], "mask_where")
n("Add", ["scores", "mask_add"], ["scores_masked"], "add_mask")
n("Softmax", ["scores_masked"], ["probs"], "softmax", axis=-1)
n("MatMul", ["probs", "v_t"], ["ctx_h"], "pv_matmul")
n("Transpose", ["ctx_h"], ["ctx_t"], "ctx_transpose", perm=[0, 2, 1, 3])
c("merge_shape", np.array([0, 0, D], np.int64))
n("Reshape", ["ctx_t", "merge_shape"], ["ctx"], "ctx_reshape")
n("MatMul", ["ctx", "o.weight"], ["o_mm"], "o_matmul")
n("Add", ["o_mm", "o.bias"], ["attn"], "o_bias")
n("Add", ["x0", "attn"], ["res1"], "residual1")


def layer_norm(x, ln, out):
    """LayerNorm decomposed as exporters before opset 17 write it."""
    c(f"{ln}.weight", E[f"{ln}.weight"])
    c(f"{ln}.bias", E[f"{ln}.bias"])
    n("ReduceMean", [x], [f"{ln}_mean"], f"{ln}_mean", axes=[-1])
    n("Sub", [x, f"{ln}_mean"], [f"{ln}_centered"], f"{ln}_sub")
    c(f"{ln}_two", np.array(2, np.float32))
    n("Pow", [f"{ln}_centered", f"{ln}_two"], [f"{ln}_sq"], f"{ln}_pow")
    n("ReduceMean", [f"{ln}_sq"], [f"{ln}_var"], f"{ln}_var", axes=[-1])
    c(f"{ln}_eps", np.array(1e-5, np.float32))
    n("Add", [f"{ln}_var", f"{ln}_eps"], [f"{ln}_var_eps"], f"{ln}_add_eps")
    n("Sqrt", [f"{ln}_var_eps"], [f"{ln}_std"], f"{ln}_sqrt")
    n("Div", [f"{ln}_centered", f"{ln}_std"], [f"{ln}_norm"], f"{ln}_div")
    n("Mul", [f"{ln}_norm", f"{ln}.weight"], [f"{ln}_scaled"], f"{ln}_mul")
    n("Add", [f"{ln}_scaled", f"{ln}.bias"], [out], f"{ln}_shift")


layer_norm("res1", "ln1", "x1")
for lin in ("f1", "f2"):
    c(f"{lin}.weight", E[f"{lin}.weight"].T.copy())
    c(f"{lin}.bias", E[f"{lin}.bias"])
n("MatMul", ["x1", "f1.weight"], ["f1_mm"], "ffn1_matmul")
n("Add", ["f1_mm", "f1.bias"], ["f1_out"], "ffn1_bias")
# GELU by Erf: 0.5 * x * (1 + erf(x / sqrt(2)))
c("sqrt2", np.array(np.sqrt(2), np.float32))
c("one_f", np.array(1, np.float32))
c("half", np.array(0.5, np.float32))
n("Div", ["f1_out", "sqrt2"], ["gelu_div"], "gelu_div")
n("Erf", ["gelu_div"], ["gelu_erf"], "gelu_erf")
n("Add", ["gelu_erf", "one_f"], ["gelu_add"], "gelu_add")
n("Mul", ["f1_out", "gelu_add"], ["gelu_mul"], "gelu_mul")
n("Mul", ["gelu_mul", "half"], ["gelu"], "gelu_half")
n("MatMul", ["gelu", "f2.weight"], ["f2_mm"], "ffn2_matmul")
n("Add", ["f2_mm", "f2.bias"], ["f2_out"], "ffn2_bias")
n("Add", ["x1", "f2_out"], ["res2"], "residual2")
layer_norm("res2", "ln2", "x2")
# Masked mean pooling over the sequence.
n("Cast", ["attention_mask"], ["mask_f"], "mask_cast", to=TensorProto.FLOAT)
c("mask_axis2", np.array([2], np.int64))
n("Unsqueeze", ["mask_f", "mask_axis2"], ["mask_f3"], "mask_f_unsqueeze")
n("Mul", ["x2", "mask_f3"], ["masked"], "mask_mul")
n("ReduceSum", ["masked", "one_axis"], ["summed"], "pool_sum", keepdims=0)
n("ReduceSum", ["mask_f", "one_axis"], ["count"], "pool_count", keepdims=1)
n("Div", ["summed", "count"], ["pooled"], "pool_div")
c("cls.weight", E["cls.weight"].T.copy())
c("cls.bias", E["cls.bias"])
n("MatMul", ["pooled", "cls.weight"], ["cls_mm"], "cls_matmul")
n("Add", ["cls_mm", "cls.bias"], ["logits"], "cls_bias")
finish("transformer_block", helper.make_graph(
    nodes, "transformer_block",
    [vinfo("input_ids", TensorProto.INT64, ["batch", "sequence"]), vinfo("attention_mask", TensorProto.INT64, ["batch", "sequence"])],
    [vinfo("logits", TensorProto.FLOAT, ["batch", 10])], inits),
    14, 8, {"input_ids": "digits_tokens", "attention_mask": "digits_mask"}, enc_ref, y_test)


# ----------------------------------------------------------------------------- control flow

rng = np.random.default_rng(0)
then_g = helper.make_graph([helper.make_node("MatMul", ["input", "w_then"], ["then_out"], name="then_matmul")],
                           "then_branch", [], [vinfo("then_out", TensorProto.FLOAT, ["batch", 10])])
else_g = helper.make_graph([helper.make_node("MatMul", ["input", "w_else"], ["else_mm"], name="else_matmul"),
                            helper.make_node("Relu", ["else_mm"], ["else_out"], name="else_relu")],
                           "else_branch", [], [vinfo("else_out", TensorProto.FLOAT, ["batch", 10])])
nodes = [helper.make_node("ReduceSum", ["input"], ["total"], name="total", keepdims=0),
         helper.make_node("Greater", ["total", "threshold"], ["cond"], name="cond"),
         helper.make_node("If", ["cond"], ["logits"], name="branch", then_branch=then_g, else_branch=else_g)]
inits = [init("w_then", rng.standard_normal((64, 10)).astype(np.float32)),
         init("w_else", rng.standard_normal((64, 10)).astype(np.float32)),
         init("threshold", np.array(1500.0, np.float32))]
finish("if_model", helper.make_graph(nodes, "if_model", [vinfo("input", TensorProto.FLOAT, ["batch", 64])],
                                     [vinfo("logits", TensorProto.FLOAT, ["batch", 10])], inits),
       13, 8, {"input": "digits_x"})

# Loop accumulating x @ W three times, and Scan computing a running sum over the batch.
body = helper.make_graph(
    [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="loop_cond"),
     helper.make_node("MatMul", ["acc_in", "w_loop"], ["acc_mm"], name="loop_matmul"),
     helper.make_node("Tanh", ["acc_mm"], ["acc_out"], name="loop_tanh")],
    "loop_body",
    [vinfo("iter", TensorProto.INT64, []), vinfo("cond_in", TensorProto.BOOL, []), vinfo("acc_in", TensorProto.FLOAT, None)],
    [vinfo("cond_out", TensorProto.BOOL, []), vinfo("acc_out", TensorProto.FLOAT, None)])
scan_body = helper.make_graph(
    [helper.make_node("Add", ["sum_in", "row"], ["sum_out"], name="scan_add"),
     helper.make_node("Identity", ["sum_out"], ["row_out"], name="scan_emit")],
    "scan_body", [vinfo("sum_in", TensorProto.FLOAT, [64]), vinfo("row", TensorProto.FLOAT, [64])],
    [vinfo("sum_out", TensorProto.FLOAT, [64]), vinfo("row_out", TensorProto.FLOAT, [64])])
nodes = [helper.make_node("Loop", ["trip", "", "input"], ["loop_out"], name="loop", body=body),
         helper.make_node("Scan", ["zeros64", "input"], ["final_sum", "running_sum"], name="scan", body=scan_body, num_scan_inputs=1)]
inits = [init("trip", np.array(3, np.int64)), init("w_loop", (rng.standard_normal((64, 64)) * 0.1).astype(np.float32)),
         init("zeros64", np.zeros(64, np.float32))]
finish("loop_scan", helper.make_graph(nodes, "loop_scan", [vinfo("input", TensorProto.FLOAT, ["batch", 64])],
                                      [vinfo("loop_out", TensorProto.FLOAT, ["batch", 64]),
                                       vinfo("final_sum", TensorProto.FLOAT, [64]),
                                       vinfo("running_sum", TensorProto.FLOAT, ["batch", 64])], inits),
       13, 8, {"input": "digits_x"})


# ----------------------------------------------------------------------------- opset 9 and opset 21

nodes = [helper.make_node("Conv", ["image", "w"], ["conv"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
         helper.make_node("BatchNormalization", ["conv", "scale", "bias", "mean", "var"], ["bn"], name="bn", epsilon=1e-5),
         helper.make_node("Relu", ["bn"], ["relu"], name="relu"),
         helper.make_node("Upsample", ["relu", "up_scales"], ["up"], name="upsample", mode="nearest"),
         helper.make_node("MaxPool", ["up"], ["pool"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
         helper.make_node("Slice", ["pool"], ["sliced"], name="slice", axes=[2, 3], starts=[1, 1], ends=[7, 7]),
         helper.make_node("ReduceMean", ["sliced"], ["gap"], name="reduce", axes=[2, 3], keepdims=1),
         helper.make_node("Squeeze", ["gap"], ["squeezed"], name="squeeze", axes=[2, 3]),
         helper.make_node("Unsqueeze", ["squeezed"], ["unsq"], name="unsqueeze", axes=[2]),
         helper.make_node("Flatten", ["unsq"], ["flat"], name="flatten"),
         helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1)]
inits = [init("w", rng.standard_normal((8, 1, 3, 3)).astype(np.float32)),
         init("scale", rng.uniform(0.5, 1.5, 8).astype(np.float32)), init("bias", rng.standard_normal(8).astype(np.float32)),
         init("mean", rng.standard_normal(8).astype(np.float32)), init("var", rng.uniform(0.5, 2, 8).astype(np.float32)),
         init("up_scales", np.array([1, 1, 2, 2], np.float32)),
         init("fc_w", rng.standard_normal((10, 8)).astype(np.float32)), init("fc_b", rng.standard_normal(10).astype(np.float32))]
finish("opset9", helper.make_graph(nodes, "opset9", [vinfo("image", TensorProto.FLOAT, ["N", 1, 8, 8])],
                                   [vinfo("logits", TensorProto.FLOAT, ["N", 10])], inits),
       9, 4, {"image": "digits_img"})

# Opset 21: LayerNormalization and Gelu ops, and an int4 block-quantized weight (odd element count).
w_int4 = rng.integers(-8, 8, size=(63, 10)).astype(np.int8)
scales = rng.uniform(0.01, 0.05, size=(2, 10)).astype(np.float32)
nodes = [helper.make_node("Slice", ["input", "s0", "s63", "s1"], ["x63"], name="take63"),
         helper.make_node("DequantizeLinear", ["w_q", "w_scale"], ["w_deq"], name="dequant", axis=0, block_size=32),
         helper.make_node("MatMul", ["x63", "w_deq"], ["mm"], name="matmul"),
         helper.make_node("LayerNormalization", ["mm", "ln_g", "ln_b"], ["ln"], name="layernorm", axis=-1, epsilon=1e-5),
         helper.make_node("Gelu", ["ln"], ["logits"], name="gelu")]
inits = [helper.make_tensor("w_q", TensorProto.INT4, [63, 10], w_int4.flatten().tolist()),
         init("w_scale", scales), init("ln_g", np.ones(10, np.float32)), init("ln_b", np.zeros(10, np.float32)),
         init("s0", np.array([0], np.int64)), init("s63", np.array([63], np.int64)), init("s1", np.array([1], np.int64))]
finish("opset21", helper.make_graph(nodes, "opset21", [vinfo("input", TensorProto.FLOAT, ["batch", 64])],
                                    [vinfo("logits", TensorProto.FLOAT, ["batch", 10])], inits),
       21, 10, {"input": "digits_x"})


# ----------------------------------------------------------------------------- every field and element type

def every_type_initializers():
    """One initializer per element type and storage field, named type_field."""
    out = []
    f = lambda *a, **k: out.append(helper.make_tensor(*a, **k))
    f("float_raw", TensorProto.FLOAT, [3], np.array([1.5, -2.0, np.nan], np.float32).tobytes(), raw=True)
    f("float_typed", TensorProto.FLOAT, [2, 2], [1.0, -0.0, np.inf, 3.25])
    f("double_typed", TensorProto.DOUBLE, [2], [1e300, -2.5])
    f("double_raw", TensorProto.DOUBLE, [2], np.array([1e-300, 7], np.float64).tobytes(), raw=True)
    f("float16_typed", TensorProto.FLOAT16, [3], np.array([1, -2, 65504], np.float16))
    f("float16_raw", TensorProto.FLOAT16, [2], np.array([0.5, -1], np.float16).tobytes(), raw=True)
    f("bfloat16_typed", TensorProto.BFLOAT16, [2], [1.0, -3.0])
    for name, code in (("float8e4m3fn", TensorProto.FLOAT8E4M3FN), ("float8e4m3fnuz", TensorProto.FLOAT8E4M3FNUZ),
                       ("float8e5m2", TensorProto.FLOAT8E5M2), ("float8e5m2fnuz", TensorProto.FLOAT8E5M2FNUZ)):
        f(f"{name}_typed", code, [3], [1.0, -2.0, 0.5])
    f("int8_typed", TensorProto.INT8, [4], [-128, -1, 0, 127])
    f("int8_raw", TensorProto.INT8, [2], np.array([-5, 5], np.int8).tobytes(), raw=True)
    f("uint8_typed", TensorProto.UINT8, [3], [0, 128, 255])
    f("int16_typed", TensorProto.INT16, [2], [-32768, 32767])
    f("uint16_typed", TensorProto.UINT16, [2], [0, 65535])
    f("int32_typed", TensorProto.INT32, [3], [-2147483648, 0, 2147483647])
    f("int64_typed", TensorProto.INT64, [2], [-9223372036854775808, 9223372036854775807])
    f("int64_raw", TensorProto.INT64, [2], np.array([1, -1], np.int64).tobytes(), raw=True)
    f("uint32_typed", TensorProto.UINT32, [2], [0, 4294967295])
    f("uint64_typed", TensorProto.UINT64, [2], [0, 18446744073709551615])
    f("bool_typed", TensorProto.BOOL, [3], [True, False, True])
    f("int4_odd", TensorProto.INT4, [5], [-8, -1, 0, 3, 7])
    f("uint4_typed", TensorProto.UINT4, [4], [0, 1, 14, 15])
    f("int4_raw", TensorProto.INT4, [3], bytes([0x21, 0x0F]), raw=True)
    f("complex64_typed", TensorProto.COMPLEX64, [2], [1 + 2j, -3 + 4j])
    f("complex128_typed", TensorProto.COMPLEX128, [1], [1 - 1j])
    f("string_typed", TensorProto.STRING, [2], [b"hello", b"\x00\xff bytes"])
    f("scalar_float", TensorProto.FLOAT, [], [42.0])
    f("empty_float", TensorProto.FLOAT, [0, 3], [])
    return out


inits = every_type_initializers()
inits[1].doc_string = "a tensor doc string"
onnx.helper.set_metadata_props(inits[0], {"origin": "fixture"}) if hasattr(onnx.helper, "set_metadata_props") else None
sparse = helper.make_sparse_tensor(helper.make_tensor("sparse_vals", TensorProto.FLOAT, [2], [5.0, 6.0]),
                                   helper.make_tensor("sparse_idx", TensorProto.INT64, [2], [1, 7]), [2, 4])
fn = helper.make_function("local.fns", "Scale2", ["x"], ["y"],
                          [helper.make_node("Constant", [], ["two"], value_float=2.0),
                           helper.make_node("Mul", ["x", "two"], ["y"])],
                          [helper.make_opsetid("", 17)], attributes=["unused"])
attr_node = helper.make_node("Identity", ["float_typed"], ["attr_out"], name="many_attrs", doc_string="node doc")
attr_node.attribute.extend([
    helper.make_attribute("a_float", 0.25), helper.make_attribute("a_int", -3), helper.make_attribute("a_str", b"s"),
    helper.make_attribute("a_floats", [1.0, 2.0]), helper.make_attribute("a_ints", [1, -2]),
    helper.make_attribute("a_strs", [b"x", b"y"]), helper.make_attribute("a_tensor", helper.make_tensor("t", TensorProto.INT32, [1], [9])),
    helper.make_attribute("a_tensors", [helper.make_tensor("t2", TensorProto.FLOAT, [1], [1.0])]),
    helper.make_attribute("a_sparse", sparse),
    helper.make_attribute("a_type", helper.make_tensor_type_proto(TensorProto.FLOAT, ["n", 3])),
    helper.make_attribute("a_graph", helper.make_graph([], "g_empty", [], [])),
])
nodes = [helper.make_node("Identity", [i.name], [i.name + "_out"], name="id_" + i.name) for i in inits if i.name.startswith(("float_", "int64_"))]
nodes.append(helper.make_node("Scale2", ["float_typed"], ["scaled"], name="call_fn", domain="local.fns"))
graph = helper.make_graph(
    nodes, "kitchen_sink", [], [vinfo(nd.output[0], TensorProto.FLOAT if nd.output[0].startswith("float") else TensorProto.INT64, None) for nd in nodes[:-1]]
    + [vinfo("scaled", TensorProto.FLOAT, [2, 2])], inits, doc_string="graph doc",
    value_info=[helper.make_value_info("float_raw_out", helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, None))),
                helper.make_value_info("opt", helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.INT8, [helper.make_tensor_value_info("z", 1, [1]).type.tensor_type.shape.dim[0].dim_value]))),
                helper.make_value_info("m", helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, ["d"])))],
    sparse_initializer=[sparse])
graph.quantization_annotation.add(tensor_name="float_typed").quant_parameter_tensor_names.add(key="SCALE_TENSOR", value="float_raw")
unused_graph = helper.make_graph([attr_node], "attr_holder", [], [])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local.fns", 1)],
                          producer_name=PRODUCER[0], producer_version=PRODUCER[1], functions=[fn],
                          doc_string="model doc", domain="org.compressor.fixtures", model_version=7)
model.ir_version = 9
helper.set_model_props(model, {"license": "MIT", "purpose": "every field"})
ti = model.training_info.add()
ti.algorithm.CopyFrom(unused_graph)
ti.update_binding.add(key="float_raw", value="float_raw_out")
path = HERE / "kitchen_sink.onnx"
# A field no schema knows (number 100, length-delimited) appended at the top level must survive.
path.write_bytes(model.SerializeToString() + bytes([0xA2, 0x06, 0x05]) + b"extra")
MANIFEST["kitchen_sink"] = {"file": "kitchen_sink.onnx", "inputs": {}, "ortRuns": False, "unknownFields": 1}
print("kitchen_sink:", path.stat().st_size, "bytes")

(HERE / "fixtures.json").write_text(json.dumps(MANIFEST, indent=2, sort_keys=True) + "\n")
total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
print(f"total fixture folder: {total} bytes")
