import IR
import Runtime
import Support
import XCTest

/// Sequence and optional values through the executor, and the float8/float4/int4/int2 conversions.
final class ValueTests: XCTestCase {
  func model(_ nodes: [Node], inputs: [ValueInfo], outputs: [String], opset: Int64 = 18) -> Model {
    Model(irVersion: 8, opsetImports: [OpsetImport(domain: "", version: opset)],
          graph: Graph(name: "g", nodes: nodes, initializers: [], inputs: inputs, outputs: outputs.map { ValueInfo(name: $0, type: nil) }))
  }

  func testSplitToSequenceThenConcatRoundTrips() throws {
    let m = model([Node(opType: "SplitToSequence", inputs: ["x"], outputs: ["s"], attributes: [Attribute(name: "axis", value: .int(1))]),
                   Node(opType: "SequenceLength", inputs: ["s"], outputs: ["n"]),
                   Node(opType: "ConcatFromSequence", inputs: ["s"], outputs: ["y"], attributes: [Attribute(name: "axis", value: .int(1))])],
                  inputs: [ValueInfo(name: "x", type: nil)], outputs: ["y", "n"])
    let x = NDArray([Float(1), 2, 3, 4, 5, 6], shape: [2, 3])
    let out = try Executor(model: m).run(["x": x])
    XCTAssertEqual(out[0].value.shape, [2, 3])
    XCTAssertEqual(Array(out[0].value.elements(Float.self)), [1, 2, 3, 4, 5, 6])
    XCTAssertEqual(Array(out[1].value.elements(Int64.self)), [3])
  }

  func testSequenceOutputsComeBackAsValuesAndRunRefusesThem() throws {
    let m = model([Node(opType: "SequenceConstruct", inputs: ["a", "b"], outputs: ["s"]),
                   Node(opType: "SequenceErase", inputs: ["s"], outputs: ["t"])],
                  inputs: [ValueInfo(name: "a", type: nil), ValueInfo(name: "b", type: nil)], outputs: ["t"])
    let executor = try Executor(model: m)
    let a = NDArray([Float(1)], shape: [1]), b = NDArray([Float(2), 3], shape: [2])
    let out = try executor.runValues(["a": .tensor(a), "b": .tensor(b)])
    guard case .sequence(let s) = out[0].value else { return XCTFail("expected a sequence, got \(out[0].value.typeDescription)") }
    XCTAssertEqual(s.tensors.map(\.shape), [[1]])
    XCTAssertEqual(s.elementType, .float)
    XCTAssertThrowsError(try executor.run(["a": a, "b": b])) { e in
      XCTAssertEqual((e as? CompressorError)?.message,
                     "model output 't' is a seq(tensor(float)); only `compressor run` handles outputs that are not tensors")
    }
  }

  func testOutOfRangePositionIsAnErrorNamingTheNode() throws {
    let m = model([Node(name: "at", opType: "SequenceAt", inputs: ["s", "i"], outputs: ["y"])],
                  inputs: [ValueInfo(name: "s", type: nil), ValueInfo(name: "i", type: nil)], outputs: ["y"])
    let s = Value.sequence(TensorSequence(elementType: .float, tensors: [NDArray([Float(1)], shape: [1])]))
    XCTAssertThrowsError(try Executor(model: m).runValues(["s": s, "i": .tensor(NDArray([Int64(5)], shape: []))])) { e in
      XCTAssertEqual((e as? CompressorError)?.message, "node 'at' (SequenceAt): position 5 is out of range for a sequence of 1 tensors")
    }
  }

  func testTensorKernelGivenASequenceIsAnError() throws {
    let m = model([Node(name: "r", opType: "Relu", inputs: ["s"], outputs: ["y"])], inputs: [ValueInfo(name: "s", type: nil)], outputs: ["y"])
    let s = Value.sequence(TensorSequence(elementType: .float, tensors: []))
    XCTAssertThrowsError(try Executor(model: m).runValues(["s": s])) { e in
      XCTAssertEqual((e as? CompressorError)?.message, "node 'r' (Relu): input 's' is a seq(tensor(float)); Relu takes tensors")
    }
  }

