import XCTest
@testable import Compression
import IR
import Runtime
import Support

final class ConvertOpsetTests: XCTestCase {
  private func model(_ nodes: [Node], opset: Int64, inputs: [ValueInfo], outputs: [String],
                     initializers: [Tensor] = [], ir: Int64 = 4) -> Model {
    Model(irVersion: ir, opsetImports: [OpsetImport(domain: "", version: opset)],
          graph: Graph(name: "g", nodes: nodes, initializers: initializers, inputs: inputs,
                       outputs: outputs.map { ValueInfo(name: $0, type: nil) }))
  }

  private func input(_ name: String, _ type: DataType = .float, rank: Int? = nil) -> ValueInfo {
    ValueInfo(name: name, type: .tensor(type, rank.map { TensorShape(Array(repeating: Dimension(.unknown), count: $0)) }))
  }

  private func convert(_ m: Model, to target: Int64) throws -> (Model, PassResult) {
    var m = m
    let r = try ConvertOpset(target: target).run(&m, PassContext())
    try validate(m, file: "test")
    return (m, r)
  }

  private func ints(_ m: Model, _ name: String) throws -> [Int64] {
    guard let t = m.graph.initializers.first(where: { $0.name == name }) else { throw CompressorError.internalError("no \(name)") }
    return try NDArray(t).integers().map(Int64.init)
  }

  /// Every change of every standard operator after opset 7 has an adapter, and every adapter is
  /// for a change that exists: nothing converts by omission.
  func testEveryOperatorChangeHasAnAdapter() {
    var missing = [String]()
    for (op, versions) in OperatorVersions.changes {
      // The first version introduces the operator; every later one is a change.
      for v in versions.dropFirst() where v > OpsetAdapters.coveredFrom && OpsetAdapters.adapter(op, v) == nil {
        missing.append("\(op)@\(v)")
      }
    }
    XCTAssertEqual(missing.sorted(), [])
    var stray = [String]()
    for (op, versions) in OpsetAdapters.table {
      for v in versions.keys where !(OperatorVersions.changes[op] ?? []).contains(v) { stray.append("\(op)@\(v)") }
    }
    XCTAssertEqual(stray.sorted(), [])
    XCTAssertEqual(OpsetAdapters.duplicates, [])
  }

  func testSoftmaxOnTheLastAxisOnlyMakesTheAxisExplicit() throws {
    let m = model([Node(name: "sm", opType: "Softmax", inputs: ["x"], outputs: ["y"])], opset: 11,
                  inputs: [input("x", rank: 2)], outputs: ["y"])
    let (c, r) = try convert(m, to: 13)
    XCTAssertEqual(c.graph.nodes, [Node(name: "sm", opType: "Softmax", inputs: ["x"], outputs: ["y"],
                                        attributes: [Attribute(name: "axis", value: .int(1))])])
    XCTAssertEqual(c.irVersion, 7)
    XCTAssertEqual(c.defaultOpsetVersion, 13)
    XCTAssertEqual(r.changes[0].detail, "default domain opset 11 → 13, IR version 4 → 7; 1 node(s) rewritten, 0 unchanged")
  }

  func testSoftmaxOnAnInnerAxisKeepsTheOldCoercion() throws {
    let m = model([Node(name: "sm", opType: "Softmax", inputs: ["x"], outputs: ["y"], attributes: [Attribute(name: "axis", value: .int(1))])],
                  opset: 12, inputs: [input("x", rank: 4)], outputs: ["y"])
    let (c, _) = try convert(m, to: 14)
    XCTAssertEqual(c.graph.nodes.map(\.opType), ["Flatten", "Shape", "Softmax", "Reshape"])
    let (flatten, shape, softmax, reshape) = (c.graph.nodes[0], c.graph.nodes[1], c.graph.nodes[2], c.graph.nodes[3])
    XCTAssertEqual(flatten.inputs, ["x"])
    XCTAssertEqual(flatten.attribute("axis")?.int, 1)
    XCTAssertEqual(shape.inputs, ["x"])
    XCTAssertEqual(softmax.inputs, flatten.outputs)
    XCTAssertEqual(softmax.attribute("axis")?.int, 1)
    XCTAssertEqual(reshape.inputs, softmax.outputs + shape.outputs)
    XCTAssertEqual(reshape.outputs, ["y"])
    XCTAssertEqual(reshape.attribute("allowzero")?.int, 1)
  }

