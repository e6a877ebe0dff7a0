"""The executor's fast paths against ONNX Runtime (or numpy where ONNX Runtime's own semantics
differ) on the shapes that select them: depthwise convolutions whose rows end mid-vector, tiny
planes, strides and dilations; MaxPool windows in padding and with NaN; broadcasts whose
dimensions merge; convolutions with few output positions (computed as the transposed product);
element-wise maps on two threads. Each model runs at 1 and 2 threads, with identical bytes."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(7)


def model(nodes, inputs, inits=(), opset=13):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, a.shape) for n, a in inputs],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def typed_model(nodes, x, inits, opset=13):
    """A model of one input x and one output y, both of x's element type."""
    tensor = helper.np_dtype_to_tensor_dtype(x.dtype)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", tensor, x.shape)],
                              [helper.make_tensor_value_info("y", tensor, None)],
                              [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def run_both(compressor, tmp_path, m, inputs):
    """compressor's output at 1 and 2 threads (asserted byte-identical) and the model file."""
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    args = []
    for name, a in inputs:
        np.save(tmp_path / f"{name}.npy", a)
        args += ["--input", f"{name}={tmp_path / f'{name}.npy'}"]
    outs = []
    for threads in (1, 2):
        out = tmp_path / f"o{threads}.npz"
        compressor("run", path, *args, "-o", out, "--threads", threads, "--force")
        outs.append(np.load(out)["y"])
    assert outs[0].tobytes() == outs[1].tobytes()
    return outs[0], path


def draw_integers(dtype, shape):
    """Integers over the whole range of `dtype`."""
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max + 1, size=shape).astype(dtype)


def ort_run(path, inputs):
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, dict(inputs))[0]


# channels, height, width, kernel, stride, pad, dilation, activation
DEPTHWISE = [
    (1, 5, 5, 3, 1, 0, 1, None),       # a 3×3 output: the tail store must not pass the plane's end
    (3, 14, 14, 3, 2, 1, 1, "Relu"),   # 7-wide rows, stride 2
    (5, 15, 17, 3, 2, 1, 1, None),     # odd sizes, stride 2 from an odd width
    (4, 9, 30, 5, 1, 2, 1, "Clip"),    # 5×5, rows of 30 (16 + 14)
    (4, 20, 37, 5, 2, 2, 1, "HardSwish"),
    (3, 33, 33, 3, 2, 0, 2, None),     # dilation 2
    (2, 7, 50, 3, 3, 1, 1, None),      # stride 3
    (8, 112, 112, 3, 2, 1, 1, "Relu"),  # a MobileNet stage
    # 16 channels side by side (AVX-512): groups of 16 and a partial one, bands of output rows
    # (about 512 positions each), every fused activation.
    (24, 14, 14, 5, 1, 2, 1, "HardSwish"),
    (40, 9, 300, 3, 1, 1, 1, "LeakyRelu"),  # a band a row, the left padding wider than the right
    (17, 70, 9, 3, 2, 1, 1, "HardSigmoid"),
    (33, 40, 40, 5, 2, 2, 1, "SiLU"),     # Sigmoid and Mul, fused
    (16, 31, 29, 7, 1, 3, 2, None),       # 7 × 7 dilated
]


@pytest.mark.parametrize("c,h,w,k,s,p,d,act", DEPTHWISE)
def test_depthwise_convolutions(c, h, w, k, s, p, d, act, compressor, tmp_path):
    x = RNG.standard_normal((2, c, h, w)).astype(np.float32)
    weight = RNG.standard_normal((c, 1, k, k)).astype(np.float32)
    bias = RNG.standard_normal(c).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y" if act is None else "z"], kernel_shape=[k, k], strides=[s, s],
                              pads=[p, p + 1, p, p], dilations=[d, d], group=c)]
    inits = [("w", weight), ("b", bias)]
    if act == "Clip":
        nodes.append(helper.make_node("Clip", ["z", "lo", "hi"], ["y"]))
        inits += [("lo", np.array(0, np.float32)), ("hi", np.array(6, np.float32))]
    elif act == "SiLU":
        nodes += [helper.make_node("Sigmoid", ["z"], ["g"]), helper.make_node("Mul", ["z", "g"], ["y"])]
    elif act is not None:
        nodes.append(helper.make_node(act, ["z"], ["y"]))
    m = model(nodes, [("x", x)], inits, opset=14)
    got, path = run_both(compressor, tmp_path, m, [("x", x)])
    ref = ort_run(path, [("x", x)])
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def maxpool_reference(x, k, s, p, ceil):
    """Max over each window's part inside the input; NaN when any value in it is NaN."""
    n, c, h, w = x.shape
    size = (lambda a: -(-a // s)) if ceil else (lambda a: a // s)
    oh, ow = size(h + 2 * p - k) + 1, size(w + 2 * p - k) + 1
    if ceil:
        oh -= (oh - 1) * s >= h + p
        ow -= (ow - 1) * s >= w + p
    y = np.empty((n, c, oh, ow), np.float32)
    for i in range(oh):
        for j in range(ow):
            win = x[:, :, max(0, i * s - p):min(h, i * s - p + k), max(0, j * s - p):min(w, j * s - p + k)].reshape(n, c, -1)
            y[:, :, i, j] = np.where(np.isnan(win).any(-1), np.nan, win.max(-1))
    return y


@pytest.mark.parametrize("h,w,k,s,p,ceil", [
    (17, 23, 3, 2, 1, 0), (112, 112, 3, 2, 1, 0), (9, 40, 2, 2, 0, 0), (30, 37, 3, 1, 1, 0),
    (31, 33, 3, 2, 0, 1), (20, 50, 5, 1, 2, 0), (20, 50, 4, 2, 1, 1), (13, 29, 3, 3, 1, 1), (5, 5, 5, 2, 2, 1),
])
def test_max_pool_windows_and_nan(h, w, k, s, p, ceil, compressor, tmp_path):
    x = RNG.standard_normal((1, 3, h, w)).astype(np.float32)
    x[0, 0, 3, 4] = np.nan
    x[0, 2, -1, -2] = np.nan
    m = model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, ceil_mode=ceil)],
              [("x", x)])
    got, _ = run_both(compressor, tmp_path, m, [("x", x)])
    ref = maxpool_reference(x, k, s, p, ceil)
    assert got.shape == ref.shape and np.array_equal(got, ref, equal_nan=True)


