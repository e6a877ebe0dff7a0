"""Generated cases for ONNX Runtime's com.microsoft operators: one-node models with seeded random
inputs — several shapes, masks, odd sizes and attribute values per operator — whose expected
outputs are ONNX Runtime's (CPU, graph optimizations off). Tests/interop/test_contrib_ops.py runs
them against `compressor run`; Tests/conformance/generate_contrib.py writes them as a conformance
suite (`make conformance`, suite "contrib").

A case is a dict: name, op, inputs [(name, array)] fed at run time, initializers [(name, array)]
(None: an omitted optional input, in order after the inputs), attrs, outputs [(name, onnx type)]
and tolerance (the largest error allowed, relative to the largest magnitude of the expected
output; integer outputs must be equal)."""
import numpy as np
import onnx
from onnx import TensorProto, helper

F, F16, I8, U8, I32, I64 = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT8, TensorProto.UINT8,
                            TensorProto.INT32, TensorProto.INT64)


def rng(seed):
    return np.random.default_rng(seed)


def f32(r, *shape, low=-1.0, high=1.0):
    return r.uniform(low, high, shape).astype(np.float32)


def u8(r, *shape):
    return r.integers(0, 256, shape).astype(np.uint8)


def i8(r, *shape):
    return r.integers(-128, 128, shape).astype(np.int8)


def scalar(v, dtype=np.float32):
    return np.array(v, dtype=dtype)


def case(name, op, inputs, outputs, attrs=None, initializers=(), tolerance=1e-4, node_inputs=None, domain="com.microsoft"):
    return dict(name=name, op=op, inputs=list(inputs), outputs=list(outputs), attrs=attrs or {},
                initializers=list(initializers), tolerance=tolerance, node_inputs=node_inputs, domain=domain)


def build_model(c):
    """The one-node model of case `c`: runtime inputs first, then initializers; a None initializer
    is an omitted optional input (an empty name)."""
    names = [n for n, _ in c["inputs"]] + [("" if a is None else n) for n, a in c["initializers"]]
    if c["node_inputs"] is not None:
        names = c["node_inputs"]
    node = helper.make_node(c["op"], names, [n for n, _ in c["outputs"]], domain=c["domain"], **c["attrs"])
    graph = helper.make_graph(
        [node], c["name"],
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in c["inputs"]],
        [helper.make_tensor_value_info(n, t, None) for n, t in c["outputs"]],
        [onnx.numpy_helper.from_array(a, n) for n, a in c["initializers"] if a is not None] + c.get("tensor_initializers", []))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    return m


def ort_run(model, feeds):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def compare(name, got, ref, tolerance):
    """None when `got` matches `ref`, else why not."""
    if got.shape != ref.shape:
        return f"{name}: shape {got.shape} != {ref.shape}"
    if got.dtype != ref.dtype:
        return f"{name}: dtype {got.dtype} != {ref.dtype}"
    if ref.dtype.kind in "iub":
        bad = int(np.sum(got != ref))
        return None if bad == 0 else f"{name}: {bad} of {ref.size} integers differ (max {np.max(np.abs(got.astype(np.int64) - ref.astype(np.int64)))})"
    scale = max(float(np.max(np.abs(ref))) if ref.size else 0.0, 1e-6)
    err = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)))) if ref.size else 0.0
    return None if err <= tolerance * scale else f"{name}: max abs error {err:.3g} against scale {scale:.3g}"


# ---------------------------------------------------------------------------------------------
# The cases, by operator.

def activations():
    r = rng(1)
    out = []
    for k, shape in enumerate([[2, 3, 8], [1, 5, 7], [3, 1, 16, 3]]):
        x = f32(r, *shape, low=-4, high=4)
        out.append(case(f"gelu_{k}", "Gelu", [("x", x)], [("y", F)]))
        out.append(case(f"bias_gelu_{k}", "BiasGelu", [("x", x)], [("y", F)], initializers=[("b", f32(r, shape[-1]))]))
        out.append(case(f"fast_gelu_{k}", "FastGelu", [("x", x)], [("y", F)]))
        out.append(case(f"fast_gelu_bias_{k}", "FastGelu", [("x", x)], [("y", F)], initializers=[("b", f32(r, shape[-1]))]))
        out.append(case(f"quick_gelu_{k}", "QuickGelu", [("x", x)], [("y", F)], attrs=dict(alpha=[1.702, 1.0, 2.5][k])))
    x16 = f32(r, 2, 4, 6, low=-3, high=3).astype(np.float16)
    out.append(case("gelu_float16", "Gelu", [("x", x16)], [("y", F16)], tolerance=2e-3))
    out.append(case("fast_gelu_float16", "FastGelu", [("x", x16)], [("y", F16)], tolerance=2e-3))
    return out


