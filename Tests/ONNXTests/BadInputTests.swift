import Foundation
import IR
import ONNX
import Support
import XCTest

/// The cases of shared/bad-inputs.md that concern reading a model (numbers in test names).
final class BadInputTests: XCTestCase {
  var dir = ""
  override func setUp() { dir = makeTemporaryDirectory() }
  override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

  let validGraph = Wire.bytes(1, Wire.string(1, "x") + Wire.string(2, "y") + Wire.string(4, "Relu"))
    + Wire.bytes(11, Wire.string(1, "x")) + Wire.bytes(12, Wire.string(1, "y"))

  func test01EmptyFile() {
    assertReadFails(writeBytes([], dir), .invalidInput, "the file is empty")
  }

  func test02RandomBytesTruncatedVarintAndHalfFile() throws {
    var rng = SystemRandomNumberGenerator()
    for _ in 0..<50 {
      let junk = (0..<Int.random(in: 1...300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
      let p = writeBytes(junk, dir)
      XCTAssertThrowsError(try ModelReader.read(p)) { e in
        XCTAssertEqual((e as? CompressorError)?.kind, .invalidInput, "\(e)")
      }
    }
    assertReadFails(writeBytes([0x08, 0xFF, 0xFF], dir), .invalidInput, "truncated varint at byte 3")
    let whole = try Data(contentsOf: fixtures.appendingPathComponent("mlp.onnx"))
    assertReadFails(writeBytes(Array(whole.prefix(whole.count / 2)), dir), .invalidInput, "not a valid ONNX model")
  }

  func test03LengthPastTheEnd() {
    assertReadFails(writeBytes(Wire.tag(7, 2) + Wire.varint(1000) + [1, 2, 3], dir), .invalidInput,
                    "field 7 declares 1000 bytes but only 3 remain")
    assertReadFails(writeBytes(Wire.tag(7, 2) + Wire.varint(UInt64.max - 2) + [1], dir), .invalidInput, "declares")
  }

  func test04FiveByteTagWithHighBits() {
    assertReadFails(writeBytes([0xFA, 0xFF, 0xFF, 0xFF, 0x7F, 0x00], dir), .invalidInput, "field tag does not fit in 32 bits")
  }

  func test05NoGraphMissingOrNewerIRVersion() {
    assertReadFails(writeBytes(Wire.model(graph: nil), dir), .invalidInput, "the model has no graph")
    assertReadFails(writeBytes(Wire.model(ir: nil, graph: validGraph), dir), .invalidInput, "ir_version is missing")
    assertReadFails(writeBytes(Wire.model(ir: 99, graph: validGraph), dir), .invalidInput,
                    "ir_version 99 is newer than supported (up to 14)")
  }

  func test06OpsetImports() {
    assertReadFails(writeBytes(Wire.model(opset: nil, graph: validGraph), dir), .invalidInput, "no opset_import")
    assertReadFails(writeBytes(Wire.model(opset: 99, graph: validGraph), dir), .unsupported,
                    "opset 99 of the default domain is outside the supported range 1...28")
    XCTAssertNoThrow(try ModelReader.read(writeBytes(Wire.model(graph: validGraph), dir)))
  }

  func test07DeeplyNestedIfSubgraphs() {
    // Graph { Node { Attribute { g: Graph { ... } } } } 10,000 levels deep, built inside out.
    let g = Wire.nested(levels: 10_000, wrappers: [([], 1), (Wire.string(4, "If"), 5), (Wire.string(1, "then_branch"), 6)],
                        inner: validGraph)
    let bytes = Wire.model(graph: g)
    XCTAssertLessThan(bytes.count, 400_000)
    assertReadFails(writeBytes(bytes, dir), .invalidInput, "nesting depth > 64")
  }

  func test08DeeplyNestedSequenceTypes() {
    // TypeProto { sequence_type { elem_type: TypeProto { … tensor_type { elem_type: FLOAT } } } }
    let t = Wire.nested(levels: 100_000, wrappers: [([], 4), ([], 1)], inner: Wire.bytes(1, Wire.int(1, 1)))
    let graph = Wire.bytes(11, Wire.string(1, "x") + Wire.bytes(2, t))
    assertReadFails(writeBytes(Wire.model(graph: graph), dir), .invalidInput, "nesting depth > 64")
  }

  func test09SingleFileOver2GiB() {
    let p = dir + "/huge.onnx"
    let fd = open(p, O_RDWR | O_CREAT, 0o644)
    XCTAssertEqual(ftruncate(fd, off_t(Int(Int32.max) + 1)), 0)
    close(fd)
    assertReadFails(p, .invalidInput, "over protobuf's 2 GiB limit for one file; store the weights as external data")
  }

  func test10InputProducedNowhere() {
    var m = tinyModel()
    m.graph.initializers = []
    assertReadFails(write(m, dir), .invalidInput,
                    "node 'mm' (MatMul) in graph 'tiny' reads 'W', which no node, initializer or graph input produces")
  }

  func test11SameOutputTwice() {
    var m = tinyModel()
    m.graph.nodes[1].outputs = ["h"]
    assertReadFails(write(m, dir), .invalidInput, "value 'h' is produced twice in graph 'tiny'")
  }

  func test12Cycles() {
    var m = tinyModel()
    m.graph.nodes = [Node(name: "a", opType: "Relu", inputs: ["b_out"], outputs: ["a_out"]),
                     Node(name: "b", opType: "Relu", inputs: ["a_out"], outputs: ["b_out"]),
                     Node(name: "c", opType: "Relu", inputs: ["x"], outputs: ["y"])]
    assertReadFails(write(m, dir), .invalidInput, "graph 'tiny' contains a cycle through node 'a' (Relu)")

    // A cycle inside a Loop body.
    let body = Graph(name: "body",
                     nodes: [Node(name: "p", opType: "Neg", inputs: ["q_out"], outputs: ["p_out"]),
                             Node(name: "q", opType: "Neg", inputs: ["p_out"], outputs: ["q_out"])],
                     inputs: [ValueInfo(name: "i", type: nil), ValueInfo(name: "c", type: nil)],
                     outputs: [ValueInfo(name: "c", type: nil)])
    var loop = tinyModel()
    loop.graph.nodes.append(Node(name: "loop", opType: "Loop", inputs: ["", ""], outputs: [],
                                 attributes: [Attribute(name: "body", value: .graph(body))]))
    let start = Date()
    assertReadFails(write(loop, dir, "loop.onnx"), .invalidInput, "subgraph 'body' of node 'loop' (Loop) contains a cycle")
    XCTAssertLessThan(Date().timeIntervalSince(start), 5)
  }

  func test13RecursiveFunctions() {
    func fn(_ name: String, calls: String) -> Function {
      Function(name: name, domain: "my", inputs: ["x"], outputs: ["y"],
               nodes: [Node(opType: calls, domain: "my", inputs: ["x"], outputs: ["y"])],
               opsetImports: [OpsetImport(domain: "", version: 13), OpsetImport(domain: "my", version: 1)])
    }
    var m = tinyModel()
    m.opsetImports.append(OpsetImport(domain: "my", version: 1))
    m.functions = [fn("F", calls: "F")]
    assertReadFails(write(m, dir), .invalidInput, "function 'my.F' calls itself")
    m.functions = [fn("F", calls: "G"), fn("G", calls: "F")]
    assertReadFails(write(m, dir, "mutual.onnx"), .invalidInput, "calls itself")
  }

  func test14OutputsAndInitializerNames() {
    var m = tinyModel()
    m.graph.outputs.append(ValueInfo(name: "nowhere", type: nil))
    assertReadFails(write(m, dir), .invalidInput, "output 'nowhere' of graph 'tiny' is not produced by any node")
    m = tinyModel()
    m.graph.initializers.append(m.graph.initializers[0])
    assertReadFails(write(m, dir, "dup.onnx"), .invalidInput, "initializer 'W' appears twice in graph 'tiny'")
    m = tinyModel()
    m.graph.initializers.append(Tensor(name: "", dataType: .float, dims: [1], data: floatBytes([1])))
    assertReadFails(write(m, dir, "empty.onnx"), .invalidInput, "initializer #1 of graph 'tiny' has no name")
  }

  func test15UnknownOpsPassThrough() throws {
    var m = tinyModel()
    m.graph.nodes[1] = Node(name: "custom", opType: "FancyOp", domain: "com.example", inputs: ["h"], outputs: ["y"])
    m.opsetImports.append(OpsetImport(domain: "com.example", version: 1))
    let back = try ModelReader.read(write(m, dir))
    XCTAssertEqual(back.model, m)
  }

  func withWeight(_ t: Tensor) -> String {
    write(tinyModel(weights: t), dir)
  }

  func test16And17RawDataLengthMustMatch() {
    assertReadFails(withWeight(Tensor(name: "W", dataType: .float, dims: [2, 2], data: floatBytes([1, 2, 3]))),
                    .invalidInput, "tensor 'W' has 12 bytes of raw_data but dims [2, 2] of float need 16")
    assertReadFails(withWeight(Tensor(name: "W", dataType: .float, dims: [2, 2], data: floatBytes([1, 2, 3, 4, 5]))),
                    .invalidInput, "tensor 'W' has 20 bytes of raw_data but dims [2, 2] of float need 16")
  }

  func test18NegativeDim() {
    assertReadFails(withWeight(Tensor(name: "W", dataType: .float, dims: [-1, 4], data: floatBytes([1, 2, 3, 4]))),
                    .invalidInput, "has a negative dimension -1")
  }

  func test19DimProductOverflows() {
    assertReadFails(withWeight(Tensor(name: "W", dataType: .float, dims: [1 << 33, 1 << 33], data: floatBytes([1]))),
                    .invalidInput, "element count overflows 64 bits")
  }

  func test20HugeDimsWithoutData() {
    assertReadFails(withWeight(Tensor(name: "W", dataType: .float, dims: [1_000_000_000_000], data: floatBytes([1]))),
                    .invalidInput, "has 4 bytes of raw_data but dims [1000000000000] of float need 4000000000000")
  }

  func test21BadDataTypesAndFields() throws {
    assertReadFails(withWeight(Tensor(name: "W", dataType: .undefined, dims: [1], data: floatBytes([1]))),
                    .invalidInput, "tensor 'W' has data type UNDEFINED")
    assertReadFails(withWeight(Tensor(name: "W", dataType: DataType(rawValue: 999), dims: [1], data: floatBytes([1]))),
                    .invalidInput, "tensor 'W' has unknown data type 999")
    let stringRaw = Wire.int(1, 1) + Wire.int(2, 8) + Wire.string(8, "S") + Wire.bytes(9, [65])
    assertReadFails(writeBytes(Wire.model(graph: Wire.bytes(5, stringRaw) + Wire.bytes(12, Wire.string(1, "S"))), dir, "s.onnx"),
                    .invalidInput, "tensor 'S' is a string tensor but stores its data outside string_data")
    // Two data fields: raw_data and float_data, spliced by hand into a TensorProto.
    let tensor = Wire.int(1, 1) + Wire.int(2, 1) + Wire.string(8, "W")
      + Wire.bytes(4, [0, 0, 128, 63]) + Wire.bytes(9, [0, 0, 128, 63])
    let graph = Wire.bytes(5, tensor) + Wire.bytes(12, Wire.string(1, "W"))
    assertReadFails(writeBytes(Wire.model(graph: graph), dir, "two.onnx"), .invalidInput,
                    "tensor 'W' sets more than one data field (raw_data, float_data)")
  }

  func test22Int4OddCountNeedsRoundedUpBytes() {
    assertReadFails(withWeight(Tensor(name: "W", dataType: .int4, dims: [5], data: ByteBuffer(copying: [0x21, 0x43]))),
                    .invalidInput, "tensor 'W' has 2 bytes of raw_data but dims [5] of int4 need 3")
  }

  // MARK: - External data (23–26)

  func externalModel(location: String, offset: String = "0", length: String? = "16", extra: [StringPair] = []) -> String {
    // Build the TensorProto by hand so that any location/offset/length text can be written.
    var entries = [StringPair("location", location), StringPair("offset", offset)] + extra
    if let length { entries.append(StringPair("length", length)) }
    var tensor = Wire.int(1, 2) + Wire.int(1, 2) + Wire.int(2, 1) + Wire.string(8, "W") + Wire.int(14, 1)
    for e in entries { tensor += Wire.bytes(13, Wire.string(1, e.key) + Wire.string(2, e.value)) }
    let graph = Wire.bytes(5, tensor) + Wire.bytes(12, Wire.string(1, "W"))
    return writeBytes(Wire.model(graph: graph), dir)
  }

  func writeData(_ name: String, bytes: Int = 16) {
    FileManager.default.createFile(atPath: dir + "/" + name, contents: Data(repeating: 1, count: bytes))
  }

  func test23LocationsOutsideTheModelDirectory() {
    assertReadFails(externalModel(location: "../../etc/passwd"), .invalidInput,
                    "external data location '../../etc/passwd' of tensor 'W' leaves the model's directory")
    assertReadFails(externalModel(location: "a/../../x"), .invalidInput, "leaves the model's directory")
    assertReadFails(externalModel(location: "/etc/passwd"), .invalidInput, "is an absolute path")
  }

  func test24SymlinksAndHardlinks() throws {
    let outside = makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: outside) }
    FileManager.default.createFile(atPath: outside + "/secret", contents: Data(repeating: 7, count: 16))
    try FileManager.default.createSymbolicLink(atPath: dir + "/link.bin", withDestinationPath: outside + "/secret")
    assertReadFails(externalModel(location: "link.bin"), .invalidInput, "goes through a symbolic link")
    try FileManager.default.createSymbolicLink(atPath: dir + "/sub", withDestinationPath: outside)
    assertReadFails(externalModel(location: "sub/secret"), .invalidInput, "goes through a symbolic link")
    writeData("real.bin")
    XCTAssertEqual(link(dir + "/real.bin", dir + "/hard.bin"), 0)
    assertReadFails(externalModel(location: "hard.bin"), .invalidInput, "is a hard link")
  }

