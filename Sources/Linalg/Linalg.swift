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
    WorkerPool.shared.resize(threads)
  }

  /// The CPU kernels OpenBLAS chose (`openblas_get_corename`), e.g. "Haswell".
  public static var coreName: String {
    guard let name = openblas_get_corename() else { return "" }
    return String(cString: name)
  }

  /// C = alpha·A·B + beta·C for row-major A (m×k), B (k×n), C (m×n) (`cblas_sgemm`). C's rows
  /// may be `ldc` elements apart (a column block of a wider matrix). With `threads` > 1 and
  /// `parallel`, a large product is cut into column blocks — or row blocks when C is narrow —
  /// each one single-threaded sgemm.
  public static func gemm(m: Int, n: Int, k: Int, alpha: Float = 1, a: UnsafePointer<Float>,
                          b: UnsafePointer<Float>, beta: Float = 0, c: UnsafeMutablePointer<Float>,
                          transposeA: Bool = false, transposeB: Bool = false, ldc: Int? = nil, parallel: Bool = true) {
    let lda = transposeA ? m : k, ldb = transposeB ? k : n, ldc = ldc ?? n
    func block(rows i0: Int, _ i1: Int, columns j0: Int, _ j1: Int) {
      // Columns j0..<j1 of C need columns j0..<j1 of B (rows j0..<j1 when B is transposed);
      // rows i0..<i1 of C need rows i0..<i1 of A (columns when A is transposed).
      let bBlock = transposeB ? b + j0 * ldb : b + j0
      let aBlock = transposeA ? a + i0 : a + i0 * lda
      if i1 - i0 == 1 && !transposeA {
        // One row (a classifier at batch 1, a decoder step): sgemv streams B once, where sgemm
        // would first copy all of it into its packed layout. β = 0 must ignore C, which may hold
        // NaN bit patterns (uninitialized outputs): zeroed first, not scaled by 0.
        if beta == 0 { (c + i0 * ldc + j0).update(repeating: 0, count: j1 - j0) }
        if transposeB {
          cblas_sgemv(CblasRowMajor, CblasNoTrans, blasint(j1 - j0), blasint(k), alpha, bBlock, blasint(ldb), aBlock, 1, beta,
                      c + i0 * ldc + j0, 1)
        } else {
          cblas_sgemv(CblasRowMajor, CblasTrans, blasint(k), blasint(j1 - j0), alpha, bBlock, blasint(ldb), aBlock, 1, beta,
                      c + i0 * ldc + j0, 1)
        }
        return
      }
      cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                  blasint(i1 - i0), blasint(j1 - j0), blasint(k), alpha, aBlock, blasint(lda), bBlock, blasint(ldb),
                  beta, c + i0 * ldc + j0, blasint(ldc))
    }
    let work = max(1, m * n * k / (1 << 21))
    let columnParts = parallel ? min(threads, n / 64, work) : 1
    let rowParts = parallel ? min(threads, m / 32, work) : 1
    // Block edges on multiples of 16 keep the kernels' vector loads aligned.
    func edge(_ p: Int, _ parts: Int, _ size: Int) -> Int { p == parts ? size : (p * size / parts) / 16 * 16 }
    if columnParts > 1 {
      WorkerPool.shared.run(parts: columnParts) { p in
        block(rows: 0, m, columns: edge(p, columnParts, n), edge(p + 1, columnParts, n))
      }
    } else if rowParts > 1 {
      WorkerPool.shared.run(parts: rowParts) { p in
        block(rows: edge(p, rowParts, m), edge(p + 1, rowParts, m), columns: 0, n)
      }
    } else {
      block(rows: 0, m, columns: 0, n)
    }
  }

  /// y[n] = x[k] · B (B row-major k×n, or n×k when `transposeB`), one thread: the one-row
  /// product of recurrent steps, where sgemm's packing costs more than the product.
  public static func rowTimesMatrix(n: Int, k: Int, x: UnsafePointer<Float>, b: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                                    transposeB: Bool = false) {
    if transposeB {
      cblas_sgemv(CblasRowMajor, CblasNoTrans, blasint(n), blasint(k), 1, b, blasint(k), x, 1, 0, y, 1)
    } else {
      cblas_sgemv(CblasRowMajor, CblasTrans, blasint(k), blasint(n), 1, b, blasint(n), x, 1, 0, y, 1)
    }
  }

  public enum Failure: Error, Equatable {
    case didNotConverge(info: Int32)
    case invalidArgument(info: Int32)
  }
}