@pytest.mark.parametrize("h,w,k,s,pads,ceil,include_pad", [
    (28, 28, 3, 1, [1, 1, 1, 1], 0, 0),   # inception's pools: 28 = 16 + 12 outputs a row
    (14, 14, 3, 1, [1, 1, 1, 1], 0, 1),   # counting the padding
    (7, 7, 7, 1, [0, 0, 0, 0], 0, 0),     # the whole map
    (17, 23, 3, 2, [1, 0, 1, 1], 0, 0),   # stride 2 (the even lanes of two vectors), uneven padding
    (30, 37, 5, 2, [2, 2, 2, 2], 1, 1),   # ceil mode: the last window past the padding
    (13, 29, 3, 3, [1, 1, 1, 1], 1, 0),   # stride 3: one output at a time
])
def test_average_pool_windows(h, w, k, s, pads, ceil, include_pad, compressor, tmp_path):
    x = RNG.standard_normal((2, 5, h, w)).astype(np.float32)
    m = model([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[k, k], strides=[s, s], pads=pads, ceil_mode=ceil,
                                count_include_pad=include_pad)], [("x", x)], opset=19)
    got, path = run_both(compressor, tmp_path, m, [("x", x)])
    ref = ort_run(path, [("x", x)])
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("op", ["Mul", "Add", "Sub", "Div"])
@pytest.mark.parametrize("a,b", [
    ((1, 5, 7, 9), (1, 5, 1, 1)), ((2, 3, 4, 5), (3, 1, 5)), ((2, 1, 4, 1), (1, 3, 1, 6)), ((4, 1), (1, 4)),
    ((1, 1, 1), (1, 1, 1)), ((3, 4, 5), (5,)), ((2, 3, 1, 5), (2, 1, 4, 5)), ((1, 64, 56, 56), (1, 64, 1, 1)),
    ((8, 72, 28, 28), (8, 72, 1, 1)), ((8, 72, 1, 1), (8, 72, 28, 28)),  # squeeze-excitation at batch 8: rows split among threads
])
def test_broadcasts(op, a, b, compressor, tmp_path):
    x = RNG.standard_normal(a).astype(np.float32)
    y = RNG.standard_normal(b).astype(np.float32) + (3 if op == "Div" else 0)
    m = model([helper.make_node(op, ["x", "v"], ["y"])], [("x", x), ("v", y)])
    got, _ = run_both(compressor, tmp_path, m, [("x", x), ("v", y)])
    ref = {"Mul": x * y, "Add": x + y, "Sub": x - y, "Div": x / y}[op]
    assert got.shape == ref.shape and np.array_equal(got, ref)