  func test25OffsetsLengthsAndKeys() {
    writeData("w.bin")
    XCTAssertNoThrow(try ModelReader.read(externalModel(location: "w.bin")))
    XCTAssertNoThrow(try ModelReader.read(externalModel(location: "./w.bin", length: nil)))
    assertReadFails(externalModel(location: "w.bin", offset: "8"), .invalidInput,
                    "tensor 'W' reads bytes 8..<24 of w.bin, which has only 16")
    assertReadFails(externalModel(location: "w.bin", offset: "-4"), .invalidInput, "external offset '-4', not a non-negative integer")
    assertReadFails(externalModel(location: "w.bin", offset: "abc"), .invalidInput, "external offset 'abc'")
    assertReadFails(externalModel(location: "w.bin", offset: "99999999999999999999"), .invalidInput, "not a non-negative integer")
    assertReadFails(externalModel(location: "w.bin", length: "12"), .invalidInput,
                    "declares external length 12 but its dims and type need 16 bytes")
    assertReadFails(externalModel(location: "w.bin", extra: [StringPair("basepath", "/")]), .invalidInput,
                    "unknown external data key 'basepath'")
  }

  func test26MissingExternalFile() {
    assertReadFails(externalModel(location: "absent.bin"), .missingInput,
                    "external data file 'absent.bin' of tensor 'W' is missing")
  }