extension Linalg {
  /// A thin singular value decomposition: U m×r, s (r values, descending), Vᵀ r×n, row-major.
  public struct SVD<T> {
    public var u: [T]
    public var s: [T]
    public var vt: [T]
    public init(u: [T], s: [T], vt: [T]) { self.u = u; self.s = s; self.vt = vt }
  }

  /// Thin SVD of a row-major m×n matrix by divide and conquer (LAPACK `?gesdd_`, jobz = 'S'),
  /// r = min(m, n). OpenBLAS may use `threads` threads meanwhile (nothing else runs then).
  public static func svd<T: LapackScalar>(_ a: [T], m: Int, n: Int) throws -> SVD<T> {
    let r = min(m, n)
    if r == 0 { return SVD(u: [], s: [], vt: []) }
    openblas_set_num_threads(Int32(threads))
    defer { openblas_set_num_threads(1) }
    // LAPACK is column-major: the row-major m×n input is the column-major n×m matrix Aᵀ, and
    // Aᵀ = V·S·Uᵀ, so LAPACK's "U" is our V and its "Vᵀ" is our Uᵀ.
    var work = a
    var s = [T](repeating: 0, count: r)
    var ut = [T](repeating: 0, count: r * m)
    var v = [T](repeating: 0, count: n * r)
    var jobz = Int8(UInt8(ascii: "S"))
    var rows = Int32(n), cols = Int32(m), lda = Int32(n), ldu = Int32(n), ldvt = Int32(r)
    var info: Int32 = 0
    var iwork = [Int32](repeating: 0, count: 8 * r)
    var query: T = 0
    var lwork: Int32 = -1
    T.gesdd(&jobz, &rows, &cols, &work, &lda, &s, &v, &ldu, &ut, &ldvt, &query, &lwork, &iwork, &info)
    lwork = Int32(query)
    var scratch = [T](repeating: 0, count: max(1, Int(lwork)))
    T.gesdd(&jobz, &rows, &cols, &work, &lda, &s, &v, &ldu, &ut, &ldvt, &scratch, &lwork, &iwork, &info)
    if info > 0 { throw Failure.didNotConverge(info: info) }
    if info < 0 { throw Failure.invalidArgument(info: info) }
    // `v` is column-major n×r (columns are right singular vectors) = row-major r×n Vᵀ;
    // `ut` is column-major r×m = row-major m×r U.
    return SVD(u: ut, s: s, vt: v)
  }

  /// The lower-triangular L with C = L·Lᵀ for a symmetric positive definite row-major n×n C
  /// (`dpotrf_`); nil when C is not positive definite.
  public static func cholesky(_ c: [Double], n: Int) -> [Double]? {
    var a = c
    // Row-major C is column-major C (symmetric); column-major upper U with C = UᵀU is row-major L = Uᵀ.
    var uplo = Int8(UInt8(ascii: "U")), size = Int32(n), lda = Int32(n), info: Int32 = 0
    dpotrf_(&uplo, &size, &a, &lda, &info)
    guard info == 0 else { return nil }
    for i in 0..<n { for j in (i + 1)..<max(i + 1, n) { a[i * n + j] = 0 } }
    return a
  }

  /// The upper-triangular U with C⁻¹ = Uᵀ·U, row-major, for a symmetric positive definite
  /// row-major n×n C (`dpotrf_`, `dpotri_`, `dpotrf_`): what GPTQ walks its rows with. nil when
  /// C or its inverse is not positive definite.
  public static func inverseCholeskyUpper(_ c: [Double], n: Int) -> [Double]? {
    var a = c
    var lower = Int8(UInt8(ascii: "L")), upper = Int8(UInt8(ascii: "U")), size = Int32(n), lda = Int32(n), info: Int32 = 0
    // Column-major throughout (C is symmetric, so its row-major storage is its column-major one).
    dpotrf_(&lower, &size, &a, &lda, &info)
    guard info == 0 else { return nil }
    dpotri_(&lower, &size, &a, &lda, &info)
    guard info == 0 else { return nil }
    for j in 0..<n { for i in 0..<j { a[i + j * n] = a[j + i * n] } }  // the upper half from the lower
    dpotrf_(&upper, &size, &a, &lda, &info)
    guard info == 0 else { return nil }
    // Column-major upper U: element (i, j), i ≤ j, at i + j·n.
    var u = [Double](repeating: 0, count: n * n)
    for i in 0..<n { for j in i..<n { u[i * n + j] = a[i + j * n] } }
    return u
  }