@pytest.mark.parametrize("cin,cout,size,k,stride", [
    (64, 128, 7, 3, 1), (96, 64, 7, 1, 1), (32, 80, 11, 3, 1), (64, 64, 4, 3, 1),
    (129, 128, 1, 3, 1),  # a 1×1 map: only the middle tap reads the input (the others' weights are dropped)
    (128, 64, 2, 3, 2),   # stride 2 on a 2×2 map: one output, four live taps
    (40, 24, 3, 3, 1),    # few channels and positions: as 8-row panels of positions
])
def test_convolutions_with_few_output_positions(cin, cout, size, k, stride, compressor, tmp_path):
    """Few output positions: the transposed product (positions × channels), and windows whose
    taps read only padding."""
    x = RNG.standard_normal((1, cin, size, size)).astype(np.float32)
    weight = (RNG.standard_normal((cout, cin, k, k)) * 0.1).astype(np.float32)
    m = model([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[k, k], pads=[k // 2] * 4, strides=[stride] * 2)],
              [("x", x)], [("w", weight)])
    got, path = run_both(compressor, tmp_path, m, [("x", x)])
    np.testing.assert_allclose(got, ort_run(path, [("x", x)]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch,cin,cout,h,w,k,pads,dilation", [
    (2, 16, 24, 19, 45, 3, [1, 1, 1, 1], 1),   # rows of 45 across 32-column panels, image by image
    (1, 8, 40, 11, 5, 3, [0, 2, 1, 0], 1),     # rows of 5 and 7 (several per panel), uneven padding
    (1, 12, 16, 23, 31, 3, [2, 2, 2, 2], 2),   # dilated: taps two apart, padding past a whole tap
    (1, 60, 8, 9, 70, 5, [2, 0, 2, 3], 1),     # taps across K blocks of 256 (60 × 25 rows)
    (1, 512, 256, 7, 7, 3, [1, 1, 1, 1], 1),   # 4.7 MB of weights over 49 positions: the transposed product
    (1, 64, 96, 3, 4, 3, [2, 1, 2, 2], 2),     # 9 positions: transposed, with dilation and uneven padding
    (1, 96, 40, 16, 16, 3, [24, 24, 24, 24], 24),  # DeepLab's ASPP: only the middle tap reads the input
    (1, 40, 24, 16, 16, 3, [12, 12, 12, 12], 12),  # rate 12 on 16 × 16: every tap reads it somewhere
])
def test_convolutions_unfold_inside_the_product(batch, cin, cout, h, w, k, pads, dilation, compressor, tmp_path):
    """Stride-1 convolutions unfold each panel of the input inside the matrix kernel (both ways
    round): equal to ONNX Runtime with every kind of padding and dilation."""
    x = RNG.standard_normal((batch, cin, h, w)).astype(np.float32)
    weight = (RNG.standard_normal((cout, cin, k, k)) * 0.1).astype(np.float32)
    m = model([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[k, k], pads=pads, dilations=[dilation] * 2)],
              [("x", x)], [("w", weight)])
    got, path = run_both(compressor, tmp_path, m, [("x", x)])
    np.testing.assert_allclose(got, ort_run(path, [("x", x)]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch,cin,cout,size,stride", [
    (5, 64, 96, 7, 1),    # ResNet's last stage at batch 5: one product over 5 × 49 positions
    (3, 32, 48, 14, 2),   # stride 2 to a 7 × 7 map
    (9, 16, 40, 5, 1),    # nine 5 × 5 maps
])
def test_convolutions_over_several_images(batch, cin, cout, size, stride, compressor, tmp_path):
    """Small maps of several images run as one product over all their positions: each image's
    output equals ONNX Runtime's, with the bias and the fused Relu, and is the same bytes as the
    image run alone."""
    x = RNG.standard_normal((batch, cin, size, size)).astype(np.float32)
    weight = (RNG.standard_normal((cout, cin, 3, 3)) * 0.1).astype(np.float32)
    bias = RNG.standard_normal(cout).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1] * 4, strides=[stride] * 2),
             helper.make_node("Relu", ["c"], ["y"])]
    m = model(nodes, [("x", x)], [("w", weight), ("b", bias)])
    got, path = run_both(compressor, tmp_path, m, [("x", x)])
    np.testing.assert_allclose(got, ort_run(path, [("x", x)]), rtol=1e-4, atol=1e-4)
    (tmp_path / "alone").mkdir()
    alone, _ = run_both(compressor, tmp_path / "alone", model(nodes, [("x", x[1:2])], [("w", weight), ("b", bias)]), [("x", x[1:2])])
    assert alone.tobytes() == got[1:2].tobytes()


