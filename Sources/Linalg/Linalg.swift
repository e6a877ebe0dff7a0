import COpenBLAS
import Dispatch

/// Swift-typed wrappers over OpenBLAS and LAPACK; the only module that imports COpenBLAS.
/// Matrices are row-major `[Float]`/`[Double]` with explicit sizes.
public enum Linalg {
  /// Threads for large products. OpenBLAS itself stays single-threaded: its idle workers spin,
  /// and would compete for the cores with the executor's own parallel loops, so products are
  /// split into column blocks here and each block is one single-threaded sgemm.
  nonisolated(unsafe) public private(set) static var threads = 1

  public static func setThreads(_ n: Int) {
    threads = max(1, n)
    openblas_set_num_threads(1)
  }

  /// The CPU kernels OpenBLAS chose (`openblas_get_corename`), e.g. "Haswell".
  public static var coreName: String {
    guard let name = openblas_get_corename() else { return "" }
    return String(cString: name)
  }

  /// C = alpha·A·B + beta·C for row-major A (m×k), B (k×n), C (m×n) (`cblas_sgemm`).
  public static func gemm(m: Int, n: Int, k: Int, alpha: Float = 1, a: UnsafePointer<Float>,
                          b: UnsafePointer<Float>, beta: Float = 0, c: UnsafeMutablePointer<Float>,
                          transposeA: Bool = false, transposeB: Bool = false) {
    let lda = transposeA ? m : k, ldb = transposeB ? k : n
    func block(_ j0: Int, _ j1: Int) {
      // Columns j0..<j1 of C need columns j0..<j1 of B (rows j0..<j1 when B is transposed).
      let bBlock = transposeB ? b + j0 * ldb : b + j0
      cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                  blasint(m), blasint(j1 - j0), blasint(k), alpha, a, blasint(lda), bBlock, blasint(ldb),
                  beta, c + j0, blasint(n))
    }
    let parts = min(threads, n / 64, max(1, m * n * k / (1 << 23)))
    if parts <= 1 {
      block(0, n)
      return
    }
    DispatchQueue.concurrentPerform(iterations: parts) { p in
      // Block edges on multiples of 16 columns keep the kernels' vector loads aligned.
      let j0 = (p * n / parts) / 16 * 16, j1 = p == parts - 1 ? n : ((p + 1) * n / parts) / 16 * 16
      block(j0, j1)
    }
  }

  public struct SVD {
    /// m×r, row-major.
    public var u: [Double]
    /// r singular values, descending.
    public var s: [Double]
    /// r×n, row-major.
    public var vt: [Double]
  }

  public enum Failure: Error, Equatable {
    case didNotConverge(info: Int32)
    case invalidArgument(info: Int32)
  }

  /// Thin SVD of a row-major m×n matrix by divide and conquer (`dgesdd_`, jobz = 'S').
  public static func svd(_ a: [Double], m: Int, n: Int) throws -> SVD {
    let r = min(m, n)
    if r == 0 { return SVD(u: [], s: [], vt: []) }
    // LAPACK is column-major: the row-major m×n input is the column-major n×m matrix Aᵀ, and
    // Aᵀ = V·S·Uᵀ, so LAPACK's "U" is our V and its "Vᵀ" is our Uᵀ.
    var work = a
    var s = [Double](repeating: 0, count: r)
    var ut = [Double](repeating: 0, count: r * m)
    var v = [Double](repeating: 0, count: n * r)
    var jobz = Int8(UInt8(ascii: "S"))
    var rows = Int32(n), cols = Int32(m), lda = Int32(n), ldu = Int32(n), ldvt = Int32(r)
    var info: Int32 = 0
    var iwork = [Int32](repeating: 0, count: 8 * r)
    var query = 0.0
    var unusedVt = 0.0
    var lwork: Int32 = -1
    dgesdd_(&jobz, &rows, &cols, &work, &lda, &s, &v, &ldu, &unusedVt, &ldvt, &query, &lwork, &iwork, &info)
    lwork = Int32(query)
    var scratch = [Double](repeating: 0, count: Int(lwork))
    dgesdd_(&jobz, &rows, &cols, &work, &lda, &s, &v, &ldu, &ut, &ldvt, &scratch, &lwork, &iwork, &info)
    if info > 0 { throw Failure.didNotConverge(info: info) }
    if info < 0 { throw Failure.invalidArgument(info: info) }
    // `v` is column-major n×r (columns are right singular vectors) = row-major r×n Vᵀ.
    // `ut` is column-major r×m = row-major m×r U.
    return SVD(u: ut, s: s, vt: v)
  }
}
