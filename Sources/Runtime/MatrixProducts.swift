import CVectorMath
import Linalg

// The runtime's own matrix products (Sources/CVectorMath/gemm.c, AVX-512): convolutions and
// MatMuls with few rows, their operands read where they lie (a convolution with few output
// positions runs as the transposed product, its weights packed once as the right operand);
// shared among the threads here. Where the processor has no AVX-512 the kernels use OpenBLAS.

let ownProductsRun = vm_gemm_supported() != 0

/// Whether a product of m channels and n positions (over k) runs as its transpose: the kernel
/// computes 8 rows × 32 columns at a time, so 4 positions (silero-vad's frames) would waste 7/8
/// of each tile as columns and half as rows. A window's weights (taps > 1) larger than a core's
/// L2 (4 MB) over at most 256 positions (ResNet's 7 × 7 stage) run transposed too: packed, they
/// stream from memory with the next panel fetched ahead, where read in place they stalled the
/// kernel (ResNet-18's last stage 2.5 → 2.1 ms per convolution). The packed copy is memory beside
/// the original, so not for smaller weights, which stay in cache either way, nor for 1 × 1
/// layers: ResNet-50's and Inception's took peak memory past ONNX Runtime's for little time.
func prefersTransposedProduct(m: Int, n: Int, k: Int, window: Bool) -> Bool {
  let r8 = { ($0 + 7) / 8 * 8 }, r32 = { ($0 + 31) / 32 * 32 }
  let tiles = r8(n) * r32(m), transposedTiles = r32(n) * r8(m)
  return tiles * 5 < transposedTiles * 4 || (window && n <= 256 && m * k >= 1 << 20 && tiles < transposedTiles)
}

/// Each group's weights (m/group × k, one after another), transposed and packed as the right
/// operand (`vm_gemm_pack_b`) for convolutions with few output positions, which run as positions
/// × channels: made once per executor when the weight is a constant. nil for the other products
/// (and where the kernels do not run).
struct TransposedWeights {
  let array: NDArray
  let groupStride: Int
  let base: UnsafePointer<Float>

  func group(_ g: Int) -> UnsafePointer<Float> { base + g * groupStride }
}

func transposedWeights(_ c: KernelContext, _ source: () -> UnsafePointer<Float>, m: Int, group: Int, k: Int, positions: Int,
                       window: Bool, purpose: String) throws -> TransposedWeights? {
  let mg = m / group
  guard ownProductsRun, prefersTransposedProduct(m: mg, n: positions, k: k, window: window) else { return nil }
  let stride = vm_gemm_packed_b_size(k, mg)
  let array = try c.derived(fromInputs: [1], purpose) {
    try NDArray.checkAllocation([group * stride], .float, c)
    var packed = NDArray(uninitialized: .float, [group * stride])
    let weights = source()
    packed.mutableElements(Float.self).withPointer { p in
      guard let p else { return }
      for g in 0..<group { vm_gemm_pack_b(weights + g * mg * k, k, mg, k, 1, p + g * stride) }
    }
    return packed
  }
  guard let base = array.elements(Float.self).baseAddress else { return nil }
  return TransposedWeights(array: array, groupStride: stride, base: base)
}

/// c (m × n, rows ldc apart) = a (m × k, rows k apart) · b (k × n, rows ldb apart, n by default),
/// read where they lie (a convolution's weights and unfolded input; a MatMul's rows and weights —
/// `bInMemory`, so the kernel fetches them ahead), its columns (in whole 32-column panels) or else
/// its 8-row panels shared among the threads. Every element is computed the same way whichever
/// thread computes it.
func directProduct(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, ldb: Int? = nil, bInMemory: Bool,
                   c: UnsafeMutablePointer<Float>, ldc: Int, parallel: Bool) {
  let fetch: Int32 = bInMemory ? 1 : 0, ldb = ldb ?? n
  shareRowsOrColumns(m: m, n: n, k: k, parallel: parallel) { first, end, c0, c1, w in
    vm_gemm(m, first, end, c1 - c0, k, a, k, b + c0, ldb, fetch, c + c0, ldc, w)
  }
}

/// c (m × n, rows ldc apart) = a (m × k) · the unfolded input of `window` over output positions
/// p0 … p0 + n − 1, unfolded panel by panel inside the kernel (`vm_gemm_window`); shared among
/// the threads as `directProduct` shares its product, with the same sums.
func windowProduct(m: Int, p0: Int, n: Int, k: Int, a: UnsafePointer<Float>, window: vm_window,
                   c: UnsafeMutablePointer<Float>, ldc: Int, parallel: Bool) {
  withUnsafePointer(to: window) { win in
    shareRowsOrColumns(m: m, n: n, k: k, parallel: parallel) { first, end, c0, c1, w in
      vm_gemm_window(m, first, end, p0 + c0, c1 - c0, k, a, k, win, c + c0, ldc, w)
    }
  }
}

