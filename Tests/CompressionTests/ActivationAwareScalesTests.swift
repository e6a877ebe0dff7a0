import Datasets
import Foundation
import IR
import XCTest
@testable import Compression
import Runtime
import Support

/// AWQ: on a layer whose input has one outlier channel, scaled int4 rounding moves the output
/// less than plain round-to-nearest, and the scales folded into the LayerNorm keep the float
/// function.
final class ActivationAwareScalesTests: XCTestCase {
  /// Deterministic values in [−1, 1].
  func values(_ n: Int, seed: Int) -> [Float] { (0..<n).map { Float(((($0 + seed) * 7919) % 211) - 105) / 105 } }

  /// x[n, 4, 64] → LayerNorm (γ of channel 5 ×30: an outlier channel) → q, k MatMuls [64, 48].
  func model() -> Model {
    var gamma = [Float](repeating: 1, count: 64)
    gamma[5] = 30
    let shape = TensorShape([Dimension(.symbolic("n")), Dimension(.known(4)), Dimension(.known(64))])
    let g = Graph(name: "g", nodes: [
      Node(name: "ln", opType: "LayerNormalization", inputs: ["x", "gamma", "beta"], outputs: ["h"]),
      Node(name: "q", opType: "MatMul", inputs: ["h", "wq"], outputs: ["y1"]),
      Node(name: "k", opType: "MatMul", inputs: ["h", "wk"], outputs: ["y2"]),
    ], initializers: [
      floatTensor("gamma", [64], gamma), floatTensor("beta", [64], values(64, seed: 2).map { $0 * 0.1 }),
      floatTensor("wq", [64, 48], values(64 * 48, seed: 3)), floatTensor("wk", [64, 48], values(64 * 48, seed: 5)),
    ], inputs: [ValueInfo(name: "x", type: TypeInfo(.tensor(elementType: .float, shape: shape)))],
       outputs: ["y1", "y2"].map { ValueInfo(name: $0, type: TypeInfo(.tensor(elementType: .float, shape: nil))) })
    return Model(irVersion: 8, opsetImports: [OpsetImport(domain: "", version: 17)], graph: g)
  }

  let input = NDArray((0..<(16 * 4 * 64)).map { (i: Int) -> Float in Float((i * 37) % 101) / 50 - 1 }, shape: [16, 4, 64])

  /// The model's outputs on `input` by name.
  func outputs(_ m: Model) throws -> [String: [Float]] {
    var byName = [String: [Float]]()
    for (name, value) in try Executor(model: m).run(["x": input]) { byName[name] = try value.floats() }
    return byName
  }

  /// H = XᵀX of the LayerNorm's output on `input`, and its rows.
  func hessian() throws -> (h: [Double], rows: Int) {
    var m = model()
    m.graph.outputs.append(ValueInfo(name: "h", type: TypeInfo(.tensor(elementType: .float, shape: nil))))
    let x = try XCTUnwrap(try outputs(m)["h"]).map(Double.init)
    let rows = x.count / 64
    var h = [Double](repeating: 0, count: 64 * 64)
    for r in 0..<rows {
      for i in 0..<64 {
        let xi = x[r * 64 + i]
        for j in 0..<64 { h[i * 64 + j] += xi * x[r * 64 + j] }
      }
    }
    return (h, rows)
  }

  func testScalesBeatRoundToNearestOnAnOutlierChannel() throws {
    let (h, rows) = try hessian()
    let initializers = model().graph.initializersByName
    let weights = try ["wq", "wk"].map { name -> ActivationAwareScales.Weight in
      .init(values: try NDArray(try XCTUnwrap(initializers[name])).floats(), n: 48)
    }
    let choice = try XCTUnwrap(ActivationAwareScales.search(weights, hessian: h, rows: rows, k: 64, blockSize: 32))
    // Σ‖X(W − Ŵ)‖² / Σ‖XW‖²: the two outputs side by side.
    let total = choice.weightEnergy.reduce(0, +)
    let (rtn, awq) = (choice.rtnEnergy.reduce(0, +) / total, choice.scaledEnergy.reduce(0, +) / total)
    XCTAssertGreaterThan(choice.alpha, 0)
    XCTAssertLessThan(awq, 0.9 * rtn, "AWQ \(awq), round-to-nearest \(rtn)")
    // The outlier channel gets the largest scale; the scales straddle 1.
    XCTAssertEqual(choice.scales.indices.max { choice.scales[$0] < choice.scales[$1] }, 5)
    let (lo, hi) = (Double(choice.scales.min() ?? 0), Double(choice.scales.max() ?? 0))
    XCTAssertEqual(lo * hi, 1, accuracy: 1e-4)
    // The energies are the outputs' on the data: ‖X(W − Ŵ)‖² / ‖XW‖² as the layer computes it.
    let rtnWeight = choice.rtn[0].values(k: 64, n: 48, blockSize: 32)
    XCTAssertEqual(choice.rtnEnergy[0] / choice.weightEnergy[0],
                   Int4Blocks.outputError(weights[0].values, rtnWeight, hessian: h, k: 64, n: 48), accuracy: 1e-12)
  }

