import XCTest
@testable import Compression
import Datasets
import IR
import Runtime
import Support

func floatTensor(_ name: String, _ dims: [Int64], _ values: [Float]) -> Tensor {
  Tensor(name: name, dataType: .float, dims: dims, data: ByteBuffer(copying: values.withUnsafeBytes { Array($0) }))
}

func floats(_ t: Tensor) throws -> [Float] { try NDArray(t).floats() }

final class QuantizedWeightTests: XCTestCase {
  func testSymmetricPerChannelValues() throws {
    // Two output channels along axis 1 of a [2, 2] MatMul weight; the second is all zero.
    let w = floatTensor("W", [2, 2], [1.27, 0, -0.635, 0])
    let q = try QuantizedWeight(w, axis: 1, symmetric: true, names: ("q", "s", "z"))
    XCTAssertEqual(q.values.dataType, .int8)
    XCTAssertEqual(Array(q.values.data.bytes).map { Int8(bitPattern: $0) }, [127, 0, -64, 0])
    XCTAssertEqual(q.scales[0], 0.01, accuracy: 1e-7)
    XCTAssertEqual(q.scales[1], 1)
    XCTAssertEqual(q.zeroChannels, 1)
    XCTAssertNil(q.zeroPoint)
    XCTAssertEqual(q.dequantize(output: "W", nodeName: "dq").attribute("axis")?.int, 1)
  }

  func testAsymmetricUsesTheWholeByte() throws {
    let w = floatTensor("W", [4], [0.5, 1, 1.5, 2.55])
    let q = try QuantizedWeight(w, axis: nil, symmetric: false, names: ("q", "s", "z"))
    XCTAssertEqual(q.values.dataType, .uint8)
    XCTAssertEqual(q.scales, [0.01])
    XCTAssertEqual(q.zeroPoints, [0])  // the range is widened to hold 0
    XCTAssertEqual(Array(q.values.data.bytes), [50, 100, 150, 255])
    XCTAssertEqual(q.zeroPoint?.dims, [])
  }

  func testNonFiniteWeightIsRefusedByName() {
    let w = floatTensor("W", [3], [1, .infinity, 2])
    XCTAssertThrowsError(try QuantizedWeight(w, axis: nil, symmetric: true, names: ("q", "s", "z"))) { e in
      XCTAssertEqual(e as? CompressorError, .invalid("weight 'W' holds inf at element 1; compressor will not quantize it"))
    }
  }

  func testNodeFilter() {
    let n = Node(name: "encoder.layer.3.attn", opType: "MatMul", inputs: [], outputs: [])
    XCTAssertNil(NodeFilter().refusal(n))
    XCTAssertNil(NodeFilter(include: ["encoder.layer.?.*"]).refusal(n))
    XCTAssertEqual(NodeFilter(include: ["Conv"]).refusal(n), "not matched by --include")
    XCTAssertEqual(NodeFilter(include: ["MatMul"], exclude: ["*.attn"]).refusal(n), "excluded by --exclude '*.attn'")
    XCTAssertEqual(NodeFilter(exclude: ["MatMul"]).refusal(n), "excluded by --exclude 'MatMul'")
  }
}

final class QuantizePassTests: XCTestCase {
  /// y = Relu(x · Wᵀ + b) through a Transpose of the weight (folded) and a Gemm.
  func model() -> Model {
    let w: [Float] = (0..<32).map { i -> Float in Float(i % 7) / 7 - 0.4 }
    let w2: [Float] = (0..<16).map { i -> Float in Float(i) / 16 - 0.5 }
    let shape = TensorShape([Dimension(.symbolic("n")), Dimension(.known(8))])
    let x = ValueInfo(name: "x", type: TypeInfo(.tensor(elementType: .float, shape: shape)))
    let y = ValueInfo(name: "y", type: TypeInfo(.tensor(elementType: .float, shape: nil)))
    let g = Graph(name: "g", nodes: [
      Node(name: "t", opType: "Transpose", inputs: ["Wt"], outputs: ["W"], attributes: [Attribute(name: "perm", value: .ints([1, 0]))]),
      Node(name: "mm", opType: "MatMul", inputs: ["x", "W"], outputs: ["h"]),
      Node(name: "relu", opType: "Relu", inputs: ["h"], outputs: ["r"]),
      Node(name: "out", opType: "MatMul", inputs: ["r", "W2"], outputs: ["y"]),
    ], initializers: [floatTensor("Wt", [4, 8], w), floatTensor("W2", [4, 4], w2)], inputs: [x], outputs: [y])
    return Model(irVersion: 8, opsetImports: [OpsetImport(domain: "", version: 13)], graph: g)
  }

  func testFoldConstantsStoresTheTransposedWeight() throws {
    var m = model()
    let r = try FoldConstants().run(&m, PassContext())
    XCTAssertEqual(r.changes.map(\.action), ["folded"])
    XCTAssertEqual(m.graph.nodes.map(\.opType), ["MatMul", "Relu", "MatMul"])
    let w = try XCTUnwrap(m.graph.initializers.first { $0.name == "W" })
    XCTAssertEqual(w.dims, [8, 4])
    let wt = try floats(model().graph.initializers[0])
    XCTAssertEqual(try floats(w)[1 * 4 + 2], wt[2 * 8 + 1])
  }

  func testStaticQDQMatchesTheFloatModel() throws {
    var m = model()
    _ = try FoldConstants().run(&m, PassContext())
    let float = m
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("calib-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let samples: [Float] = (0..<64 * 8).map { i -> Float in Float((i * 37) % 101) / 50 - 1 }
    let x = NDArray(samples, shape: [64, 8])
    FileManager.default.createFile(atPath: dir + "/x.npy", contents: Data(try NPY.encode(x)))
    let pass = QuantizeStatic(calibrator: Calibrator(method: .minmax), data: dir + "/x.npy")
    let r = try pass.run(&m, PassContext())
    try validate(m, file: "test")
    XCTAssertEqual(r.changes.filter { $0.action == "quantized" }.map(\.target), ["mm", "out"])
    XCTAssertEqual(Set(r.changes.filter { $0.action == "calibrated" }.map(\.target)), ["x", "r"])
    // h is not quantized: the Relu's output carries the pair, with zero point 0.
    let zp = try XCTUnwrap(m.graph.initializers.first { $0.name == "r.zero_point" })
    XCTAssertEqual(Array(zp.data.bytes), [0])
    let want = try Executor(model: float).run(["x": x])[0].value.floats()
    let got = try Executor(model: m).run(["x": x])[0].value.floats()
    let scale = want.map(abs).max() ?? 1
    for (a, b) in zip(want, got) { XCTAssertEqual(a, b, accuracy: 0.03 * scale) }
  }
}
