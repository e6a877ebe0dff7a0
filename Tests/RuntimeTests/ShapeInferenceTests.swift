import IR
@testable import Runtime
import Support
import XCTest

/// Static shape inference: every kernel has a rule; symbolic shapes equal what the executor
/// produces at many concrete sizes (the executor-based inference this replaced, kept here as the
/// cross-check); opset variants; data-dependent sizes; inconsistencies name the node.
final class ShapeInferenceTests: XCTestCase {
  func testEveryKernelHasAShapeRule() {
    let missing = Set(Kernels.supportedOps).subtracting(ShapeRules.coveredOps).sorted()
    XCTAssertEqual(missing, [], "add a rule in Sources/Runtime/ShapeInference/ for \(missing)")
  }

  // MARK: Helpers

  var rng = SplitMix64(seed: 11)

  func weight(_ name: String, _ dims: [Int]) -> Tensor {
    let values = (0..<dims.reduce(1, *)).map { _ in rng.nextFloat() - 0.5 }
    return Tensor(name: name, dataType: .float, dims: dims.map(Int64.init),
                  data: ByteBuffer(copying: values.withUnsafeBytes { Array($0) }))
  }

  func ints(_ name: String, _ values: [Int64]) -> Tensor {
    Tensor(name: name, dataType: .int64, dims: [Int64(values.count)], data: ByteBuffer(copying: values.withUnsafeBytes { Array($0) }))
  }

  func floats(_ name: String, _ values: [Float]) -> Tensor {
    Tensor(name: name, dataType: .float, dims: [Int64(values.count)], data: ByteBuffer(copying: values.withUnsafeBytes { Array($0) }))
  }

  func input(_ name: String, _ dims: [IR.Dimension.Value], _ type: DataType = .float) -> ValueInfo {
    ValueInfo(name: name, type: .tensor(type, TensorShape(dims.map { IR.Dimension($0) })))
  }

  func model(_ nodes: [Node], inputs: [ValueInfo], initializers: [Tensor] = [], opset: Int64 = 13) -> Model {
    Model(irVersion: 8, opsetImports: [OpsetImport(domain: "", version: opset)],
          graph: Graph(name: "g", nodes: nodes, initializers: initializers, inputs: inputs,
                       outputs: [ValueInfo(name: nodes.last?.outputs.first ?? "", type: nil)]))
  }

  func shapes(_ inference: ShapeInference) -> [String: [String]] {
    var out = [String: [String]]()
    for n in inference.nodes { for v in n.outputs { out[v.name] = v.shape } }
    return out
  }

  func attr(_ name: String, _ v: Int64) -> Attribute { Attribute(name: name, value: .int(v)) }
  func attr(_ name: String, _ v: [Int64]) -> Attribute { Attribute(name: name, value: .ints(v)) }
  func attr(_ name: String, _ v: String) -> Attribute { Attribute(name: name, value: .string(Array(v.utf8))) }

  // MARK: Cross-check against execution

