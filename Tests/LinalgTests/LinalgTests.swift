import Linalg
import XCTest

final class LinalgTests: XCTestCase {
  func testGemm() {
    let a: [Float] = [1, 2, 3, 4, 5, 6]  // 2×3
    let b: [Float] = [1, 0, 0, 1, 1, 1]  // 3×2
    var c = [Float](repeating: 0, count: 4)
    Linalg.gemm(m: 2, n: 2, k: 3, a: a, b: b, c: &c)
    XCTAssertEqual(c, [4, 5, 10, 11])
  }

  func testSVDReconstructs() throws {
    let m = 4, n = 3
    let a: [Double] = [4, 1, 2, 0, 3, 1, 2, 2, 5, 1, 0, 1]
    let svd = try Linalg.svd(a, m: m, n: n)
    XCTAssertEqual(svd.s.count, 3)
    XCTAssertTrue(zip(svd.s, svd.s.dropFirst()).allSatisfy { $0 >= $1 })
    for i in 0..<m {
      for j in 0..<n {
        var v = 0.0
        for k in 0..<3 { v += svd.u[i * 3 + k] * svd.s[k] * svd.vt[k * n + j] }
        XCTAssertEqual(v, a[i * n + j], accuracy: 1e-10)
      }
    }
  }

  func testSVDOfZeroMatrixHasZeroSingularValues() throws {
    let svd = try Linalg.svd([Double](repeating: 0, count: 6), m: 2, n: 3)
    XCTAssertEqual(svd.s, [0, 0])
    XCTAssertFalse(svd.u.contains { $0.isNaN })
  }
}
