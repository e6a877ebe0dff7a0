import Foundation
import IR
import ONNX
import Support
import XCTest

/// ONNX semantics as exporters write them (issue [real-models]): unknown dimensions written as
/// `dim_value` -1 or -7, absurd dimensions, weights listed among the graph inputs (IR 3), input
/// names holding `/` and `=`. Every command gives a correct run or one clear error line with its
/// exit code — never a signal.
final class GraphSemanticsTests: XCTestCase {
  var dir = ""

  override func setUp() {
    dir = FileManager.default.temporaryDirectory.appendingPathComponent("compressor-semantics-\(UUID().uuidString)").path
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
  }

  override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

  /// X [d0, 16] · W [16, 32] + B → Relu → Y, with X declared by `dims` and named `input`.
  func matmulModel(input: String = "X", dims: [IR.Dimension.Value], irVersion: Int64 = 8, listWeights: Bool = false,
                   weightInputDims: [Int64]? = nil) -> Model {
    let w: [Float] = (0..<(16 * 32)).map { (i: Int) -> Float in Float((i * 37) % 23) / 23 - 0.5 }
    let b: [Float] = (0..<32).map { (i: Int) -> Float in Float(i) / 64 }
    func tensor(_ name: String, _ dims: [Int64], _ v: [Float]) -> Tensor {
      Tensor(name: name, dataType: .float, dims: dims, data: ByteBuffer(copying: v.withUnsafeBytes { Array($0) }))
    }
    let inputShape = TensorShape(dims.map { IR.Dimension($0) })
    var inputs = [ValueInfo(name: input, type: .tensor(.float, inputShape))]
    if listWeights {
      inputs.append(ValueInfo(name: "W", type: .tensor(.float, TensorShape((weightInputDims ?? [16, 32]).map { IR.Dimension(.known($0)) }))))
      inputs.append(ValueInfo(name: "B", type: .tensor(.float, TensorShape([Dimension(.known(32))]))))
    }
    let graph = Graph(
      name: "g",
      nodes: [Node(name: "mm", opType: "MatMul", inputs: [input, "W"], outputs: ["H"]),
              Node(name: "add", opType: "Add", inputs: ["H", "B"], outputs: ["Z"]),
              Node(name: "relu", opType: "Relu", inputs: ["Z"], outputs: ["Y"])],
      initializers: [tensor("W", [16, 32], w), tensor("B", [32], b)],
      inputs: inputs,
      outputs: [ValueInfo(name: "Y", type: .tensor(.float, nil))])
    return Model(irVersion: irVersion, opsetImports: [OpsetImport(domain: "", version: 13)], graph: graph)
  }

  func write(_ model: Model, _ name: String) throws -> String {
    let path = dir + "/" + name
    try ModelWriter.write(model, to: path)
    return path
  }

