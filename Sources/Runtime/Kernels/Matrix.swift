import CVectorMath
import IR
import Linalg
import Support

/// MatMul and Gemm through OpenBLAS sgemm (MatMul with few rows through the runtime's own kernel,
/// MatrixProducts.swift). Non-float inputs are computed in Float and
/// converted back (float16 models, as other CPU runtimes do). Det by LU decomposition in Double.
extension Kernels {
  static let matrix: [String: Kernel] = [
    "MatMul": { c in
      [c.node.attribute(SoftmaxAttention.attribute) != nil ? try SoftmaxAttention.run(c) : try matMul(c, c.input(0), c.input(1))]
    },
    "Gemm": { c in [try gemm(c)] },
    "Det": { c in [try determinant(c)] },
  ]
}

private func asFloat(_ x: NDArray) throws -> NDArray { x.dataType == .float ? x : try x.converted(to: .float) }

func matMul(_ c: KernelContext, _ a0: NDArray, _ b0: NDArray) throws -> NDArray {
  let a = try asFloat(a0), b = try asFloat(b0)
  // 1-D operands are promoted to matrices and the added dimension removed afterwards.
  let aShape = a.rank == 1 ? [1, a.shape[0]] : a.shape
  let bShape = b.rank == 1 ? [b.shape[0], 1] : b.shape
  guard aShape.count >= 2, bShape.count >= 2 else { throw c.fail("MatMul needs tensors of rank 1 or more") }
  let m = aShape[aShape.count - 2], k = aShape[aShape.count - 1]
  let k2 = bShape[bShape.count - 2], n = bShape[bShape.count - 1]
  guard k == k2 else { throw c.fail("cannot multiply \(a.shape) by \(b.shape)") }
  guard let batch = broadcastShape([Array(aShape.dropLast(2)), Array(bShape.dropLast(2))]) else {
    throw c.fail("batch dimensions of \(a.shape) and \(b.shape) do not broadcast")
  }
  var outShape = batch + [m, n]
  try NDArray.checkAllocation(outShape, .float, c)
  // sgemm with β = 0 writes every element; only an empty inner dimension leaves zeros to give.
  var out = k == 0 ? NDArray(zeros: .float, outShape) : NDArray(uninitialized: .float, outShape)
  let x = a.elements(Float.self), y = b.elements(Float.self), z = out.mutableElements(Float.self)
  let batchCount = batch.reduce(1, *)
  // All rows of A against one B, few of them (a transformer's linear layers at small batch): the
  // runtime's kernel beats sgemm (85–89% of peak against 69–82% at 64–197 rows), which repacks B
  // on every call; from about 300 rows sgemm's blocking is as good, and one row is sgemv's.
  let oneB = batchCount == 1 || (Array(bShape.dropLast(2)).reduce(1, *) == 1 && aShape.count > 2)
  let rows = batchCount * m
  let ownKernel = ownProductsRun && oneB && rows >= 2 && rows < 320 && n >= 32 && b.rank >= 2
  // A constant B of up to 8 MB against at most 128 rows is packed once, at the first call, into
  // the kernel's panels: read in place it was packed again on every call (MiniLM 17% and GPT-2
  // 6% faster; ONNX Runtime prepacks too). Past 128 rows the packed product streams B once per
  // 128 rows and the in-place one wins (ViT's 197); larger weights stay unpacked, so the copy
  // keeps peak memory below ONNX Runtime's.
  let packedB = ownKernel && rows <= 128 && b.rank == 2 && k * n <= (1 << 21) && c.isConstant(1)
    ? try c.derived(fromInputs: [1], "matmul-packed") {
        var packed = NDArray(uninitialized: .float, [vm_gemm_packed_b_size(k, n)])
        packed.mutableElements(Float.self).withPointer { p in
          if let p, let q = y.baseAddress { vm_gemm_pack_b(q, k, n, n, 0, p) }
        }
        return packed
      }
    : nil
  let packedElements = packedB?.elements(Float.self)
  withExtendedLifetime((x, y, z, packedElements)) {
  if let xb = x.baseAddress, let yb = y.baseAddress, let zb = z.baseAddress, m > 0, n > 0, k > 0 {
    if let pb = packedElements?.baseAddress {
      packedRightProduct(m: rows, n: n, k: k, a: xb, packed: pb, c: zb, ldc: n)
    } else if ownKernel {
      directProduct(m: rows, n: n, k: k, a: xb, b: yb, bInMemory: true, c: zb, ldc: n, parallel: true)
    } else if batchCount == 1 {
      Linalg.gemm(m: m, n: n, k: k, a: xb, b: yb, c: zb)
    } else if Array(bShape.dropLast(2)).reduce(1, *) == 1 && aShape.count > 2 {
      // [..., m, k] × [k, n]: one large GEMM over all rows of A.
      Linalg.gemm(m: batchCount * m, n: n, k: k, a: xb, b: yb, c: zb)
    } else {
      broadcastRows(batch, [Array(aShape.dropLast(2)), Array(bShape.dropLast(2))]) { o, offs, st, len in
        var i = offs[0], j = offs[1]
        for t in 0..<len {
          Linalg.gemm(m: m, n: n, k: k, a: xb + i * m * k, b: yb + j * k * n, c: zb + (o + t) * m * n)
          i += st[0]
          j += st[1]
        }
      }
    }
  }
  }
  if a.rank == 1 { outShape.remove(at: outShape.count - 2) }
  if b.rank == 1 { outShape.removeLast() }
  out = out.reshaped(outShape)
  return a0.dataType == .float ? out : try out.converted(to: a0.dataType)
}