  func testAllZeroBytesOfAMissingFile() {
    assertReadFails(dir + "/nope.onnx", .missingInput, "nope.onnx: no such file")
    assertReadFails(dir, .missingInput, "is a directory")
  }
}

extension BadInputTests {
  /// Large raw_data stays in the mapped file; a tensor repeating the field is refused rather
  /// than resolved by protobuf's last-one-wins rule.
  func testRepeatedRawDataIsRefused() {
    let payload = [UInt8](repeating: 0, count: 1024)
    let tensor = Wire.int(1, 256) + Wire.int(2, 1) + Wire.string(8, "W") + Wire.bytes(9, payload) + Wire.bytes(9, payload)
    let graph = Wire.bytes(5, tensor) + Wire.bytes(12, Wire.string(1, "W"))
    assertReadFails(writeBytes(Wire.model(graph: graph), dir, "twice.onnx"), .invalidInput, "tensor 'W' has raw_data more than once")
  }

  func testReservedMarkerFieldIsRefused() {
    let tensor = Wire.int(1, 1) + Wire.int(2, 1) + Wire.string(8, "W") + Wire.int(WireScannerMarker.field, 0)
      + Wire.bytes(9, [0, 0, 0, 0])
    let graph = Wire.bytes(5, tensor) + Wire.bytes(12, Wire.string(1, "W"))
    assertReadFails(writeBytes(Wire.model(graph: graph), dir, "marker.onnx"), .invalidInput,
                    "a tensor uses the reserved field number 536870911")
  }
}

enum WireScannerMarker { static let field: UInt32 = 536_870_911 }