  /// A network of window ops with odd sizes, ceil mode, SAME padding, transposed convolution,
  /// resizing, reversed and strided slices, uneven splits and Shape → Reshape arithmetic, inferred
  /// once with symbols and compared with what the executor produces at many sizes.
  func testSymbolicShapesEqualExecutionAtManySizes() throws {
    let nodes = [
      Node(name: "conv", opType: "Conv", inputs: ["x", "w1"], outputs: ["c1"],
           attributes: [attr("strides", [2, 2]), attr("pads", [1, 1, 1, 1])]),
      Node(name: "pool", opType: "MaxPool", inputs: ["c1"], outputs: ["p1"],
           attributes: [attr("kernel_shape", [3, 3]), attr("strides", [2, 2]), attr("ceil_mode", 1)]),
      Node(name: "dil", opType: "Conv", inputs: ["p1", "w2"], outputs: ["c2"],
           attributes: [attr("dilations", [2, 1]), attr("pads", [0, 1, 1, 0]), attr("strides", [1, 2])]),
      Node(name: "same", opType: "AveragePool", inputs: ["c2"], outputs: ["p2"],
           attributes: [attr("kernel_shape", [3, 3]), attr("strides", [3, 2]), attr("auto_pad", "SAME_UPPER")]),
      Node(name: "up", opType: "ConvTranspose", inputs: ["p2", "w3"], outputs: ["t1"],
           attributes: [attr("strides", [2, 3]), attr("pads", [1, 0, 0, 1]), attr("output_padding", [1, 0])]),
      Node(name: "resize", opType: "Resize", inputs: ["t1", "", "scales"], outputs: ["r1"]),
      Node(name: "rev", opType: "Slice", inputs: ["r1", "starts", "ends", "axes", "steps"], outputs: ["s1"]),
      Node(name: "split", opType: "Split", inputs: ["s1"], outputs: ["a", "b", "c"], attributes: [attr("axis", 3), attr("num_outputs", 3)]),
      Node(name: "pad", opType: "Pad", inputs: ["a", "pads"], outputs: ["padded"]),
      Node(name: "shape", opType: "Shape", inputs: ["padded"], outputs: ["sh"]),
      Node(name: "gather", opType: "Gather", inputs: ["sh", "idx"], outputs: ["hw"]),
      Node(name: "prod", opType: "ReduceProd", inputs: ["hw"], outputs: ["n"], attributes: [attr("keepdims", 1)]),
      Node(name: "cat", opType: "Concat", inputs: ["zero", "n", "minus"], outputs: ["target"], attributes: [attr("axis", 0)]),
      Node(name: "reshape", opType: "Reshape", inputs: ["padded", "target"], outputs: ["flat"]),
      Node(name: "reduce", opType: "ReduceMean", inputs: ["flat", "two"], outputs: ["y"], attributes: [attr("keepdims", 0)]),
    ]
    let inits = [
      weight("w1", [4, 3, 3, 3]), weight("w2", [5, 4, 2, 3]), weight("w3", [5, 2, 3, 2]),
      floats("scales", [1, 1, 0.5, 1.5]), ints("starts", [-1, 1]), ints("ends", [Int64.min, Int64.max]), ints("axes", [2, 3]),
      ints("steps", [-2, 1]), ints("pads", [0, 0, 1, 2, 0, 0, 0, 1]), ints("idx", [2, 3]), ints("zero", [0]), ints("minus", [-1]),
      ints("two", [2]),
    ]
    let m = model(nodes, inputs: [input("x", [.symbolic("n"), .known(3), .symbolic("h"), .symbolic("w")])],
                  initializers: inits, opset: 18)
    let inferred = try ShapeInference(model: m, bindings: [:])
    XCTAssertEqual(inferred.unboundSymbols, ["n", "h", "w"])
    XCTAssertEqual(shapes(inferred)["c1"], ["n", "4", "ceil(h/2)", "ceil(w/2)"])
    let dims = Dictionary(uniqueKeysWithValues: inferred.nodes.flatMap(\.outputs).map { ($0.name, $0.dims ?? []) })
    for (n, h, w) in [(1, 40, 40), (2, 41, 45), (1, 64, 71), (3, 57, 100), (1, 99, 33)] {
      let executor = try Executor(model: m)
      var actual = [String: [Int]]()
      executor.observer = { node, _, outs in for (name, v) in zip(node.outputs, outs) { actual[name] = v.shape } }
      _ = try executor.run(["x": NDArray(zeros: .float, [n, 3, h, w])])
      let env = ["n": n, "h": h, "w": w]
      for (name, shape) in actual {
        XCTAssertEqual(dims[name]?.map { $0?.evaluate(env) }, shape.map { Optional($0) }, "\(name) at \(env): \(dims[name] ?? [])")
      }
      let bound = try ShapeInference(model: m, bindings: ["x": [n, 3, h, w]])
      XCTAssertEqual(try bound.totalMACs, try inferred.macs.evaluate(env) ?? -1)
      // The same schedule and last uses as the executor's (observed, so unfused) run.
      XCTAssertEqual(bound.peakActivationBytes, executor.peakLiveBytes)
      XCTAssertEqual(inferred.peakActivation.evaluate(env), executor.peakLiveBytes)
    }
  }