func gemm(_ c: KernelContext) throws -> NDArray {
  let a0 = try c.input(0)
  let a = try asFloat(a0), b = try asFloat(c.input(1))
  guard a.rank == 2, b.rank == 2 else { throw c.fail("Gemm needs 2-D A and B, got \(a.shape) and \(b.shape)") }
  let transA = c.int("transA", 0) != 0, transB = c.int("transB", 0) != 0
  let alpha = c.float("alpha", 1), beta = c.float("beta", 1)
  let m = transA ? a.shape[1] : a.shape[0], k = transA ? a.shape[0] : a.shape[1]
  let kb = transB ? b.shape[1] : b.shape[0], n = transB ? b.shape[0] : b.shape[1]
  guard k == kb else { throw c.fail("cannot multiply \(a.shape) by \(b.shape) (transA \(transA), transB \(transB))") }
  var out = NDArray(zeros: .float, [m, n])
  var betaUsed: Float = 0
  if let bias = c.optionalInput(2), beta != 0 {
    let cf = try asFloat(bias)
    guard broadcastShape([cf.shape, [m, n]]) == [m, n] else { throw c.fail("C of shape \(cf.shape) does not broadcast to [\(m), \(n)]") }
    let src = cf.elements(Float.self), dst = out.mutableElements(Float.self)
    broadcastRows([m, n], [[m, n], cf.shape]) { o, offs, st, len in
      var j = offs[1]
      for t in 0..<len {
        dst[o + t] = src[j]
        j += st[1]
      }
    }
    betaUsed = beta
  }
  let x = a.elements(Float.self), y = b.elements(Float.self), z = out.mutableElements(Float.self)
  withExtendedLifetime((x, y, z)) {
    if let xb = x.baseAddress, let yb = y.baseAddress, let zb = z.baseAddress, m > 0, n > 0, k > 0 {
      Linalg.gemm(m: m, n: n, k: k, alpha: alpha, a: xb, b: yb, beta: betaUsed, c: zb, transposeA: transA, transposeB: transB)
    }
  }
  return a0.dataType == .float ? out : try out.converted(to: a0.dataType)
}