  /// Generated names come from the model's name scope: a value already called `sm_2d_input` is never reused.
  func testGeneratedNamesAvoidExistingOnes() throws {
    let m = model([Node(name: "taken", opType: "Identity", inputs: ["x"], outputs: ["sm_2d_input"]),
                   Node(name: "sm", opType: "Softmax", inputs: ["sm_2d_input"], outputs: ["y"])],
                  opset: 11, inputs: [input("x")], outputs: ["y"])
    let (c, _) = try convert(m, to: 13)
    XCTAssertEqual(c.graph.nodes[1].outputs, ["sm_2d_input_2"])
  }

  func testAxesAndSplitsBecomeInt64Inputs() throws {
    let m = model([
      Node(name: "u", opType: "Unsqueeze", inputs: ["x"], outputs: ["a"], attributes: [Attribute(name: "axes", value: .ints([0, 3]))]),
      Node(name: "s", opType: "Split", inputs: ["a"], outputs: ["b", "c"],
           attributes: [Attribute(name: "axis", value: .int(1)), Attribute(name: "split", value: .ints([1, 2]))]),
      Node(name: "e", opType: "Split", inputs: ["b"], outputs: ["d", "f"]),
      Node(name: "r", opType: "ReduceMean", inputs: ["c"], outputs: ["g"], attributes: [Attribute(name: "axes", value: .ints([-1]))]),
      Node(name: "q", opType: "Squeeze", inputs: ["g"], outputs: ["h"]),
    ], opset: 11, inputs: [input("x")], outputs: ["d", "f", "h"])
    let (c, r) = try convert(m, to: 18)
    XCTAssertEqual(c.graph.nodes.map(\.inputs), [["x", "u_axes"], ["a", "s_split"], ["b"], ["c", "r_axes"], ["g"]])
    XCTAssertEqual(try ints(c, "u_axes"), [0, 3])
    XCTAssertEqual(try ints(c, "s_split"), [1, 2])
    XCTAssertEqual(try ints(c, "r_axes"), [-1])
    XCTAssertNil(c.graph.nodes[1].attribute("split"))
    XCTAssertEqual(c.graph.nodes[2].attribute("num_outputs")?.int, 2)
    XCTAssertNil(c.graph.nodes[1].attribute("num_outputs"))
    XCTAssertEqual(c.graph.nodes[4].attributes, [])
    XCTAssertEqual(r.changes.filter { $0.action == "converted" }.count, 4)
  }

  func testClipBoundsTakeTheInputsType() throws {
    let m = model([Node(name: "c", opType: "Clip", inputs: ["x"], outputs: ["y"], attributes: [Attribute(name: "max", value: .float(6))])],
                  opset: 9, inputs: [input("x", .double)], outputs: ["y"])
    let (c, _) = try convert(m, to: 11)
    // An absent min of opset 6 clamps at -FLT_MAX, which a double can go below: written out.
    XCTAssertEqual(c.graph.nodes[0].inputs, ["x", "c_min", "c_max"])
    let min = try XCTUnwrap(c.graph.initializers.first { $0.name == "c_min" })
    XCTAssertEqual(min.dataType, .double)
    XCTAssertEqual(try NDArray(min).elements(Double.self)[0], -Double(Float.greatestFiniteMagnitude))
  }

