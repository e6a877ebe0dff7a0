#!/usr/bin/env python3
"""Generates the untrained student models and the training split for distillation.

Run with `make fixtures` (after generate.py). The students are small, freshly initialized torch
modules (seeded), written with onnx.helper in the same shapes as the teachers in generate.py:
- student_mlp: Flatten, 64 -> 32 -> 10 (2,410 parameters)
- student_cnn: Conv(1->8)+BN+ReLU, Conv(8->16, stride 2)+BN+ReLU, global pool, Gemm
  (1,514 parameters incl. BN statistics)
both reading the 1x8x8 image, so that cnn_residual (10,090 parameters, the strongest teacher)
teaches either; and the digits training split (the same stratified split as generate.py) as
train_img.npy, train_tokens.npz and train_y.npy: unlabelled inputs for distillation, labels for
the supervised baseline, token inputs for quantization-aware training of the transformer.
"""
import json
import pathlib

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = pathlib.Path(__file__).resolve().parent
DATA = HERE / "data"
torch.manual_seed(0)

digits = load_digits()
X = (digits.data / 16.0).astype(np.float32)
Y = digits.target.astype(np.int64)
TOK = digits.data.astype(np.int64)
x_train, x_test, y_train, y_test, t_train, t_test = train_test_split(X, Y, TOK, test_size=0.2, random_state=0, stratify=Y)
mask = np.ones_like(t_train)
mask[::7, 56:] = 0
np.savez(DATA / "train_tokens.npz", input_ids=t_train, attention_mask=mask)
np.save(DATA / "train_img.npy", x_train.reshape(-1, 1, 8, 8), allow_pickle=False)
np.save(DATA / "train_y.npy", y_train, allow_pickle=False)
assert np.array_equal(np.load(DATA / "digits_x.npy"), x_test), "generate.py's test split differs"


def init(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def vinfo(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def save(name, graph):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="compressor-fixtures", producer_version="1")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(HERE / f"{name}.onnx"))
    params = sum(int(np.prod(t.dims)) for t in graph.initializer)
    print(f"{name}: {params} parameters")
    return params


# MLP student: torch's default initialization of two Linear layers, behind a Flatten of the image.
l1, l2 = torch.nn.Linear(64, 32), torch.nn.Linear(32, 10)
nodes = [
    helper.make_node("Flatten", ["image"], ["input"], name="flatten"),
    helper.make_node("Gemm", ["input", "l1.weight", "l1.bias"], ["h1_pre"], name="gemm_1", transB=1),
    helper.make_node("Relu", ["h1_pre"], ["h1"], name="relu_1"),
    helper.make_node("Gemm", ["h1", "l2.weight", "l2.bias"], ["logits"], name="gemm_2", transB=1),
]
inits = [init(f"l{i}.{p}", getattr(layer, p).detach().numpy()) for i, layer in ((1, l1), (2, l2)) for p in ("weight", "bias")]
mlp_params = save("student_mlp", helper.make_graph(nodes, "student_mlp", [vinfo("image", ["batch", 1, 8, 8])],
                                                   [vinfo("logits", ["batch", 10])], inits))

# CNN student: BatchNormalization unfused, as exporters leave it for training.
c1, b1 = torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8)
c2, b2 = torch.nn.Conv2d(8, 16, 3, padding=1, stride=2), torch.nn.BatchNorm2d(16)
fc = torch.nn.Linear(16, 10)
nodes, inits = [], []
for conv, bn, name, x, out, stride in ((c1, b1, "c1", "image", "h1", 1), (c2, b2, "c2", "h1", "h2", 2)):
    b = name.replace("c", "b")
    inits += [init(f"{name}.weight", conv.weight.detach().numpy()), init(f"{name}.bias", conv.bias.detach().numpy())]
    inits += [init(f"{b}.{p}", getattr(bn, p).detach().numpy()) for p in ("weight", "bias", "running_mean", "running_var")]
    nodes.append(helper.make_node("Conv", [x, f"{name}.weight", f"{name}.bias"], [f"{name}_out"], name=name,
                                  kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[stride, stride]))
    nodes.append(helper.make_node("BatchNormalization", [f"{name}_out"] + [f"{b}.{p}" for p in ("weight", "bias", "running_mean", "running_var")],
                                  [f"{b}_out"], name=b, epsilon=1e-5, momentum=0.9))
    nodes.append(helper.make_node("Relu", [f"{b}_out"], [out], name=f"relu_{name}"))
nodes += [helper.make_node("GlobalAveragePool", ["h2"], ["gap"], name="gap"),
          helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
          helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1)]
inits += [init("fc.weight", fc.weight.detach().numpy()), init("fc.bias", fc.bias.detach().numpy())]
cnn_params = save("student_cnn", helper.make_graph(nodes, "student_cnn", [vinfo("image", ["batch", 1, 8, 8])],
                                                   [vinfo("logits", ["batch", 10])], inits))

manifest = json.loads((HERE / "fixtures.json").read_text())
for name, teacher, data, params in (("student_mlp", "cnn_residual", "data/train_img.npy", mlp_params),
                                    ("student_cnn", "cnn_residual", "data/train_img.npy", cnn_params)):
    manifest[name] = {"file": f"{name}.onnx", "teacher": f"{teacher}.onnx", "parameters": params,
                      "train": {"inputs": data, "labels": "data/train_y.npy"},
                      "inputs": manifest[teacher]["inputs"], "labels": manifest[teacher]["labels"]}
(HERE / "fixtures.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
