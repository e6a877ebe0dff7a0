import Datasets
import Foundation
import IR
import XCTest
@testable import Compression
import Runtime
import Support

/// Cross-layer equalization keeps the float function and evens the channel ranges; bias
/// correction takes exactly ε·E[x] off the bias, in every weight layout.
final class EqualizationTests: XCTestCase {
  /// x[1, 4, 6, 6] → Conv A (8 channels, ranges 2^(i-4)) → Relu → depthwise Conv → LeakyRelu →
  /// 1×1 Conv → HardSwish → 1×1 Conv: two equalizable pairs and one chain end.
  func chain() -> Model {
    func values(_ n: Int, seed: Int) -> [Float] { (0..<n).map { Float(((($0 + seed) * 7919) % 211) - 105) / 105 } }
    var a = values(8 * 4 * 9, seed: 1)
    for i in a.indices { a[i] *= Float(pow(2.0, Double(i / 36) - 4)) }
    let x = ValueInfo(name: "x", type: TypeInfo(.tensor(elementType: .float, shape: TensorShape([1, 4, 6, 6].map { Dimension(.known($0)) }))))
    let y = ValueInfo(name: "y", type: TypeInfo(.tensor(elementType: .float, shape: nil)))
    let g = Graph(name: "g", nodes: [
      Node(name: "a", opType: "Conv", inputs: ["x", "wa", "ba"], outputs: ["ha"], attributes: [Attribute(name: "pads", value: .ints([1, 1, 1, 1]))]),
      Node(name: "relu", opType: "Relu", inputs: ["ha"], outputs: ["ra"]),
      Node(name: "dw", opType: "Conv", inputs: ["ra", "wd", "bd"], outputs: ["hd"],
           attributes: [Attribute(name: "group", value: .int(8)), Attribute(name: "pads", value: .ints([1, 1, 1, 1]))]),
      Node(name: "leaky", opType: "LeakyRelu", inputs: ["hd"], outputs: ["rd"]),
      Node(name: "pw", opType: "Conv", inputs: ["rd", "wp", "bp"], outputs: ["hp"]),
      Node(name: "hswish", opType: "HardSwish", inputs: ["hp"], outputs: ["sp"]),
      Node(name: "last", opType: "Conv", inputs: ["sp", "wl"], outputs: ["y"]),
    ], initializers: [
      floatTensor("wa", [8, 4, 3, 3], a), floatTensor("ba", [8], values(8, seed: 3)),
      floatTensor("wd", [8, 1, 3, 3], values(72, seed: 5)), floatTensor("bd", [8], values(8, seed: 7)),
      floatTensor("wp", [6, 8, 1, 1], values(48, seed: 11)), floatTensor("bp", [6], values(6, seed: 13)),
      floatTensor("wl", [2, 6, 1, 1], values(12, seed: 17)),
    ], inputs: [x], outputs: [y])
    return Model(irVersion: 8, opsetImports: [OpsetImport(domain: "", version: 14)], graph: g)
  }

  func testEqualizationKeepsTheFunctionAndEvensTheRanges() throws {
    var m = chain()
    let input = NDArray((0..<144).map { Float(($0 * 37) % 101) / 50 - 1 }, shape: [1, 4, 6, 6])
    let want = try Executor(model: m).run(["x": input])[0].value.floats()
    let r = try EqualizeCrossLayer().run(&m, PassContext())
    try validate(m, file: "test")
    let pairs = r.changes.filter { $0.action == "equalized" }
    XCTAssertEqual(pairs.map(\.target), ["dw", "pw"])
    XCTAssertTrue(pairs[0].detail.hasPrefix("a → Relu → dw over 8 channels"), pairs[0].detail)
    // A's channels spanned 2^7 before; after, A and the depthwise share each channel's range.
    XCTAssertEqual(pairs[0].values?["spreadBeforeA"] ?? 0, 128, accuracy: 40)
    XCTAssertLessThan(pairs[0].values?["spreadAfterA"] ?? .infinity, 8)
    // HardSwish does not commute with a scale: the last Conv is left alone.
    XCTAssertEqual(try floats(m.graph.initializers.first { $0.name == "wl" }!), try floats(chain().graph.initializers[6]))
    let got = try Executor(model: m).run(["x": input])[0].value.floats()
    let scale = want.map(abs).max() ?? 1
    for (a, b) in zip(want, got) { XCTAssertEqual(a, b, accuracy: 1e-5 * scale) }
  }