def normalizations():
    r = rng(2)
    out = []
    for k, (b, s, h) in enumerate([(2, 3, 8), (1, 7, 13), (3, 2, 32)]):
        x, skip = f32(r, b, s, h, low=-3, high=3), f32(r, b, s, h)
        gamma, beta, bias = f32(r, h, low=0.5, high=1.5), f32(r, h), f32(r, h)
        eps = [1e-12, 1e-5, 1e-3][k]
        out.append(case(f"skip_layer_norm_{k}", "SkipLayerNormalization", [("x", x), ("skip", skip)],
                        [("y", F), ("mean", F), ("inv_std", F), ("sum", F)], dict(epsilon=eps),
                        [("gamma", gamma), ("beta", beta), ("bias", bias)]))
        out.append(case(f"skip_layer_norm_nobias_{k}", "SkipLayerNormalization", [("x", x), ("skip", skip)], [("y", F)],
                        dict(epsilon=eps), [("gamma", gamma), ("beta", beta)]))
        out.append(case(f"skip_simplified_layer_norm_{k}", "SkipSimplifiedLayerNormalization", [("x", x), ("skip", skip)],
                        [("y", F), ("mean", F), ("inv_std", F), ("sum", F)], dict(epsilon=eps), [("gamma", gamma), ("bias", bias)]))
        # ONNX Runtime registers SimplifiedLayerNormalization in the default domain.
        out.append(case(f"simplified_layer_norm_{k}", "SimplifiedLayerNormalization", [("x", x)], [("y", F)],
                        dict(epsilon=eps, axis=-1), [("gamma", gamma)], domain=""))
    # skip broadcast over the batch: [1, S, H] and [S, H].
    x = f32(r, 3, 4, 8)
    out.append(case("skip_layer_norm_broadcast_3d", "SkipLayerNormalization", [("x", x), ("skip", f32(r, 1, 4, 8))], [("y", F)],
                    initializers=[("gamma", f32(r, 8)), ("beta", f32(r, 8))]))
    out.append(case("skip_layer_norm_broadcast_2d", "SkipLayerNormalization", [("x", x), ("skip", f32(r, 4, 8))], [("y", F)],
                    initializers=[("gamma", f32(r, 8)), ("beta", f32(r, 8))]))
    for k, (b, s, h, vocab, types, with_mask, with_segment) in enumerate([(2, 5, 8, 30, 2, True, True), (1, 9, 16, 50, 3, False, True),
                                                                           (3, 4, 12, 20, 2, True, False)]):
        ids = r.integers(0, vocab, (b, s)).astype(np.int32)
        seg = r.integers(0, types, (b, s)).astype(np.int32)
        mask = np.ones((b, s), np.int32)
        for i in range(b):
            mask[i, s - i:] = 0
        inputs = [("ids", ids)] + ([("segment", seg)] if with_segment else [])
        inits = [("word", f32(r, vocab, h)), ("position", f32(r, s + 3, h))]
        inits += [("segment_embedding", f32(r, types, h))] if with_segment else []
        inits += [("gamma", f32(r, h, low=0.5, high=1.5)), ("beta", f32(r, h))]
        names = ["ids", "segment" if with_segment else "", "word", "position", "segment_embedding" if with_segment else "",
                 "gamma", "beta"] + (["mask"] if with_mask else [])
        if with_mask:
            inputs.append(("mask", mask))
        out.append(case(f"embed_layer_norm_{k}", "EmbedLayerNormalization", inputs, [("y", F), ("mask_index", I32)],
                        dict(epsilon=1e-5), inits, node_inputs=names))
    return out


