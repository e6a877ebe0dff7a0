import IR
import Linalg
import Support

/// Attention as exporters decompose it — MatMul(Q, Kᵀ) [+ mask] → Softmax → [Where(IsNaN, 0)] →
/// MatMul(·, V) — fused at load time (`Executor.fuseSoftmaxAttention`) into one MatMul node with
/// inputs [Q, Kᵀ, V, mask] and the `SoftmaxAttention.attribute`. It runs a block of query rows
/// at a time per batch and head: the block's scores are computed, masked, softmaxed and
/// multiplied by V while they are in cache, and the [batch, heads, S, T] score tensor — 432 MB
/// for Whisper's encoder at batch 8 — is never written. Work items are independent and each
/// product is single-threaded, so results do not depend on the thread count. The products use
/// the runtime's own kernel where it runs (`directProduct`): sgemm packed K and V again for every
/// block of query rows, and its tiles fit these skinny products badly (Whisper's encoder 18%
/// faster).
enum SoftmaxAttention {
  static let attribute = "__compressor_softmax_attention"

  /// The fused node's attribute: whether NaN probabilities become `zero` (the Where(IsNaN) step).
  static func make(nanTo zero: Float?) -> Attribute {
    Attribute(name: attribute, value: .floats(zero.map { [1, $0] } ?? [0, 0]))
  }

  static func run(_ c: KernelContext) throws -> NDArray {
    let type = try c.input(0).dataType
    let q = try asFloat(c.input(0)), kT = try asFloat(c.input(1)), v = try asFloat(c.input(2))
    let mask = try c.optionalInput(3).map(asFloat)
    var nanTo: Float?
    if case .floats(let p)? = c.node.attribute(attribute)?.value, p.count == 2, p[0] != 0 { nanTo = p[1] }
    let rank = q.rank
    guard rank >= 2, kT.rank == rank, v.rank == rank, q.shape.dropLast(2) == kT.shape.dropLast(2),
          q.shape.dropLast(2) == v.shape.dropLast(2), q.shape[rank - 1] == kT.shape[rank - 2], kT.shape[rank - 1] == v.shape[rank - 2],
          let maskLayout = MaskLayout(mask?.shape, scores: Array(q.shape.dropLast()) + [kT.shape[rank - 1]]) else {
      return try unfused(c, q, kT, v, mask, nanTo: nanTo)
    }
    let batch = Array(q.shape.dropLast(2)), batchCount = batch.reduce(1, *)
    let s = q.shape[rank - 2], d = q.shape[rank - 1], t = kT.shape[rank - 1], dv = v.shape[rank - 1]
    let outShape = batch + [s, dv]
    try NDArray.checkAllocation(outShape, .float, c)
    var out = NDArray(zeros: .float, outShape)
    guard batchCount > 0, s > 0, dv > 0, t > 0, d > 0 else {
      // No keys: every softmax row is empty; no head size: scores of 0. The unfused path says what that gives.
      return try unfused(c, q, kT, v, mask, nanTo: nanTo)
    }
    // Query rows per block: the block's scores stay within 256 KB.
    let block = min(s, max(8, (1 << 16) / t))
    let blocks = (s + block - 1) / block
    let qe = q.elements(Float.self), ke = kT.elements(Float.self), ve = v.elements(Float.self), oe = out.mutableElements(Float.self)
    let me = mask?.elements(Float.self)
    withExtendedLifetime((qe, ke, ve, oe, me)) {
      guard let qp = qe.baseAddress, let kp = ke.baseAddress, let vp = ve.baseAddress, let op = oe.baseAddress else { return }
      let mp = me?.baseAddress
      Parallel.forEach(batchCount * blocks, costPerItem: block * t * (d + dv) * 2) { items in
        var scores = [Float](repeating: 0, count: block * t)
        scores.withUnsafeMutableBufferPointer { buffer in
          guard let scratch = buffer.baseAddress else { return }
          for item in items {
            let b = item / blocks, i0 = (item % blocks) * block, rows = min(block, s - i0)
            if ownProductsRun {
              directProduct(m: rows, n: t, k: d, a: qp + (b * s + i0) * d, b: kp + b * d * t, bInMemory: false, c: scratch, ldc: t,
                            parallel: false)
            } else {
              Linalg.gemm(m: rows, n: t, k: d, a: qp + (b * s + i0) * d, b: kp + b * d * t, c: scratch, parallel: false)
            }
            for r in 0..<rows {
              let row = scratch + r * t
              if let mp { maskLayout.add(mp, batch: b, row: i0 + r, to: row, length: t) }
              FastMath.softmaxRow(row, row, t)
              if let nanTo { for j in 0..<t where row[j].isNaN { row[j] = nanTo } }
            }
            if ownProductsRun {
              directProduct(m: rows, n: dv, k: t, a: scratch, b: vp + b * t * dv, bInMemory: false, c: op + (b * s + i0) * dv,
                            ldc: dv, parallel: false)
            } else {
              Linalg.gemm(m: rows, n: dv, k: t, a: scratch, b: vp + b * t * dv, c: op + (b * s + i0) * dv, parallel: false)
            }
          }
        }
      }
    }
    return type == .float ? out : try out.converted(to: type)
  }