  func testChainsStopAtSharedValuesAndWeights() throws {
    var m = chain()
    // ra is also a graph output: scaling it would change what the model returns.
    m.graph.outputs.append(ValueInfo(name: "ra", type: TypeInfo(.tensor(elementType: .float, shape: nil))))
    let r = try EqualizeCrossLayer().run(&m, PassContext())
    XCTAssertEqual(r.changes.filter { $0.action == "equalized" }.map(\.target), ["pw"])
  }

  func testBiasCorrectionTakesOffTheRoundingShift() throws {
    // Gemm with transB (W[out, in]) and alpha/beta: C' = C − alpha/beta · (Wq − W)·E[x].
    let w: [Float] = [0.5, -0.25, 0.125, 1, 0.3, -0.7]  // 2 outputs × 3 inputs
    let rounded: [Float] = [0.51, -0.25, 0.12, 1, 0.29, -0.71]
    let means: [Double] = [1, 2, -1]
    let gemm = Node(name: "g", opType: "Gemm", inputs: ["x", "W", "C"], outputs: ["y"],
                    attributes: [Attribute(name: "transB", value: .int(1)), Attribute(name: "alpha", value: .float(2)),
                                 Attribute(name: "beta", value: .float(4))])
    let c = try XCTUnwrap(BiasCorrection.correct(gemm, weight: floatTensor("W", [2, 3], w), rounded: rounded, means: means,
                                                 bias: (floatTensor("C", [2], [1, -1]), 0.5)))
    let shift0 = 0.01 * 1 + 0 * 2 + -0.005 * -1, shift1 = 0.0 * 1 + -0.01 * 2 + -0.01 * -1
    XCTAssertEqual(try floats(c.bias)[0], Float(1 - 0.5 * shift0), accuracy: 1e-6)
    XCTAssertEqual(try floats(c.bias)[1], Float(-1 - 0.5 * shift1), accuracy: 1e-6)
    XCTAssertEqual(c.largestShift, 0.015, accuracy: 1e-6)

    // Depthwise Conv: output channel o reads input channel o only, over its whole kernel.
    let conv = Node(name: "dw", opType: "Conv", inputs: ["x", "W", "B"], outputs: ["y"], attributes: [Attribute(name: "group", value: .int(2))])
    let wc: [Float] = [1, 1, 1, 1, 2, 2, 2, 2]
    let rc: [Float] = [1.1, 1, 1, 1, 2, 2, 1.9, 1.9]
    let d = try XCTUnwrap(BiasCorrection.correct(conv, weight: floatTensor("W", [2, 1, 2, 2], wc), rounded: rc, means: [3, -2],
                                                 bias: (floatTensor("B", [2], [0, 0]), 1)))
    XCTAssertEqual(try floats(d.bias)[0], -0.3, accuracy: 1e-6)
    XCTAssertEqual(try floats(d.bias)[1], -0.4, accuracy: 1e-6)
    // Means that do not match the input channels: nothing is corrected.
    XCTAssertNil(try BiasCorrection.correct(conv, weight: floatTensor("W", [2, 1, 2, 2], wc), rounded: rc, means: [3],
                                            bias: (floatTensor("B", [2], [0, 0]), 1)))
  }

  func testCalibrationMeasuresChannelMeans() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("means-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    // 20 samples of [3, 2, 2]: channel c holds c + (sample index mod 5) everywhere.
    let values = (0..<240).map { (i: Int) -> Float in
      let sample: Int = i / 12, channel: Int = (i / 4) % 3
      return Float(sample % 5 + channel)
    }
    FileManager.default.createFile(atPath: dir + "/x.npy", contents: Data(try NPY.encode(NDArray(values, shape: [20, 3, 2, 2]))))
    var m = chain()
    m.graph.inputs[0].type = TypeInfo(.tensor(elementType: .float, shape: TensorShape([Dimension(.symbolic("n")), Dimension(.known(3)),
                                                                                       Dimension(.known(2)), Dimension(.known(2))])))
    m.graph.nodes = [Node(name: "r", opType: "Relu", inputs: ["x"], outputs: ["y"])]
    m.graph.initializers = []
    var calibrator = Calibrator(method: .minmax, chunkRows: 8)
    calibrator.channelAxes = ["x": 1, "y": -3]
    let (ranges, samples) = try calibrator.run(model: m, tensors: ["x", "y"], data: try Dataset(path: dir + "/x.npy", inputNames: ["x"]))
    XCTAssertEqual(samples, 20)
    for name in ["x", "y"] {
      let means = try XCTUnwrap(ranges[name]?.channelMeans)
      XCTAssertEqual(means.count, 3)
      for (c, v) in means.enumerated() { XCTAssertEqual(v, Double(c) + 2, accuracy: 1e-9) }
    }
  }
}

