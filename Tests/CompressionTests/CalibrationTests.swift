import Datasets
import Foundation
import IR
import XCTest
@testable import Compression
import Runtime
import Support

final class StreamingHistogramTests: XCTestCase {
  func add(_ h: inout StreamingHistogram, _ values: [Float]) {
    values.withUnsafeBufferPointer { h.add($0) }
  }

  func testGrowsToCoverEverythingAndKeepsEveryCount() {
    var h = StreamingHistogram(keepsBins: true)
    add(&h, (1...1000).map { Float($0) / 1000 })          // (0, 1]
    add(&h, [25, -7.5])                                   // far outside, both sides
    XCTAssertEqual(h.counts.reduce(0, +), 1002)
    XCTAssertEqual(h.minimum, -7.5)
    XCTAssertEqual(h.maximum, 25)
    XCTAssertLessThanOrEqual(h.lo, -7.5)
    XCTAssertGreaterThan(h.lo + h.width * Float(StreamingHistogram.binCount), 25)
    XCTAssertEqual(h.counts.count, StreamingHistogram.binCount)
  }

  func testInfinitiesNaNsAndMaskValuesAreCountedApart() {
    var h = StreamingHistogram(keepsBins: true)
    add(&h, [1, -.infinity, .nan, -1e9, 2, -3.4e38, 999_999])
    XCTAssertEqual(h.total, 7)
    XCTAssertEqual(h.excluded, 4)
    XCTAssertEqual(h.minimum, 1)
    XCTAssertEqual(h.maximum, 999_999)
  }

  func testQuantilesAndClippedFractionOfUniformData() {
    var h = StreamingHistogram(keepsBins: true)
    let values = (0..<100_000).map { Float($0) / 50_000 - 1 }  // uniform [-1, 1)
    add(&h, Array(values[..<50_000].reversed()))
    add(&h, Array(values[50_000...]))
    XCTAssertEqual(h.quantile(0.01), -0.98, accuracy: 0.002)
    XCTAssertEqual(h.quantile(0.5), 0, accuracy: 0.002)
    XCTAssertEqual(h.fractionOutside(-0.5, 0.5), 0.5, accuracy: 0.002)
    XCTAssertEqual(h.fractionOutside(-1, 1), 0, accuracy: 1e-3)  // edge bins are interpolated
  }

  func testZerosAreNeverClippedAndCountInQuantiles() {
    var h = StreamingHistogram(keepsBins: true)
    add(&h, [Float](repeating: 0, count: 3000) + (1...1000).map { Float($0) / 1000 })
    XCTAssertEqual(h.zeros, 3000)
    XCTAssertEqual(h.quantile(0.5), 0, accuracy: 1e-3)
    XCTAssertEqual(h.quantile(0.875), 0.5, accuracy: 2e-3)
    XCTAssertEqual(h.fractionOutside(0, 0.5), 0.125, accuracy: 2e-3)
  }

  func testWithoutBinsOnlyExtremes() {
    var h = StreamingHistogram(keepsBins: false)
    add(&h, [3, -2, .infinity])
    XCTAssertEqual(h.counts, [])
    XCTAssertEqual(h.minimum, -2)
    XCTAssertEqual(h.maximum, 3)
    XCTAssertEqual(h.fractionOutside(0, 1), 0)
  }
}

final class CalibratorTests: XCTestCase {
  func histogram(_ values: [Float]) -> StreamingHistogram {
    var h = StreamingHistogram(keepsBins: true)
    values.withUnsafeBufferPointer { h.add($0) }
    return h
  }

  func testMethodsParse() {
    XCTAssertEqual(CalibrationMethod(argument: "minmax"), .minmax)
    XCTAssertEqual(CalibrationMethod(argument: "percentile"), .percentile(99.99))
    XCTAssertEqual(CalibrationMethod(argument: "percentile:99.9"), .percentile(99.9))
    XCTAssertEqual(CalibrationMethod(argument: "entropy"), .entropy)
    XCTAssertEqual(CalibrationMethod(argument: "mse"), .mse)
    XCTAssertEqual(CalibrationMethod(argument: "auto"), .auto)
    for bad in ["percentile:40", "percentile:x", "percentile:101", "minmax:3", "kl", ""] {
      XCTAssertNil(CalibrationMethod(argument: bad), bad)
    }
  }

  func testRangesAlwaysHoldZero() {
    let positive = histogram((1...100).map { Float($0) })
    let r = Calibrator(method: .minmax).choose(positive, otherType: nil)
    XCTAssertEqual(r.lo, 0)
    XCTAssertEqual(r.hi, 100)
    let constant = Calibrator(method: .minmax).choose(histogram([Float](repeating: -2.5, count: 10)), otherType: nil)
    XCTAssertEqual(constant.lo, -2.5)
    XCTAssertEqual(constant.hi, 0)
    let empty = Calibrator(method: .entropy).choose(histogram([.nan]), otherType: nil)
    XCTAssertEqual([empty.lo, empty.hi, Float(empty.excluded)], [0, 0, 1])
  }