  func testClipOfUnknownTypeUsesCastLikeFromOpset15() throws {
    let m = model([Node(name: "c", opType: "Clip", inputs: ["x"], outputs: ["y"], attributes: [Attribute(name: "min", value: .float(0))])],
                  opset: 9, inputs: [ValueInfo(name: "x", type: nil)], outputs: ["y"])
    XCTAssertThrowsError(try convert(m, to: 13)) { e in
      XCTAssertEqual((e as? CompressorError)?.kind, .unsupported)
      XCTAssertTrue((e as? CompressorError)?.message.hasPrefix("node 'c' (Clip): no exact conversion from opset 9 to 11: the element type of 'x'") == true)
    }
    let (c, _) = try convert(m, to: 15)
    XCTAssertEqual(c.graph.nodes.map(\.opType), ["CastLike", "CastLike", "Clip"])
  }

  func testUpsampleBecomesResizeWithFloorRounding() throws {
    let scales = NDArray([Float(1), 1, 2, 2], shape: [4]).irTensor(name: "scales")
    let m = model([Node(name: "up", opType: "Upsample", inputs: ["x", "scales"], outputs: ["y"])], opset: 9,
                  inputs: [input("x")], outputs: ["y"], initializers: [scales])
    let (c, _) = try convert(m, to: 13)
    let n = c.graph.nodes[0]
    XCTAssertEqual(n.opType, "Resize")
    XCTAssertEqual(n.inputs, ["x", "", "scales"])
    XCTAssertEqual(n.attribute("coordinate_transformation_mode")?.string, "asymmetric")
    XCTAssertEqual(n.attribute("nearest_mode")?.string, "floor")
    // At 11 and 12 roi is a required input: an empty tensor.
    let (c11, _) = try convert(m, to: 11)
    XCTAssertEqual(c11.graph.nodes[0].inputs, ["x", "up_roi", "scales"])
  }

  func testResizeThatShrinksRoundsUpAndMixedScalesAreRefused() throws {
    func resize(_ s: [Float]) -> Model {
      model([Node(name: "rs", opType: "Resize", inputs: ["x", "s"], outputs: ["y"])], opset: 10,
            inputs: [input("x")], outputs: ["y"], initializers: [NDArray(s, shape: [s.count]).irTensor(name: "s")])
    }
    XCTAssertEqual(try convert(resize([1, 1, 0.5, 0.6]), to: 11).0.graph.nodes[0].attribute("nearest_mode")?.string, "ceil")
    // Shrinking by 1/2^k lands on whole indices, where either rounding is right.
    XCTAssertEqual(try convert(resize([1, 1, 0.25, 2]), to: 11).0.graph.nodes[0].attribute("nearest_mode")?.string, "floor")
    XCTAssertThrowsError(try convert(resize([1, 1, 0.6, 2]), to: 11)) { e in
      XCTAssertEqual((e as? CompressorError)?.exitCode, 69)
      XCTAssertTrue((e as? CompressorError)?.message.hasPrefix("node 'rs' (Resize): no exact conversion from opset 10 to 11") == true)
    }
  }

  func testDropoutMaskThatIsReadIsRefused() throws {
    let m = model([Node(name: "d", opType: "Dropout", inputs: ["x"], outputs: ["y", "mask"])], opset: 9,
                  inputs: [input("x")], outputs: ["y", "mask"])
    XCTAssertThrowsError(try convert(m, to: 13)) { e in
      XCTAssertEqual((e as? CompressorError)?.message,
                     "node 'd' (Dropout): no exact conversion from opset 9 to 10: its mask output 'mask' changed type from the input's to bool")
    }
    let unread = model([Node(name: "d", opType: "Dropout", inputs: ["x"], outputs: ["y", "mask"],
                             attributes: [Attribute(name: "ratio", value: .float(0.25))])], opset: 9,
                       inputs: [input("x")], outputs: ["y"])
    let (c, _) = try convert(unread, to: 13)
    XCTAssertEqual(c.graph.nodes[0].outputs, ["y"])
    XCTAssertEqual(c.graph.nodes[0].inputs, ["x", "d_ratio"])
  }