  func testTorchStyleShapeArithmeticGivesSymbols() throws {
    // x.view(x.size(0), -1) and x.view(b, c, h*w) as torch exports them.
    let nodes = [
      Node(opType: "Shape", inputs: ["x"], outputs: ["s"]),
      Node(opType: "Gather", inputs: ["s", "i0"], outputs: ["b"], attributes: [attr("axis", 0)]),
      Node(opType: "Unsqueeze", inputs: ["b", "ax0"], outputs: ["b1"]),
      Node(opType: "Concat", inputs: ["b1", "minus"], outputs: ["t"], attributes: [attr("axis", 0)]),
      Node(opType: "Reshape", inputs: ["x", "t"], outputs: ["flat"]),
      Node(opType: "Slice", inputs: ["s", "two", "four"], outputs: ["hw"]),
      Node(opType: "ReduceProd", inputs: ["hw"], outputs: ["area"], attributes: [attr("keepdims", 1)]),
      Node(opType: "Slice", inputs: ["s", "zero", "two"], outputs: ["bc"]),
      Node(opType: "Concat", inputs: ["bc", "area"], outputs: ["t2"], attributes: [attr("axis", 0)]),
      Node(opType: "Reshape", inputs: ["x", "t2"], outputs: ["y"]),
    ]
    let m = model(nodes, inputs: [input("x", [.symbolic("batch"), .known(3), .symbolic("height"), .symbolic("width")])],
                  initializers: [Tensor(name: "i0", dataType: .int64, dims: [], data: ByteBuffer(copying: withUnsafeBytes(of: Int64(0)) { Array($0) })),
                                 ints("ax0", [0]), ints("minus", [-1]), ints("zero", [0]), ints("two", [2]), ints("four", [4])])
    let s = shapes(try ShapeInference(model: m, bindings: [:]))
    XCTAssertEqual(s["flat"], ["batch", "3*height*width"])
    XCTAssertEqual(s["y"], ["batch", "3", "height*width"])
    XCTAssertEqual(s["b"], [])
  }

  // MARK: Opset variants

  func testAxesAsAttributesBeforeAndInputsAfter() throws {
    let x = input("x", [.symbolic("n"), .known(1), .known(6)])
    let old = model([Node(opType: "Squeeze", inputs: ["x"], outputs: ["a"], attributes: [attr("axes", [1])]),
                     Node(opType: "Unsqueeze", inputs: ["a"], outputs: ["b"], attributes: [attr("axes", [0])]),
                     Node(opType: "Split", inputs: ["b"], outputs: ["c", "d"], attributes: [attr("axis", 2), attr("split", [2, 4])]),
                     Node(opType: "ReduceSum", inputs: ["d"], outputs: ["e"], attributes: [attr("axes", [2]), attr("keepdims", 0)]),
                     Node(opType: "ReduceMean", inputs: ["c"], outputs: ["f"], attributes: [attr("axes", [0])])],
                    inputs: [x], opset: 11)
    let new = model([Node(opType: "Squeeze", inputs: ["x", "one"], outputs: ["a"]),
                     Node(opType: "Unsqueeze", inputs: ["a", "zero"], outputs: ["b"]),
                     Node(opType: "Split", inputs: ["b", "sizes"], outputs: ["c", "d"], attributes: [attr("axis", 2)]),
                     Node(opType: "ReduceSum", inputs: ["d", "two"], outputs: ["e"], attributes: [attr("keepdims", 0)]),
                     Node(opType: "ReduceMean", inputs: ["c", "zero"], outputs: ["f"])],
                    inputs: [x], initializers: [ints("one", [1]), ints("zero", [0]), ints("two", [2]), ints("sizes", [2, 4])], opset: 18)
    for m in [old, new] {
      let s = shapes(try ShapeInference(model: m, bindings: [:]))
      XCTAssertEqual(s["a"], ["n", "6"])
      XCTAssertEqual(s["b"], ["1", "n", "6"])
      XCTAssertEqual(s["c"], ["1", "n", "2"])
      XCTAssertEqual(s["d"], ["1", "n", "4"])
      XCTAssertEqual(s["e"], ["1", "n"])
      XCTAssertEqual(s["f"], ["1", "n", "2"])
    }
    // Slice before opset 10 and Upsample's scales attribute.
    let legacy = model([Node(opType: "Slice", inputs: ["x"], outputs: ["s"], attributes: [attr("starts", [1]), attr("ends", [-1]), attr("axes", [2])]),
                        Node(opType: "Upsample", inputs: ["s"], outputs: ["u"], attributes: [Attribute(name: "scales", value: .floats([1, 2, 1.5]))])],
                       inputs: [x], opset: 7)
    let s = shapes(try ShapeInference(model: legacy, bindings: [:]))
    XCTAssertEqual(s["s"], ["n", "1", "4"])
    XCTAssertEqual(s["u"], ["n", "2", "6"])
  }

  // MARK: Data-dependent sizes, inconsistencies, unknown operators

  func testDataDependentSizesAreFreshSymbols() throws {
    let m = model([Node(opType: "NonZero", inputs: ["x"], outputs: ["nz"]),
                   Node(opType: "TopK", inputs: ["x", "k"], outputs: ["v", "i"], attributes: [attr("axis", 1)])],
                  inputs: [input("x", [.symbolic("n"), .known(8)]), input("k", [.known(1)], .int64)])
    let inferred = try ShapeInference(model: m, bindings: [:])
    let s = shapes(inferred)
    XCTAssertEqual(s["nz"], ["2", "nonzero_1"])
    XCTAssertEqual(s["v"], ["n", "topk_1"])
    XCTAssertEqual(s["i"], ["n", "topk_1"])
    XCTAssertEqual(inferred.dataDependentSymbols, ["nonzero_1", "topk_1"])
  }