/// SmoothQuant keeps the float function, folds 1/s into a LayerNorm whose only readers are the
/// MatMuls, and inserts a Mul where the LayerNorm has another reader.
final class SmoothingTests: XCTestCase {
  /// x[n, 4, 8] → LayerNorm (channel 3 scaled ×40: an outlier channel) → q, k MatMuls (→ y1, y2)
  /// and, with `residual`, an Add of the LayerNorm output to x (→ y3).
  func model(residual: Bool) -> Model {
    func values(_ n: Int, seed: Int) -> [Float] { (0..<n).map { Float(((($0 + seed) * 7919) % 211) - 105) / 105 } }
    var gamma = [Float](repeating: 1, count: 8)
    gamma[3] = 40
    let shape = TensorShape([Dimension(.symbolic("n")), Dimension(.known(4)), Dimension(.known(8))])
    let x = ValueInfo(name: "x", type: TypeInfo(.tensor(elementType: .float, shape: shape)))
    var nodes = [
      Node(name: "ln", opType: "LayerNormalization", inputs: ["x", "gamma", "beta"], outputs: ["h"]),
      Node(name: "q", opType: "MatMul", inputs: ["h", "wq"], outputs: ["y1"]),
      Node(name: "k", opType: "MatMul", inputs: ["h", "wk"], outputs: ["y2"]),
    ]
    var outputs = ["y1", "y2"]
    if residual {
      nodes.append(Node(name: "res", opType: "Add", inputs: ["h", "x"], outputs: ["y3"]))
      outputs.append("y3")
    }
    let g = Graph(name: "g", nodes: nodes, initializers: [
      floatTensor("gamma", [8], gamma), floatTensor("beta", [8], values(8, seed: 2)),
      floatTensor("wq", [8, 6], values(48, seed: 3)), floatTensor("wk", [8, 6], values(48, seed: 5)),
    ], inputs: [x], outputs: outputs.map { ValueInfo(name: $0, type: TypeInfo(.tensor(elementType: .float, shape: nil))) })
    return Model(irVersion: 8, opsetImports: [OpsetImport(domain: "", version: 17)], graph: g)
  }

  func check(residual: Bool) throws -> PassResult {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("smooth-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let samples: [Float] = (0..<512).map { (i: Int) -> Float in Float((i * 37) % 101) / 50 - 1 }
    let input = NDArray(samples, shape: [16, 4, 8])
    FileManager.default.createFile(atPath: dir + "/x.npy", contents: Data(try NPY.encode(input)))
    var m = model(residual: residual)
    let want = try Executor(model: m).run(["x": input]).map { try $0.value.floats() }
    let r = try SmoothActivations(alpha: 0.5, calibrator: Calibrator(method: .minmax), data: dir + "/x.npy").run(&m, PassContext())
    try validate(m, file: "test")
    let got = try Executor(model: m).run(["x": input]).map { try $0.value.floats() }
    for (w, g) in zip(want, got) {
      let scale = w.map(abs).max() ?? 1
      for (a, b) in zip(w, g) { XCTAssertEqual(a, b, accuracy: 1e-5 * scale) }
    }
    let smoothed = try XCTUnwrap(r.changes.first { $0.action == "smoothed" })
    XCTAssertEqual(smoothed.target, "h")
    // α 0.5 takes the square root of the outlier's lead (the weights' ranges are alike).
    XCTAssertGreaterThan(smoothed.values?["spreadBefore"] ?? 0, 20)
    XCTAssertLessThan(smoothed.values?["spreadAfter"] ?? .infinity, 10)
    return r
  }

  func testFoldsIntoTheLayerNorm() throws {
    let r = try check(residual: false)
    XCTAssertTrue(r.changes[0].detail.contains("for q, k (folded into ln)"), r.changes[0].detail)
  }

  func testInsertsAMulWhereTheLayerNormHasOtherReaders() throws {
    let r = try check(residual: true)
    XCTAssertTrue(r.changes[0].detail.contains("for q, k (a Mul by 1/s before them)"), r.changes[0].detail)
  }
}