/// An m × n × k product of the direct kernels shared among the threads: its columns, in whole
/// 32-column panels, when there are enough of them, or else its 8-row panels. `body` gets the
/// row panels [first, end), the columns [c0, c1) and a workspace of its own.
private func shareRowsOrColumns(m: Int, n: Int, k: Int, parallel: Bool,
                                _ body: (_ first: Int, _ end: Int, _ c0: Int, _ c1: Int, UnsafeMutablePointer<Float>) -> Void) {
  let rowPanels = (m + vm_gemm_panel_rows() - 1) / vm_gemm_panel_rows()
  let parts = parallel ? min(Parallel.threads, max(1, m * n * k / (1 << 20))) : 1
  func withWorkspace(_ run: (UnsafeMutablePointer<Float>) -> Void) {
    var scratch = NDArray(uninitialized: .float, [vm_gemm_workspace_size()])
    scratch.mutableElements(Float.self).withPointer { if let p = $0 { run(p) } }
  }
  if parts <= 1 {
    withWorkspace { body(0, rowPanels, 0, n, $0) }
  } else if n >= 64 * parts {
    let chunks = (n + 31) / 32
    WorkerPool.shared.run(parts: parts) { p in
      let c0 = p * chunks / parts * 32, c1 = min(n, (p + 1) * chunks / parts * 32)
      guard c1 > c0 else { return }
      withWorkspace { body(0, rowPanels, c0, c1, $0) }
    }
  } else {
    let parts = min(parts, rowPanels)
    WorkerPool.shared.run(parts: parts) { p in
      withWorkspace { body(p * rowPanels / parts, (p + 1) * rowPanels / parts, 0, n, $0) }
    }
  }
}

/// c (m × n, rows ldc apart) = a (m × k; given as aᵀ, k × m, when `transposedA`) · the packed
/// right operand `pb`, its 32-column panels shared among the threads.
func packedRightProduct(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, transposedA: Bool = false, packed pb: UnsafePointer<Float>,
                        c: UnsafeMutablePointer<Float>, ldc: Int, parallel: Bool = true) {
  let lda = transposedA ? m : k
  sharePanels(m: m, n: n, k: k, parallel: parallel) { first, end, w in
    vm_gemm_packed_b(m, n, first, end, k, a, lda, transposedA ? 1 : 0, pb, c, ldc, w)
  }
}

/// c (m × n, rows ldc apart) = the unfolded input of `window` at output positions p0 … p0 + m − 1
/// (positions × taps, unfolded 8 positions at a time inside the kernel) · the packed right
/// operand `pb`: a convolution over few positions taken the other way round.
func packedRightWindowProduct(m: Int, n: Int, k: Int, p0: Int, window: vm_window, packed pb: UnsafePointer<Float>,
                              c: UnsafeMutablePointer<Float>, ldc: Int, parallel: Bool) {
  withUnsafePointer(to: window) { win in
    sharePanels(m: m, n: n, k: k, parallel: parallel) { first, end, w in
      vm_gemm_packed_b_window(m, n, first, end, k, p0, win, pb, c, ldc, w)
    }
  }
}

/// c (m positions × n channels, rows ldc apart) = the unfolded input at m output positions, read
/// in place from `x` (position i's tap t at x[bases[i] + shifts[t]]: a zero-padded copy, or the
/// input itself where no tap reads padding) · the transposed weights, `packed` once or gathered
/// from `weights` (n rows of k, or ldw apart with element t at kidx[t]) a panel at a time
/// (`vm_gemm_gathered`); its 32-column panels shared among the threads.
func gatheredProduct(m: Int, n: Int, k: Int, x: UnsafePointer<Float>, bases: UnsafePointer<Int>, shifts: UnsafePointer<Int32>,
                     packed: UnsafePointer<Float>?, weights: UnsafePointer<Float>, ldw: Int? = nil, kidx: UnsafePointer<Int32>? = nil,
                     c: UnsafeMutablePointer<Float>, ldc: Int, parallel: Bool) {
  sharePanels(m: m, n: n, k: k, parallel: parallel) { first, end, w in
    vm_gemm_gathered(m, n, first, end, k, x, bases, shifts, packed, weights, ldw ?? k, kidx, c, ldc, w)
  }
}

/// The 32-column panels of an m × n × k product shared among the threads, each with its own
/// workspace for A's packed rows.
private func sharePanels(m: Int, n: Int, k: Int, parallel: Bool,
                         _ body: (_ first: Int, _ end: Int, UnsafeMutablePointer<Float>) -> Void) {
  let panels = (n + 31) / 32
  let parts = parallel ? min(Parallel.threads, panels, max(1, m * n * k / (1 << 20))) : 1
  WorkerPool.shared.run(parts: parts) { p in
    var scratch = NDArray(uninitialized: .float, [vm_gemm_a_workspace_size()])
    scratch.mutableElements(Float.self).withPointer { w in
      guard let w else { return }
      body(p * panels / parts, (p + 1) * panels / parts, w)
    }
  }
}
