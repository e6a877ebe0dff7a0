import IR
import Linalg
import Runtime

/// Gemm and MatMul: the gradients are matrix products again, through the same sgemm.
extension Gradients {
  static let matrix: [String: GradientRule] = [
    "Gemm": GradientRule([0, 1, 2], gemmGradient),
    "MatMul": GradientRule([0, 1], matMulGradient),
  ]
}

/// C = alpha·A·B, row-major, with optional transposes and accumulation.
func matrixProduct(_ a: NDArray, _ b: NDArray, m: Int, n: Int, k: Int, transposeA: Bool = false,
                     transposeB: Bool = false, alpha: Float = 1) -> NDArray {
  var out = NDArray(zeros: .float, [m, n])
  let z = out.mutableElements(Float.self)
  a.withFloats { pa in
    b.withFloats { pb in
      z.withPointer { pz in
        if let pz, m > 0, n > 0, k > 0 {
          Linalg.gemm(m: m, n: n, k: k, alpha: alpha, a: pa, b: pb, c: pz, transposeA: transposeA, transposeB: transposeB)
        }
      }
    }
  }
  return out
}

/// Y = alpha·op(A)·op(B) + beta·C.
private func gemmGradient(_ c: GradientContext) throws -> [NDArray?] {
  let a = try c.input(0).asFloat(), b = try c.input(1).asFloat(), dy = c.gradient()
  let transA = c.int("transA", 0) != 0, transB = c.int("transB", 0) != 0
  let alpha = c.float("alpha", 1), beta = c.float("beta", 1)
  let m = dy.shape[0], n = dy.shape[1], k = transA ? a.shape[0] : a.shape[1]
  var grads = [NDArray?](repeating: nil, count: c.inputs.count)
  if c.needs(0) {
    grads[0] = transA
      ? matrixProduct(b, dy, m: k, n: m, k: n, transposeA: transB, transposeB: true, alpha: alpha)  // op(B)·dYᵀ
      : matrixProduct(dy, b, m: m, n: k, k: n, transposeB: !transB, alpha: alpha)  // dY·op(B)ᵀ
  }
  if c.needs(1) {
    grads[1] = transB
      ? matrixProduct(dy, a, m: n, n: k, k: m, transposeA: true, transposeB: transA, alpha: alpha)  // dYᵀ·op(A)
      : matrixProduct(a, dy, m: k, n: n, k: m, transposeA: !transA, alpha: alpha)  // op(A)ᵀ·dY
  }
  if c.needs(2), let bias = c.optionalInput(2) {
    var g = try c.sumTo(dy, bias.shape)
    if beta != 1 { g = NDArray.filled(g.shape) { p, count in g.withFloats { s in for i in 0..<count { p[i] = s[i] * beta } } } }
    grads[2] = g
  }
  return grads
}

/// Y[..., m, n] = A[..., m, k] · B[..., k, n] with broadcast batch dimensions and 1-D operands.
private func matMulGradient(_ c: GradientContext) throws -> [NDArray?] {
  let a0 = try c.input(0).asFloat(), b0 = try c.input(1).asFloat()
  let a = a0.rank == 1 ? a0.reshaped([1, a0.shape[0]]) : a0
  let b = b0.rank == 1 ? b0.reshaped([b0.shape[0], 1]) : b0
  let m = a.shape[a.rank - 2], k = a.shape[a.rank - 1], n = b.shape[b.rank - 1]
  let batchA = Array(a.shape.dropLast(2)), batchB = Array(b.shape.dropLast(2))
  let batch = Array(c.outputs[0].shape.dropLast((a0.rank == 1 ? 0 : 1) + (b0.rank == 1 ? 0 : 1)))
  let dy = c.gradient().reshaped(batch + [m, n])
  var grads = [NDArray?](repeating: nil, count: 2)
  let rows = batch.reduce(1, *)
  if batchB.reduce(1, *) == 1 && batchA == batch {
    // [..., m, k] × [k, n]: every row of A meets the same B.
    if c.needs(0) { grads[0] = matrixProduct(dy, b, m: rows * m, n: k, k: n, transposeB: true).reshaped(a.shape) }
    if c.needs(1) { grads[1] = matrixProduct(a, dy, m: k, n: n, k: rows * m, transposeA: true).reshaped(b.shape) }
  } else {
    // Expand both to the full batch, multiply per batch, then sum back over broadcast dimensions.
    let shapeA = NDArray((batch + [m, k]).map { Int64($0) }, shape: [batch.count + 2])
    let shapeB = NDArray((batch + [k, n]).map { Int64($0) }, shape: [batch.count + 2])
    let fullA = try c.apply("Expand", [a, shapeA]), fullB = try c.apply("Expand", [b, shapeB])
    var da = NDArray(zeros: .float, fullA.shape), db = NDArray(zeros: .float, fullB.shape)
    let pa = da.mutableElements(Float.self), pb = db.mutableElements(Float.self)
    fullA.withFloats { xa in fullB.withFloats { xb in dy.withFloats { g in
      pa.withPointer { oa in pb.withPointer { ob in
        guard let oa, let ob, m > 0, n > 0, k > 0 else { return }
        for t in 0..<rows {
          if c.needs(0) { Linalg.gemm(m: m, n: k, k: n, a: g + t * m * n, b: xb + t * k * n, c: oa + t * m * k, transposeB: true) }
          if c.needs(1) { Linalg.gemm(m: k, n: n, k: m, a: xa + t * m * k, b: g + t * m * n, c: ob + t * k * n, transposeA: true) }
        }
      } }
    } } }
    if c.needs(0) { grads[0] = try c.sumTo(da, a.shape) }
    if c.needs(1) { grads[1] = try c.sumTo(db, b.shape) }
  }
  return [grads[0]?.reshaped(a0.shape), grads[1]?.reshaped(b0.shape)]
}
