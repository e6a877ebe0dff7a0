import Foundation
import IR
import ONNX
import Support
import XCTest

/// shared/bad-inputs.md 27–32, 37 and 38 on every transforming command, and an external data file
/// that shrinks while it is read: exit code, the one error line, no temporary left, existing
/// outputs untouched. Runs under the sanitizers too (make test-sanitizers).
final class BadInputCommandTests: XCTestCase {
  var dir = ""

  override func setUp() {
    dir = FileManager.default.temporaryDirectory.appendingPathComponent("compressor-bad-\(UUID().uuidString)").path
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
  }

  override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

  // MARK: - Models and data

  /// X [n, k] → MatMul W1 [k, h] → Relu → MatMul W2 [h, m] → Y.
  func mlp(_ name: String, w1: [Float], w2: [Float], k: Int = 16, h: Int = 32, m: Int = 16) throws -> String {
    func tensor(_ name: String, _ dims: [Int64], _ v: [Float]) -> Tensor {
      Tensor(name: name, dataType: .float, dims: dims, data: ByteBuffer(copying: v.withUnsafeBytes { Array($0) }))
    }
    let graph = Graph(
      name: "g",
      nodes: [Node(name: "mm1", opType: "MatMul", inputs: ["X", "W1"], outputs: ["H"]),
              Node(name: "relu", opType: "Relu", inputs: ["H"], outputs: ["R"]),
              Node(name: "mm2", opType: "MatMul", inputs: ["R", "W2"], outputs: ["Y"])],
      initializers: [tensor("W1", [Int64(k), Int64(h)], w1), tensor("W2", [Int64(h), Int64(m)], w2)],
      inputs: [ValueInfo(name: "X", type: .tensor(.float, TensorShape([Dimension(.symbolic("n")), Dimension(.known(Int64(k)))])))],
      outputs: [ValueInfo(name: "Y", type: .tensor(.float, nil))])
    let path = dir + "/" + name
    try ModelWriter.write(Model(irVersion: 8, opsetImports: [OpsetImport(domain: "", version: 13)], graph: graph), to: path)
    return path
  }

  func values(_ n: Int, seed: Int) -> [Float] { (0..<n).map { Float(($0 * 37 + seed * 11) % 23) / 23 - 0.5 } }

