import XCTest
@testable import Compression
import IR
import Runtime
import Support

/// Every op's gradient against central finite differences: the loss is Σ y·R for a random R, so
/// dL/dy = R and each input element's numeric derivative is (L(x+ε) − L(x−ε)) / 2ε.
final class GradientTests: XCTestCase {
  private var rng = SplitMix64(seed: 7)

  /// Values in ±[0.1, 1.1): far enough from 0 that ReLU-like kinks are never crossed by ε.
  private func values(_ n: Int) -> [Float] {
    (0..<n).map { _ in (rng.nextFloat() < 0.5 ? -1 : 1) * (0.1 + rng.nextFloat()) }
  }

  private func tensor(_ name: String, _ shape: [Int], _ v: [Float]? = nil) -> Tensor {
    NDArray(v ?? values(shape.reduce(1, *)), shape: shape).irTensor(name: name)
  }

  private func ints(_ name: String, _ v: [Int64]) -> Tensor { NDArray(v, shape: [v.count]).irTensor(name: name) }

  /// Checks the gradient of every float initializer named in `trained` of a graph computing "y".
  private func check(_ nodes: [Node], _ trained: [Tensor], constants: [Tensor] = [], opset: Int64 = 17, training: Bool = false,
                     freezeBatchNorm: Bool = false, tolerance: Float = 2e-2, file: StaticString = #filePath, line: UInt = #line) throws {
    let y = ValueInfo(name: "y", type: .tensor(.float, nil))
    let g = Graph(name: "g", nodes: nodes, initializers: trained + constants, inputs: [], outputs: [y])
    let model = Model(irVersion: 8, opsetImports: [OpsetImport(domain: "", version: opset)], graph: g)
    let graph = try TrainingGraph(model: model, lossTensors: ["y"], options: .init(freezeBatchNorm: freezeBatchNorm,
                                  frozen: Set(constants.map(\.name))), threads: 1)
    XCTAssertEqual(Set(graph.parameterNames), Set(trained.map(\.name)), "trainable tensors", file: file, line: line)
    var dropout = SplitMix64(seed: 1)
    let out = try XCTUnwrap(graph.forward([:], training: training, rng: &dropout).values["y"])
    let r = NDArray(values(out.count), shape: out.shape)
    func loss() throws -> Double {
      var d = SplitMix64(seed: 1)
      let v = try XCTUnwrap(graph.forward([:], training: training, rng: &d).values["y"])
      return v.withFloats { p in r.withFloats { q in (0..<v.count).reduce(0.0) { $0 + Double(p[$1]) * Double(q[$1]) } } }
    }
    var d = SplitMix64(seed: 1)
    let trace = try graph.forward([:], training: training, rng: &d)
    let grads = try graph.backward(trace, seeds: ["y": r])
    let eps: Float = 1e-3
    for name in graph.parameterNames {
      let analytic = try XCTUnwrap(grads[name]).elements(Float.self)
      let original = try XCTUnwrap(graph.parameters[name])
      let count = original.count
      for i in stride(from: 0, to: count, by: max(1, count / 24)) {
        var plus = original, minus = original
        plus.mutableElements(Float.self)[i] += eps
        minus.mutableElements(Float.self)[i] -= eps
        graph.parameters[name] = plus
        let lp = try loss()
        graph.parameters[name] = minus
        let lm = try loss()
        graph.parameters[name] = original
        let numeric = Float((lp - lm) / Double(2 * eps))
        XCTAssertEqual(analytic[i], numeric, accuracy: tolerance * max(1, abs(numeric)),
                       "\(nodes.map(\.opType)) d/d\(name)[\(i)]", file: file, line: line)
      }
    }
  }

  private func node(_ op: String, _ inputs: [String], _ attributes: [Attribute] = [], outputs: [String] = ["y"]) -> Node {
    Node(name: op.lowercased(), opType: op, inputs: inputs, outputs: outputs, attributes: attributes)
  }
  private func attr(_ name: String, _ v: Int) -> Attribute { Attribute(name: name, value: .int(Int64(v))) }
  private func attr(_ name: String, _ v: [Int]) -> Attribute { Attribute(name: name, value: .ints(v.map { Int64($0) })) }
  private func attr(_ name: String, _ v: Float) -> Attribute { Attribute(name: name, value: .float(v)) }

