import IR
import Runtime
import Support
import XCTest

final class ExecutorTests: XCTestCase {
  func model(_ nodes: [Node], inputs: [ValueInfo], outputs: [String], initializers: [Tensor] = [], opset: Int64 = 13) -> Model {
    Model(irVersion: 8, opsetImports: [OpsetImport(domain: "", version: opset)],
          graph: Graph(name: "g", nodes: nodes, initializers: initializers, inputs: inputs,
                       outputs: outputs.map { ValueInfo(name: $0, type: nil) }))
  }

  func floats(_ v: [Float]) -> ByteBuffer { ByteBuffer(copying: v.withUnsafeBytes { Array($0) }) }

  func testMatMulReluWithBroadcastAdd() throws {
    let w = Tensor(name: "W", dataType: .float, dims: [2, 2], data: floats([1, -1, 2, 0.5]))
    let b = Tensor(name: "B", dataType: .float, dims: [2], data: floats([0.5, -10]))
    let m = model([Node(name: "mm", opType: "MatMul", inputs: ["x", "W"], outputs: ["h"]),
                   Node(name: "add", opType: "Add", inputs: ["h", "B"], outputs: ["a"]),
                   Node(name: "relu", opType: "Relu", inputs: ["a"], outputs: ["y"])],
                  inputs: [ValueInfo(name: "x", type: .tensor(.float, TensorShape([Dimension(.symbolic("n")), Dimension(.known(2))])))],
                  outputs: ["y"], initializers: [w, b])
    let executor = try Executor(model: m)
    let y = try executor.run(["x": NDArray([Float(1), 2, 3, 4], shape: [2, 2])])[0].value
    // [1,2]·W = [5, 0] → +B = [5.5, -10] → relu; [3,4]·W = [11, -1] → [11.5, -11] → relu
    XCTAssertEqual(y.shape, [2, 2])
    XCTAssertEqual(Array(y.elements(Float.self)), [5.5, 0, 11.5, 0])
    XCTAssertGreaterThan(executor.peakLiveBytes, 0)
  }

  func testInt64ShapeArithmeticIsExact() throws {
    let m = model([Node(opType: "Mul", inputs: ["a", "b"], outputs: ["y"])],
                  inputs: [ValueInfo(name: "a", type: nil), ValueInfo(name: "b", type: nil)], outputs: ["y"])
    let big = Int64(1) << 53 + 1
    let y = try Executor(model: m).run(["a": NDArray([big], shape: [1]), "b": NDArray([Int64(3)], shape: [1])])[0].value
    XCTAssertEqual(Array(y.elements(Int64.self)), [big * 3])
  }

  func testUnsupportedOperatorNamesTheNode() {
    let m = model([Node(name: "odd", opType: "FancyOp", domain: "com.example", inputs: ["x"], outputs: ["y"])],
                  inputs: [ValueInfo(name: "x", type: nil)], outputs: ["y"])
    XCTAssertThrowsError(try Executor(model: m)) { e in
      XCTAssertEqual(e as? CompressorError,
                     CompressorError.unsupported("operator com.example.FancyOp is not supported by the executor (node 'odd' (FancyOp))"))
    }
  }

  func testWrongInputShapeAndMissingInput() throws {
    let m = model([Node(opType: "Relu", inputs: ["x"], outputs: ["y"])],
                  inputs: [ValueInfo(name: "x", type: .tensor(.float, TensorShape([Dimension(.known(3))])))], outputs: ["y"])
    let e = try Executor(model: m)
    XCTAssertThrowsError(try e.run(["x": NDArray([Float(1), 2], shape: [2])])) { error in
      XCTAssertEqual((error as? CompressorError)?.message, "input 'x' has shape [2] but the model expects [3]")
    }
    XCTAssertThrowsError(try e.run([:])) { error in
      XCTAssertEqual((error as? CompressorError)?.message, "model input 'x' was not given (expected tensor(float) [3])")
    }
  }

  func testBatchNormIsFoldedIntoConvWithTheSameResult() throws {
    let w = Tensor(name: "W", dataType: .float, dims: [2, 1, 1, 1], data: floats([2, -1]))
    let params = ["s": [Float(1.5), 0.5], "b": [0.1, -0.2], "m": [0.3, 0.4], "v": [2, 0.25]].map {
      Tensor(name: $0.key, dataType: .float, dims: [2], data: floats($0.value))
    }.sorted { $0.name < $1.name }
    let nodes = [Node(name: "conv", opType: "Conv", inputs: ["x", "W"], outputs: ["c"]),
                 Node(name: "bn", opType: "BatchNormalization", inputs: ["c", "s", "b", "m", "v"], outputs: ["y"])]
    let m = model(nodes, inputs: [ValueInfo(name: "x", type: nil)], outputs: ["y"], initializers: [w] + params)
    let y = try Executor(model: m).run(["x": NDArray([Float(1), 2], shape: [1, 1, 1, 2])])[0].value
    let expected: [Float] = [1, 2].map { x in (2 * x - 0.3) * 1.5 / (2 + 1e-5).squareRoot() + 0.1 }
      + [1, 2].map { x in (-x - 0.4) * 0.5 / (0.25 + 1e-5).squareRoot() - 0.2 }
    for (a, b) in zip(Array(y.elements(Float.self)), expected) { XCTAssertEqual(a, b, accuracy: 1e-5) }
  }
}
