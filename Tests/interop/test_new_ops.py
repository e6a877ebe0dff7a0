"""The operators added for [ops] against ONNX Runtime on generated cases where the ONNX node cases
are thin (LRN, the normalizations, NonMaxSuppression, GridSample, RoiAlign, MaxRoiPool, DFT, STFT,
Attention, RotaryEmbedding, …): one-node models, random inputs of odd sizes, every mode, outputs
within 1e-4 of the output's scale unless a case says otherwise.

The random generators cannot equal ONNX Runtime's draws (ONNX leaves the generator unspecified):
their tests check ranges, moments and that a seed makes them deterministic."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from conftest import ort_outputs

RNG = np.random.default_rng(7)


def model(op, inputs, outputs, opset, attrs=None, initializers=(), domain=""):
    """A one-node model: inputs are (name, array) fed at run time; initializers are (name, array)."""
    node = helper.make_node(op, [n for n, _ in inputs] + [n for n, _ in initializers], [n for n, _ in outputs],
                            domain=domain, **(attrs or {}))
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in inputs],
        [helper.make_tensor_value_info(n, t, None) for n, t in outputs],
        [onnx.numpy_helper.from_array(a, n) for n, a in initializers])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    return m


def run_both(compressor, tmp_path, m, inputs, reference="ort"):
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    args = []
    for name, a in inputs:
        f = tmp_path / f"{name}.npy"
        np.save(f, a)
        args.append(f"--input={name}={f}")
    out = tmp_path / "out.npz"
    compressor("run", path, *args, "-o", out, "--force")
    ours = np.load(out)
    if callable(reference):
        theirs = reference(**dict(inputs))
    elif reference == "ort":
        theirs = ort_outputs(path, dict(inputs))
    else:
        from onnx.reference import ReferenceEvaluator
        theirs = ReferenceEvaluator(m).run(None, dict(inputs))
    return [ours[o.name] for o in m.graph.output], theirs


def check(compressor, tmp_path, op, inputs, outputs, opset, attrs=None, initializers=(), tolerance=1e-4,
          reference="ort"):
    """Our outputs against ONNX Runtime's (reference="onnx": the onnx wheel's reference evaluator,
    for what ONNX Runtime does not implement)."""
    m = model(op, inputs, outputs, opset, attrs, initializers)
    ours, theirs = run_both(compressor, tmp_path, m, inputs, reference)
    for (name, _), got, ref in zip(outputs, ours, theirs):
        assert got.shape == ref.shape, f"{name}: shape {got.shape} != {ref.shape}"
        assert got.dtype == ref.dtype, f"{name}: dtype {got.dtype} != {ref.dtype}"
        if ref.dtype.kind in "iub":
            np.testing.assert_array_equal(got, ref, err_msg=name)
            continue
        scale = max(float(np.max(np.abs(ref))) if ref.size else 0.0, 1e-6)
        err = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)))) if ref.size else 0.0
        assert err <= tolerance * scale, f"{name}: max abs error {err} against scale {scale}"


def f32(*shape, low=-1.0, high=1.0):
    return RNG.uniform(low, high, shape).astype(np.float32)


F = TensorProto.FLOAT
I64 = TensorProto.INT64


@pytest.mark.parametrize("size,shape", [(1, [1, 3, 4, 4]), (3, [2, 7, 5, 6]), (4, [1, 6, 3, 3]), (5, [2, 9, 7, 2])])
def test_lrn(size, shape, compressor, tmp_path):
    # ONNX Runtime accepts odd sizes only, and the ONNX reference sums the wrong channels (it loops
    # over the batch): even sizes are checked against the operator's formula here.
    def formula(x):
        before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
        sums = np.stack([np.sum(x[:, max(0, c - before):c + after + 1] ** 2, axis=1) for c in range(x.shape[1])], 1)
        return [(x / (1.5 + 0.002 / size * sums) ** 0.6).astype(np.float32)]
    check(compressor, tmp_path, "LRN", [("x", f32(*shape, low=-3, high=3))], [("y", F)], 13,
          dict(size=size, alpha=0.002, beta=0.6, bias=1.5), reference="ort" if size % 2 else formula)


@pytest.mark.parametrize("groups,opset", [(1, 21), (2, 21), (4, 21), (8, 21), (2, 18), (4, 18)])
def test_group_normalization(groups, opset, compressor, tmp_path):
    ch = 8
    params = groups if opset < 21 else ch
    check(compressor, tmp_path, "GroupNormalization", [("x", f32(2, ch, 5, 3, low=-2, high=4))], [("y", F)], opset,
          dict(num_groups=groups, epsilon=1e-3), initializers=[("scale", f32(params)), ("bias", f32(params))])


@pytest.mark.parametrize("axis,scale_shape", [(-1, [6]), (-2, [5, 6]), (1, [1, 6]), (0, [4, 5, 6])])
def test_rms_normalization(axis, scale_shape, compressor, tmp_path):
    check(compressor, tmp_path, "RMSNormalization", [("x", f32(4, 5, 6, low=-3, high=3))], [("y", F)], 23,
          dict(axis=axis, epsilon=1e-4), initializers=[("scale", f32(*scale_shape))])


@pytest.mark.parametrize("axes", [None, [0, 2, 3], [1], [2, 3]])
def test_mean_variance_normalization(axes, compressor, tmp_path):
    check(compressor, tmp_path, "MeanVarianceNormalization", [("x", f32(2, 3, 4, 5, low=-2, high=5))], [("y", F)], 13,
          {} if axes is None else dict(axes=axes))


@pytest.mark.parametrize("p,axis", [(1, 1), (2, -1), (2, 0)])
def test_lp_normalization(p, axis, compressor, tmp_path):
    x = f32(3, 4, 5)
    x[0, :, 0] = 0  # a zero vector along axis 1 and -1: zeros, not NaN
    check(compressor, tmp_path, "LpNormalization", [("x", x)], [("y", F)], 13, dict(p=p, axis=axis))


@pytest.mark.parametrize("p,attrs", [(1, dict(kernel_shape=[3, 2])), (2, dict(kernel_shape=[2, 2], strides=[2, 1])),
                                     (3, dict(kernel_shape=[3, 3], pads=[1, 0, 1, 2])),
                                     (2, dict(kernel_shape=[2, 3], auto_pad="SAME_UPPER"))])
def test_lp_pool(p, attrs, compressor, tmp_path):
    check(compressor, tmp_path, "LpPool", [("x", f32(2, 3, 6, 7))], [("y", F)], 18, dict(p=p, **attrs))


@pytest.mark.parametrize("p", [1, 2, 3])
def test_global_lp_pool(p, compressor, tmp_path):
    check(compressor, tmp_path, "GlobalLpPool", [("x", f32(2, 3, 5, 4))], [("y", F)], 13, dict(p=p))


@pytest.mark.parametrize("center,score_threshold,limit,iou", [(0, None, 3, 0.5), (0, 0.3, 10, 0.3), (1, None, 2, 0.6),
                                                               (1, 0.1, 100, 0.0), (0, None, 0, 0.5)])
def test_non_max_suppression(center, score_threshold, limit, iou, compressor, tmp_path):
    batch, boxes, classes = 2, 20, 3
    corners = RNG.uniform(0, 10, (batch, boxes, 2)).astype(np.float32)
    sizes = RNG.uniform(0.5, 4, (batch, boxes, 2)).astype(np.float32)
    if center:
        b = np.concatenate([corners, sizes], axis=2)
    else:
        far = corners + sizes
        # Some boxes with their corners given in the other order.
        b = np.concatenate([corners, far], axis=2)
        b[:, ::3] = np.concatenate([far[:, ::3], corners[:, ::3]], axis=2)
    scores = RNG.uniform(0, 1, (batch, classes, boxes)).astype(np.float32)
    scores[0, 0, 5] = scores[0, 0, 6]  # a tie
    inits = [("max_out", np.array([limit], np.int64)), ("iou", np.array([iou], np.float32))]
    if score_threshold is not None:
        inits.append(("score_threshold", np.array([score_threshold], np.float32)))
    check(compressor, tmp_path, "NonMaxSuppression", [("boxes", b), ("scores", scores)], [("selected", I64)], 11,
          dict(center_point_box=center), initializers=inits)


@pytest.mark.parametrize("mode", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align", [0, 1])
def test_grid_sample(mode, padding, align, compressor, tmp_path):
    grid = f32(2, 4, 6, 2, low=-1.4, high=1.4)
    check(compressor, tmp_path, "GridSample", [("x", f32(2, 3, 5, 7)), ("grid", grid)], [("y", F)], 16,
          dict(mode=mode, padding_mode=padding, align_corners=align))


@pytest.mark.parametrize("mode", ["linear", "nearest"])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
def test_grid_sample_volumetric(mode, padding, compressor, tmp_path):
    grid = f32(1, 3, 4, 5, 3, low=-1.2, high=1.2)
    check(compressor, tmp_path, "GridSample", [("x", f32(1, 2, 4, 5, 6)), ("grid", grid)], [("y", F)], 20,
          dict(mode=mode, padding_mode=padding, align_corners=0))


@pytest.mark.parametrize("align", [0, 1])
@pytest.mark.parametrize("dims", [[2, 3, 5, 7], [1, 2, 3, 4, 5]])
def test_affine_grid(align, dims, compressor, tmp_path):
    r = len(dims) - 2
    check(compressor, tmp_path, "AffineGrid", [("theta", f32(dims[0], r, r + 1))], [("grid", F)], 20,
          dict(align_corners=align), initializers=[("size", np.array(dims, np.int64))])


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("transform", ["half_pixel", "output_half_pixel"])
@pytest.mark.parametrize("ratio,scale", [(0, 1.0), (2, 0.5)])
def test_roi_align(mode, transform, ratio, scale, compressor, tmp_path):
    rois = np.array([[0, 0, 9, 9], [1.5, 2.2, 6.1, 8.7], [-2, -1, 3, 4], [4, 4, 14, 12], [5, 5, 5.2, 5.1]], np.float32)
    if scale != 1.0:
        rois *= 2
    check(compressor, tmp_path, "RoiAlign", [("x", f32(2, 3, 10, 10)), ("rois", rois)], [("y", F)], 16,
          dict(mode=mode, coordinate_transformation_mode=transform, output_height=3, output_width=4,
               sampling_ratio=ratio, spatial_scale=scale),
          initializers=[("batch_indices", np.array([0, 1, 0, 1, 1], np.int64))])


@pytest.mark.parametrize("pooled,scale", [([2, 2], 1.0), ([3, 4], 0.5)])
def test_max_roi_pool(pooled, scale, compressor, tmp_path):
    rois = np.array([[0, 0, 0, 7, 7], [1, 1.4, 2.6, 6, 5], [0, 3, 3, 3, 3], [1, -2, 5, 9, 12]], np.float32)
    check(compressor, tmp_path, "MaxRoiPool", [("x", f32(2, 3, 8, 8)), ("rois", rois)], [("y", F)], 13,
          dict(pooled_shape=pooled, spatial_scale=scale))


@pytest.mark.parametrize("n,complex_input,onesided,inverse,length,axis", [
    (8, False, False, False, None, 1), (12, False, True, False, None, 1), (12, True, False, False, None, 1),
    (7, True, False, True, None, 1), (8, False, False, False, 10, 1), (9, True, False, False, 6, 2),
    (8, True, True, True, None, 1), (16, False, True, False, None, 2)])
def test_dft(n, complex_input, onesided, inverse, length, axis, compressor, tmp_path):
    x = f32(2, n, 5, 2 if complex_input else 1)
    if axis == 2:
        x = f32(2, 5, n, 2 if complex_input else 1)
    inits = [("dft_length", np.array(length if length else (2 * (n - 1) if inverse and onesided else n), np.int64)),
             ("axis", np.array(axis, np.int64))]
    check(compressor, tmp_path, "DFT", [("x", x)], [("y", F)], 20, dict(onesided=int(onesided), inverse=int(inverse)),
          initializers=inits)


@pytest.mark.parametrize("length,step,window,onesided", [(16, 4, True, 1), (15, 5, False, 1), (16, 8, True, 0)])
def test_stft(length, step, window, onesided, compressor, tmp_path):
    inits = [("frame_step", np.array(step, np.int64))]
    inits.append(("window", np.hanning(length).astype(np.float32)) if window else ("", None))
    inits = [i for i in inits if i[0]]
    inputs = [("signal", f32(2, 64, 1))]
    m_inits = inits + ([("frame_length", np.array(length, np.int64))] if not window else [])
    node_inputs = ["signal", "frame_step", "window" if window else "", "" if window else "frame_length"]
    node = helper.make_node("STFT", node_inputs, ["y"], onesided=onesided)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("signal", F, [2, 64, 1])],
                              [helper.make_tensor_value_info("y", F, None)],
                              [onnx.numpy_helper.from_array(a, n) for n, a in m_inits])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 10
    ours, theirs = run_both(compressor, tmp_path, m, inputs)
    scale = float(np.max(np.abs(theirs[0])))
    assert ours[0].shape == theirs[0].shape
    assert float(np.max(np.abs(ours[0] - theirs[0]))) <= 1e-4 * scale


@pytest.mark.parametrize("op", ["HannWindow", "HammingWindow", "BlackmanWindow"])
@pytest.mark.parametrize("periodic", [0, 1])
def test_windows(op, periodic, compressor, tmp_path):
    check(compressor, tmp_path, op, [], [("w", F)], 17, dict(periodic=periodic),
          initializers=[("size", np.array(11, np.int64))])


def test_mel_weight_matrix(compressor, tmp_path):
    inits = [("bins", np.array(10, np.int64)), ("dft", np.array(64, np.int64)), ("rate", np.array(16000, np.int64)),
             ("low", np.array(20.0, np.float32)), ("high", np.array(7600.0, np.float32))]
    check(compressor, tmp_path, "MelWeightMatrix", [], [("w", F)], 17, initializers=inits)


@pytest.mark.parametrize("attrs,shapes", [
    (dict(), [[2, 3, 4, 8], [2, 3, 6, 8], [2, 3, 6, 8]]),
    (dict(is_causal=1), [[1, 4, 5, 8], [1, 2, 7, 8], [1, 2, 7, 6]]),
    (dict(q_num_heads=4, kv_num_heads=2), [[2, 5, 32], [2, 7, 16], [2, 7, 12]]),
    (dict(scale=0.3, softcap=2.0), [[1, 2, 3, 4], [1, 2, 5, 4], [1, 2, 5, 4]])])
@pytest.mark.parametrize("mask", [None, "bool", "float"])
def test_attention(attrs, shapes, mask, compressor, tmp_path):
    q, k, v = (f32(*s, low=-2, high=2) for s in shapes)
    inputs = [("Q", q), ("K", k), ("V", v)]
    q_len, kv_len = (shapes[0][2], shapes[1][2]) if len(shapes[0]) == 4 else (shapes[0][1], shapes[1][1])
    if mask == "bool":
        m = RNG.uniform(0, 1, (q_len, kv_len)) > 0.3
        m[:, 0] = True
        inputs.append(("mask", m))
    elif mask == "float":
        inputs.append(("mask", f32(1, 1, q_len, kv_len, low=-3, high=1)))
    check(compressor, tmp_path, "Attention", inputs, [("Y", F)], 23, attrs)


def test_attention_with_past_and_present(compressor, tmp_path):
    inputs = [("Q", f32(2, 4, 3, 8)), ("K", f32(2, 2, 3, 8)), ("V", f32(2, 2, 3, 8)),
              ("mask", f32(2, 1, 3, 8, low=-1, high=0)), ("past_key", f32(2, 2, 5, 8)), ("past_value", f32(2, 2, 5, 8))]
    check(compressor, tmp_path, "Attention", inputs, [("Y", F), ("present_key", F), ("present_value", F)], 23,
          dict(is_causal=1))


@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("rotary_dim", [0, 4])
def test_rotary_embedding(interleaved, rotary_dim, compressor, tmp_path):
    half = (rotary_dim or 8) // 2
    angles = RNG.uniform(0, 6.3, (10, half))
    inits = [("cos", np.cos(angles).astype(np.float32)), ("sin", np.sin(angles).astype(np.float32)),
             ("positions", RNG.integers(0, 10, (2, 3)).astype(np.int64))]
    check(compressor, tmp_path, "RotaryEmbedding", [("x", f32(2, 4, 3, 8))], [("y", F)], 23,
          dict(interleaved=interleaved, rotary_embedding_dim=rotary_dim), initializers=inits)


@pytest.mark.parametrize("op", ["Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Atanh",
                                "Softsign", "Mish", "IsNaN", "IsInf"])
def test_unary(op, compressor, tmp_path):
    x = f32(3, 17, low=-0.99, high=0.99)
    if op in ("IsNaN", "IsInf"):
        x[0, :4] = [np.nan, np.inf, -np.inf, 0]
    out = TensorProto.BOOL if op in ("IsNaN", "IsInf") else F
    check(compressor, tmp_path, op, [("x", x)], [("y", out)], 20)


def test_acosh(compressor, tmp_path):
    check(compressor, tmp_path, "Acosh", [("x", f32(4, 9, low=1, high=30))], [("y", F)], 20)


@pytest.mark.parametrize("op,attrs", [("Celu", dict(alpha=0.7)), ("Shrink", dict(lambd=0.3, bias=0.1)),
                                      ("ThresholdedRelu", dict(alpha=0.2)), ("Hardmax", dict(axis=1))])
def test_activations(op, attrs, compressor, tmp_path):
    check(compressor, tmp_path, op, [("x", f32(3, 5, 7, low=-2, high=2))], [("y", F)], 13, attrs)


@pytest.mark.parametrize("op", ["BitwiseAnd", "BitwiseOr", "BitwiseXor"])
@pytest.mark.parametrize("dtype", [np.int8, np.uint16, np.int32, np.uint64])
def test_bitwise(op, dtype, compressor, tmp_path):
    info = np.iinfo(dtype)
    a = RNG.integers(info.min, info.max, (3, 4), dtype=dtype)
    b = RNG.integers(info.min, info.max, (4,), dtype=dtype)
    check(compressor, tmp_path, op, [("a", a), ("b", b)], [("y", helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))], 18)


def test_unique(compressor, tmp_path):
    x = RNG.integers(0, 4, (6, 3)).astype(np.float32)
    x[4] = x[1]
    outs = [("y", F), ("indices", I64), ("inverse", I64), ("counts", I64)]
    for attrs in [dict(sorted=1), dict(sorted=0), dict(sorted=1, axis=0), dict(sorted=0, axis=0)]:
        check(compressor, tmp_path, "Unique", [("x", x)], outs, 11, attrs)


def test_det(compressor, tmp_path):
    check(compressor, tmp_path, "Det", [("x", f32(3, 2, 5, 5, low=-2, high=2))], [("y", F)], 11)


def test_col2im(compressor, tmp_path):
    inits = [("image_shape", np.array([6, 7], np.int64)), ("block_shape", np.array([2, 3], np.int64))]
    # Blocks of 2×3 with dilation [1, 2], stride [2, 1], pads [1, 0, 1, 2]: the grid is 4 × 5 = 20.
    check(compressor, tmp_path, "Col2Im", [("x", f32(2, 3 * 6, 20))], [("y", F)], 18,
          dict(dilations=[1, 2], strides=[2, 1], pads=[1, 0, 1, 2]), initializers=inits)


@pytest.mark.parametrize("op,inputs,inits,out,attrs", [
    ("OneHot", [("i", np.array([[1, -1, 7], [0, 3, 2]], np.int64))],
     [("depth", np.array(4, np.int64)), ("values", np.array([-2, 5], np.float32))], F, dict(axis=1)),
    ("Compress", [("x", f32(4, 5))], [("cond", np.array([1, 0, 1], bool))], F, dict(axis=1)),
    ("ReverseSequence", [("x", f32(5, 3, 2))], [("lens", np.array([5, 1, 3], np.int64))], F,
     dict(batch_axis=1, time_axis=0)),
    ("EyeLike", [("x", f32(4, 6))], [], TensorProto.INT32, dict(k=-1, dtype=TensorProto.INT32)),
    ("CenterCropPad", [("x", f32(5, 6, 3))], [("shape", np.array([3, 9], np.int64))], F, dict(axes=[0, 1])),
])
def test_selection(op, inputs, inits, out, attrs, compressor, tmp_path):
    check(compressor, tmp_path, op, inputs, [("y", out)], 18, attrs, initializers=inits)


def run_random(compressor, tmp_path, op, attrs, inputs=(), opset=15, out_type=F, name="y"):
    m = model(op, list(inputs), [(name, out_type)], opset, attrs)
    path = tmp_path / "r.onnx"
    onnx.save(m, str(path))
    args = []
    for n, a in inputs:
        np.save(tmp_path / f"{n}.npy", a)
        args.append(f"--input={n}={tmp_path / f'{n}.npy'}")
    out = tmp_path / "r.npz"
    compressor("run", path, *args, "-o", out, "--force")
    return np.load(out)[name]


def test_random_normal_moments_and_seed(compressor, tmp_path):
    attrs = dict(shape=[200, 100], mean=1.5, scale=0.5, seed=3.0)
    a = run_random(compressor, tmp_path, "RandomNormal", attrs)
    assert a.shape == (200, 100) and a.dtype == np.float32
    assert abs(a.mean() - 1.5) < 0.02 and abs(a.std() - 0.5) < 0.02
    assert np.array_equal(a, run_random(compressor, tmp_path, "RandomNormal", attrs)), "a seed makes it deterministic"
    b = run_random(compressor, tmp_path, "RandomNormal", dict(attrs, seed=4.0))
    assert not np.array_equal(a, b)


def test_random_uniform_range_and_moments(compressor, tmp_path):
    a = run_random(compressor, tmp_path, "RandomUniform", dict(shape=[20000], low=-2.0, high=3.0, seed=1.0,
                                                                 dtype=TensorProto.DOUBLE), out_type=TensorProto.DOUBLE)
    assert a.dtype == np.float64 and a.min() >= -2 and a.max() < 3
    assert abs(a.mean() - 0.5) < 0.05 and abs(a.var() - 25 / 12) < 0.05


def test_random_like_takes_shape_and_type(compressor, tmp_path):
    x = np.zeros((3, 7), np.float32)
    a = run_random(compressor, tmp_path, "RandomUniformLike", dict(seed=2.0), inputs=[("x", x)])
    assert a.shape == (3, 7) and a.dtype == np.float32 and ((a >= 0) & (a < 1)).all()
    b = run_random(compressor, tmp_path, "RandomNormalLike", dict(seed=2.0), inputs=[("x", x)])
    assert b.shape == (3, 7) and np.all(np.isfinite(b))


def test_bernoulli_frequencies(compressor, tmp_path):
    p = np.tile(np.array([0.0, 0.2, 0.7, 1.0], np.float32), (5000, 1))
    a = run_random(compressor, tmp_path, "Bernoulli", dict(seed=5.0), inputs=[("p", p)])
    assert set(np.unique(a)) <= {0.0, 1.0}
    np.testing.assert_allclose(a.mean(axis=0), [0.0, 0.2, 0.7, 1.0], atol=0.02)


def test_multinomial_frequencies(compressor, tmp_path):
    logits = np.log(np.array([[0.1, 0.6, 0.3], [0.5, 0.0, 0.5]], np.float32) + 1e-30)
    a = run_random(compressor, tmp_path, "Multinomial", dict(sample_size=20000, seed=9.0), inputs=[("x", logits)],
                   out_type=TensorProto.INT32)
    assert a.shape == (2, 20000) and a.dtype == np.int32
    np.testing.assert_allclose(np.bincount(a[0], minlength=3) / 20000, [0.1, 0.6, 0.3], atol=0.015)
    np.testing.assert_allclose(np.bincount(a[1], minlength=3) / 20000, [0.5, 0.0, 0.5], atol=0.015)


@pytest.mark.parametrize("op,attrs,inputs,message", [
    ("LRN", dict(size=0), [("x", np.zeros((1, 2, 3, 3), np.float32))], "size must be positive"),
    ("GroupNormalization", dict(num_groups=3), [("x", np.zeros((1, 4, 2), np.float32)),
                                                ("s", np.ones(4, np.float32)), ("b", np.zeros(4, np.float32))],
     "does not divide the 4 channels"),
    ("OneHot", dict(axis=5), [("i", np.array([1], np.int64)), ("d", np.array(3, np.int64)),
                              ("v", np.array([0, 1], np.float32))], "axis 5 is out of range"),
    ("NonMaxSuppression", {}, [("b", np.zeros((1, 2, 3), np.float32)), ("s", np.zeros((1, 1, 2), np.float32))],
     "boxes must be [batch, boxes, 4]"),
    ("BitShift", dict(direction="UP"), [("a", np.array([1], np.uint8)), ("b", np.array([1], np.uint8))],
     "direction must be LEFT or RIGHT"),
])
def test_bad_attributes_name_the_node(op, attrs, inputs, message, compressor, tmp_path):
    m = model(op, inputs, [("y", F)], 21, attrs)
    path = tmp_path / "bad.onnx"
    onnx.save(m, str(path))
    args = []
    for n, a in inputs:
        np.save(tmp_path / f"{n}.npy", a)
        args.append(f"--input={n}={tmp_path / f'{n}.npy'}")
    r = compressor("run", path, *args, check=False)
    assert r.returncode == 65, r.stderr
    assert r.stderr.startswith(f"compressor: error: {op} node producing 'y': ") and message in r.stderr, r.stderr


@pytest.mark.parametrize("mode,weights", [("TF", None), ("IDF", [0.5, 2.0, 1.5, 3.0, 0.25, 1.0, 4.0]),
                                          ("TFIDF", [0.5, 2.0, 1.5, 3.0, 0.25, 1.0, 4.0]), ("IDF", None)])
@pytest.mark.parametrize("grams,skip", [((1, 1), 0), ((1, 2), 2), ((2, 2), 3)])
def test_tfidf_vectorizer(mode, weights, grams, skip, compressor, tmp_path):
    attrs = dict(mode=mode, min_gram_length=grams[0], max_gram_length=grams[1], max_skip_count=skip,
                 ngram_counts=[0, 4], ngram_indexes=[0, 1, 2, 3, 4, 5, 6], pool_int64s=[2, 3, 5, 4, 5, 6, 7, 8, 6, 7])
    if weights:
        attrs["weights"] = weights
    x = RNG.integers(2, 9, (3, 12)).astype(np.int64)
    check(compressor, tmp_path, "TfIdfVectorizer", [("x", x)], [("y", F)], 9, attrs)


@pytest.mark.parametrize("op,attrs,inputs,outputs", [
    ("StringConcat", {}, [("a", np.array([["ab", ""], ["ü", "x y"]])), ("b", np.array(["-1", "é"]))], [("y", TensorProto.STRING)]),
    # ONNX Runtime splits "" into no pieces and whitespace at spaces only; compressor follows the ONNX
    # reference (Python's str.split): one piece, and every whitespace character. Neither case is here.
    ("StringSplit", dict(delimiter="::", maxsplit=2), [("x", np.array(["a::b::c::d", "::", "none", "x::"]))],
     [("y", TensorProto.STRING), ("n", I64)]),
    ("StringSplit", {}, [("x", np.array([["  two words ", "one"], ["", "a b  c"]]))], [("y", TensorProto.STRING), ("n", I64)]),
    ("StringNormalizer", dict(case_change_action="UPPER", stopwords=["the", "A"], locale="C"),
     [("x", np.array(["The", "cat", "a", "Ärger"]))], [("y", TensorProto.STRING)]),
    ("RegexFullMatch", dict(pattern=r"[a-z]+\d{2}\b"), [("x", np.array(["abc12", "abc123", "x99", "Ab12"]))],
     [("y", TensorProto.BOOL)]),
])
def test_strings(op, attrs, inputs, outputs, compressor, tmp_path):
    m = model(op, inputs, outputs, 20, attrs)
    if op == "StringNormalizer":
        m.opset_import[0].version = 10
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    args = []
    for name, a in inputs:
        np.save(tmp_path / f"{name}.npy", a)
        args.append(f"--input={name}={tmp_path / f'{name}.npy'}")
    compressor("run", path, *args, "-o", tmp_path / "out.npz")
    ours = np.load(tmp_path / "out.npz")
    theirs = ort_outputs(path, {n: a.astype(object) for n, a in inputs})
    for (name, _), ref in zip(outputs, theirs):
        assert ours[name].shape == ref.shape, name
        assert ours[name].tolist() == ref.tolist(), name


@pytest.mark.parametrize("op,opset,attrs,inputs,code", [
    ("RoiAlign", 16, {}, [("x", np.zeros((1, 1, 4, 4), np.float32)), ("r", np.array([[np.nan, 0, np.inf, 2]], np.float32)),
                          ("b", np.array([0], np.int64))], 65),
    ("RoiAlign", 16, {}, [("x", np.zeros((1, 1, 4, 4), np.float32)), ("r", np.array([[3, 3, 1, 1]], np.float32)),
                          ("b", np.array([0], np.int64))], 0),
    ("GridSample", 16, {}, [("x", np.ones((1, 1, 3, 3), np.float32)),
                            ("g", np.array([[[[1e30, -1e30], [np.nan, 0]]]], np.float32))], 0),
    ("GridSample", 16, dict(padding_mode="reflection", mode="bicubic"),
     [("x", np.ones((1, 1, 3, 3), np.float32)), ("g", np.array([[[[3e9, -7.5], [np.inf, 0]]]], np.float32))], 0),
    ("OneHot", 11, {}, [("i", np.array([1e300, -np.inf, 2], np.float64)), ("d", np.array(3, np.int64)),
                        ("v", np.array([0, 1], np.float32))], 0),
    ("EyeLike", 9, dict(k=2**62), [("x", np.zeros((3, 4), np.float32))], 0),
    ("TensorScatter", 24, {}, [("p", np.zeros((2, 4, 3), np.float32)), ("u", np.ones((2, 1, 3), np.float32)),
                               ("w", np.array([2**62, 0], np.int64))], 65),
    ("NonMaxSuppression", 11, {}, [("b", np.zeros((1, 2, 4), np.float32)), ("s", np.ones((1, 1, 2), np.float32)),
                                   ("m", np.array([-5], np.int64))], 0),
    ("LRN", 13, dict(size=2**62), [("x", np.ones((1, 2, 2, 2), np.float32))], 65),
    ("MelWeightMatrix", 17, {}, [("n", np.array(4, np.int64)), ("d", np.array(16, np.int64)), ("r", np.array(8000, np.int64)),
                                 ("lo", np.array(0, np.float32)), ("hi", np.array(1e30, np.float32))], 65),
    ("Attention", 24, {}, [("q", np.zeros((1, 1, 2, 4), np.float32)), ("k", np.zeros((1, 1, 3, 4), np.float32)),
                           ("v", np.zeros((1, 1, 3, 4), np.float32)), ("", None), ("", None), ("", None),
                           ("n", np.array([-2**62], np.int64))], 65),
    ("DFT", 20, {}, [("x", np.zeros((1, 4, 1), np.float32)), ("l", np.array(-3, np.int64))], 65),
    ("MaxUnpool", 11, dict(kernel_shape=[2, 2]), [("x", np.ones((1, 1, 2, 2), np.float32)),
                                                  ("i", np.array([[[[0, 1], [99, 2]]]], np.int64))], 65),
])
def test_hostile_values_do_not_trap(op, opset, attrs, inputs, code, compressor, tmp_path):
    """Values no exporter writes: the operator's defined result or exit 65 naming the node, never a trap."""
    fed = [(n, a) for n, a in inputs if n]
    node = helper.make_node(op, [n for n, _ in inputs], ["y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                                           for n, a in fed], [helper.make_tensor_value_info("y", TensorProto.UNDEFINED, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    args = []
    for n, a in fed:
        np.save(tmp_path / f"{n}.npy", a)
        args.append(f"--input={n}={tmp_path / f'{n}.npy'}")
    r = compressor("run", path, *args, check=False)
    assert r.returncode == code, r.stderr
    if code == 65:
        assert f"{op} node producing 'y'" in r.stderr, r.stderr


def test_non_max_suppression_batched_offsets(compressor, tmp_path):
    """torchvision's batched NMS: thousands of boxes of many classes, each class moved far along
    both axes, one NMS call; boxes of very different widths."""
    n = 3000
    cls = RNG.integers(0, 40, n)
    corner = RNG.uniform(0, 300, (n, 2))
    size = RNG.uniform(1, 120, (n, 2))
    boxes = np.concatenate([corner, corner + size], 1) + (cls * 500.0)[:, None]
    scores = RNG.uniform(0, 1, (1, 1, n)).astype(np.float32)
    inits = [("max_out", np.array([2**40], np.int64)), ("iou", np.array([0.45], np.float32))]
    check(compressor, tmp_path, "NonMaxSuppression", [("boxes", boxes[None].astype(np.float32)), ("scores", scores)],
          [("selected", I64)], 11, initializers=inits)
