import Foundation
import IR
import ONNX
import Support
import XCTest

/// The repository root, found from this file's path.
let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
  .deletingLastPathComponent()
let fixtures = repoRoot.appendingPathComponent("Fixtures")

/// A fresh directory under the system temporary directory, removed by the caller's teardown.
func makeTemporaryDirectory() -> String {
  let dir = FileManager.default.temporaryDirectory.appendingPathComponent("compressor-tests-\(UUID().uuidString)")
  try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
  return dir.path
}

/// Hand-made protobuf bytes for inputs no well-behaved writer would produce.
enum Wire {
  static func varint(_ v: UInt64) -> [UInt8] {
    var v = v
    var out = [UInt8]()
    repeat {
      var b = UInt8(v & 0x7F)
      v >>= 7
      if v != 0 { b |= 0x80 }
      out.append(b)
    } while v != 0
    return out
  }
  static func tag(_ field: UInt32, _ wire: UInt8) -> [UInt8] { varint(UInt64(field) << 3 | UInt64(wire)) }
  static func int(_ field: UInt32, _ v: Int64) -> [UInt8] { tag(field, 0) + varint(UInt64(bitPattern: v)) }
  static func bytes(_ field: UInt32, _ b: [UInt8]) -> [UInt8] { tag(field, 2) + varint(UInt64(b.count)) + b }
  static func string(_ field: UInt32, _ s: String) -> [UInt8] { bytes(field, Array(s.utf8)) }

  /// `levels` copies of a chain of wrapping messages around `inner`, built in linear time.
  /// Each wrapper is (bytes that precede the nested field, the nested field's number), outermost
  /// first; e.g. Node { op_type: "If", attribute: { … } } is ([op_type bytes], 5).
  static func nested(levels: Int, wrappers: [([UInt8], UInt32)], inner: [UInt8]) -> [UInt8] {
    let chain = (0..<levels).flatMap { _ in wrappers }
    var lengths = [Int](repeating: 0, count: chain.count)  // content length of each wrapper
    var size = inner.count
    for i in chain.indices.reversed() {
      lengths[i] = size
      size += chain[i].0.count + tag(chain[i].1, 2).count + varint(UInt64(size)).count
    }
    var out = [UInt8]()
    out.reserveCapacity(size)
    for (i, w) in chain.enumerated() {
      out += w.0
      out += tag(w.1, 2)
      out += varint(UInt64(lengths[i]))
    }
    return out + inner
  }

  /// ModelProto fields
  static func model(ir: Int64? = 8, opset: Int64? = 13, graph: [UInt8]?) -> [UInt8] {
    var m = [UInt8]()
    if let ir { m += int(1, ir) }
    if let opset { m += bytes(8, string(1, "") + int(2, opset)) }
    if let graph { m += bytes(7, graph) }
    return m
  }
}

/// A small valid model built in the IR: y = Relu(x · W) with W an initializer.
func tinyModel(weights: Tensor? = nil) -> Model {
  let w = weights ?? Tensor(name: "W", dataType: .float, dims: [2, 2],
                            data: ByteBuffer(copying: [Float(1), 2, 3, 4].withUnsafeBytes { Array($0) }))
  let g = Graph(
    name: "tiny",
    nodes: [Node(name: "mm", opType: "MatMul", inputs: ["x", "W"], outputs: ["h"]),
            Node(name: "relu", opType: "Relu", inputs: ["h"], outputs: ["y"])],
    initializers: [w],
    inputs: [ValueInfo(name: "x", type: .tensor(.float, TensorShape([Dimension(.symbolic("batch")), Dimension(.known(2))])))],
    outputs: [ValueInfo(name: "y", type: .tensor(.float, nil))])
  return Model(irVersion: 8, opsetImports: [OpsetImport(domain: "", version: 13)], graph: g)
}

/// Writes `model` without validation (the writer never validates) so that the reader's
/// checks can be exercised on exactly the defect under test.
func write(_ model: Model, _ dir: String, _ name: String = "m.onnx", options: WriteOptions = .init()) -> String {
  let path = dir + "/" + name
  var options = options
  options.force = true
  try! ModelWriter.write(model, to: path, options: options)
  return path
}

func writeBytes(_ bytes: [UInt8], _ dir: String, _ name: String = "m.onnx") -> String {
  let path = dir + "/" + name
  FileManager.default.createFile(atPath: path, contents: Data(bytes))
  return path
}

/// Asserts that reading `path` fails with exactly this exit code and a message containing `text`.
func assertReadFails(_ path: String, _ kind: CompressorError.Kind, _ text: String,
                     file: StaticString = #filePath, line: UInt = #line) {
  do {
    _ = try ModelReader.read(path)
    XCTFail("expected \(kind) containing '\(text)'", file: file, line: line)
  } catch let e as CompressorError {
    XCTAssertEqual(e.kind, kind, e.message, file: file, line: line)
    XCTAssertTrue(e.message.contains(text), "'\(e.message)' lacks '\(text)'", file: file, line: line)
  } catch {
    XCTFail("unexpected error \(error)", file: file, line: line)
  }
}

func floatBytes(_ v: [Float]) -> ByteBuffer { ByteBuffer(copying: v.withUnsafeBytes { Array($0) }) }