@pytest.mark.parametrize("batch,cin,cout,h,w,k,stride,pads,dilation,group", [
    (2, 32, 64, 70, 40, 3, 1, [1, 1, 1, 1], 1, 1),   # 2,800 positions an image: two bands of 35 rows
    (3, 16, 32, 30, 33, 3, 2, [0, 1, 2, 1], 1, 1),   # strided, uneven padding; three images, one product
    (1, 64, 64, 9, 9, 3, 1, [2, 2, 2, 2], 2, 1),     # dilated
    (2, 64, 64, 12, 12, 3, 1, [1, 1, 1, 1], 1, 2),   # two groups of 32 channels
    (1, 8, 32, 50, 50, 5, 2, [2, 2, 2, 2], 1, 1),    # 5 × 5 taps, stride 2
    (4, 96, 128, 7, 7, 3, 1, [1, 1, 1, 1], 1, 1),    # 8-position panels across images (196 = 24 · 8 + 4)
    # Dilated over small maps: rectangles of outputs, each over the taps that read the input
    (2, 24, 40, 13, 11, 3, 1, [6, 5, 6, 7], 6, 1),
    (1, 20, 36, 10, 17, 3, 2, [4, 4, 4, 4], 4, 1),   # strided
])
def test_convolutions_gathered_from_a_padded_copy(batch, cin, cout, h, w, k, stride, pads, dilation, group, compressor,
                                                  tmp_path):
    """Convolutions computed as positions × channels, each position read in place from a
    zero-padded copy of its image: equal to ONNX Runtime with the bias and the fused Relu, and
    each image the same bytes as when it runs alone."""
    x = RNG.standard_normal((batch, cin, h, w)).astype(np.float32)
    weight = (RNG.standard_normal((cout, cin // group, k, k)) * 0.1).astype(np.float32)
    bias = RNG.standard_normal(cout).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[k, k], pads=pads, strides=[stride] * 2,
                              dilations=[dilation] * 2, group=group),
             helper.make_node("Relu", ["c"], ["y"])]
    m = model(nodes, [("x", x)], [("w", weight), ("b", bias)])
    got, path = run_both(compressor, tmp_path, m, [("x", x)])
    np.testing.assert_allclose(got, ort_run(path, [("x", x)]), rtol=1e-4, atol=1e-4)
    (tmp_path / "alone").mkdir()
    last = x[batch - 1:]
    alone, _ = run_both(compressor, tmp_path / "alone", model(nodes, [("x", last)], [("w", weight), ("b", bias)]), [("x", last)])
    assert alone.tobytes() == got[batch - 1:].tobytes()


@pytest.mark.parametrize("batch,cin,cout,size", [
    (8, 16, 24, 28), (3, 24, 16, 7), (5, 96, 40, 14),
    # 1 × 1 maps: one image a matrix–vector product, several one product against the transposed weights
    (1, 576, 144, 1), (1, 21, 7, 1), (8, 512, 1280, 1), (3, 40, 24, 1),
])
def test_pointwise_convolutions_over_several_images(batch, cin, cout, size, compressor, tmp_path):
    """1×1 convolutions whose products are too small to split give each thread whole images."""
    x = RNG.standard_normal((batch, cin, size, size)).astype(np.float32)
    weight = (RNG.standard_normal((cout, cin, 1, 1)) * 0.2).astype(np.float32)
    bias = RNG.standard_normal(cout).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[1, 1]), helper.make_node("Relu", ["c"], ["y"])]
    m = model(nodes, [("x", x)], [("w", weight), ("b", bias)])
    got, path = run_both(compressor, tmp_path, m, [("x", x)])
    np.testing.assert_allclose(got, ort_run(path, [("x", x)]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch,cin,cout,h,w,group", [
    (1, 16, 96, 40, 41, 1),    # 1,640 positions in blocks of 1,344 (about 512 KB of output each)
    (3, 24, 300, 23, 29, 1),   # blocks of 416 positions, the last one short, over three images
    (2, 32, 160, 30, 30, 2),   # two groups, each its own product over the same blocks
    (1, 8, 40, 64, 64, 1),     # eight input channels: 32 panels of B packed together
])
def test_pointwise_convolutions_finished_in_blocks(batch, cin, cout, h, w, group, compressor, tmp_path):
    """1×1 convolutions over large maps computed and finished (bias, SiLU) a block of positions at
    a time: the same values as ONNX Runtime, the same bytes on one and two threads."""
    x = RNG.standard_normal((batch, cin, h, w)).astype(np.float32)
    weight = (RNG.standard_normal((cout, cin // group, 1, 1)) * 0.2).astype(np.float32)
    bias = RNG.standard_normal(cout).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[1, 1], group=group),
             helper.make_node("Sigmoid", ["c"], ["s"]), helper.make_node("Mul", ["c", "s"], ["y"])]
    m = model(nodes, [("x", x)], [("w", weight), ("b", bias)])
    got, path = run_both(compressor, tmp_path, m, [("x", x)])
    np.testing.assert_allclose(got, ort_run(path, [("x", x)]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("scale_shape,shift_shape", [
    ((6, 1, 1), (1, 6, 1, 1)),  # one value per channel: folded into the Conv and the BatchNormalization
    ((1,), ()),                 # one value for all: folded
    ((1, 6, 1), (6, 1, 1)),     # lines up with the width, not the channels: left as it is
    ((2, 1, 1, 1), (6, 1, 1)),  # one value per image: left as it is
])
def test_channel_scales_and_shifts_after_conv_and_batch_norm(scale_shape, shift_shape, compressor, tmp_path):
    """Conv → Mul → Add → Relu and BatchNormalization → Mul → Add, as old exporters write a second
    normalization: compressor folds the constants into the Conv or the BatchNormalization where
    they are one per channel, and the results agree with ONNX Runtime's either way."""
    x = RNG.standard_normal((2, 4, 6, 6)).astype(np.float32)
    weight = (RNG.standard_normal((6, 4, 3, 3)) * 0.2).astype(np.float32)
    bias = RNG.standard_normal(6).astype(np.float32)
    scale, shift = RNG.uniform(0.5, 1.5, scale_shape).astype(np.float32), RNG.standard_normal(shift_shape).astype(np.float32)
    bn = [RNG.uniform(0.5, 1.5, 6).astype(np.float32), RNG.standard_normal(6).astype(np.float32),
          RNG.standard_normal(6).astype(np.float32), RNG.uniform(0.5, 1.5, 6).astype(np.float32)]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("Mul", ["c", "s"], ["cm"]), helper.make_node("Add", ["t", "cm"], ["ca"]),
             helper.make_node("Relu", ["ca"], ["r"]),
             helper.make_node("BatchNormalization", ["r", "g", "beta", "mean", "var"], ["n"]),
             helper.make_node("Mul", ["s", "n"], ["nm"]), helper.make_node("Add", ["nm", "t"], ["y"])]
    inits = [("w", weight), ("b", bias), ("s", scale), ("t", shift), ("g", bn[0]), ("beta", bn[1]), ("mean", bn[2]), ("var", bn[3])]
    m = model(nodes, [("x", x)], inits)
    got, path = run_both(compressor, tmp_path, m, [("x", x)])
    want = ort_run(path, [("x", x)])
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cin,cout,length,stride", [(129, 128, 4, 1), (128, 64, 4, 2), (64, 64, 2, 2), (64, 128, 1, 1)])
def test_one_dimensional_convolutions_over_few_frames(cin, cout, length, stride, compressor, tmp_path):
    """silero-vad's encoder: 1-D convolutions over 4, 2 and 1 frames, padded by one."""
    x = RNG.standard_normal((1, cin, length)).astype(np.float32)
    weight = (RNG.standard_normal((cout, cin, 3)) * 0.1).astype(np.float32)
    bias = RNG.standard_normal(cout).astype(np.float32)
    m = model([helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3], pads=[1, 1], strides=[stride])],
              [("x", x)], [("w", weight), ("b", bias)])
    got, path = run_both(compressor, tmp_path, m, [("x", x)])
    np.testing.assert_allclose(got, ort_run(path, [("x", x)]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("op", ["Relu", "Erf", "Sigmoid", "Exp", "Tanh", "HardSwish", "HardSigmoid", "Neg", "Abs", "Sqrt"])
def test_element_wise_maps(op, compressor, tmp_path):
    """Large enough (196,608 values) to be split between two threads."""
    x = RNG.standard_normal((1, 128, 1536)).astype(np.float32)
    if op == "Sqrt":
        x = np.abs(x)
    m = model([helper.make_node(op, ["x"], ["y"])], [("x", x)], opset=14)
    got, path = run_both(compressor, tmp_path, m, [("x", x)])
    np.testing.assert_allclose(got, ort_run(path, [("x", x)]), rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("shape,axis", [((1, 16, 4, 2100), 1), ((3, 5, 7), 0), ((2, 6, 9, 11), 2)])
def test_softmax_over_an_axis_that_is_not_the_last(op, shape, axis, compressor, tmp_path):
    """YOLOv8's distribution head (softmax over 16 bins, axis 1): rows of positions at a time."""
    x = (RNG.standard_normal(shape) * 4).astype(np.float32)
    m = model([helper.make_node(op, ["x"], ["y"], axis=axis)], [("x", x)])
    got, path = run_both(compressor, tmp_path, m, [("x", x)])
    np.testing.assert_allclose(got, ort_run(path, [("x", x)]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.uint8])
@pytest.mark.parametrize("starts,ends,steps", [([0, 1], [99, 99], [2, 2]), ([1, -1], [99, -99], [2, -3]), ([0, 5], [7, 1], [1, -2])])
def test_slices_with_a_step_along_the_last_axis(dtype, starts, ends, steps, compressor, tmp_path):
    """YOLOX's space-to-depth slices (x[..., ::2, ::2]) and negative steps, against numpy."""
    x = (RNG.standard_normal((2, 3, 10, 13)) * 50).astype(dtype)
    inits = [("starts", np.array(starts, np.int64)), ("ends", np.array(ends, np.int64)),
             ("axes", np.array([2, 3], np.int64)), ("steps", np.array(steps, np.int64))]
    m = typed_model([helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])], x, inits)
    got, _ = run_both(compressor, tmp_path, m, [("x", x)])
    want = x[:, :, slice(starts[0], ends[0] if abs(ends[0]) < 99 else None, steps[0]),
             slice(starts[1], ends[1] if abs(ends[1]) < 99 else None, steps[1])]
    assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)