  func testSubgraphsAndFunctionsAreConverted() throws {
    let body = Graph(name: "then", nodes: [Node(name: "inner", opType: "Unsqueeze", inputs: ["x"], outputs: ["t"],
                                                attributes: [Attribute(name: "axes", value: .ints([0]))])],
                     outputs: [ValueInfo(name: "t", type: nil)])
    let other = Graph(name: "else", nodes: [Node(name: "inner2", opType: "Identity", inputs: ["x"], outputs: ["e"])],
                      outputs: [ValueInfo(name: "e", type: nil)])
    var m = model([Node(name: "if", opType: "If", inputs: ["c"], outputs: ["y"],
                        attributes: [Attribute(name: "then_branch", value: .graph(body)), Attribute(name: "else_branch", value: .graph(other))]),
                   Node(name: "call", opType: "F", domain: "local", inputs: ["y"], outputs: ["z"])],
                  opset: 11, inputs: [input("x"), input("c", .bool)], outputs: ["z"])
    m.opsetImports.append(OpsetImport(domain: "local", version: 1))
    m.functions = [Function(name: "F", domain: "local", inputs: ["a"], outputs: ["b"],
                            nodes: [Node(name: "fsq", opType: "Squeeze", inputs: ["a"], outputs: ["b"],
                                         attributes: [Attribute(name: "axes", value: .ints([0]))])],
                            opsetImports: [OpsetImport(domain: "", version: 11)])]
    let (c, _) = try convert(m, to: 13)
    guard case .graph(let converted)? = c.graph.nodes[0].attribute("then_branch")?.value else { return XCTFail("no branch") }
    XCTAssertEqual(converted.nodes[0].inputs, ["x", "inner_axes"])
    XCTAssertEqual(converted.initializers.map(\.name), ["inner_axes"])
    // A function has no initializers: its constant is a Constant node.
    XCTAssertEqual(c.functions[0].nodes.map(\.opType), ["Constant", "Squeeze"])
    XCTAssertEqual(c.functions[0].nodes[1].inputs, ["a", "fsq_axes"])
    XCTAssertEqual(c.functions[0].opsetImports, [OpsetImport(domain: "", version: 13)])
  }

  func testDowngradeOnlyWhereNothingChanged() throws {
    let m = model([Node(name: "r", opType: "Sin", inputs: ["x"], outputs: ["a"]),
                   Node(name: "sq", opType: "Squeeze", inputs: ["a"], outputs: ["y"])], opset: 13,
                  inputs: [input("x")], outputs: ["y"], ir: 7)
    XCTAssertEqual(try convert(m, to: 13).0.defaultOpsetVersion, 13)
    XCTAssertThrowsError(try convert(m, to: 12)) { e in
      XCTAssertEqual((e as? CompressorError)?.message, "node 'sq' (Squeeze): no exact conversion from opset 13 down to 12 (Squeeze changed at opset 13)")
    }
    let relu = model([Node(name: "r", opType: "Relu", inputs: ["x"], outputs: ["y"])], opset: 13, inputs: [input("x")], outputs: ["y"], ir: 7)
    XCTAssertThrowsError(try convert(relu, to: 12)) // Relu 13 added bfloat16
    let (c, _) = try convert(relu, to: 13)
    XCTAssertEqual(c, relu)
  }

  func testUnknownOperatorAndOutOfRangeTarget() throws {
    let m = model([Node(name: "n", opType: "NotAnOp", inputs: ["x"], outputs: ["y"])], opset: 11, inputs: [input("x")], outputs: ["y"])
    XCTAssertThrowsError(try convert(m, to: 13)) { e in XCTAssertEqual((e as? CompressorError)?.exitCode, 69) }
    XCTAssertThrowsError(try convert(m, to: 99)) { e in XCTAssertEqual((e as? CompressorError)?.exitCode, 64) }
  }
}
