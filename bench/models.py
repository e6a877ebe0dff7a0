"""Benchmark models with random weights, built with onnx.helper: a ResNet-style CNN and a
MobileNet-style depthwise CNN at 1x3x224x224, and a 6-layer, 384-wide BERT-style encoder
(decomposed LayerNorm, GELU by Erf, 6 heads) at batch 1 x sequence 128."""
import numpy as np
from onnx import TensorProto, helper, numpy_helper


class Builder:
    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, prefix):
        self.count += 1
        return f"{prefix}{self.count}"

    def weight(self, shape, scale=None):
        n = self.name("w")
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        s = scale if scale is not None else (2.0 / max(fan_in, 1)) ** 0.5
        self.inits.append(numpy_helper.from_array((self.rng.standard_normal(shape) * s).astype(np.float32), n))
        return n

    def const(self, value):
        n = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value), n))
        return n

    def op(self, op, inputs, **attrs):
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv_bn(self, x, cin, cout, k, stride=1, group=1, act="Relu"):
        w = self.weight((cout, cin // group, k, k))
        y = self.op("Conv", [x, w], kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4, group=group)
        y = self.op("BatchNormalization", [y, self.const(np.ones(cout, np.float32)), self.const(np.zeros(cout, np.float32)),
                                           self.const(np.zeros(cout, np.float32)), self.const(np.ones(cout, np.float32))])
        return self.op(act, [y]) if act else y

    def model(self, inputs, output, opset=17):
        g = helper.make_graph(self.nodes, "bench", inputs, [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        return m


def resnet():
    b = Builder(1)
    x = b.conv_bn("image", 3, 64, 7, 2)
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for cout, stride in [(64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1)]:
        y = b.conv_bn(x, cin, cout, 3, stride)
        y = b.conv_bn(y, cout, cout, 3, 1, act=None)
        shortcut = x if (stride == 1 and cin == cout) else b.conv_bn(x, cin, cout, 1, stride, act=None)
        x = b.op("Relu", [b.op("Add", [y, shortcut])])
        cin = cout
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x])])
    x = b.op("Gemm", [x, b.weight((1000, 512)), b.const(np.zeros(1000, np.float32))], transB=1)
    return b.model([helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 224, 224])], x)


def mobilenet():
    b = Builder(2)
    x = b.conv_bn("image", 3, 32, 3, 2, act="HardSwish")
    cin = 32
    for cout, stride, expand in [(16, 1, 1), (24, 2, 4), (24, 1, 3), (40, 2, 3), (40, 1, 3), (80, 2, 6), (80, 1, 2.5),
                                 (112, 1, 6), (160, 2, 6), (160, 1, 6)]:
        mid = int(cin * expand)
        y = b.conv_bn(x, cin, mid, 1, act="HardSwish") if expand != 1 else x
        y = b.conv_bn(y, mid, mid, 3, stride, group=mid, act="HardSwish")
        s = b.op("GlobalAveragePool", [y])
        s = b.op("Relu", [b.op("Conv", [s, b.weight((max(mid // 4, 8), mid, 1, 1)), b.const(np.zeros(max(mid // 4, 8), np.float32))], kernel_shape=[1, 1])])
        s = b.op("HardSigmoid", [b.op("Conv", [s, b.weight((mid, max(mid // 4, 8), 1, 1)), b.const(np.zeros(mid, np.float32))], kernel_shape=[1, 1])])
        y = b.op("Mul", [y, s])
        y = b.conv_bn(y, mid, cout, 1, act=None)
        x = b.op("Add", [x, y]) if (stride == 1 and cin == cout) else y
        cin = cout
    x = b.conv_bn(x, cin, 960, 1, act="HardSwish")
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x])])
    x = b.op("Gemm", [x, b.weight((1000, 960)), b.const(np.zeros(1000, np.float32))], transB=1)
    return b.model([helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 224, 224])], x)


def bert(layers=6, hidden=384, heads=6, ffn=1536, seq=128, vocab=8000):
    b = Builder(3)
    x = b.op("Gather", [b.weight((vocab, hidden), 0.02), "input_ids"])
    x = b.op("Add", [x, b.weight((seq, hidden), 0.02)])
    dh = hidden // heads

    def layer_norm(x):
        mean = b.op("ReduceMean", [x], axes=[-1])
        centered = b.op("Sub", [x, mean])
        var = b.op("ReduceMean", [b.op("Pow", [centered, b.const(np.float32(2))])], axes=[-1])
        norm = b.op("Div", [centered, b.op("Sqrt", [b.op("Add", [var, b.const(np.float32(1e-5))])])])
        return b.op("Add", [b.op("Mul", [norm, b.const(np.ones(hidden, np.float32))]), b.const(np.zeros(hidden, np.float32))])

    for _ in range(layers):
        def proj(x, n_in, n_out):
            return b.op("Add", [b.op("MatMul", [x, b.weight((n_in, n_out), 0.02)]), b.const(np.zeros(n_out, np.float32))])
        split = b.const(np.array([1, seq, heads, dh], np.int64))
        q = b.op("Transpose", [b.op("Reshape", [proj(x, hidden, hidden), split])], perm=[0, 2, 1, 3])
        k = b.op("Transpose", [b.op("Reshape", [proj(x, hidden, hidden), split])], perm=[0, 2, 3, 1])
        v = b.op("Transpose", [b.op("Reshape", [proj(x, hidden, hidden), split])], perm=[0, 2, 1, 3])
        scores = b.op("Mul", [b.op("MatMul", [q, k]), b.const(np.float32(1 / np.sqrt(dh)))])
        ctx = b.op("MatMul", [b.op("Softmax", [scores], axis=-1), v])
        ctx = b.op("Reshape", [b.op("Transpose", [ctx], perm=[0, 2, 1, 3]), b.const(np.array([1, seq, hidden], np.int64))])
        x = layer_norm(b.op("Add", [x, proj(ctx, hidden, hidden)]))
        h = proj(x, hidden, ffn)
        gelu = b.op("Mul", [b.op("Mul", [h, b.op("Add", [b.op("Erf", [b.op("Div", [h, b.const(np.float32(np.sqrt(2)))])]),
                                                          b.const(np.float32(1))])]), b.const(np.float32(0.5))])
        x = layer_norm(b.op("Add", [x, proj(gelu, ffn, hidden)]))
    return b.model([helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, seq])], x, opset=13)