  func testFoldedScalesKeepTheFloatFunction() throws {
    var m = model()
    let want = try outputs(m)
    let (h, rows) = try hessian()
    let group = try XCTUnwrap(ActivationScaling.groups(in: m.graph).first)
    XCTAssertTrue(group.exclusive)
    let weights = try ActivationScaling.weights(of: group, in: m.graph)
    let choice = try XCTUnwrap(ActivationAwareScales.search(weights.map { .init(values: $0.values, n: 48) },
                                                            hessian: h, rows: rows, k: 64, blockSize: 32))
    var scaling = ActivationScaling(m.graph)
    var names = NameScope(m)
    XCTAssertEqual(scaling.scale(group, weights: weights, by: choice.scales, names: &names, naming: ("awq", "awq_scaled")), .folded(into: "ln"))
    scaling.apply(to: &m)
    try validate(m, file: "test")
    XCTAssertEqual(m.graph.nodes.map(\.opType), ["LayerNormalization", "MatMul", "MatMul"])
    let gamma = try NDArray(try XCTUnwrap(m.graph.initializersByName["gamma"])).floats()
    XCTAssertEqual(gamma[5], 30 / choice.scales[5], accuracy: 1e-4)
    let got = try outputs(m)
    for name in ["y1", "y2"] {
      let (w, g) = (try XCTUnwrap(want[name]), try XCTUnwrap(got[name]))
      let scale = w.map(abs).max() ?? 1
      for (a, b) in zip(w, g) { XCTAssertEqual(a, b, accuracy: 1e-5 * scale) }
    }
  }

  /// The pass: the scales go into the LayerNorm, the report has both errors, and the int4 model
  /// is closer to the float one than round-to-nearest's.
  func testPassFoldsTheScalesAndBeatsRoundToNearest() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("awq-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    FileManager.default.createFile(atPath: dir + "/x.npy", contents: Data(try NPY.encode(input)))
    let calibration = QuantizeWeights4Bit.Calibration(data: dir + "/x.npy", maxSamples: nil, threads: 1)
    let float = try outputs(model())
    func error(awq: Bool) throws -> (Double, PassResult) {
      var m = model()
      let r = try QuantizeWeights4Bit(blockSize: 32, format: .matmulnbits, calibration: calibration, awq: awq).run(&m, PassContext())
      try validate(m, file: "test")
      let got = try outputs(m)
      var (num, den) = (0.0, 0.0)
      for name in ["y1", "y2"] {
        for (a, b) in zip(try XCTUnwrap(float[name]), try XCTUnwrap(got[name])) { num += Double((a - b) * (a - b)); den += Double(a * a) }
      }
      return (num / den, r)
    }
    let (rtn, _) = try error(awq: false)
    let (awq, r) = try error(awq: true)
    XCTAssertLessThan(awq, 0.9 * rtn)
    let row = try XCTUnwrap(r.changes.first { $0.action == "awq" })
    XCTAssertEqual(row.target, "h")
    XCTAssertTrue(row.detail.contains("scales applied (folded into ln)"), row.detail)
    let v = try XCTUnwrap(row.values)
    XCTAssertEqual(v["applied"], 1)
    XCTAssertEqual(v["folded"], 1)
    // The report's errors are this run's on the same data.
    XCTAssertEqual(try XCTUnwrap(v["outputErrorRTN"]), rtn, accuracy: 0.02 * rtn)
    XCTAssertEqual(try XCTUnwrap(v["outputErrorAWQ"]), awq, accuracy: 0.02 * awq)
    let total = try XCTUnwrap(r.changes.first { $0.action == "awq-total" }?.values)
    XCTAssertEqual(total["activationsScaled"], 1)
    XCTAssertLessThan(try XCTUnwrap(total["meanOutputErrorAWQ"]), try XCTUnwrap(total["meanOutputErrorRTN"]))
  }
}
