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

  /// An If branch folds what it computes from constants (its own Constant, the main graph's
  /// initializer, the enclosing branch's constant) once, but never a value computed from an input
  /// (the main graph's `v`, the enclosing branch's `u`): three runs of one executor with different
  /// inputs and conditions give each run's own answer.
  func testSubgraphsFoldConstantsButNotComputedValues() throws {
    func constant(_ name: String, _ v: [Float]) -> Node {
      Node(opType: "Constant", inputs: [], outputs: [name],
           attributes: [Attribute(name: "value", value: .tensor(Tensor(name: name, dataType: .float, dims: [Int64(v.count)], data: floats(v))))])
    }
    let w = Tensor(name: "W", dataType: .float, dims: [2], data: floats([10, 20]))
    // inner (inside the then branch): (c + W) + u, where c is the then branch's constant.
    let inner = Graph(name: "inner", nodes: [Node(opType: "Add", inputs: ["c", "W"], outputs: ["cw"]),
                                             Node(opType: "Add", inputs: ["cw", "u"], outputs: ["r"])],
                      outputs: [ValueInfo(name: "r", type: nil)])
    let innerElse = Graph(name: "innerElse", nodes: [Node(opType: "Neg", inputs: ["c"], outputs: ["r2"])],
                          outputs: [ValueInfo(name: "r2", type: nil)])
    let then = Graph(name: "then", nodes: [
      constant("c", [1, 2]),
      Node(opType: "Mul", inputs: ["c", "c"], outputs: ["cc"]),
      Node(opType: "Add", inputs: ["cc", "v"], outputs: ["u"]),
      Node(opType: "If", inputs: ["cond"], outputs: ["t"],
           attributes: [Attribute(name: "then_branch", value: .graph(inner)), Attribute(name: "else_branch", value: .graph(innerElse))]),
    ], outputs: [ValueInfo(name: "t", type: nil)])
    let otherwise = Graph(name: "else", nodes: [Node(opType: "Sub", inputs: ["v", "W"], outputs: ["e"])],
                          outputs: [ValueInfo(name: "e", type: nil)])
    let m = model([Node(opType: "Mul", inputs: ["x", "x"], outputs: ["v"]),
                   Node(opType: "If", inputs: ["cond"], outputs: ["y"],
                        attributes: [Attribute(name: "then_branch", value: .graph(then)), Attribute(name: "else_branch", value: .graph(otherwise))])],
                  inputs: [ValueInfo(name: "x", type: nil), ValueInfo(name: "cond", type: nil)], outputs: ["y"], initializers: [w])
    let executor = try Executor(model: m)
    func run(_ x: [Float], _ cond: Bool) throws -> [Float] {
      let flag = try NDArray(Tensor(name: "cond", dataType: .bool, dims: [], data: ByteBuffer(copying: [cond ? 1 : 0])))
      let y = try executor.run(["x": NDArray(x, shape: [2]), "cond": flag])[0].value
      return Array(y.elements(Float.self))
    }
    // then/then: (c + W) + (c·c + x²)
    XCTAssertEqual(try run([1, 2], true), [11 + 1 + 1, 22 + 4 + 4])
    XCTAssertEqual(try run([3, 4], true), [11 + 1 + 9, 22 + 4 + 16])
    XCTAssertEqual(try run([3, 4], false), [9 - 10, 16 - 20])
    XCTAssertEqual(try run([5, 6], true), [11 + 1 + 25, 22 + 4 + 36])
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
