import IR
import Support
import XCTest

final class DataTypeTests: XCTestCase {
  func testByteCounts() {
    XCTAssertEqual(DataType.float.byteCount(elements: 3), 12)
    XCTAssertEqual(DataType.int4.byteCount(elements: 5), 3)
    XCTAssertEqual(DataType.uint4.byteCount(elements: 4), 2)
    XCTAssertEqual(DataType.int2.byteCount(elements: 5), 2)
    XCTAssertEqual(DataType.complex128.byteCount(elements: 2), 32)
    XCTAssertNil(DataType.string.byteCount(elements: 2))
    XCTAssertNil(DataType.double.byteCount(elements: Int.max / 4))
    XCTAssertFalse(DataType(rawValue: 999).isKnown)
    XCTAssertEqual(DataType(rawValue: 999).name, "unknown(999)")
  }

  func testCheckedProduct() throws {
    XCTAssertEqual(try Checked.product([2, 3, 4], "t"), 24)
    XCTAssertEqual(try Checked.product([], "t"), 1)
    XCTAssertThrowsError(try Checked.product([1 << 33, 1 << 33], "t")) { e in
      XCTAssertEqual((e as? CompressorError)?.kind, .invalidInput)
    }
    XCTAssertThrowsError(try Checked.product([-2], "t"))
  }

  func testValidationAcceptsOuterScopeReferences() throws {
    let then = Graph(name: "then", nodes: [Node(opType: "Neg", inputs: ["outer"], outputs: ["r"])],
                     outputs: [ValueInfo(name: "r", type: nil)])
    let g = Graph(name: "main",
                  nodes: [Node(name: "o", opType: "Relu", inputs: ["x"], outputs: ["outer"]),
                          Node(name: "if", opType: "If", inputs: ["c"], outputs: ["y"],
                               attributes: [Attribute(name: "then_branch", value: .graph(then)),
                                            Attribute(name: "else_branch", value: .graph(then))])],
                  inputs: [ValueInfo(name: "x", type: nil), ValueInfo(name: "c", type: nil)],
                  outputs: [ValueInfo(name: "y", type: nil)])
    let m = Model(irVersion: 8, opsetImports: [OpsetImport(domain: "", version: 13)], graph: g)
    XCTAssertNoThrow(try validate(m, file: "m.onnx"))

    var bad = m
    bad.graph.nodes.swapAt(0, 1)  // If now reads 'outer' before... still fine: order is not required
    XCTAssertNoThrow(try validate(bad, file: "m.onnx"))
    bad.graph.nodes.remove(at: 1)
    XCTAssertThrowsError(try validate(bad, file: "m.onnx")) { e in
      XCTAssertEqual((e as? CompressorError)?.message,
                     "m.onnx: Neg node producing 'r' in subgraph 'then' of node 'if' (If) reads 'outer', which no node, initializer or graph input produces")
    }
  }
}