# A shape, B shape, A type, B type, B zero points per column
MATMUL_INTEGER = [
    ((37, 512), (512, 600), np.uint8, np.int8, False),    # ddddocr's classifier: k·255² past 2^24
    ((2, 9, 70), (70, 45), np.uint8, np.uint8, True),     # k not a multiple of 4, n of 16; 18 rows
    ((70,), (70, 33), np.int8, np.uint8, False),          # a vector; int8 A moves by 128
    ((5, 3), (3, 17), np.int8, np.int8, True),
]


@pytest.mark.parametrize("a_shape,b_shape,a_type,b_type,per_column", MATMUL_INTEGER)
def test_matmul_integer_is_exact(a_shape, b_shape, a_type, b_type, per_column, compressor, tmp_path):
    """MatMulInteger against the integer product in numpy: equal, at 1 and 2 threads."""
    a, b = draw_integers(a_type, a_shape), draw_integers(b_type, b_shape)
    a_zero = draw_integers(a_type, ())
    b_zero = draw_integers(b_type, (b_shape[1],) if per_column else ())
    want = (a.astype(np.int64) - a_zero) @ (b.astype(np.int64) - b_zero)
    inits = [("b", b), ("a_zero", np.array(a_zero, a_type)), ("b_zero", np.array(b_zero, b_type))]
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b", "a_zero", "b_zero"], ["y"])], "g",
                              [helper.make_tensor_value_info("a", helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
                              [numpy_helper.from_array(v, n) for n, v in inits])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    got, path = run_both(compressor, tmp_path, m, [("a", a)])
    assert got.dtype == np.int32 and got.shape == want.shape
    assert np.array_equal(got.astype(np.int64), want)
    if a_type == np.uint8 and not per_column:
        # ONNX Runtime's CPU kernel takes uint8 A with a scalar B zero point.
        assert np.array_equal(ort_run(path, [("a", a)]), got)


@pytest.mark.parametrize("residual_shape", [(2, 8, 9, 9), (1, 8, 1, 1)])
@pytest.mark.parametrize("join", ["Add", "Sum"])
def test_residual_joins_after_a_convolution(residual_shape, join, compressor, tmp_path):
    """Conv → Add or Sum (the ONNX zoo's ResNet-50) → Relu, fused into the Conv: the residual the
    output's shape, or one broadcast over it."""
    x = RNG.standard_normal((2, 4, 9, 9)).astype(np.float32)
    r = RNG.standard_normal(residual_shape).astype(np.float32)
    weight = (RNG.standard_normal((8, 4, 3, 3)) * 0.2).astype(np.float32)
    bias = RNG.standard_normal(8).astype(np.float32)
    m = model([helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
               helper.make_node(join, ["c", "r"], ["s"]), helper.make_node("Relu", ["s"], ["y"])],
              [("x", x), ("r", r)], [("w", weight), ("b", bias)])
    got, path = run_both(compressor, tmp_path, m, [("x", x), ("r", r)])
    np.testing.assert_allclose(got, ort_run(path, [("x", x), ("r", r)]), rtol=1e-4, atol=1e-4)


def conv_integer_reference(x, w, x_zero, w_zero, stride, pad):
    """ConvInteger in int64 with numpy: (x − x_zero) padded with zeros, times (w − w_zero)."""
    xs = np.pad(x.astype(np.int64) - int(x_zero), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ws = w.astype(np.int64) - np.asarray(w_zero, np.int64).reshape(-1, 1, 1, 1)
    n, _, h, wd = xs.shape
    m, _, kh, kw = w.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    y = np.zeros((n, m, oh, ow), np.int64)
    for ky in range(kh):
        for kx in range(kw):
            patch = xs[:, :, ky:ky + stride * (oh - 1) + 1:stride, kx:kx + stride * (ow - 1) + 1:stride]
            y += np.einsum("nchw,mc->nmhw", patch, ws[:, :, ky, kx])
    return y


# x shape, weight shape, stride, pad, x type, w type, per-channel weight zero points
CONV_INTEGER = [
    ((1, 3, 32, 100), (32, 3, 3, 3), 1, 1, np.uint8, np.uint8, False),   # ddddocr's first layer
    ((2, 37, 9, 11), (45, 37, 3, 3), 2, 1, np.uint8, np.int8, True),     # k, channels and positions off every block
    ((1, 5, 6, 7), (7, 5, 1, 1), 1, 0, np.int8, np.uint8, False),        # int8 input moves by 128
    ((1, 64, 8, 25), (128, 64, 3, 3), 1, 1, np.uint8, np.uint8, True),
]


@pytest.mark.parametrize("x_shape,w_shape,stride,pad,x_type,w_type,per_channel", CONV_INTEGER)
def test_conv_integer_is_exact(x_shape, w_shape, stride, pad, x_type, w_type, per_channel, compressor, tmp_path):
    """ConvInteger against the integer convolution in numpy: equal, at 1 and 2 threads."""
    x, w = draw_integers(x_type, x_shape), draw_integers(w_type, w_shape)
    x_zero = draw_integers(x_type, ())
    w_zero = draw_integers(w_type, (w_shape[0],) if per_channel else ())
    want = conv_integer_reference(x, w, x_zero, w_zero, stride, pad)
    inits = [("w", w), ("x_zero", np.array(x_zero, x_type)), ("w_zero", np.array(w_zero, w_type))]
    node = helper.make_node("ConvInteger", ["x", "w", "x_zero", "w_zero"], ["y"], kernel_shape=list(w_shape[2:]),
                            strides=[stride, stride], pads=[pad] * 4)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
                              [numpy_helper.from_array(v, n) for n, v in inits])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    got, path = run_both(compressor, tmp_path, m, [("x", x)])
    assert got.dtype == np.int32 and got.shape == want.shape
    assert np.array_equal(got.astype(np.int64), want)
    if x_type == np.uint8 and w_type == np.uint8 and not per_channel:
        assert np.array_equal(ort_run(path, [("x", x)]), got)


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_lstm_recurrent_rows_shared_among_threads(direction, compressor, tmp_path):
    """An LSTM at batch 1 with a recurrent matrix large enough to be split between two threads
    (hidden 256: 1024 × 256), and ddddocr's default activations: against ONNX Runtime."""
    hidden, inputs, steps = 256, 40, 7
    dirs = 2 if direction == "bidirectional" else 1
    x = RNG.standard_normal((steps, 1, inputs)).astype(np.float32)
    w = (RNG.standard_normal((dirs, 4 * hidden, inputs)) * 0.1).astype(np.float32)
    r = (RNG.standard_normal((dirs, 4 * hidden, hidden)) * 0.05).astype(np.float32)
    b = (RNG.standard_normal((dirs, 8 * hidden)) * 0.1).astype(np.float32)
    m = model([helper.make_node("LSTM", ["x", "w", "r", "b"], ["y"], hidden_size=hidden, direction=direction)],
              [("x", x)], [("w", w), ("r", r), ("b", b)])
    got, path = run_both(compressor, tmp_path, m, [("x", x)])
    np.testing.assert_allclose(got, ort_run(path, [("x", x)]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape,k,n", [
    ((2, 7), 7, 33),          # 2 rows, an odd k and a panel and one column
    ((1, 5, 96), 96, 250),    # rows of a batch dimension, a last panel of 26
    ((128, 300), 300, 64),    # 128 rows: the most packed once; k past a block of 256
    ((8, 64), 64, 5000),      # GPT-2's LM head shape: many panels shared among threads
])
def test_matmul_with_weights_packed_once(shape, k, n, compressor, tmp_path):
    """A constant right operand is packed once at the first call: equal to ONNX Runtime, and the
    same bytes as the same product with that operand fed (packed per call)."""
    x = RNG.standard_normal(shape).astype(np.float32)
    weight = RNG.standard_normal((k, n)).astype(np.float32)
    constant = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", x)], [("w", weight)])
    got, path = run_both(compressor, tmp_path, constant, [("x", x)])
    np.testing.assert_allclose(got, ort_run(path, [("x", x)]), rtol=1e-4, atol=1e-4)
    (tmp_path / "fed").mkdir()
    fed = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", x), ("w", weight)])
    again, _ = run_both(compressor, tmp_path / "fed", fed, [("x", x), ("w", weight)])
    assert got.tobytes() == again.tobytes()


@pytest.mark.parametrize("swap", [False, True])
def test_decomposed_gelu_fuses_with_the_same_bytes(swap, compressor, tmp_path):
    """Div by √2, Erf, Add 1, Mul 0.5, Mul x (torch's export of GELU) runs as one pass: equal to
    ONNX Runtime, and the same bytes as the five nodes run apart (kept apart here by reading an
    intermediate value as a second output)."""
    x = (RNG.standard_normal((3, 50, 96)) * 3).astype(np.float32)
    consts = [("sqrt2", np.array(2 ** 0.5, np.float32)), ("one", np.array(1, np.float32)), ("half", np.array(0.5, np.float32))]

    def gelu_model(extra_output):
        nodes = [helper.make_node("Div", ["x", "sqrt2"], ["t"]), helper.make_node("Erf", ["t"], ["e"]),
                 helper.make_node("Add", ["one", "e"] if swap else ["e", "one"], ["a"]),
                 helper.make_node("Mul", ["a", "half"] if swap else ["half", "a"], ["h"]),
                 helper.make_node("Mul", ["h", "x"] if swap else ["x", "h"], ["y"])]
        m = model(nodes, [("x", x)], consts)
        if extra_output:
            m.graph.output.append(helper.make_tensor_value_info("e", TensorProto.FLOAT, None))
        return m

    fused, path = run_both(compressor, tmp_path, gelu_model(False), [("x", x)])
    np.testing.assert_allclose(fused, ort_run(path, [("x", x)]), rtol=1e-5, atol=1e-6)
    (tmp_path / "apart").mkdir()
    apart, _ = run_both(compressor, tmp_path / "apart", gelu_model(True), [("x", x)])
    assert fused.tobytes() == apart.tobytes()


# start, end, axis (None: omitted), index type, step input (None: omitted)
ONE_AXIS_SLICES = [
    (1, -1, 2, np.int64, 1),         # inner axis, negative end
    (-3, 99, -1, np.int32, None),    # negative axis and start, end past the dimension, int32 bounds
    (0, 99, 1, np.int64, None),      # the whole axis: the input itself
    (5, 2, 3, np.int64, 1),          # start after end: empty
    (2, 3, None, np.int64, None),    # axes omitted: axis 0
]


@pytest.mark.parametrize("start,end,axis,itype,step", ONE_AXIS_SLICES)
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_slices_along_one_axis(start, end, axis, itype, step, dtype, compressor, tmp_path):
    """The one-axis Slice path (scalar-like bounds read in place) against numpy."""
    x = (RNG.standard_normal((4, 3, 10, 13)) * 50).astype(dtype)
    inits = [("starts", np.array([start], itype)), ("ends", np.array([end], itype))]
    names = ["x", "starts", "ends"]
    if axis is not None:
        inits.append(("axes", np.array([axis], itype)))
        names.append("axes")
    if step is not None:
        inits.append(("steps", np.array([step], itype)))
        names.append("steps")
    m = typed_model([helper.make_node("Slice", names, ["y"])], x, inits)
    got, _ = run_both(compressor, tmp_path, m, [("x", x)])
    index = [slice(None)] * 4
    index[axis if axis is not None else 0] = slice(start, end)
    want = x[tuple(index)]
    assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)