  /// A .npy of `rows` × 16 float32 values.
  func sample(rows: Int, _ name: String = "x.npy") -> String {
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(rows), 16), }"
    var h = Array(header.utf8)
    while (10 + h.count + 1) % 64 != 0 { h.append(0x20) }
    h.append(0x0A)
    var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(h.count & 0xFF), UInt8(h.count >> 8)] + h
    let values = (0..<(rows * 16)).map { Float($0 % 7) / 7 }
    bytes += values.withUnsafeBytes { Array($0) }
    let path = dir + "/" + name
    FileManager.default.createFile(atPath: path, contents: Data(bytes))
    return path
  }

  func assertCleanOutcome(_ r: Run, _ args: [String], allowed: Set<Int32>, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertTrue(allowed.contains(r.code), "\(args): exit \(r.code): \(r.stderr)", file: file, line: line)
    if r.code != 0 {
      XCTAssertTrue(r.stderr.hasPrefix("compressor: error: "), "\(args): \(r.stderr)", file: file, line: line)
      XCTAssertEqual(r.stderr.filter { $0 == "\n" }.count, 1, "\(args): \(r.stderr)", file: file, line: line)
    }
  }

  /// -1 and -7 (Paddle2ONNX writes -1) are unknown dimensions: every command runs, samples of any
  /// size are accepted. 2⁶² is a size: what needs it fails with a clear error, never an abort.
  func testNonPositiveAndHugeDimValues() throws {
    let x = sample(rows: 3)
    for (label, d0) in [("minus1", IR.Dimension.Value.known(-1)), ("minus7", .known(-7)), ("zero", .known(0))] {
      let m = try write(matmulModel(dims: [d0, .known(16)]), "\(label).onnx")
      for args in [["inspect", m, "--shapes"], ["optimize", m, "-o", dir + "/\(label).opt.onnx"],
                   ["quantize", m, "-o", dir + "/\(label).q.onnx"],
                   ["quantize", m, "--mode", "static", "--data", x, "-o", dir + "/\(label).qs.onnx"],
                   ["prune", m, "--sparsity", "0.5", "--prune-first-last", "-o", dir + "/\(label).p.onnx"],
                   ["factorize", m, "--rank", "4", "-o", dir + "/\(label).f.onnx"],
                   ["run", m, "--input", "X=\(x)"], ["eval", m, "--data", x, "--reference", m],
                   ["bench", m, "--runs", "1", "--input-shape", "X=2x16"]] {
        let r = try compressor(args)
        // inspect --shapes may ask for a binding of the unknown dimension (64); everything else runs.
        assertCleanOutcome(r, args, allowed: args[1] == "--shapes" || args.contains("--shapes") ? [0, 64] : [0])
      }
    }
    let huge = try write(matmulModel(dims: [.known(Int64(1) << 62), .known(16)]), "huge.onnx")
    for args in [["inspect", huge, "--shapes"], ["optimize", huge, "-o", dir + "/huge.opt.onnx"],
                 ["quantize", huge, "-o", dir + "/huge.q.onnx"], ["bench", huge, "--runs", "1"],
                 ["prune", huge, "--sparsity", "0.5", "--prune-first-last", "-o", dir + "/huge.p.onnx"], ["run", huge, "--input", "X=\(x)"]] {
      assertCleanOutcome(try compressor(args), args, allowed: [0, 65])
    }
  }

  /// IR 3 lists every weight among the inputs: they stay weights (run binds the one real input,
  /// quantize and prune find the weights), and the result still lists its initializers.
  func testWeightsListedAsInputs() throws {
    let m = try write(matmulModel(input: "gpu_0/data_0", dims: [.known(3), .known(16)], irVersion: 3, listWeights: true), "ir3.onnx")
    let x = sample(rows: 3)
    let run = try compressor(["run", m, "--input", "gpu_0/data_0=\(x)"])
    XCTAssertEqual(run.code, 0, run.stderr)
    XCTAssertTrue(run.stdout.hasPrefix("Y  float [3, 32]"), run.stdout)
    let lone = try compressor(["run", m, "--input", x])
    XCTAssertEqual(lone.code, 0, lone.stderr)
    XCTAssertEqual(lone.stdout, run.stdout)
    for (cmd, extra) in [("quantize", [String]()), ("prune", ["--sparsity", "0.5", "--prune-first-last"]), ("factorize", ["--rank", "4"])] {
      let out = dir + "/ir3.\(cmd).onnx"
      let r = try compressor([cmd, m, "-o", out] + extra)
      XCTAssertEqual(r.code, 0, "\(cmd): \(r.stderr)")
      let written = try ModelReader.read(out).model
      let listed = Set(written.graph.inputs.map(\.name))
      XCTAssertTrue(written.graph.initializers.allSatisfy { listed.contains($0.name) }, "\(cmd): IR 3 lists every initializer")
      XCTAssertEqual(written.graph.feedNames, ["gpu_0/data_0"], cmd)
      let again = try compressor(["run", out, "--input", "gpu_0/data_0=\(x)"])
      XCTAssertEqual(again.code, 0, "\(cmd): \(again.stderr)")
    }
    let bad = try compressor(["run", m, "--input", "gpu_0/data=\(x)"])
    XCTAssertEqual(bad.code, 64)
    XCTAssertEqual(bad.stderr, "compressor: error: --input gpu_0/data=\(x): the model has no input named 'gpu_0/data' (its inputs: 'gpu_0/data_0')\n")
  }

  /// An initializer that shadows a graph input declared with another shape is refused, naming it.
  func testInitializerShadowingAnInputOfAnotherShape() throws {
    let m = try write(matmulModel(dims: [.known(3), .known(16)], irVersion: 3, listWeights: true, weightInputDims: [16, 31]), "shadow.onnx")
    let r = try compressor(["inspect", m])
    XCTAssertEqual(r.code, 65)
    XCTAssertEqual(r.stderr, "compressor: error: \(m): initializer 'W' (float [16, 32]) shadows input 'W' of graph 'g' declared tensor(float) [16, 31]\n")
  }
}