def products():
    r = rng(3)
    out = []
    for k, (act, params) in enumerate([("Relu", {}), ("LeakyRelu", dict(activation_alpha=0.2)), ("Tanh", {}), ("Sigmoid", {}),
                                       ("HardSigmoid", dict(activation_alpha=0.3, activation_beta=0.4))]):
        m, kk, n = [(3, 5, 4), (7, 2, 9), (1, 8, 3), (4, 4, 4), (5, 3, 6)][k]
        trans_a, trans_b = k % 2, (k // 2) % 2
        a = f32(r, *((kk, m) if trans_a else (m, kk)))
        b = f32(r, *((n, kk) if trans_b else (kk, n)))
        out.append(case(f"fused_gemm_{act.lower()}", "FusedGemm", [("a", a)], [("y", F)],
                        dict(activation=act, transA=trans_a, transB=trans_b, alpha=0.7, beta=1.3, **params),
                        [("b", b), ("c", f32(r, n))]))
    for k, (sa, sb, attrs) in enumerate([([2, 3, 4], [4, 5], dict(alpha=0.5)),
                                         ([2, 4, 3], [2, 5, 4], dict(transA=1, transB=1)),
                                         ([5, 3], [2, 5, 6], dict(transA=1, alpha=2.0)),
                                         ([4, 2, 3], [2, 3, 5], dict(transBatchA=1)),
                                         ([2, 3, 4], [5, 2, 4], dict(transBatchB=1, transB=1))]):
        out.append(case(f"fused_matmul_{k}", "FusedMatMul", [("a", f32(r, *sa)), ("b", f32(r, *sb))], [("y", F)], attrs))
    for k, (act, params, z) in enumerate([("Relu", [], False), ("Clip", [-0.5, 0.5], True), ("LeakyRelu", [0.1], False),
                                          ("Sigmoid", [], True), ("HardSigmoid", [0.2, 0.5], False)]):
        x = f32(r, 2, 4, 7, 6)
        w = f32(r, 6, 4 // (2 if k == 2 else 1), 3, 3)
        attrs = dict(activation=act, kernel_shape=[3, 3], pads=[1, 1, 1, 1] if k % 2 else [0, 1, 0, 1],
                     strides=[1, 2] if k == 4 else [1, 1])
        if k == 2:
            attrs["group"] = 2
        if params:
            attrs["activation_params"] = params
        conv_out = [2, 6, 7 if k % 2 else 5, 3 if k == 4 else 6 if k % 2 else 6]
        inputs = [("x", x)] + ([("z", f32(r, *conv_out))] if z else [])
        names = ["x", "w", "b"] + (["z"] if z else [])
        out.append(case(f"fused_conv_{act.lower()}", "FusedConv", inputs, [("y", F)], attrs, [("w", w), ("b", f32(r, 6))],
                        node_inputs=names))
    return out


def quantized_products():
    r = rng(4)
    out = []
    for k, (m, kk, n, btype, per_column) in enumerate([(3, 8, 5, np.int8, False), (2, 33, 7, np.uint8, True),
                                                       (6, 16, 4, np.int8, True)]):
        b = (i8 if btype == np.int8 else u8)(r, kk, n)
        b_scale = f32(r, n, low=0.01, high=0.05) if per_column else scalar(0.02)
        b_zero = (np.zeros(n, btype) if btype == np.int8 else r.integers(100, 150, n).astype(np.uint8)) if per_column \
            else np.array(0 if btype == np.int8 else 128, btype)
        out.append(case(f"dynamic_quantize_matmul_{k}", "DynamicQuantizeMatMul", [("a", f32(r, 2, m, kk, low=-2, high=3))], [("y", F)],
                        initializers=[("b", b), ("b_scale", b_scale), ("b_zero", b_zero), ("bias", f32(r, n))], tolerance=1e-4))
        a = u8(r, m, kk)
        out.append(case(f"matmul_integer_to_float_{k}", "MatMulIntegerToFloat", [("a", a)], [("y", F)],
                        initializers=[("b", b), ("a_scale", scalar(0.03)), ("b_scale", b_scale), ("a_zero", np.array(120, np.uint8)),
                                      ("b_zero", b_zero), ("bias", f32(r, n))]))
    for k, (m, kk, n, trans_a, trans_b, quantized_out, with_c) in enumerate([(3, 5, 4, 0, 0, False, True), (4, 7, 6, 1, 0, True, True),
                                                                              (2, 9, 3, 0, 1, True, False), (5, 4, 5, 1, 1, False, False)]):
        a = u8(r, *((kk, m) if trans_a else (m, kk)))
        b = i8(r, *((n, kk) if trans_b else (kk, n)))
        inits = [("a_scale", scalar(0.02)), ("a_zero", np.array(128, np.uint8)), ("b", b),
                 ("b_scale", f32(r, n, low=0.005, high=0.02) if k % 2 else scalar(0.01)), ("b_zero", np.zeros(n if k % 2 else (), np.int8))]
        inits.append(("c", r.integers(-500, 500, n).astype(np.int32)) if with_c else ("c", None))
        if quantized_out:
            inits += [("y_scale", scalar(0.05)), ("y_zero", np.array(100, np.uint8))]
        out.append(case(f"qgemm_{k}", "QGemm", [("a", a)], [("y", U8 if quantized_out else F)],
                        dict(transA=trans_a, transB=trans_b, alpha=[1.0, 0.5, 2.0, 1.0][k]), inits))
    for bits in (2, 4, 8):
        # ONNX Runtime takes unpacked (float) zero points for 2 and 4 bits only.
        for k, (m, kk, n, block, zero_kind) in enumerate([(3, 64, 5, 32, "none"), (2, 50, 7, 16, "packed"),
                                                          (4, 128, 3, 64, "float" if bits < 8 else "packed")]):
            blocks = (kk + block - 1) // block
            blob = block * bits // 8
            q = r.integers(0, 256, (n, blocks, blob)).astype(np.uint8)
            scales = f32(r, n, blocks, low=0.01, high=0.1)
            inits = [("b", q), ("scales", scales)]
            if zero_kind == "packed":
                inits.append(("zeros", r.integers(0, 256, (n, (blocks * bits + 7) // 8)).astype(np.uint8)))
            elif zero_kind == "float":
                inits.append(("zeros", f32(r, n, blocks, low=0, high=2 ** bits - 1)))
            else:
                inits.append(("zeros", None))
            inits += [("g_idx", None), ("bias", f32(r, n))]
            out.append(case(f"matmul_nbits_{bits}bit_{k}", "MatMulNBits", [("a", f32(r, 2, m, kk))], [("y", F)],
                            dict(K=kk, N=n, bits=bits, block_size=block), inits))
    for k, (dtype, shape, gather_axis, quantize_axis, block, bits) in enumerate([
            (TensorProto.UINT4, (10, 32), 0, 1, 16, 4), (TensorProto.INT4, (8, 64), 0, 1, 32, 4),
            (TensorProto.UINT8, (6, 16), 0, 1, 16, 4), (TensorProto.UINT8, (7, 32), 0, 1, 16, 8),
            (TensorProto.UINT4, (5, 48), 0, 1, 16, 4)]):
        rows, cols = shape
        blocks = (cols + block - 1) // block
        if dtype == TensorProto.UINT8:
            per = 8 // bits
            data = r.integers(0, 256, (rows, cols // per)).astype(np.uint8)
            data_t = onnx.numpy_helper.from_array(data, "data")
        else:
            lo, hi = (0, 16) if dtype == TensorProto.UINT4 else (-8, 8)
            vals = r.integers(lo, hi, (rows, cols))
            data_t = helper.make_tensor("data", dtype, [rows, cols], vals.flatten().tolist())
        indices = np.array([[0, rows - 1, 2], [1, -1, 3]], np.int64) if k != 1 else np.array([3, 0, 7, -2], np.int32)
        scales = f32(r, rows, blocks, low=0.01, high=0.2)
        c = case(f"gather_block_quantized_{k}", "GatherBlockQuantized", [("indices", indices)], [("y", F)],
                 dict(gather_axis=gather_axis, quantize_axis=quantize_axis, block_size=block, bits=bits),
                 [("scales", scales)], node_inputs=["data", "indices", "scales"])
        c["tensor_initializers"] = [data_t]
        out.append(c)
    return out


def qlinear():
    r = rng(5)
    out = []
    for k, (dtype, sa, sb) in enumerate([(np.uint8, [2, 3, 4], [2, 3, 4]), (np.int8, [3, 5], [5]), (np.uint8, [2, 1, 6], [4, 1])]):
        gen = u8 if dtype == np.uint8 else i8
        zp = (lambda v: np.array(v, dtype)) if dtype == np.uint8 else (lambda v: np.array(v - 128, dtype))
        inits = [("a_scale", scalar(0.021)), ("a_zero", zp(120)), ("b_scale", scalar(0.034)), ("b_zero", zp(130)),
                 ("c_scale", scalar(0.047)), ("c_zero", zp(125))]
        names = ["a", "a_scale", "a_zero", "b", "b_scale", "b_zero", "c_scale", "c_zero"]
        a, b = gen(r, *sa), gen(r, *sb)
        t = U8 if dtype == np.uint8 else I8
        out.append(case(f"qlinear_add_{k}", "QLinearAdd", [("a", a), ("b", b)], [("c", t)], initializers=inits, node_inputs=names))
        out.append(case(f"qlinear_mul_{k}", "QLinearMul", [("a", a), ("b", b)], [("c", t)],
                        initializers=[("a_scale", scalar(0.05)), ("a_zero", zp(120)), ("b_scale", scalar(0.04)), ("b_zero", zp(130)),
                                      ("c_scale", scalar(0.9)), ("c_zero", zp(125))], node_inputs=names))
        x = gen(r, *sa)
        io = [("x_scale", scalar(0.05)), ("x_zero", zp(128)), ("y_scale", scalar(1 / 255)), ("y_zero", zp(0 if dtype == np.uint8 else 128))]
        out.append(case(f"qlinear_sigmoid_{k}", "QLinearSigmoid", [("x", x)], [("y", t)], initializers=io))
        out.append(case(f"qlinear_leaky_relu_{k}", "QLinearLeakyRelu", [("x", x)], [("y", t)], dict(alpha=[0.1, 0.01, 0.3][k]),
                        initializers=[("x_scale", scalar(0.05)), ("x_zero", zp(128)), ("y_scale", scalar(0.03)), ("y_zero", zp(100))]))
        img = gen(r, 2, 3, 5 + k, 4)
        pool_params = [("x_scale", scalar(0.05)), ("x_zero", zp(128)), ("y_scale", scalar(0.02)), ("y_zero", zp(110))]
        out.append(case(f"qlinear_global_average_pool_{k}", "QLinearGlobalAveragePool", [("x", img)], [("y", t)],
                        initializers=pool_params))
        attrs = [dict(kernel_shape=[2, 2]), dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=k % 2),
                 dict(kernel_shape=[3, 2], strides=[2, 1], ceil_mode=1)][k]
        out.append(case(f"qlinear_average_pool_{k}", "QLinearAveragePool", [("x", img)], [("y", t)], attrs, initializers=pool_params))
        parts = [gen(r, 2, 3 + i, 4) for i in range(3)]
        inits = [("y_scale", scalar(0.04)), ("y_zero", zp(128))]
        names = ["y_scale", "y_zero"]
        for i, p in enumerate(parts):
            inits += [(f"s{i}", scalar([0.04, 0.03, 0.05][i])), (f"z{i}", zp([128, 120, 135][i]))]
            names += [f"p{i}", f"s{i}", f"z{i}"]
        out.append(case(f"qlinear_concat_{k}", "QLinearConcat", [(f"p{i}", p) for i, p in enumerate(parts)], [("y", t)],
                        dict(axis=1), initializers=inits, node_inputs=names))
    nhwc = u8(r, 1, 5, 4, 3)
    out.append(case("qlinear_global_average_pool_nhwc", "QLinearGlobalAveragePool", [("x", nhwc)], [("y", U8)], dict(channels_last=1),
                    initializers=[("x_scale", scalar(0.05)), ("x_zero", np.array(128, np.uint8)), ("y_scale", scalar(0.02)),
                                  ("y_zero", np.array(110, np.uint8))]))
    return out


def random_mask(r, b, s, total):
    """A [B, S, T] 0/1 mask that keeps at least one key per row. (ONNX Runtime gives masked keys
    −10000 rather than −∞: a fully masked row's softmax is then decided by the rounding of
    −10000 + score in float, to 1e-3 — no tolerance fits it.)"""
    m = r.integers(0, 2, (b, s, total)).astype(np.int32)
    m[..., 0] = 1
    return m


def attention():
    r = rng(6)
    out = []
    # com.microsoft Attention: [B, S, D] input, weights [D, 3·hidden].
    for k, (b, s, d, n, mask_kind, causal, past, sizes, extra_bias, attrs) in enumerate([
            (2, 5, 16, 2, None, 0, 0, None, False, {}),
            (2, 6, 12, 3, "raw2d", 0, 0, None, False, {}),
            (3, 4, 8, 2, "lengths", 0, 0, None, False, dict(mask_filter_value=-500.0)),
            (2, 5, 8, 1, "end_start", 0, 0, None, False, {}),
            (2, 3, 8, 2, "raw3d", 0, 0, None, True, dict(scale=0.3)),
            (2, 4, 8, 2, None, 1, 3, None, False, {}),
            (1, 5, 12, 3, "raw2d", 1, 0, [12, 12, 6], False, {})]):
        hq, hk, hv = sizes or [d, d, d]
        total = past + s
        inputs = [("x", f32(r, b, s, d))]
        inits = [("w", f32(r, d, hq + hk + hv, low=-0.5, high=0.5)), ("bias", f32(r, hq + hk + hv, low=-0.2, high=0.2))]
        names = ["x", "w", "bias"]
        if mask_kind == "raw2d":
            m = np.ones((b, total), np.int32)
            m[0, -2:] = 0
            inputs.append(("mask", m))
        elif mask_kind == "raw3d":
            inputs.append(("mask", random_mask(r, b, s, total)))
        elif mask_kind == "lengths":
            inputs.append(("mask", np.array([total, total - 1, 2][:b], np.int32)))
        elif mask_kind == "end_start":
            inputs.append(("mask", np.array([total, total - 1, 1, 0][:2 * b], np.int32)))
        names.append("mask" if mask_kind else "")
        outputs = [("y", F)]
        if past:
            inputs.append(("past", f32(r, 2, b, n, past, d // n)))
            names.append("past")
            outputs.append(("present", F))
        else:
            names.append("")
        if extra_bias:
            inputs.append(("attention_bias", f32(r, b, n, s, total)))
            names.append("attention_bias")
        while names and names[-1] == "":
            names.pop()
        a = dict(num_heads=n, unidirectional=causal, **attrs)
        if sizes:
            a["qkv_hidden_sizes"] = sizes
        out.append(case(f"attention_{k}", "Attention", inputs, outputs, a, inits, node_inputs=names))
    # MultiHeadAttention. (ONNX Runtime's CPU kernel has no packed QKV or KV: compressor's are
    # checked by the unit tests.)
    for k, (b, s, l, n, h, layout, mask_kind, past, causal, extra_bias) in enumerate([
            (2, 5, 5, 2, 4, "separate", "raw2d", 0, 0, False),
            (2, 3, 6, 2, 8, "separate", "lengths", 0, 0, True),
            (1, 4, 4, 3, 8, "separate", None, 0, 1, False),
            (2, 4, 7, 2, 4, "separate", "raw3d", 0, 0, True),
            (2, 1, 1, 2, 4, "separate", None, 3, 1, False),
            (2, 3, 5, 2, 4, "bnsh", None, 0, 0, False),
            (1, 4, 4, 2, 8, "separate", None, 2, 1, True)]):
        total = l + past
        inputs, names = [], []
        if layout == "packed_qkv":
            inputs.append(("qkv", f32(r, b, s, n, 3, h)))
            names = ["qkv", "", ""]
        elif layout == "packed_kv":
            inputs += [("q", f32(r, b, s, n * h)), ("kv", f32(r, b, l, n, 2, h))]
            names = ["q", "kv", ""]
        elif layout == "bnsh":
            inputs += [("q", f32(r, b, s, n * h)), ("k", f32(r, b, n, l, h)), ("v", f32(r, b, n, l, h))]
            names = ["q", "k", "v"]
        else:
            inputs += [("q", f32(r, b, s, n * h)), ("k", f32(r, b, l, n * h)), ("v", f32(r, b, l, n * h))]
            names = ["q", "k", "v"]
        inits = []
        if layout in ("separate", "packed_qkv") and past == 0:
            inits.append(("bias", f32(r, 3 * n * h, low=-0.2, high=0.2)))
            names.append("bias")
        else:
            names.append("")
        if mask_kind == "raw2d":
            m = np.ones((b, total), np.int32)
            m[-1, -2:] = 0
            inputs.append(("mask", m))
        elif mask_kind == "lengths":
            inputs.append(("mask", np.array([total, total - 2][:b], np.int32)))
        elif mask_kind == "raw3d":
            inputs.append(("mask", random_mask(r, b, s, total)))
        names.append("mask" if mask_kind else "")
        if extra_bias:
            inputs.append(("attention_bias", f32(r, 1, n, s, total)))
        names.append("attention_bias" if extra_bias else "")
        outputs = [("y", F)]
        if past:
            inputs += [("past_key", f32(r, b, n, past, h)), ("past_value", f32(r, b, n, past, h))]
            names += ["past_key", "past_value"]
            outputs += [("present_key", F), ("present_value", F)]
        while names and names[-1] == "":
            names.pop()
        out.append(case(f"multi_head_attention_{k}", "MultiHeadAttention", inputs, outputs,
                        dict(num_heads=n, unidirectional=causal), inits, node_inputs=names))
    # GroupQueryAttention.
    for k, (b, s, n, nkv, h, past, capacity, lengths, attrs, rotary, packed) in enumerate([
            (1, 5, 4, 2, 8, 0, 0, [5], {}, False, False),
            (2, 4, 4, 4, 8, 0, 0, [4, 2], {}, False, False),
            (2, 1, 4, 2, 8, 3, 3, [4, 4], {}, False, False),
            (1, 1, 2, 1, 16, 5, 8, [6], dict(softcap=5.0), True, False),
            (1, 6, 4, 2, 8, 0, 0, [6], dict(local_window_size=3), False, True),
            (2, 3, 6, 2, 16, 0, 0, [3, 3], dict(smooth_softmax=1), True, False),
            (1, 2, 2, 2, 8, 4, 4, [6], dict(local_window_size=2, scale=0.5), False, False)]):
        total_len = max(lengths)
        inputs, names = [], []
        if packed:
            inputs.append(("qkv", f32(r, b, s, (n + 2 * nkv) * h)))
            names = ["qkv", "", ""]
        else:
            inputs += [("q", f32(r, b, s, n * h)), ("k", f32(r, b, s, nkv * h)), ("v", f32(r, b, s, nkv * h))]
            names = ["q", "k", "v"]
        if past:
            inputs += [("past_key", f32(r, b, nkv, capacity, h)), ("past_value", f32(r, b, nkv, capacity, h))]
            names += ["past_key", "past_value"]
        else:
            names += ["", ""]
        inputs += [("seqlens_k", np.array([x - 1 for x in lengths], np.int32)), ("total_sequence_length", np.array(total_len, np.int32))]
        names += ["seqlens_k", "total_sequence_length"]
        a = dict(num_heads=n, kv_num_heads=nkv, **attrs)
        if rotary:
            positions = max(total_len, capacity) + 4
            angles = np.arange(positions)[:, None] * (1.0 / 10000 ** (np.arange(0, h, 2) / h))[None, :]
            inputs += [("cos", np.cos(angles).astype(np.float32)), ("sin", np.sin(angles).astype(np.float32))]
            names += ["cos", "sin"]
            a["do_rotary"] = 1
            a["rotary_interleaved"] = k % 2
        out.append(case(f"group_query_attention_{k}", "GroupQueryAttention", inputs,
                        [("y", F), ("present_key", F), ("present_value", F)], a, node_inputs=names))
    # RotaryEmbedding.
    for k, (shape, heads, dim, interleaved, ids_kind) in enumerate([
            ((2, 5, 16), 2, 0, 0, "full"), ((2, 3, 4, 8), 0, 0, 1, "full"), ((1, 6, 24), 3, 0, 0, "offset"),
            ((2, 4, 32), 2, 8, 1, "full")]):
        b, s = shape[0], (shape[2] if len(shape) == 4 else shape[1])
        head = shape[-1] if len(shape) == 4 else shape[2] // heads
        rot = dim or head
        positions = 20
        angles = np.arange(positions)[:, None] * (1.0 / 10000 ** (np.arange(0, rot, 2) / rot))[None, :]
        ids = r.integers(0, positions - s, (b, s)).astype(np.int64) if ids_kind == "full" else np.array([3], np.int64)
        a = dict(interleaved=interleaved)
        if heads and dim:
            a.update(num_heads=heads, rotary_embedding_dim=dim)
        out.append(case(f"rotary_embedding_{k}", "RotaryEmbedding", [("x", f32(r, *shape)), ("ids", ids)], [("y", F)], a,
                        [("cos", np.cos(angles).astype(np.float32)), ("sin", np.sin(angles).astype(np.float32))]))
    return out


def recurrent():
    # ONNX Runtime quantizes the recurrent state of DynamicQuantizeLSTM in groups of batch rows
    # that depend on its thread count; with one row the result is defined. Zero points are one
    # per direction (ONNX Runtime takes no others); scales may be per column.
    r = rng(7)
    out = []
    for k, (seq, batch, inp, hidden, direction, wtype, per_column, extras) in enumerate([
            (5, 1, 6, 4, "forward", np.int8, False, ()),
            (4, 1, 5, 3, "reverse", np.uint8, True, ("lengths", "initial")),
            (3, 1, 4, 5, "bidirectional", np.int8, False, ("initial", "peephole")),
            (6, 1, 8, 4, "bidirectional", np.uint8, True, ())]):
        dirs = 2 if direction == "bidirectional" else 1
        g = 4 * hidden
        gen = i8 if wtype == np.int8 else u8
        count = dirs * g if per_column else dirs
        zero = (lambda n: np.zeros(n, np.int8)) if wtype == np.int8 else (lambda n: np.full(n, 128, np.uint8))
        inits = [("w", gen(r, dirs, inp, g)), ("r", gen(r, dirs, hidden, g)), ("b", f32(r, dirs, 8 * hidden, low=-0.3, high=0.3))]
        names = ["x", "w", "r", "b"]
        inputs = [("x", f32(r, seq, batch, inp, low=-2, high=2))]
        if "lengths" in extras:
            inputs.append(("lengths", np.array([seq - 1], np.int32)))
            names.append("lengths")
        else:
            names.append("")
        if "initial" in extras:
            inputs += [("h0", f32(r, dirs, batch, hidden)), ("c0", f32(r, dirs, batch, hidden))]
            names += ["h0", "c0"]
        else:
            names += ["", ""]
        if "peephole" in extras:
            inits.append(("p", f32(r, dirs, 3 * hidden, low=-0.5, high=0.5)))
            names.append("p")
        else:
            names.append("")
        shape = (dirs, g) if per_column else (dirs,)
        inits += [("w_scale", f32(r, *shape, low=0.002, high=0.01)), ("w_zero", zero(shape)),
                  ("r_scale", f32(r, *shape, low=0.002, high=0.01)), ("r_zero", zero(shape))]
        names += ["w_scale", "w_zero", "r_scale", "r_zero"]
        out.append(case(f"dynamic_quantize_lstm_{k}", "DynamicQuantizeLSTM", inputs, [("y", F), ("y_h", F), ("y_c", F)],
                        dict(hidden_size=hidden, direction=direction), inits, node_inputs=names))
    return out

def quantize_dequantize():
    """com.microsoft QuantizeLinear / DequantizeLinear with the 16-bit types static quantization
    writes below opset 21 (per tensor and per axis), and 8-bit for the same kernel."""
    r = rng(9)
    out = []
    x = f32(r, 2, 3, 5, low=-3, high=3)
    for dtype, zero in [(np.uint16, 32000), (np.int16, -40), (np.uint8, 120)]:
        name = np.dtype(dtype).name
        t = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        out.append(case(f"quantize_linear_{name}", "QuantizeLinear", [("x", x)], [("y", t)],
                        initializers=[("s", scalar(0.0001 if dtype != np.uint8 else 0.03)), ("z", np.array(zero, dtype))], tolerance=0))
        q = r.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, (2, 3, 5), endpoint=True).astype(dtype)
        out.append(case(f"dequantize_linear_{name}", "DequantizeLinear", [("q", q)], [("y", F)],
                        initializers=[("s", scalar(0.0002)), ("z", np.array(zero, dtype))]))
    axis_scales = np.array([0.001, 0.0005, 0.002], np.float32)
    out.append(case("quantize_linear_uint16_axis", "QuantizeLinear", [("x", x)], [("y", helper.np_dtype_to_tensor_dtype(np.dtype(np.uint16)))],
                    dict(axis=1), initializers=[("s", axis_scales), ("z", np.array([30000, 32768, 100], np.uint16))], tolerance=0))
    # Default-domain kernels with fast paths that must stay exact: DynamicQuantizeLinear over a
    # whole feature map (an odd length: the tail), int32/int64 arithmetic broadcast per channel
    # (the sums of integer convolutions and their biases), and ConvInteger sums past 2^22.
    out.append(case("dynamic_quantize_linear_large", "DynamicQuantizeLinear", [("x", f32(r, 3, 7, 53, low=-4, high=9))],
                    [("y", U8), ("y_scale", F), ("y_zero_point", U8)], tolerance=0, domain=""))
    out.append(case("dynamic_quantize_linear_negative", "DynamicQuantizeLinear", [("x", f32(r, 1003, low=-6, high=-1))],
                    [("y", U8), ("y_scale", F), ("y_zero_point", U8)], tolerance=0, domain=""))
    big = r.integers(-2**20, 2**20, (2, 3, 4, 5)).astype(np.int32)
    for op in ("Add", "Sub", "Mul"):
        out.append(case(f"int32_{op.lower()}_channel_broadcast", op, [("a", big)], [("y", I32)], tolerance=0, domain="",
                        initializers=[("b", r.integers(-999, 999, (3, 1, 1)).astype(np.int32))]))
    out.append(case("int64_add_suffix_broadcast", "Add", [("a", big.astype(np.int64))], [("y", I64)], tolerance=0, domain="",
                    initializers=[("b", r.integers(-999, 999, (5,)).astype(np.int64))]))
    x8 = r.integers(0, 256, (1, 64, 6, 6)).astype(np.uint8)
    x8[0, :, 0, 0] = 255
    w8 = r.integers(-128, 128, (4, 64, 3, 3)).astype(np.int8)
    w8[0] = -128
    out.append(case("conv_integer_large_sums", "ConvInteger", [("x", x8)], [("y", I32)], tolerance=0, domain="",
                    initializers=[("w", w8), ("x_zero", np.array(3, np.uint8))], attrs=dict(pads=[1, 1, 1, 1])))
    return out


def all_cases():
    return (activations() + normalizations() + products() + quantized_products() + qlinear() + quantize_dequantize()
            + attention() + recurrent())