/// Determinants of the [..., M, M] matrices of the input: Gaussian elimination with partial
/// pivoting, in Double (a product of M pivots loses too much in Float).
private func determinant(_ c: KernelContext) throws -> NDArray {
  let x = try c.input(0)
  guard x.dataType.isFloatingPoint else { throw c.fail("input is \(x.dataType), not a floating-point type") }
  guard x.rank >= 2, x.shape[x.rank - 1] == x.shape[x.rank - 2] else { throw c.fail("input \(x.shape) is not [..., M, M]") }
  let m = x.shape[x.rank - 1], batch = Array(x.shape.dropLast(2))
  let count = batch.reduce(1, *)
  let src = try x.converted(to: .double).elements(Double.self)
  var dets = [Double](repeating: 1, count: count)
  var a = [Double](repeating: 0, count: m * m)
  for b in 0..<count {
    for i in 0..<(m * m) { a[i] = src[b * m * m + i] }
    var det = 1.0
    for col in 0..<m {
      var pivot = col
      for r in (col + 1)..<max(col + 1, m) where Swift.abs(a[r * m + col]) > Swift.abs(a[pivot * m + col]) { pivot = r }
      if a[pivot * m + col] == 0 { det = 0; break }
      if pivot != col {
        for k in 0..<m { a.swapAt(pivot * m + k, col * m + k) }
        det = -det
      }
      let p = a[col * m + col]
      det *= p
      for r in (col + 1)..<max(col + 1, m) {
        let f = a[r * m + col] / p
        if f == 0 { continue }
        for k in col..<m { a[r * m + k] -= f * a[col * m + k] }
      }
    }
    dets[b] = det
  }
  return try NDArray(doubles: dets, as: x.dataType, shape: batch)
}

/// ONNX Runtime's com.microsoft products: FusedGemm (Gemm, then the named activation) and
/// FusedMatMul (MatMul with alpha, transposed last two axes, and transposed batch axes).
extension Kernels {
  static let matrixContrib: [String: Kernel] = [
    "FusedGemm": { c in
      let act = try NamedActivation(c, name: c.string("activation", ""),
                                    parameters: [c.float("activation_alpha", .nan), c.float("activation_beta", .nan)].filter { !$0.isNaN })
      let y0 = try gemm(c)
      var y = try y0.converted(to: .float)
      act(&y)
      return [try y.converted(to: y0.dataType)]
    },
    "FusedMatMul": { c in [try fusedMatMul(c)] },
  ]
}

/// alpha · op(A) × op(B): transA/transB swap the last two axes; transBatchA/transBatchB move the
/// first axis behind the other batch axes ([d0, d1…, d(r-2), d(r-1)] read as [d1…, d(r-2), d0,
/// d(r-1)]: the rows come from the first axis), as ONNX Runtime's transpose fusions write them.
private func fusedMatMul(_ c: KernelContext) throws -> NDArray {
  func prepare(_ x0: NDArray, transpose: Bool, transposeBatch: Bool) throws -> NDArray {
    var x = try asFloat(x0)
    if transposeBatch && x.rank >= 3 {
      x = x.transposed(Array(1..<(x.rank - 1)) + [0, x.rank - 1])
    }
    if transpose {
      guard x.rank >= 2 else { throw c.fail("transA/transB need tensors of rank 2 or more") }
      var perm = Array(0..<x.rank)
      perm.swapAt(x.rank - 1, x.rank - 2)
      x = x.transposed(perm)
    }
    return x
  }
  let a0 = try c.input(0)
  let a = try prepare(a0, transpose: c.int("transA", 0) != 0, transposeBatch: c.int("transBatchA", 0) != 0)
  let b = try prepare(try c.input(1), transpose: c.int("transB", 0) != 0, transposeBatch: c.int("transBatchB", 0) != 0)
  var y = try matMul(c, a, b)
  let alpha = c.float("alpha", 1)
  if alpha != 1 {
    let e = y.mutableElements(Float.self)
    for i in 0..<e.count { e[i] *= alpha }
  }
  return try y.converted(to: a0.dataType)
}