  func testInconsistenciesNameTheNode() {
    let concat = model([Node(name: "join", opType: "Concat", inputs: ["x", "y"], outputs: ["z"], attributes: [attr("axis", 0)])],
                       inputs: [input("x", [.known(2), .known(3)]), input("y", [.known(2), .known(4)])])
    XCTAssertThrowsError(try ShapeInference(model: concat, bindings: [:])) { e in
      XCTAssertEqual(e as? CompressorError, .invalid("node 'join' (Concat): dimension 1 of the inputs: 3 and 4 differ"))
    }
    let reshape = model([Node(name: "view", opType: "Reshape", inputs: ["x", "t"], outputs: ["z"])],
                        inputs: [input("x", [.known(2), .known(3)])], initializers: [ints("t", [4, -1])])
    XCTAssertThrowsError(try ShapeInference(model: reshape, bindings: [:])) { e in
      XCTAssertEqual(e as? CompressorError, .invalid("node 'view' (Reshape): cannot reshape [2, 3] to [4, -1]"))
    }
    let broadcast = model([Node(name: "sum", opType: "Add", inputs: ["x", "y"], outputs: ["z"])],
                          inputs: [input("x", [.symbolic("n"), .known(3)]), input("y", [.known(4)])])
    XCTAssertThrowsError(try ShapeInference(model: broadcast, bindings: [:])) { e in
      XCTAssertEqual(e as? CompressorError, .invalid("node 'sum' (Add): dimensions 3 and 4 do not broadcast"))
    }
  }

  func testUnknownOperatorsLeaveTheirOutputsUnknown() throws {
    let m = model([Node(name: "odd", opType: "Fancy", domain: "com.example", inputs: ["x"], outputs: ["f"]),
                   Node(opType: "Relu", inputs: ["x"], outputs: ["y"])],
                  inputs: [input("x", [.symbolic("n"), .known(3)])])
    let inferred = try ShapeInference(model: m, bindings: [:])
    XCTAssertNil(inferred.nodes[0].outputs[0].dims)
    XCTAssertEqual(inferred.nodes[1].outputs[0].shape, ["n", "3"])
  }

  // MARK: Bindings and costs

  func testBindingsFixSymbolsEverywhere() throws {
    let m = model([Node(opType: "MatMul", inputs: ["x", "w"], outputs: ["y"]),
                   Node(opType: "Add", inputs: ["y", "z"], outputs: ["s"])],
                  inputs: [input("x", [.symbolic("batch"), .symbolic("seq"), .known(4)]), input("z", [.symbolic("batch"), .known(1), .known(5)])],
                  initializers: [weight("w", [4, 5])])
    let free = try ShapeInference(model: m, bindings: [:])
    XCTAssertEqual(free.macs.description, "20*batch*seq")
    XCTAssertEqual(free.peakActivation.description, "40*batch*seq")
    XCTAssertThrowsError(try free.totalMACs)
    let bound = try ShapeInference(model: m, bindings: ["x": [2, 7, 4]])
    XCTAssertEqual(shapes(bound)["s"], ["2", "7", "5"])
    XCTAssertEqual(try bound.totalMACs, 2 * 7 * 4 * 5)
    XCTAssertEqual(bound.peakActivationBytes, 2 * 2 * 7 * 5 * 4)
    XCTAssertThrowsError(try ShapeInference(model: m, bindings: ["x": [2, 7, 3]])) { e in
      XCTAssertEqual(e as? CompressorError, .usage("--input-shape x: dimension 2 is 4 in the model, not 3"))
    }
    XCTAssertThrowsError(try ShapeInference(model: m, bindings: ["x": [2, 7, 4], "z": [3, 1, 5]])) { e in
      XCTAssertEqual(e as? CompressorError, .usage("--input-shape binds 'batch' to both 2 and 3"))
    }
    let unnamed = model([Node(opType: "Relu", inputs: ["in/put"], outputs: ["y"])], inputs: [input("in/put", [.known(-1), .unknown])])
    XCTAssertEqual(try ShapeInference(model: unnamed, bindings: [:]).unboundSymbols, ["in_put_dim0", "in_put_dim1"])
  }
}