  /// A .npy of `rows` × `cols` float32 values.
  func npy(_ name: String, rows: Int, cols: Int = 16, value: ((Int) -> Float)? = nil) -> String {
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(rows), \(cols)), }"
    var h = Array(header.utf8)
    while (10 + h.count + 1) % 64 != 0 { h.append(0x20) }
    h.append(0x0A)
    var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(h.count & 0xFF), UInt8(h.count >> 8)] + h
    let v = (0..<(rows * cols)).map { value?($0) ?? Float(($0 * 13) % 29) / 29 - 0.3 }
    bytes += v.withUnsafeBytes { Array($0) }
    let path = dir + "/" + name
    FileManager.default.createFile(atPath: path, contents: Data(bytes))
    return path
  }

  /// Every transforming command, as arguments after the model (`{data}` is a calibration file,
  /// `{teacher}` a float model).
  let transforming: [[String]] = [
    ["optimize"], ["convert"],
    ["quantize"], ["quantize", "--mode", "dynamic"], ["quantize", "--mode", "static", "--data", "{data}"],
    ["quantize", "--mode", "static", "--format", "qoperator", "--calibration", "entropy", "--data", "{data}"],
    ["prune", "--sparsity", "0.5", "--prune-first-last"], ["prune", "--pattern", "2:4", "--prune-first-last"],
    ["prune", "--structured", "--ratio", "0.5", "--channel-multiple", "1"],
    ["factorize", "--rank", "4"], ["factorize", "--energy", "0.9"],
    ["distill", "--teacher", "{teacher}", "--data", "{data}", "--epochs", "1", "--quiet"],
  ]

  func arguments(_ command: [String], model: String, output: String, data: String, teacher: String) -> [String] {
    let rest = command.dropFirst().map { $0 == "{data}" ? data : $0 == "{teacher}" ? teacher : $0 }
    switch command[0] {
    case "convert": return ["convert", model, output] + rest
    case "distill": return ["distill", "--student", model, "-o", output] + rest
    default: return [command[0], model, "-o", output] + rest
    }
  }

  func leftovers() -> [String] {
    (try? FileManager.default.contentsOfDirectory(atPath: dir))?.filter { $0.contains(".tmp-") } ?? []
  }

  func assertOneErrorLine(_ r: Run, _ args: [String], file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertTrue(r.stderr.hasPrefix("compressor: error: "), "\(args): \(r.stderr)", file: file, line: line)
    XCTAssertEqual(r.stderr.filter { $0 == "\n" }.count, 1, "\(args): \(r.stderr)", file: file, line: line)
  }

  /// Every float initializer of the written model is finite; scales are > 0.
  func assertFiniteModel(_ path: String, _ args: [String], file: StaticString = #filePath, line: UInt = #line) throws {
    let model = try ModelReader.read(path).model
    for t in model.graph.initializersEverywhere.values where t.dataType == .float {
      let v = t.data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
      XCTAssertTrue(v.allSatisfy(\.isFinite), "\(args): '\(t.name)' is not finite", file: file, line: line)
      if t.name.lowercased().contains("scale") {
        XCTAssertTrue(v.allSatisfy { $0 > 0 }, "\(args): scale '\(t.name)' is not > 0: \(v.prefix(8))", file: file, line: line)
      }
    }
  }

  // MARK: - 27–32

  /// 27: an all-zero weight, and weights with one all-zero channel: every command succeeds, every
  /// scale is finite and > 0, the result runs to finite outputs; quantize notes the zero channels.
  func test27AllZeroWeightAndZeroChannel() throws {
    var w1 = values(16 * 32, seed: 1), w2 = values(32 * 16, seed: 2)
    for r in 0..<16 { w1[r * 32 + 5] = 0 }
    for r in 0..<32 { w2[r * 16 + 3] = 0 }
    let models = [("zero", try mlp("zero.onnx", w1: [Float](repeating: 0, count: 16 * 32), w2: values(32 * 16, seed: 2))),
                  ("channel", try mlp("channel.onnx", w1: w1, w2: w2))]
    let teacher = try mlp("teacher.onnx", w1: values(16 * 32, seed: 3), w2: values(32 * 16, seed: 4))
    let data = npy("x.npy", rows: 8)
    for (label, model) in models {
      for (i, command) in transforming.enumerated() {
        let out = "\(dir)/\(label).\(i).onnx"
        let args = arguments(command, model: model, output: out, data: data, teacher: teacher) + ["--report", "\(dir)/\(label).\(i).json"]
        let r = try compressor(command[0] == "convert" ? Array(args.dropLast(2)) : args)
        XCTAssertEqual(r.code, 0, "\(args): \(r.stderr)")
        try assertFiniteModel(out, args)
        let run = try compressor(["run", out, "--input", "X=\(data)", "--json"])
        XCTAssertEqual(run.code, 0, "\(args): \(run.stderr)")
        XCTAssertFalse(run.stdout.contains("nan") || run.stdout.contains("inf"), "\(args): \(run.stdout)")
        if command == ["quantize"] {
          let report = String(decoding: bytes("\(dir)/\(label).\(i).json") ?? Data(), as: UTF8.self)
          XCTAssertTrue(report.contains(label == "zero" ? "32 all-zero channel(s)" : "1 all-zero channel(s)"), report)
        }
      }
    }
    XCTAssertEqual(leftovers(), [])
  }

  /// 28: NaN or ±Inf in a weight: every command that changes weights refuses with 65 naming the
  /// tensor and the element, and writes nothing.
  func test28NonFiniteWeightsAreRefusedNamingTheTensor() throws {
    var nan = values(16 * 32, seed: 1), inf = values(32 * 16, seed: 2)
    nan[67] = .nan
    inf[35] = -.infinity
    let cases = [("nan", try mlp("nan.onnx", w1: nan, w2: values(32 * 16, seed: 2)), "weight 'W1' holds nan at element 67"),
                 ("inf", try mlp("inf.onnx", w1: values(16 * 32, seed: 1), w2: inf), "weight 'W2' holds -inf at element 35")]
    let teacher = try mlp("teacher.onnx", w1: values(16 * 32, seed: 3), w2: values(32 * 16, seed: 4))
    let data = npy("x.npy", rows: 8)
    let verbs = ["quantize": "quantize", "prune": "prune", "factorize": "factorize", "distill": "train"]
    for (label, model, message) in cases {
      for (i, command) in transforming.enumerated() {
        guard let verb = verbs[command[0]] else { continue }
        let out = "\(dir)/\(label).\(i).onnx"
        let args = arguments(command, model: model, output: out, data: data, teacher: teacher)
        let r = try compressor(args)
        XCTAssertEqual(r.code, 65, "\(args): \(r.stderr)")
        XCTAssertEqual(r.stderr, "compressor: error: \(message); compressor will not \(verb) it\n", "\(args)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
      }
    }
    XCTAssertEqual(leftovers(), [])
  }

  /// 29: single-element weights and a channel axis of size 1 succeed (or are skipped with the
  /// reason); `--axis` outside [-rank, rank) is a usage error naming the weight.
  func test29SingleElementTensorsAndAxis() throws {
    let single = try mlp("single.onnx", w1: [0.5], w2: [2], k: 1, h: 1, m: 1)
    let teacher = try mlp("teacher1.onnx", w1: [0.25], w2: [1], k: 1, h: 1, m: 1)
    let data = npy("x1.npy", rows: 8, cols: 1)
    for (i, command) in transforming.enumerated() {
      let out = "\(dir)/single.\(i).onnx"
      let args = arguments(command, model: single, output: out, data: data, teacher: teacher)
      let r = try compressor(args)
      XCTAssertTrue([0, 69].contains(r.code), "\(args): \(r.stderr)")
      if r.code == 0 { try assertFiniteModel(out, args) } else { assertOneErrorLine(r, args) }
    }
    let m = try mlp("axis.onnx", w1: values(16 * 32, seed: 1), w2: values(32 * 16, seed: 2))
    for axis in ["2", "-3", "99"] {
      let out = dir + "/axis.onnx.out"
      let r = try compressor(["quantize", m, "-o", out, "--axis=\(axis)"])
      XCTAssertEqual(r.code, 64, "--axis \(axis): \(r.stderr)")
      XCTAssertTrue(r.stderr.hasPrefix("compressor: error: --axis \(axis) is out of range for weight 'W1' of rank 2"), r.stderr)
      XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }
    for axis in ["0", "1", "-1", "-2"] {
      let out = "\(dir)/axis\(axis).onnx"
      XCTAssertEqual(try compressor(["quantize", m, "-o", out, "--axis=\(axis)"]).code, 0, axis)
      try assertFiniteModel(out, ["--axis", axis])
    }
  }

  /// 30: an empty calibration set is a usage error for every command that takes data; constant
  /// activations (every sample the same) calibrate to finite scales.
  func test30EmptyCalibrationSetAndConstantActivations() throws {
    let m = try mlp("m.onnx", w1: values(16 * 32, seed: 1), w2: values(32 * 16, seed: 2))
    let empty = dir + "/empty"
    try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
    let commands: [[String]] = [
      ["quantize", m, "--mode", "static", "--data", empty], ["prune", m, "--structured", "--ratio", "0.5", "--criterion", "activation", "--data", empty],
      ["prune", m, "--structured", "--target-macs", "0.5", "--data", empty], ["factorize", m, "--target-params", "0.5", "--data", empty],
      ["distill", "--student", m, "--teacher", m, "--data", empty],
    ]
    for args in commands {
      let out = dir + "/never.onnx"
      let r = try compressor(args + ["-o", out])
      XCTAssertEqual(r.code, 64, "\(args): \(r.stderr)")
      XCTAssertEqual(r.stderr, "compressor: error: \(empty) holds no .npy, .npz or .pb files\n", "\(args)")
      XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }
    let constant = npy("constant.npy", rows: 8) { _ in 1 }
    let zeros = npy("zeros.npy", rows: 8) { _ in 0 }
    for (name, data) in [("constant", constant), ("zeros", zeros)] {
      for format in ["qdq", "qoperator"] {
        let out = "\(dir)/\(name).\(format).onnx"
        let r = try compressor(["quantize", m, "--mode", "static", "--format", format, "--data", data, "-o", out])
        XCTAssertEqual(r.code, 0, "\(name) \(format): \(r.stderr)")
        try assertFiniteModel(out, [name, format])
      }
    }
    XCTAssertEqual(leftovers(), [])
  }

  /// 31: a zero matrix and a rank above min(m, n) factorize without NaN (the rank is clamped and
  /// said so).
  func test31SVDOfZeroAndOverRankedWeights() throws {
    let zero = try mlp("zero.onnx", w1: [Float](repeating: 0, count: 16 * 32), w2: [Float](repeating: 0, count: 32 * 16))
    for args in [["--rank", "4"], ["--energy", "0.5"], ["--rank-ratio", "1"], ["--rank", "500"]] {
      let out = dir + "/f.onnx"
      let r = try compressor(["factorize", zero, "-o", out, "--force"] + args)
      XCTAssertEqual(r.code, 0, "\(args): \(r.stderr)")
      try assertFiniteModel(out, args)
      if args == ["--rank", "500"] { XCTAssertTrue(r.stderr.contains("rank 500 clamped to 16"), r.stderr) }
    }
  }

  /// 32: a ratio that would empty a layer is a usage error, before anything is read or written.
  func test32RatiosThatWouldEmptyALayer() throws {
    let missing = dir + "/not-read.onnx"
    let out = dir + "/never.onnx"
    for args in [["prune", missing, "--sparsity", "1"], ["prune", missing, "--structured", "--ratio", "1"],
                 ["prune", missing, "--sparsity", "0.5", "--overrides", "mm1=1.0"], ["factorize", missing, "--rank-ratio", "0"],
                 ["factorize", missing, "--rank", "0"], ["prune", missing, "--structured", "--target-params", "0", "--data", dir]] {
      let r = try compressor(args + ["-o", out])
      XCTAssertEqual(r.code, 64, "\(args): \(r.stderr)")
      XCTAssertTrue(r.stderr.hasPrefix("compressor: error: "), "\(args): \(r.stderr)")
      XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }
  }

  // MARK: - 37: signals

  /// Starts the binary, waits until `ready` holds (polled), sends `signal`, returns the exit code.
  func interrupt(_ args: [String], signal: Int32, ready: () -> Bool) throws -> (code: Int32, stderr: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: binary)
    p.arguments = args
    let err = Pipe()
    p.standardError = err
    p.standardOutput = FileHandle.nullDevice
    try p.run()
    let deadline = Date().addingTimeInterval(120)
    while !ready() && p.isRunning && Date() < deadline { usleep(2_000) }
    kill(p.processIdentifier, signal)
    let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    return (p.terminationReason == .uncaughtSignal ? -p.terminationStatus : p.terminationStatus, message)
  }

  /// SIGINT and SIGTERM while calibrating, while training and while writing: 130/143, the
  /// temporary removed, the previous output byte-identical.
  func test37SignalsDuringCalibrationTrainingAndWriting() throws {
    let m = try mlp("m.onnx", w1: values(16 * 32, seed: 1), w2: values(32 * 16, seed: 2))
    let many = npy("many.npy", rows: 200_000)
    let previous = Data("previous output".utf8)
    let out = dir + "/out.onnx"
    let started = Date()
    var elapsed: Double { Date().timeIntervalSince(started) }
    let cases: [([String], Int32)] = [
      (["quantize", m, "--mode", "static", "--calibration", "entropy", "--data", many, "-o", out, "--force"], SIGINT),
      (["distill", "--student", m, "--teacher", m, "--data", many, "--epochs", "50", "--quiet", "-o", out, "--force"], SIGTERM),
    ]
    for (args, sig) in cases {
      FileManager.default.createFile(atPath: out, contents: previous)
      var begun = Date()
      let r = try interrupt(args, signal: sig) { Date().timeIntervalSince(begun) > 1.5 }
      begun = Date()
      XCTAssertEqual(r.code, 128 + sig, "\(args): \(r.stderr)")
      XCTAssertEqual(bytes(out), previous, "\(args)")
      XCTAssertEqual(leftovers(), [], "\(args)")
    }
    // Writing: a 128 MiB weight, interrupted once its temporary exists.
    let big = try mlp("big.onnx", w1: [Float](repeating: 0.25, count: 4096 * 8192), w2: values(8192 * 4, seed: 2), k: 4096, h: 8192, m: 4)
    for (args, sig) in [(["convert", big, out, "--force"], SIGTERM), (["convert", big, out, "--force", "--external-data"], SIGINT)] {
      FileManager.default.createFile(atPath: out, contents: previous)
      let r = try interrupt(args, signal: sig) { !self.leftovers().isEmpty }
      // A write that finished before the signal arrived replaces the output whole; either way
      // nothing partial is left.
      if r.code == 0 {
        XCTAssertEqual(try ModelReader.read(out).model.graph.initializers.count, 2)
      } else {
        XCTAssertEqual(r.code, 128 + sig, "\(args): \(r.stderr)")
        XCTAssertEqual(bytes(out), previous, "\(args)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + ".data"), "\(args)")
      }
      XCTAssertEqual(leftovers(), [], "\(args)")
    }
    _ = elapsed
  }

  // MARK: - 38: determinism

  /// Every transforming command, run in two processes with different working directories and
  /// time zones (and Swift's per-process hash seeds): byte-identical models and reports (without
  /// their wall-clock times).
  func test38SameInputAndSeedGiveIdenticalBytes() throws {
    let m = try mlp("m.onnx", w1: values(16 * 32, seed: 1), w2: values(32 * 16, seed: 2))
    let teacher = try mlp("teacher.onnx", w1: values(16 * 32, seed: 3), w2: values(32 * 16, seed: 4))
    let data = npy("x.npy", rows: 16)
    for sub in ["a", "b"] { try FileManager.default.createDirectory(atPath: "\(dir)/\(sub)", withIntermediateDirectories: true) }
    for (i, command) in transforming.enumerated() {
      var results = [Data?]()
      for (sub, tz) in [("a", "UTC"), ("b", "Asia/Kolkata")] {
        let out = "\(dir)/\(sub)/r\(i).onnx", report = "\(dir)/\(sub)/r\(i).json"
        var args = arguments(command, model: m, output: out, data: data, teacher: teacher)
        if command[0] != "convert" { args += ["--seed", "7", "--report", report, "--no-timings"] }
        let r = try run(args, cwd: "\(dir)/\(sub)", environment: ["TZ": tz])
        XCTAssertEqual(r.code, 0, "\(args): \(r.stderr)")
        results += [bytes(out), command[0] == "convert" ? nil : bytes(report)]
      }
      XCTAssertNotNil(results[0])
      XCTAssertEqual(results[0], results[2], "\(command): the models differ")
      XCTAssertEqual(results[1], results[3], "\(command): the reports differ")
    }
  }

  func run(_ args: [String], cwd: String, environment: [String: String]) throws -> Run {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: binary)
    p.arguments = args
    p.currentDirectoryURL = URL(fileURLWithPath: cwd)
    p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return Run(code: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
  }

  // MARK: - External data that changes size

  /// Another process truncates a model's external data file while a command reads it: exit 74
  /// naming the file, no temporary, no output — never SIGBUS.
  func testExternalDataThatShrinksWhileRead() throws {
    let big = try mlp("big.onnx", w1: values(4096 * 8192, seed: 5), w2: values(8192 * 4, seed: 2), k: 4096, h: 8192, m: 4)
    let ext = dir + "/ext.onnx"
    XCTAssertEqual(try compressor(["convert", big, ext, "--external-data"]).code, 0)
    try FileManager.default.removeItem(atPath: big)
    let data = ext + ".data"
    let out = dir + "/q.onnx"
    let p = Process()
    p.executableURL = URL(fileURLWithPath: binary)
    p.arguments = ["quantize", ext, "-o", out]
    let err = Pipe()
    p.standardError = err
    try p.run()
    // Once the process has mapped the data file, cut it to one page.
    let maps = "/proc/\(p.processIdentifier)/maps"
    let deadline = Date().addingTimeInterval(60)
    while p.isRunning && Date() < deadline {
      if let text = try? String(contentsOfFile: maps, encoding: .utf8), text.contains(data) { break }
      usleep(1_000)
    }
    XCTAssertEqual(truncate(data, 4096), 0)
    let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    XCTAssertEqual(p.terminationReason, .exit, message)
    XCTAssertEqual(p.terminationStatus, 74, message)
    XCTAssertEqual(message, "compressor: error: \(data) changed size while it was being read\n")
    XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    XCTAssertEqual(leftovers(), [])
  }
}