@pytest.mark.parametrize("op,fn", [("Equal", np.equal), ("Greater", np.greater), ("LessOrEqual", np.less_equal)])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float32, np.float64, np.uint8])
def test_comparisons_in_the_operands_type(op, fn, dtype, compressor, tmp_path):
    """Comparisons of one type compare in that type: int64 values 2^53 and 2^53 + 1 differ
    (through Double they would not); NaN is unequal to itself; broadcasting a scalar."""
    if np.issubdtype(dtype, np.integer) and dtype != np.uint8:
        big = np.iinfo(dtype).max
        a = np.array([[big, big - 1, 0, -5], [2**53 + 1 if dtype == np.int64 else 7, 3, 3, 9]], dtype)
        b = np.array([[big, big, 0, -6], [2**53 if dtype == np.int64 else 7, 3, 4, 8]], dtype)
    elif dtype == np.uint8:
        a = np.array([[255, 0, 7, 8], [1, 2, 3, 4]], dtype)
        b = np.array([[255, 1, 6, 8], [4, 3, 2, 1]], dtype)
    else:
        a = np.array([[np.nan, 1.5, -0.0, 3], [np.inf, 2, 2, -1]], dtype)
        b = np.array([[np.nan, 1.5, 0.0, 2], [np.inf, 1, 3, -1]], dtype)
    cases = [(a, b), (a, b[:1, :1])]  # same shape, and a [1, 1] operand broadcast
    for left, right in cases:
        tensor = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        graph = helper.make_graph([helper.make_node(op, ["a", "b"], ["y"])], "g",
                                  [helper.make_tensor_value_info("a", tensor, left.shape),
                                   helper.make_tensor_value_info("b", tensor, right.shape)],
                                  [helper.make_tensor_value_info("y", TensorProto.BOOL, None)])
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
        m.ir_version = 8
        got, path = run_both(compressor, tmp_path, m, [("a", left), ("b", right)])
        want = fn(left, right)
        assert got.dtype == np.bool_ and np.array_equal(got, want)
        assert np.array_equal(got, ort_run(path, [("a", left), ("b", right)]))


