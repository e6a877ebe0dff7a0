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
    calibrator.meanAxes = ["x": 1, "y": -3]
    let (ranges, samples) = try calibrator.run(model: m, tensors: ["x", "y"], data: try Dataset(path: dir + "/x.npy", inputNames: ["x"]))
    XCTAssertEqual(samples, 20)
    for name in ["x", "y"] {
      let means = try XCTUnwrap(ranges[name]?.channelMeans)
      XCTAssertEqual(means.count, 3)
      for (c, v) in means.enumerated() { XCTAssertEqual(v, Double(c) + 2, accuracy: 1e-9) }
    }
  }
}