  func testGemmEveryTransposeWithAlphaBetaAndBroadcastBias() throws {
    for (ta, tb) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
      try check([node("Gemm", ["a", "b", "c"], [attr("transA", ta), attr("transB", tb), attr("alpha", Float(0.7)), attr("beta", Float(1.3))])],
                [tensor("a", ta == 1 ? [4, 3] : [3, 4]), tensor("b", tb == 1 ? [5, 4] : [4, 5]), tensor("c", [5])])
    }
  }

  func testMatMulPlainBatchedAndBroadcast() throws {
    try check([node("MatMul", ["a", "b"])], [tensor("a", [3, 4]), tensor("b", [4, 2])])
    try check([node("MatMul", ["a", "b"])], [tensor("a", [2, 3, 4]), tensor("b", [4, 2])])
    try check([node("MatMul", ["a", "b"])], [tensor("a", [2, 2, 3, 4]), tensor("b", [2, 2, 4, 3])])
    try check([node("MatMul", ["a", "b"])], [tensor("a", [2, 1, 3, 4]), tensor("b", [1, 3, 4, 2])])
    try check([node("MatMul", ["a", "b"])], [tensor("a", [4]), tensor("b", [2, 4, 3])])
  }

  func testConvWithPadsStridesDilationsGroupsAndDepthwise() throws {
    try check([node("Conv", ["x", "w", "b"], [attr("pads", [1, 1, 1, 1])])], [tensor("x", [2, 3, 5, 5]), tensor("w", [4, 3, 3, 3]), tensor("b", [4])])
    try check([node("Conv", ["x", "w"], [attr("strides", [2, 2]), attr("pads", [1, 0, 1, 0]), attr("dilations", [1, 2])])],
              [tensor("x", [1, 2, 6, 7]), tensor("w", [3, 2, 3, 2])])
    try check([node("Conv", ["x", "w", "b"], [attr("group", 2)])], [tensor("x", [2, 4, 4, 4]), tensor("w", [6, 2, 2, 2]), tensor("b", [6])])
    try check([node("Conv", ["x", "w"], [attr("group", 3), attr("pads", [1, 1, 1, 1])])], [tensor("x", [1, 3, 4, 4]), tensor("w", [3, 1, 3, 3])])
    try check([node("Conv", ["x", "w"], [attr("pads", [1, 1])])], [tensor("x", [2, 2, 6]), tensor("w", [3, 2, 3])])
  }

  func testConvTranspose() throws {
    try check([node("ConvTranspose", ["x", "w", "b"], [attr("strides", [2, 2])])], [tensor("x", [2, 3, 3, 3]), tensor("w", [3, 2, 2, 2]), tensor("b", [2])])
    try check([node("ConvTranspose", ["x", "w"], [attr("strides", [2, 2]), attr("pads", [1, 1, 1, 1]), attr("group", 2)])],
              [tensor("x", [1, 4, 3, 3]), tensor("w", [4, 1, 3, 3])])
  }

  func testArithmeticWithBroadcasting() throws {
    for op in ["Add", "Sub", "Mul", "Div"] {
      try check([node(op, ["a", "b"])], [tensor("a", [2, 3, 4]), tensor("b", [3, 1])])
      try check([node(op, ["a", "b"])], [tensor("a", [4]), tensor("b", [2, 1, 4])])
    }
    try check([node("Sum", ["a", "b", "c"])], [tensor("a", [2, 3]), tensor("b", [3]), tensor("c", [2, 1])])
  }

  func testElementwiseFunctions() throws {
    for op in ["Relu", "Sigmoid", "Tanh", "Erf", "Neg", "Abs", "Softplus", "Identity"] {
      try check([node(op, ["x"])], [tensor("x", [3, 5])])
    }
    try check([node("Exp", ["x"])], [tensor("x", [3, 5])])
    try check([node("Sqrt", ["a"]), ], [tensor("a", [6], (1...6).map { Float($0) / 3 })])
    try check([node("Log", ["a"])], [tensor("a", [6], (1...6).map { Float($0) / 3 })])
    try check([node("LeakyRelu", ["x"], [attr("alpha", Float(0.2))])], [tensor("x", [3, 5])])
    try check([node("Elu", ["x"], [attr("alpha", Float(0.7))])], [tensor("x", [3, 5])])
    try check([node("HardSigmoid", ["x"], [attr("alpha", Float(0.4))])], [tensor("x", [3, 5])])
    try check([node("HardSwish", ["x"])], [tensor("x", [4, 8], values(32).map { $0 * 4 })])
    try check([node("Gelu", ["x"])], [tensor("x", [3, 5])], opset: 20)
    try check([node("Gelu", ["x"], [Attribute(name: "approximate", value: .string(Array("tanh".utf8)))])], [tensor("x", [3, 5])], opset: 20)
    try check([node("Clip", ["x", "lo", "hi"])], [tensor("x", [3, 5])],
              constants: [NDArray([Float(-0.5)], shape: []).irTensor(name: "lo"), NDArray([Float(0.6)], shape: []).irTensor(name: "hi")])
    try check([node("Pow", ["x", "p"])], [tensor("x", [2, 3], (1...6).map { Float($0) / 4 })],
              constants: [NDArray([Float(2)], shape: []).irTensor(name: "p")])
  }

  func testSoftmaxAndLogSoftmaxOldAndNewAxisRules() throws {
    for op in ["Softmax", "LogSoftmax"] {
      try check([node(op, ["x"])], [tensor("x", [2, 3, 4])])
      try check([node(op, ["x"], [attr("axis", 1)])], [tensor("x", [2, 3, 4])])
      try check([node(op, ["x"], [attr("axis", 1)])], [tensor("x", [2, 3, 4])], opset: 11)
    }
  }

  func testNormalizations() throws {
    try check([node("LayerNormalization", ["x", "s", "b"], [attr("axis", -1)])], [tensor("x", [2, 3, 6]), tensor("s", [6]), tensor("b", [6])])
    try check([node("LayerNormalization", ["x", "s", "b"], [attr("axis", 1)])], [tensor("x", [2, 3, 2]), tensor("s", [3, 2]), tensor("b", [3, 2])])
    let stats = [tensor("mean", [3]), NDArray([Float(0.5), 1.2, 2], shape: [3]).irTensor(name: "var")]
    let bn = node("BatchNormalization", ["x", "s", "b", "mean", "var"])
    try check([bn], [tensor("x", [4, 3, 2, 2]), tensor("s", [3]), tensor("b", [3])], constants: stats, training: true)
    try check([bn], [tensor("x", [4, 3, 2, 2]), tensor("s", [3]), tensor("b", [3])], constants: stats, training: true, freezeBatchNorm: true)
    try check([bn], [tensor("x", [4, 3, 5]), tensor("s", [3]), tensor("b", [3])], constants: stats, training: false)
  }

  func testDecomposedLayerNorm() throws {
    let nodes = [
      node("ReduceMean", ["x"], [attr("axes", [-1])], outputs: ["m"]), node("Sub", ["x", "m"], outputs: ["c"]),
      node("Pow", ["c", "two"], outputs: ["sq"]), node("ReduceMean", ["sq"], [attr("axes", [-1])], outputs: ["v"]),
      node("Add", ["v", "eps"], outputs: ["ve"]), node("Sqrt", ["ve"], outputs: ["sd"]), node("Div", ["c", "sd"], outputs: ["n"]),
      node("Mul", ["n", "g"], outputs: ["ng"]), node("Add", ["ng", "b"]),
    ]
    try check(nodes, [tensor("x", [2, 3, 5]), tensor("g", [5]), tensor("b", [5])],
              constants: [NDArray([Float(2)], shape: []).irTensor(name: "two"), NDArray([Float(1e-5)], shape: []).irTensor(name: "eps")], opset: 13)
    try check([node("ReduceSum", ["x", "axes"], [attr("keepdims", 0)])], [tensor("x", [2, 3, 4])], constants: [ints("axes", [1])], opset: 13)
    try check([node("ReduceMean", ["x", "axes"])], [tensor("x", [2, 3, 4])], constants: [ints("axes", [0, 2])], opset: 18)
  }

  func testPooling() throws {
    // Distinct, well-separated values: ε never changes which element is a window's maximum.
    var distinct = (0..<72).map { Float($0) * 0.05 - 1.8 }
    distinct.shuffle(using: &rng)
    try check([node("MaxPool", ["x"], [attr("kernel_shape", [3, 3]), attr("strides", [2, 2]), attr("pads", [1, 1, 1, 1])])],
              [tensor("x", [2, 1, 6, 6], distinct)])
    try check([node("AveragePool", ["x"], [attr("kernel_shape", [3, 3]), attr("pads", [1, 1, 1, 1])])], [tensor("x", [1, 2, 4, 4])])
    try check([node("AveragePool", ["x"], [attr("kernel_shape", [2, 2]), attr("pads", [1, 1, 1, 1]), attr("count_include_pad", 1)])],
              [tensor("x", [1, 2, 3, 3])])
    try check([node("GlobalAveragePool", ["x"])], [tensor("x", [2, 3, 2, 2])])
    try check([node("GlobalMaxPool", ["x"])], [tensor("x", [2, 2, 6], Array(distinct[..<24]))])
  }

  func testShapeOps() throws {
    try check([node("Flatten", ["x"])], [tensor("x", [2, 3, 2])])
    try check([node("Reshape", ["x", "s"])], [tensor("x", [2, 6])], constants: [ints("s", [3, -1])])
    try check([node("Transpose", ["x"], [attr("perm", [2, 0, 1])])], [tensor("x", [2, 3, 4])])
    try check([node("Unsqueeze", ["x", "a"]), ], [tensor("x", [2, 3])], constants: [ints("a", [1])])
    try check([node("Concat", ["a", "b"], [attr("axis", 1)])], [tensor("a", [2, 3, 2]), tensor("b", [2, 1, 2])])
    try check([node("Split", ["x"], [attr("axis", 1)], outputs: ["y", "z"])], [tensor("x", [2, 4])])
    try check([node("Slice", ["x", "st", "en", "ax", "sp"])], [tensor("x", [4, 6])],
              constants: [ints("st", [1, -1]), ints("en", [4, 0]), ints("ax", [0, 1]), ints("sp", [2, -2])])
    try check([node("Gather", ["x", "i"])], [tensor("x", [5, 3])], constants: [NDArray([Int64(4), 0, 4, -1], shape: [2, 2]).irTensor(name: "i")])
    try check([node("Gather", ["x", "i"], [attr("axis", 1)])], [tensor("x", [2, 4])], constants: [ints("i", [3, 3, 1])])
    try check([node("Expand", ["x", "s"])], [tensor("x", [3, 1])], constants: [ints("s", [2, 3, 4])])
    try check([node("Where", ["c", "a", "b"])], [tensor("a", [2, 3]), tensor("b", [3])],
              constants: [NDArray([UInt8(1), 0, 1, 0, 0, 1], shape: [2, 3]).irTensor(name: "c").retyped(.bool)])
  }

  func testDropoutScalesByItsMaskInTraining() throws {
    try check([node("Dropout", ["x", "ratio"])], [tensor("x", [4, 8])],
              constants: [NDArray([Float(0.25)], shape: []).irTensor(name: "ratio")], training: true)
  }

  /// Rounding is a step function, so fake quantization is checked against the straight-through
  /// rule itself: the gradient passes where the value was representable and stops where clamped.
  func testFakeQuantizationPassesGradientsOnlyInsideTheRange() throws {
    let x = NDArray([Float(-3), -0.4, 0.1, 0.9, 5], shape: [5])
    let y = ValueInfo(name: "y", type: .tensor(.float, nil))
    let g = Graph(name: "g", nodes: [
      node("QuantizeLinear", ["x", "s", "z"], outputs: ["q"]), node("DequantizeLinear", ["q", "s", "z"]),
    ], initializers: [x.irTensor(name: "x"), NDArray([Float(0.01)], shape: []).irTensor(name: "s"),
                      NDArray([Int8(0)], shape: []).irTensor(name: "z")], inputs: [], outputs: [y])
    let graph = try TrainingGraph(model: Model(irVersion: 8, opsetImports: [OpsetImport(domain: "", version: 13)], graph: g),
                                  lossTensors: ["y"], options: .init(), threads: 1)
    var r = SplitMix64(seed: 0)
    let trace = try graph.forward([:], training: true, rng: &r)
    let grads = try graph.backward(trace, seeds: ["y": NDArray([Float](repeating: 2, count: 5), shape: [5])])
    XCTAssertEqual(Array(try XCTUnwrap(grads["x"]).elements(Float.self)), [0, 2, 2, 2, 0].map { Float($0) })
  }

  /// LSQ: dL/ds = Σ dy·(round(x/s) − x/s) inside the range, dy·(qmax − z) where clamped; the
  /// engine trains log s, so its gradient is s times that.
  func testLearnedScalesFollowTheLSQGradientAndAreWrittenBack() throws {
    let y = ValueInfo(name: "y", type: .tensor(.float, nil))
    let g = Graph(name: "g", nodes: [
      node("QuantizeLinear", ["x", "s", "z"], outputs: ["q"]), node("DequantizeLinear", ["q", "s", "z"]),
    ], initializers: [NDArray([Float(0.123), 5], shape: [2]).irTensor(name: "x"), NDArray([Float(0.01)], shape: []).irTensor(name: "s"),
                      NDArray([Int8(0)], shape: []).irTensor(name: "z")], inputs: [], outputs: [y])
    var model = Model(irVersion: 8, opsetImports: [OpsetImport(domain: "", version: 13)], graph: g)
    let graph = try TrainingGraph(model: model, lossTensors: ["y"], options: .init(learnScales: true), threads: 1)
    XCTAssertEqual(graph.parameterNames, ["x", "s"])
    var r = SplitMix64(seed: 0)
    let trace = try graph.forward([:], training: true, rng: &r)
    XCTAssertEqual(Array(try XCTUnwrap(trace.values["y"]).elements(Float.self)), [0.12, 1.27], accuracy: 1e-6)
    let grads = try graph.backward(trace, seeds: ["y": NDArray([Float(1), 1], shape: [2])])
    XCTAssertEqual(Array(try XCTUnwrap(grads["x"]).elements(Float.self)), [1, 0], accuracy: 1e-6)
    XCTAssertEqual(try XCTUnwrap(grads["s"]).elements(Float.self)[0], 0.01 * (12 - 12.3 + 127), accuracy: 1e-4)
    graph.parameters["s"] = NDArray([Float(log(0.02))], shape: [])
    try graph.write(into: &model)
    let written = try NDArray(XCTUnwrap(model.graph.initializers.first { $0.name == "s" }))
    XCTAssertEqual(written.elements(Float.self)[0], 0.02, accuracy: 1e-7)
  }

  func testQuantizedWeightsTrainAsMastersAndAreWrittenBackQuantized() throws {
    let w = NDArray([Int8(10), -20, 30, 127], shape: [2, 2])
    let y = ValueInfo(name: "y", type: .tensor(.float, nil))
    let g = Graph(name: "g", nodes: [
      node("DequantizeLinear", ["w", "s"], [attr("axis", 0)], outputs: ["wf"]), node("MatMul", ["x", "wf"]),
    ], initializers: [w.irTensor(name: "w"), NDArray([Float(0.1), 0.01], shape: [2]).irTensor(name: "s"), tensor("x", [3, 2])],
       inputs: [], outputs: [y])
    var model = Model(irVersion: 8, opsetImports: [OpsetImport(domain: "", version: 13)], graph: g)
    let graph = try TrainingGraph(model: model, lossTensors: ["y"], options: .init(frozen: ["x"]), threads: 1)
    XCTAssertEqual(graph.parameterNames, ["w"])
    XCTAssertEqual(Array(try XCTUnwrap(graph.parameters["w"]).elements(Float.self)), [1, -2, 0.3, 1.27], accuracy: 1e-6)
    graph.parameters["w"] = NDArray([Float(1.04), -2.5, 0.3, 9], shape: [2, 2])
    try graph.write(into: &model)
    let written = try NDArray(XCTUnwrap(model.graph.initializers.first { $0.name == "w" }))
    XCTAssertEqual(written.dataType, .int8)
    XCTAssertEqual(Array(written.elements(Int8.self)), [10, -25, 30, 127])
  }

  func testAnOpWithoutAGradientOnThePathIsAnErrorNamingIt() throws {
    let y = ValueInfo(name: "y", type: .tensor(.float, nil))
    let g = Graph(name: "g", nodes: [node("Round", ["w"], outputs: ["r"]), node("Add", ["r", "w"])],
                  initializers: [tensor("w", [3])], inputs: [], outputs: [y])
    let model = Model(irVersion: 8, opsetImports: [OpsetImport(domain: "", version: 13)], graph: g)
    XCTAssertThrowsError(try TrainingGraph(model: model, lossTensors: ["y"], options: .init(), threads: 1)) { e in
      let error = e as? CompressorError
      XCTAssertEqual(error?.exitCode, 69)
      XCTAssertEqual(error?.message, "node 'round' (Round) has no gradient, but trainable weight 'w' reaches the loss through it")
    }
  }
}

private func XCTAssertEqual(_ a: [Float], _ b: [Float], accuracy: Float, file: StaticString = #filePath, line: UInt = #line) {
  XCTAssertEqual(a.count, b.count, file: file, line: line)
  for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: accuracy, file: file, line: line) }
}

private extension Tensor {
  func retyped(_ t: DataType) -> Tensor {
    var c = self
    c.dataType = t
    return c
  }
}