def test_if_branches_run_again_from_their_cached_plans(compressor, tmp_path):
    """A chain of If nodes whose branches read the value before them from the outer scope: each
    branch's plan is made on its first run and reused; both branches, against ONNX Runtime."""
    x = RNG.standard_normal((2, 5)).astype(np.float32)
    nodes, previous = [], "x"
    for i in range(6):
        then = helper.make_graph([helper.make_node("Relu", [previous], [f"t{i}"])], f"then{i}", [],
                                 [helper.make_tensor_value_info(f"t{i}", TensorProto.FLOAT, None)])
        other = helper.make_graph([helper.make_node("Neg", [previous], [f"e{i}"])], f"else{i}", [],
                                  [helper.make_tensor_value_info(f"e{i}", TensorProto.FLOAT, None)])
        out = "y" if i == 5 else f"v{i}"
        nodes.append(helper.make_node("If", ["c" if i % 2 == 0 else "d"], [out], then_branch=then, else_branch=other))
        previous = out
    nodes.insert(0, helper.make_node("Not", ["c"], ["d"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape),
                                           helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    m.ir_version = 8
    for flag in (True, False):
        c = np.array(flag)
        got, path = run_both(compressor, tmp_path, m, [("x", x), ("c", c)])
        np.testing.assert_array_equal(got, ort_run(path, [("x", x), ("c", c)]))


# input shape, pads, mode
PADS = [
    ((1, 1, 37), [0, 0, 5, 0, 0, 5], "reflect"),              # silero's STFT framing
    ((2, 3, 6, 7), [0, 0, 1, 2, 0, 0, 2, 1], "constant"),
    ((2, 3, 6, 7), [0, 1, -1, 3, 0, 0, 2, -2], "edge"),        # negative pads crop
    ((4, 9), [2, 3, 1, 4], "wrap"),
    ((3, 5), [1, 4, 2, 4], "reflect"),                          # pads reaching the opposite end
]


@pytest.mark.parametrize("shape,pads,mode", PADS)
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_pad_modes(shape, pads, mode, dtype, compressor, tmp_path):
    """Pad row by row, in the tensor's own type, against ONNX Runtime; the constant is 7."""
    x = (RNG.standard_normal(shape) * 100).astype(dtype)
    tensor = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inits = [numpy_helper.from_array(np.array(pads, np.int64), "pads"), numpy_helper.from_array(np.array(7, dtype), "value")]
    graph = helper.make_graph([helper.make_node("Pad", ["x", "pads", "value"] if mode == "constant" else ["x", "pads"], ["y"], mode=mode)],
                              "g", [helper.make_tensor_value_info("x", tensor, x.shape)],
                              [helper.make_tensor_value_info("y", tensor, None)], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    m.ir_version = 9
    got, path = run_both(compressor, tmp_path, m, [("x", x)])
    np.testing.assert_array_equal(got, ort_run(path, [("x", x)]))


# input shape, weight shape, stride, pad, dilation
FEW_POSITIONS = [
    ((1, 64, 2), (64, 64, 3), 2, 1, 1),       # silero-vad's encoder: two frames, stride 2 → one position
    ((1, 128, 4), (64, 128, 3), 2, 1, 1),     # four frames → two
    ((2, 129, 4), (128, 129, 3), 1, 1, 1),    # batch of two, four positions, padding both ends
    ((1, 8, 23), (5, 8, 20), 1, 0, 1),        # 20 taps (past the cached live columns): four positions
    ((1, 6, 9), (7, 6, 3), 3, 2, 2),          # dilation and stride, padding read at both ends
    ((1, 5, 3, 6), (4, 5, 3, 3), 1, 0, 1),    # 2-D with one output row of four
]


@pytest.mark.parametrize("x_shape,w_shape,stride,pad,dilation", FEW_POSITIONS)
@pytest.mark.parametrize("relu", [False, True])
def test_convolutions_over_a_few_positions(x_shape, w_shape, stride, pad, dilation, relu, compressor, tmp_path):
    """One output row of at most four positions (the short gather im2col takes) with a bias and
    a fused Relu, against ONNX Runtime."""
    x = RNG.standard_normal(x_shape).astype(np.float32)
    w = (RNG.standard_normal(w_shape) * 0.2).astype(np.float32)
    b = RNG.standard_normal(w_shape[0]).astype(np.float32)
    spatial = len(x_shape) - 2
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c" if relu else "y"], strides=[stride] * spatial,
                              pads=[pad] * (2 * spatial), dilations=[dilation] * spatial)]
    if relu:
        nodes.append(helper.make_node("Relu", ["c"], ["y"]))
    m = model(nodes, [("x", x)], [("w", w), ("b", b)])
    got, path = run_both(compressor, tmp_path, m, [("x", x)])
    np.testing.assert_allclose(got, ort_run(path, [("x", x)]), rtol=1e-5, atol=1e-5)


# input shape, axis, scale shape, bias
LAYER_NORMS = [
    ((2, 8, 64), -1, (64,), True),         # a small transformer's rows
    ((1, 197, 768), -1, (768,), True),     # ViT's
    ((3, 5, 37), -1, (37,), False),        # a tail past the 16 lanes, no bias
    ((2, 6, 4, 5), -2, (4, 5,), True),     # normalized over two axes
    ((4, 6, 7), -1, (1,), True),           # a broadcast scale: the general path
]


@pytest.mark.parametrize("shape,axis,scale_shape,with_bias", LAYER_NORMS)
def test_layer_normalization(shape, axis, scale_shape, with_bias, compressor, tmp_path):
    """LayerNormalization in one pass per row (the general path for scales that broadcast),
    against ONNX Runtime; inputs with a large mean, so the variance is taken about it."""
    x = (RNG.standard_normal(shape) * 3 + 40).astype(np.float32)
    scale = RNG.standard_normal(scale_shape).astype(np.float32)
    inits = [("scale", scale)]
    names = ["x", "scale"]
    if with_bias:
        inits.append(("bias", RNG.standard_normal(scale_shape).astype(np.float32)))
        names.append("bias")
    m = model([helper.make_node("LayerNormalization", names, ["y"], axis=axis, epsilon=1e-5)], [("x", x)], inits, opset=17)
    got, path = run_both(compressor, tmp_path, m, [("x", x)])
    np.testing.assert_allclose(got, ort_run(path, [("x", x)]), rtol=1e-4, atol=1e-4)
