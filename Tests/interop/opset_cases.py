"""Small models at old opsets, one or more for every rewriting adapter of the opset converter (the
ONNX node cases are written at each operator's newest version, so they exercise few of them).
Each case is (name, model, feeds, refused): `refused(target)` is True where the conversion to that
opset must exit 69 (no exact counterpart), else ORT must compute the same outputs before and after."""
import numpy as np
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT
rng = np.random.default_rng(13)


def tensor_type(a):
    return {np.float32: F, np.float64: TensorProto.DOUBLE, np.float16: TensorProto.FLOAT16, np.int64: TensorProto.INT64,
            np.int32: TensorProto.INT32, np.bool_: TensorProto.BOOL}[a.dtype.type]


def model(nodes, opset, feeds, outputs, inits=(), declare_shapes=True, functions=(), extra_opsets=()):
    """outputs: names (float) or (name, elem_type) pairs."""
    inputs = [helper.make_tensor_value_info(k, tensor_type(v), list(v.shape) if declare_shapes else None)
              for k, v in feeds.items()]
    outs = [helper.make_tensor_value_info(o, F, None) if isinstance(o, str) else helper.make_tensor_value_info(o[0], o[1], None)
            for o in outputs]
    g = helper.make_graph(nodes, "g", inputs, outs, [numpy_helper.from_array(a, n) for n, a in inits])
    ir = {7: 3, 8: 3, 9: 4, 10: 5, 11: 6, 12: 7, 13: 7}.get(opset, 8)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), *extra_opsets], ir_version=ir,
                             functions=list(functions))