  func testHistogramMethodsClipOutliersThatMinmaxKeeps() {
    // A triangular bulk on [-1, 1] (the sum of two uniforms) and two outliers at 50.
    let n = 200
    var values = [Float]()
    for i in 0..<n { for j in 0..<n { values.append((Float(i) + Float(j) + 1) / Float(n) - 1) } }
    values += [50, 50]
    let h = histogram(values)
    XCTAssertEqual(Calibrator(method: .minmax).choose(h, otherType: nil).hi, 50)
    for method in [CalibrationMethod.percentile(99.9), .entropy] {
      let r = Calibrator(method: method).choose(h, otherType: nil)
      XCTAssertLessThan(r.hi, 2, "\(method)")
      XCTAssertGreaterThan(r.hi, 0.5, "\(method)")
      XCTAssertLessThan(r.clippedFraction, 0.01, "\(method)")
      XCTAssertLessThan(r.lo, -0.5, "\(method)")
    }
    // MSE weighs two values 49 away against 40,000 rounding errors: it keeps them here, and
    // whatever it picks scores no worse than the full range.
    let mse = Calibrator(method: .mse).choose(h, otherType: nil)
    XCTAssertLessThanOrEqual(h.quantizationError(mse.lo, mse.hi, levels: 255), h.quantizationError(-1, 50, levels: 255))
  }

  /// Two inputs with the same outlier column: the first one's MatMul reads that column (clipping it
  /// would change every output), the second one's ignores it (clipping buys the other columns
  /// resolution). `auto` keeps the first range whole and clips the second, and each choice is the
  /// candidate with the least error at the MatMul's output.
  func testAutoJudgesRangesWhereTheyLand() throws {
    let rows = 1024, cols = 8
    var x = [Float]()
    for r in 0..<rows { for c in 0..<cols { x.append(c == 0 ? Float(r) * 40 / Float(rows - 1) : Float((r * 7 + c * 3) % 21) / 10 - 1) } }
    var x2 = x
    for r in 0..<rows where r != rows - 1 { x2[r * cols] = 0 }  // one outlier, in column 0
    let uses: [Float] = (0..<cols * 4).map { $0 / 4 == 0 ? 1 : 0.01 }   // row 0 of the weight matters
    let ignores: [Float] = (0..<cols * 4).map { $0 / 4 == 0 ? 0 : 0.5 }  // row 0 is zero
    func weight(_ name: String, _ v: [Float]) -> Tensor {
      Tensor(name: name, dataType: .float, dims: [Int64(cols), 4], data: ByteBuffer(copying: v.withUnsafeBytes { Array($0) }))
    }
    func input(_ name: String) -> ValueInfo {
      ValueInfo(name: name, type: TypeInfo(.tensor(elementType: .float, shape: TensorShape([Dimension(.symbolic("n")), Dimension(.known(Int64(cols)))]))))
    }
    let g = Graph(name: "g", nodes: [
      Node(name: "a", opType: "MatMul", inputs: ["x1", "w1"], outputs: ["y1"]),
      Node(name: "b", opType: "MatMul", inputs: ["x2", "w2"], outputs: ["y2"]),
    ], initializers: [weight("w1", uses), weight("w2", ignores)], inputs: [input("x1"), input("x2")],
       outputs: [ValueInfo(name: "y1", type: nil), ValueInfo(name: "y2", type: nil)])
    let model = Model(irVersion: 8, opsetImports: [OpsetImport(domain: "", version: 13)], graph: g)
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("auto-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let bytes = try NPZ.encode([("x1", NDArray(x, shape: [rows, cols])), ("x2", NDArray(x2, shape: [rows, cols]))])
    FileManager.default.createFile(atPath: dir + "/x.npz", contents: Data(bytes))
    let calibrator = Calibrator(method: .auto, chunkRows: rows)
    let (ranges, samples) = try calibrator.run(model: model, tensors: ["x1", "x2"], data: try Dataset(path: dir + "/x.npz", inputNames: ["x1", "x2"]))
    XCTAssertEqual(samples, rows)
    for name in ["x1", "x2"] {
      let r = try XCTUnwrap(ranges[name])
      XCTAssertEqual(r.errors.map(\.method), Calibrator.autoCandidates, name)
      let best = try XCTUnwrap(r.errors.min { $0.error < $1.error })
      XCTAssertEqual(r.chosen, best.method, name)
    }
    XCTAssertGreaterThan(try XCTUnwrap(ranges["x1"]?.hi), 35, "the column the MatMul reads keeps its range")
    XCTAssertLessThan(try XCTUnwrap(ranges["x2"]?.hi), 2, "the column it ignores is clipped")
  }
}
