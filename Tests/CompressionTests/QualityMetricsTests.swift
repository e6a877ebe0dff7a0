import XCTest
@testable import Compression
import Runtime

/// The quality measures targets and gates are judged by: what a sample is, and the default
/// floor's lower bound.
final class QualityMetricsTests: XCTestCase {
  /// Three samples of two values whose cosines with the reference are known.
  func testCosineLowerBoundIsTheMeanLessTwoStandardErrors() throws {
    var metrics = QualityMetrics()
    let reference = NDArray([Float(1), 0, 1, 0, 1, 0], shape: [3, 2])
    let output = NDArray([Float(1), 0, 1, 1, 0, 1], shape: [3, 2])
    try metrics.add(output: output, reference: reference, labels: nil, file: "f", inputRows: 3)
    let cosines = [1, 0.5.squareRoot(), 0]
    let mean = cosines.reduce(0, +) / 3
    let variance = cosines.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 2
    XCTAssertEqual(metrics.samples, 3)
    XCTAssertEqual(metrics.summary(hasLabels: false, hasReference: true)["meanCosine"] ?? -1, mean, accuracy: 1e-12)
    XCTAssertEqual(metrics.cosineLowerBound, mean - 2 * (variance / 3).squareRoot(), accuracy: 1e-9)
  }

  /// One input row and an output of detections [N, 4]: one sample, compared whole; another
  /// number of detections is a sample with cosine 0, not an error.
  func testAnOutputThatIsNotBatchedIsOneSample() throws {
    var metrics = QualityMetrics()
    let reference = NDArray([Float(1), 0, 0, 0, 0, 1, 0, 0], shape: [2, 4])
    try metrics.add(output: NDArray([Float(1), 0, 0, 0, 0, 0, 0, 1], shape: [2, 4]), reference: reference, labels: nil, file: "f",
                    inputRows: 1)
    XCTAssertEqual(metrics.samples, 1)
    XCTAssertEqual(metrics.cosineSum, 0.5, accuracy: 1e-12)
    try metrics.add(output: NDArray([Float](repeating: 1, count: 12), shape: [3, 4]), reference: reference, labels: nil, file: "f",
                    inputRows: 1)
    XCTAssertEqual(metrics.samples, 2)
    XCTAssertEqual(metrics.cosineSum, 0.5, accuracy: 1e-12)
    // Without the input's row count (or with a batched output), each row is a sample, and sizes must agree.
    XCTAssertThrowsError(try metrics.add(output: NDArray([Float](repeating: 1, count: 12), shape: [3, 4]), reference: reference,
                                         labels: nil, file: "f"))
  }
}