def x(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def node(op, inputs, outputs, **attrs):
    return helper.make_node(op, inputs, outputs, **attrs)


def cases():
    out = []

    def add(name, m, feeds, refused=False):
        # refused: True (every target), an opset (targets from it on) or a predicate on the target.
        if callable(refused):
            rule = refused
        elif refused is True or refused is False:
            rule = lambda target, r=refused: r
        else:
            rule = lambda target, r=refused: target >= r
        out.append((name, m, feeds, rule))

    # Softmax, LogSoftmax, Hardmax: the 2-D coercion before 13, with and without a known rank.
    for op in ("Softmax", "LogSoftmax", "Hardmax"):
        for opset in (9, 11):
            for axis in (None, 0, 2, 3, -1, -2):
                for declared in (True, False):
                    attrs = {} if axis is None else {"axis": axis}
                    feeds = {"x": x(2, 3, 4, 5)}
                    add(f"{op.lower()}{opset}_axis{axis}_{'ranked' if declared else 'unranked'}",
                        model([node(op, ["x"], ["y"], **attrs)], opset, feeds, ["y"], declare_shapes=declared), feeds)
    feeds = {"x": x(3, 7)}
    add("softmax11_2d_default", model([node("Softmax", ["x"], ["y"])], 11, feeds, ["y"]), feeds)

    # Axes and sizes moved to inputs (13, 18).
    feeds = {"x": x(1, 3, 1, 5)}
    for axes in (None, [0], [-2], [0, 2]):
        attrs = {} if axes is None else {"axes": axes}
        add(f"squeeze11_{axes}", model([node("Squeeze", ["x"], ["y"], **attrs)], 11, feeds, ["y"]), feeds)
    for axes in ([0], [-1], [0, 4]):
        add(f"unsqueeze11_{axes}", model([node("Unsqueeze", ["x"], ["y"], axes=axes)], 11, feeds, ["y"]), feeds)
    feeds = {"x": x(2, 6, 3)}
    add("split11_sizes", model([node("Split", ["x"], ["a", "b"], axis=1, split=[2, 4])], 11, feeds, ["a", "b"]), feeds)
    add("split11_equal", model([node("Split", ["x"], ["a", "b", "c"], axis=1)], 11, feeds, ["a", "b", "c"]), feeds)
    feeds = {"x": x(2, 6)}
    add("split13_equal", model([node("Split", ["x"], ["a", "b"], axis=1)], 13, feeds, ["a", "b"]), feeds)
    feeds = {"x": x(2, 3, 4)}
    for op, opset in (("ReduceSum", 11), ("ReduceSum", 12), ("ReduceMean", 13), ("ReduceMax", 13), ("ReduceMin", 11),
                      ("ReduceProd", 13), ("ReduceL1", 13), ("ReduceL2", 13), ("ReduceSumSquare", 13),
                      ("ReduceLogSumExp", 13), ("ReduceLogSum", 13)):
        for axes, keep in ((None, 1), ([1], 0), ([0, -1], 1), (None, 0)):
            attrs = {"keepdims": keep}
            if axes is not None:
                attrs["axes"] = axes
            f = {"x": np.abs(feeds["x"]) + 0.5} if op == "ReduceLogSum" else feeds
            add(f"{op.lower()}{opset}_{axes}_{keep}", model([node(op, ["x"], ["y"], **attrs)], opset, f, ["y"]), f)
    feeds = {"x": x(4, 5, 6)}
    add("slice9", model([node("Slice", ["x"], ["y"], starts=[1, -4], ends=[3, 1000], axes=[0, 2])], 9, feeds, ["y"]), feeds)
    add("slice9_no_axes", model([node("Slice", ["x"], ["y"], starts=[0, 1], ends=[2, -1])], 9, feeds, ["y"]), feeds)
    feeds = {"x": x(1, 2, 4, 4)}
    add("pad10_value", model([node("Pad", ["x"], ["y"], pads=[0, 0, 1, 2, 0, 0, 2, 1], value=1.5)], 10, feeds, ["y"]), feeds)
    add("pad10_zero", model([node("Pad", ["x"], ["y"], pads=[0, 0, 1, 0, 0, 0, 0, 1])], 10, feeds, ["y"]), feeds)
    add("pad10_reflect", model([node("Pad", ["x"], ["y"], pads=[0, 0, 2, 1, 0, 0, 1, 2], mode="reflect")], 10, feeds, ["y"]), feeds)
    add("pad10_edge_negative", model([node("Pad", ["x"], ["y"], pads=[0, 0, 2, -1, 0, 0, -1, 2], mode="edge")], 10, feeds, ["y"]), feeds)
    f64 = {"x": x(1, 2, 4, 4, dtype=np.float64)}
    add("pad10_double_value", model([node("Pad", ["x"], ["y"], pads=[0, 0, 1, 1, 0, 0, 1, 1], value=-2.0)], 10, f64,
                                    [("y", TensorProto.DOUBLE)]), f64)
    feeds = {"x": x(3, 4) * 3}
    add("topk9", model([node("TopK", ["x"], ["v", "i"], k=2)], 9, feeds, ["v", ("i", TensorProto.INT64)]), feeds)
    add("topk9_axis0", model([node("TopK", ["x"], ["v", "i"], k=3, axis=0)], 9, feeds, ["v", ("i", TensorProto.INT64)]), feeds)

    # Clip's bounds (11), typed like the input.
    for name, attrs in (("both", {"min": -0.5, "max": 0.7}), ("min", {"min": 0.1}), ("max", {"max": -0.2}), ("none", {})):
        # (ONNX Runtime has no double kernel for Clip 6; a Swift test covers the double bounds.)
        for dtype, et in ((np.float32, F), (np.float16, TensorProto.FLOAT16)):
            f = {"x": (x(3, 4) * 3).astype(dtype)}
            add(f"clip10_{name}_{np.dtype(dtype).name}", model([node("Clip", ["x"], ["y"], **attrs)], 10, f, [("y", et)]), f)

    # Upsample → Resize, Resize 10 → 11.
    feeds = {"x": x(1, 2, 3, 4)}
    for mode in ("nearest", "linear"):
        add(f"upsample7_{mode}", model([node("Upsample", ["x"], ["y"], mode=mode, scales=[1.0, 1.0, 2.0, 3.0])], 7, feeds, ["y"]),
            feeds)
        add(f"upsample9_{mode}", model([node("Upsample", ["x", "s"], ["y"], mode=mode)], 9, feeds, ["y"],
                                       [("s", np.array([1, 1, 2, 1.5], np.float32))]), feeds)
        dyn = dict(feeds, s=np.array([1, 1, 3, 2], np.float32))
        add(f"upsample9_{mode}_dynamic", model([node("Upsample", ["x", "s"], ["y"], mode=mode)], 9, dyn, ["y"]), dyn)
    feeds = {"x": x(1, 1, 6, 10)}
    for mode in ("nearest", "linear"):
        for scales in ([1, 1, 2, 2], [1, 1, 0.5, 0.6], [1, 1, 1, 0.3], [1, 1, 1.5, 2.5]):
            add(f"resize10_{mode}_{scales}", model([node("Resize", ["x", "s"], ["y"], mode=mode)], 10, feeds, ["y"],
                                                  [("s", np.array(scales, np.float32))]), feeds)
        # 0.5 lands on whole input indices, where both roundings agree; 0.6 does not.
        add(f"resize10_{mode}_mixed_half", model([node("Resize", ["x", "s"], ["y"], mode=mode)], 10, feeds, ["y"],
                                                 [("s", np.array([1, 1, 2.5, 0.5], np.float32))]), feeds)
        add(f"resize10_{mode}_mixed", model([node("Resize", ["x", "s"], ["y"], mode=mode)], 10, feeds, ["y"],
                                            [("s", np.array([1, 1, 1.25, 0.6], np.float32))]), feeds,
            refused=11 if mode == "nearest" else False)
        dyn = dict(feeds, s=np.array([1, 1, 1.25, 2], np.float32))
        add(f"resize10_{mode}_dynamic", model([node("Resize", ["x", "s"], ["y"], mode=mode)], 10, dyn, ["y"]), dyn,
            refused=11 if mode == "nearest" else False)
    for ct in ("half_pixel", "align_corners", "tf_half_pixel_for_nn"):
        for rounding in ("round_prefer_floor", "floor", "ceil"):
            for scales in ([1, 1, 2, 1.5], [1, 1, 0.5, 0.7]):
                add(f"resize11_{ct}_{rounding}_{scales}",
                    model([node("Resize", ["x", "roi", "s"], ["y"], mode="nearest", coordinate_transformation_mode=ct,
                                nearest_mode=rounding)], 11, feeds, ["y"],
                          [("roi", np.zeros(0, np.float32)), ("s", np.array(scales, np.float32))]),
                    feeds, refused=13 if ct == "tf_half_pixel_for_nn" and rounding == "ceil" else False)

    # BatchNormalization, Dropout, GroupNormalization.
    feeds = {"x": x(2, 3, 4, 4)}
    bn = [("s", np.abs(x(3)) + 0.5), ("b", x(3)), ("m", x(3)), ("v", np.abs(x(3)) + 0.1)]
    add("batchnorm7_spatial", model([node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], spatial=1, epsilon=1e-3)],
                                    7, feeds, ["y"], bn), feeds)
    add("batchnorm9", model([node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], momentum=0.8)], 9, feeds, ["y"], bn), feeds)
    add("batchnorm7_per_activation", model([node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], spatial=0)], 7, feeds,
                                           ["y"], [(n, np.resize(a, (3, 4, 4)).astype(np.float32)) for n, a in bn]),
        feeds, refused=9)
    # Training mode (five outputs): running statistics kept, the batch statistics dropped when unread.
    add("batchnorm9_training", model([node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv", "sm", "sv"],
                                           momentum=0.8)], 9, feeds, ["y", "rm", "rv"], bn), feeds)
    add("batchnorm9_training_saved_read", model([node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv", "sm", "sv"])],
                                                9, feeds, ["y", "rm", "rv", "sm"], bn), feeds, refused=14)
    add("dropout7_ratio", model([node("Dropout", ["x"], ["y", "mask"], ratio=0.3)], 7, feeds, ["y"]), feeds)
    add("dropout7_mask_read", model([node("Dropout", ["x"], ["y", "mask"], ratio=0.3)], 7, feeds, ["y", "mask"]), feeds,
        refused=10)
    add("dropout10_mask_read", model([node("Dropout", ["x"], ["y", "mask"], ratio=0.3)], 10, feeds,
                                     ["y", ("mask", TensorProto.BOOL)]), feeds, refused=12)
    add("dropout10_mask_unread", model([node("Dropout", ["x"], ["y", "mask"], ratio=0.3)], 10, feeds, ["y"]), feeds)
    gn = [("gs", x(3)), ("gb", x(3))]
    feeds = {"x": x(2, 6, 3, 3)}
    add("groupnorm18", model([node("GroupNormalization", ["x", "gs", "gb"], ["y"], num_groups=3, epsilon=1e-4)], 18, feeds,
                             ["y"], gn), feeds)

    # Indexing and signal operators.
    feeds = {"d": x(3, 4), "i": np.array([[1, 0, 2, -1], [2, 2, 0, 1]], np.int64), "u": x(2, 4)}
    for opset in (9, 10):
        add(f"scatter{opset}", model([node("Scatter", ["d", "i", "u"], ["y"], axis=0)], opset, feeds, ["y"]), feeds)
    feeds = {"s": np.array(1.5, np.float32), "l": np.array(9.0, np.float32), "d": np.array(0.75, np.float32)}
    add("range11", model([node("Range", ["s", "l", "d"], ["y"])], 11, feeds, ["y"]), feeds)
    feeds = {"x": x(2, 8, 1)}
    add("dft17", model([node("DFT", ["x"], ["y"], onesided=0)], 17, feeds, ["y"]), feeds)
    add("dft17_inverse", model([node("DFT", ["x"], ["y"], inverse=1)], 17, {"x": x(1, 6, 2)}, ["y"]), {"x": x(1, 6, 2)})
    feeds = {"x": x(1, 2, 4, 5), "grid": (rng.random((1, 3, 3, 2)) * 2.2 - 1.1).astype(np.float32)}
    for mode in ("bilinear", "nearest", "bicubic", None):
        attrs = {} if mode is None else {"mode": mode}
        add(f"gridsample16_{mode}", model([node("GridSample", ["x", "grid"], ["y"], **attrs)], 16, feeds, ["y"]), feeds)
    feeds = {"x": x(1, 2, 8, 8), "rois": np.array([[0, 0, 4, 4], [1.5, 2, 7, 6.5]], np.float32),
             "idx": np.array([0, 0], np.int64)}
    add("roialign10", model([node("RoiAlign", ["x", "rois", "idx"], ["y"], output_height=2, output_width=3, sampling_ratio=2)],
                            10, feeds, ["y"]), feeds)
    feeds = {"x": x(3, 4)}
    add("erf9", model([node("Erf", ["x"], ["y"])], 9, feeds, ["y"]), feeds)
    feeds = {"i": np.array([[0, 2], [1, 3]], np.int64), "d": np.array([4], np.int64), "v": np.array([0, 1], np.float32)}
    add("onehot9", model([node("OneHot", ["i", "d", "v"], ["y"], axis=1)], 9, feeds, ["y"]), feeds)

    # Scan 8 (batched) → Loop over Scan 9.
    body = helper.make_graph(
        [node("Add", ["s_in", "e"], ["s_out"]), node("Mul", ["s_out", "e"], ["o"])], "body",
        [helper.make_tensor_value_info("s_in", F, [2]), helper.make_tensor_value_info("e", F, [2])],
        [helper.make_tensor_value_info("s_out", F, [2]), helper.make_tensor_value_info("o", F, [2])])
    feeds = {"s0": x(3, 2), "seq": x(3, 5, 2)}
    for directions in (None, [1]):
        attrs = {"body": body, "num_scan_inputs": 1}
        if directions:
            attrs["directions"] = directions
        add(f"scan8_{directions}", model([node("Scan", ["", "s0", "seq"], ["s", "out"], **attrs)], 8, feeds, ["s", "out"]), feeds)
    lens = dict(feeds, lens=np.array([5, 3, 4], np.int64))
    add("scan8_sequence_lens", model([node("Scan", ["lens", "s0", "seq"], ["s", "out"], body=body, num_scan_inputs=1)], 8, lens,
                                     ["s", "out"]), lens, refused=9)

    # Subgraphs and model-local functions are converted too.
    then = helper.make_graph([node("Unsqueeze", ["x"], ["t"], axes=[0]), node("Softmax", ["t"], ["t2"], axis=2)], "then", [],
                             [helper.make_tensor_value_info("t2", F, None)])
    other = helper.make_graph([node("ReduceSum", ["x"], ["e"], axes=[1], keepdims=1), node("Unsqueeze", ["e"], ["e2"], axes=[0])],
                              "else", [], [helper.make_tensor_value_info("e2", F, None)])
    for flag in (True, False):
        feeds = {"x": x(3, 4, 5), "c": np.array(flag)}
        add(f"if11_{flag}", model([node("If", ["c"], ["y"], then_branch=then, else_branch=other)], 11, feeds, ["y"]), feeds)
    fn = helper.make_function("local", "ClipSqueeze", ["a"], ["b"],
                              [node("Clip", ["a"], ["c"], min=-0.5, max=0.5), node("Squeeze", ["c"], ["b"], axes=[0])],
                              [helper.make_opsetid("", 10)])
    feeds = {"x": x(1, 3, 4)}
    add("function10_clip_squeeze",
        model([node("ClipSqueeze", ["x"], ["y"], domain="local")], 10, feeds, ["y"], functions=[fn],
              extra_opsets=[helper.make_opsetid("local", 1)]), feeds,
        # The function's input has no type: Clip's bounds take it from CastLike, which opset 15 brought.
        refused=lambda target: 11 <= target < 15)
    return out