  /// Where each score's mask value is: the mask's strides broadcast over [batch…, S, T].
  struct MaskLayout {
    var batchStrides: [Int] = []
    var batchShape: [Int] = []
    var rowStride = 0
    var columnStride = 0

    /// nil when the mask does not broadcast to `scores` (the unfused path then reports it).
    init?(_ shape: [Int]?, scores: [Int]) {
      guard let shape else { return }
      guard shape.count <= scores.count else { return nil }
      let padded = Array(repeating: 1, count: scores.count - shape.count) + shape
      var strides = [Int](repeating: 0, count: padded.count)
      var step = 1
      for i in stride(from: padded.count - 1, through: 0, by: -1) {
        guard padded[i] == scores[i] || padded[i] == 1 else { return nil }
        strides[i] = padded[i] == 1 ? 0 : step
        step *= padded[i]
      }
      batchShape = Array(scores.dropLast(2))
      batchStrides = Array(strides.dropLast(2))
      rowStride = strides[strides.count - 2]
      columnStride = strides[strides.count - 1]
    }

    func add(_ mask: UnsafePointer<Float>, batch b: Int, row: Int, to scores: UnsafeMutablePointer<Float>, length: Int) {
      var offset = row * rowStride, rest = b
      for i in stride(from: batchShape.count - 1, through: 0, by: -1) {
        offset += (rest % batchShape[i]) * batchStrides[i]
        rest /= batchShape[i]
      }
      let m = mask + offset
      if columnStride == 0 {
        let value = m[0]
        for j in 0..<length { scores[j] += value }
      } else {
        for j in 0..<length { scores[j] += m[j] }
      }
    }
  }

  /// The nodes the fusion replaced, one after the other: for shapes the blocked loop does not
  /// cover (batch dimensions that broadcast, empty dimensions), with their exact semantics.
  static func unfused(_ c: KernelContext, _ q: NDArray, _ kT: NDArray, _ v: NDArray, _ mask: NDArray?, nanTo: Float?) throws -> NDArray {
    func run(_ op: String, _ inputs: [NDArray], _ attributes: [Attribute] = []) throws -> NDArray {
      guard let kernel = Kernels.standard[op] else { throw c.fail("no kernel for \(op)") }
      let node = Node(name: c.node.name, opType: op, inputs: inputs.indices.map { "\($0)" }, outputs: ["y"], attributes: attributes)
      guard let y = try kernel(KernelContext(node: node, inputs: inputs, opset: c.opset, executor: c.executor, scope: c.scope)).first else {
        throw c.fail("\(op) gave no output")
      }
      return y
    }
    var scores = try matMul(c, q, kT)
    if let mask { scores = try run("Add", [scores, mask]) }
    var p = try run("Softmax", [scores], [Attribute(name: "axis", value: .int(-1))])
    if let nanTo {
      let e = p.mutableElements(Float.self)
      for i in 0..<e.count where e[i].isNaN { e[i] = nanTo }
    }
    let y = try matMul(c, p, v)
    let original = try c.input(0).dataType
    return original == .float ? y : try y.converted(to: original)
  }

  private static func asFloat(_ x: NDArray) throws -> NDArray { x.dataType == .float ? x : try x.converted(to: .float) }
}