  /// G += Xᵀ·X (upper triangle only) for row-major X (rows×k), G row-major k×k (`cblas_ssyrk`).
  public static func addGram(_ x: UnsafePointer<Float>, rows: Int, k: Int, into g: UnsafeMutablePointer<Float>) {
    guard rows > 0, k > 0 else { return }
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, blasint(k), blasint(rows), 1, x, blasint(k), 1, g, blasint(k))
  }

  /// A -= x·yᵀ for row-major A (m×n) (`cblas_sger`).
  public static func subtractOuter(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, m: Int, n: Int, _ a: UnsafeMutablePointer<Float>) {
    guard m > 0, n > 0 else { return }
    cblas_sger(CblasRowMajor, blasint(m), blasint(n), -1, x, 1, y, 1, a, blasint(n))
  }

  /// Solves Lᵀ·X = B for X (row-major, L n×n lower-triangular, B n×k), in place (`cblas_dtrsm`).
  public static func solveLowerTransposed(_ l: [Double], n: Int, _ b: inout [Double], k: Int) {
    guard n > 0, k > 0 else { return }
    l.withUnsafeBufferPointer { lp in
      b.withUnsafeMutableBufferPointer { bp in
        cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, blasint(n), blasint(k), 1,
                    lp.baseAddress, blasint(n), bp.baseAddress, blasint(k))
      }
    }
  }

  /// C = Aᵀ·B for row-major A (k×m) and B (k×n), in Double (`cblas_dgemm`).
  public static func gemmTransposedA(_ a: [Double], _ b: [Double], k: Int, m: Int, n: Int) -> [Double] {
    var c = [Double](repeating: 0, count: m * n)
    guard k > 0, m > 0, n > 0 else { return c }
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, blasint(m), blasint(n), blasint(k), 1, a, blasint(m), b, blasint(n),
                0, &c, blasint(n))
    return c
  }
}

/// The element types LAPACK's gesdd comes in.
public protocol LapackScalar: BinaryFloatingPoint {
  static func gesdd(_ jobz: UnsafePointer<Int8>, _ m: UnsafePointer<Int32>, _ n: UnsafePointer<Int32>, _ a: UnsafeMutablePointer<Self>,
                    _ lda: UnsafePointer<Int32>, _ s: UnsafeMutablePointer<Self>, _ u: UnsafeMutablePointer<Self>,
                    _ ldu: UnsafePointer<Int32>, _ vt: UnsafeMutablePointer<Self>, _ ldvt: UnsafePointer<Int32>,
                    _ work: UnsafeMutablePointer<Self>, _ lwork: UnsafePointer<Int32>, _ iwork: UnsafeMutablePointer<Int32>,
                    _ info: UnsafeMutablePointer<Int32>)
}

extension Float: LapackScalar {
  public static func gesdd(_ jobz: UnsafePointer<Int8>, _ m: UnsafePointer<Int32>, _ n: UnsafePointer<Int32>, _ a: UnsafeMutablePointer<Float>,
                           _ lda: UnsafePointer<Int32>, _ s: UnsafeMutablePointer<Float>, _ u: UnsafeMutablePointer<Float>,
                           _ ldu: UnsafePointer<Int32>, _ vt: UnsafeMutablePointer<Float>, _ ldvt: UnsafePointer<Int32>,
                           _ work: UnsafeMutablePointer<Float>, _ lwork: UnsafePointer<Int32>, _ iwork: UnsafeMutablePointer<Int32>,
                           _ info: UnsafeMutablePointer<Int32>) {
    sgesdd_(jobz, m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork, iwork, info)
  }
}

extension Double: LapackScalar {
  public static func gesdd(_ jobz: UnsafePointer<Int8>, _ m: UnsafePointer<Int32>, _ n: UnsafePointer<Int32>, _ a: UnsafeMutablePointer<Double>,
                           _ lda: UnsafePointer<Int32>, _ s: UnsafeMutablePointer<Double>, _ u: UnsafeMutablePointer<Double>,
                           _ ldu: UnsafePointer<Int32>, _ vt: UnsafeMutablePointer<Double>, _ ldvt: UnsafePointer<Int32>,
                           _ work: UnsafeMutablePointer<Double>, _ lwork: UnsafePointer<Int32>, _ iwork: UnsafeMutablePointer<Int32>,
                           _ info: UnsafeMutablePointer<Int32>) {
    dgesdd_(jobz, m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork, iwork, info)
  }
}