  func testOptionalsAndLoopCarriedSequence() throws {
    // A loop that appends its iteration number to a sequence it carries.
    let body = Graph(name: "body", nodes: [
      Node(opType: "Identity", inputs: ["cond"], outputs: ["cond_out"]),
      Node(opType: "Unsqueeze", inputs: ["i", "axes"], outputs: ["i1"]),
      Node(opType: "SequenceInsert", inputs: ["seq", "i1"], outputs: ["seq_out"]),
    ], initializers: [Tensor(name: "axes", dataType: .int64, dims: [1], data: ByteBuffer(copying: withUnsafeBytes(of: Int64(0)) { Array($0) }))],
      inputs: [ValueInfo(name: "i", type: nil), ValueInfo(name: "cond", type: nil), ValueInfo(name: "seq", type: nil)],
      outputs: [ValueInfo(name: "cond_out", type: nil), ValueInfo(name: "seq_out", type: nil)])
    let m = model([Node(opType: "SequenceEmpty", inputs: [], outputs: ["empty"], attributes: [Attribute(name: "dtype", value: .int(7))]),
                   Node(opType: "Loop", inputs: ["n", "", "empty"], outputs: ["list"], attributes: [Attribute(name: "body", value: .graph(body))]),
                   Node(opType: "Optional", inputs: ["list"], outputs: ["opt"]),
                   Node(opType: "OptionalHasElement", inputs: ["opt"], outputs: ["has"]),
                   Node(opType: "OptionalGetElement", inputs: ["opt"], outputs: ["back"]),
                   Node(opType: "ConcatFromSequence", inputs: ["back"], outputs: ["y"], attributes: [Attribute(name: "axis", value: .int(0))])],
                  inputs: [ValueInfo(name: "n", type: nil)], outputs: ["y", "has"])
    let out = try Executor(model: m).run(["n": NDArray([Int64(4)], shape: [])])
    XCTAssertEqual(Array(out[0].value.elements(Int64.self)), [0, 1, 2, 3])
    XCTAssertEqual(Array(out[1].value.elements(UInt8.self)), [1])
  }

  func testFloat8AndFourBitCasts() throws {
    func cast(_ v: [Float], to t: DataType, saturate: Int64 = 1) throws -> NDArray {
      let m = model([Node(opType: "Cast", inputs: ["x"], outputs: ["y"],
                          attributes: [Attribute(name: "to", value: .int(Int64(t.rawValue))), Attribute(name: "saturate", value: .int(saturate))])],
                    inputs: [ValueInfo(name: "x", type: nil)], outputs: ["y"], opset: 21)
      return try Executor(model: m).run(["x": NDArray(v, shape: [v.count])])[0].value
    }
    // E4M3FN: 448 is the largest; 500 saturates to it, or is NaN (0x7F) without saturation.
    XCTAssertEqual(Array(try cast([448, 500, -500, 0.1], to: .float8e4m3fn).elements(UInt8.self)), [0x7E, 0x7E, 0xFE, 0x1D])
    XCTAssertEqual(Array(try cast([500, .infinity], to: .float8e4m3fn, saturate: 0).elements(UInt8.self)), [0x7F, 0x7F])
    // E5M2 keeps infinity without saturation; FNUZ types have no negative zero.
    XCTAssertEqual(Array(try cast([.infinity, 1e6], to: .float8e5m2, saturate: 0).elements(UInt8.self)), [0x7C, 0x7C])
    XCTAssertEqual(Array(try cast([-0.0, -1e-9], to: .float8e4m3fnuz).elements(UInt8.self)), [0, 0])
    // int4: two to a byte, low nibble first; floats truncate, out of range is 0.
    XCTAssertEqual(Array(try cast([7.9, -8.5, 9, -1], to: .int4).elements(UInt8.self)), [0x87, 0xF0])
    // float4 E2M1 rounds half to even and saturates at 6.
    let f4 = try cast([2.5, 5, 100, -0.75], to: .float4e2m1)
    XCTAssertEqual(try f4.floats(), [2, 4, 6, -1])
    // And back: the decoded values of each E4M3FN code.
    let codes = try NDArray(Tensor(name: "c", dataType: .float8e4m3fn, dims: [3], data: ByteBuffer(copying: [0x38, 0x7E, 0x01])))
    XCTAssertEqual(try codes.floats(), [1, 448, Float(1) / 512])
  }
}
