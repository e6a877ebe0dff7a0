import Foundation
import XCTest

let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
  .deletingLastPathComponent()
let fixtures = repoRoot.appendingPathComponent("Fixtures")

/// The built `compressor` binary, beside the test bundle.
let binary: String = {
  var dir = Bundle.main.bundleURL
  for _ in 0..<3 {
    let candidate = dir.appendingPathComponent("compressor").path
    if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    dir = dir.deletingLastPathComponent()
  }
  return repoRoot.appendingPathComponent(".build/debug/compressor").path
}()

struct Run {
  var code: Int32
  var stdout: String
  var stderr: String
}

@discardableResult
func compressor(_ args: [String], cwd: String? = nil, prefix: [String] = []) throws -> Run {
  let p = Process()
  if prefix.isEmpty {
    p.executableURL = URL(fileURLWithPath: binary)
    p.arguments = args
  } else {
    p.executableURL = URL(fileURLWithPath: prefix[0])
    p.arguments = Array(prefix.dropFirst()) + [binary] + args
  }
  if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
  let out = Pipe(), err = Pipe()
  p.standardOutput = out
  p.standardError = err
  try p.run()
  let o = out.fileHandleForReading.readDataToEndOfFile()
  let e = err.fileHandleForReading.readDataToEndOfFile()
  p.waitUntilExit()
  return Run(code: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}

func bytes(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

final class CLITests: XCTestCase {
  var dir = ""
  let mlp = fixtures.appendingPathComponent("mlp.onnx").path

  override func setUp() {
    dir = FileManager.default.temporaryDirectory.appendingPathComponent("compressor-cli-\(UUID().uuidString)").path
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    chmod(dir, 0o777)
  }

  override func tearDown() {
    chmod(dir + "/ro", 0o755)
    try? FileManager.default.removeItem(atPath: dir)
  }

  func leftovers() -> [String] {
    (try? FileManager.default.subpathsOfDirectory(atPath: dir))?.filter { $0.contains(".tmp-") } ?? []
  }

  func testVersionAndHelp() throws {
    let v = try compressor(["--version"])
    XCTAssertEqual(v.code, 0)
    XCTAssertEqual(v.stdout, "0.1.0\n")
    for sub in [[], ["inspect"], ["convert"]] {
      let h = try compressor(sub + ["--help"])
      XCTAssertEqual(h.code, 0, sub.description)
      XCTAssertTrue(h.stdout.contains("USAGE: compressor"), h.stdout)
    }
  }

  func testConvertRoundTripIsByteIdenticalOnSecondPass() throws {
    let a = dir + "/a.onnx", b = dir + "/b.onnx"
    XCTAssertEqual(try compressor(["convert", mlp, a]).code, 0)
    XCTAssertEqual(try compressor(["convert", a, b]).code, 0)
    XCTAssertEqual(bytes(a), bytes(b))
    XCTAssertEqual(bytes(a), bytes(mlp))
  }

  func testExternalDataAndBack() throws {
    let ext = dir + "/ext.onnx"
    let r = try compressor(["convert", mlp, ext, "--external-data", "--size-threshold", "4096", "--json"])
    XCTAssertEqual(r.code, 0, r.stderr)
    XCTAssertEqual(r.stdout, "{\"dataFile\": \"\(dir)/ext.onnx.data\", \"dataBytes\": 65536, \"externalTensors\": 2, \"modelBytes\": 3958, \"output\": \"\(ext)\"}\n")
    let back = dir + "/single.onnx"
    XCTAssertEqual(try compressor(["convert", ext, back]).code, 0)
    XCTAssertEqual(bytes(back), bytes(mlp))
  }

  /// --opset: the summary in JSON, the same bytes run after run, 69 naming the node that blocks a
  /// downgrade, 64 outside the supported opsets.
  func testConvertOpset() throws {
    let opset9 = fixtures.appendingPathComponent("opset9.onnx").path
    let opset21 = fixtures.appendingPathComponent("opset21.onnx").path
    let a = dir + "/a13.onnx", b = dir + "/b13.onnx"
    let r = try compressor(["convert", opset9, a, "--opset", "13", "--json"])
    XCTAssertEqual(r.code, 0, r.stderr)
    XCTAssertEqual(r.stdout, "{\"dataBytes\": 0, \"externalTensors\": 0, \"modelBytes\": 1909, \"opset\": {\"from\": 9, \"rewrittenNodes\": 4, \"to\": 13}, \"output\": \"\(a)\"}\n")
    let text = try compressor(["convert", opset9, b, "--opset", "13"])
    XCTAssertEqual(text.stderr, "wrote \(b) (1909 bytes; default domain opset 9 → 13, IR version 4 → 7; 4 node(s) rewritten, 7 unchanged)\n")
    XCTAssertEqual(bytes(a), bytes(b))
    let down = try compressor(["convert", opset21, dir + "/o20.onnx", "--opset", "20"])
    XCTAssertEqual(down.code, 69)
    XCTAssertEqual(down.stderr, "compressor: error: node 'dequant' (DequantizeLinear): no exact conversion from opset 21 down to 20 (DequantizeLinear changed at opset 21)\n")
    let range = try compressor(["convert", opset9, dir + "/o.onnx", "--opset", "29"])
    XCTAssertEqual(range.code, 64)
    XCTAssertTrue(range.stderr.hasPrefix("compressor: error: --opset must be in 1...28, not 29\n"), range.stderr)
    XCTAssertEqual(leftovers(), [])
  }

  // MARK: - bad inputs 33–35 and 39

  func test33ExistingOutputNeedsForce() throws {
    let out = dir + "/out.onnx"
    FileManager.default.createFile(atPath: out, contents: Data("keep me".utf8))
    let r = try compressor(["convert", mlp, out])
    XCTAssertEqual(r.code, 73)
    XCTAssertEqual(r.stderr, "compressor: error: \(out) exists (use --force to replace it)\n")
    XCTAssertEqual(bytes(out), Data("keep me".utf8))
    XCTAssertEqual(try compressor(["convert", mlp, out, "--force"]).code, 0)
    XCTAssertEqual(bytes(out), bytes(mlp))
    XCTAssertEqual(leftovers(), [])
  }

  func test34OutputIsTheInput() throws {
    let model = dir + "/m.onnx"
    try FileManager.default.copyItem(atPath: mlp, toPath: model)
    try FileManager.default.createDirectory(atPath: dir + "/x", withIntermediateDirectories: true)
    try FileManager.default.createSymbolicLink(atPath: dir + "/sym.onnx", withDestinationPath: model)
    XCTAssertEqual(link(model, dir + "/hard.onnx"), 0)
    for out in [model, dir + "/x/../m.onnx", dir + "/sym.onnx", dir + "/hard.onnx"] {
      let r = try compressor(["convert", model, out, "--force"])
      XCTAssertEqual(r.code, 73, out)
      XCTAssertEqual(r.stderr, "compressor: error: \(out) is an input of this run; choose another output path\n")
      XCTAssertEqual(bytes(model), bytes(mlp))
    }
    // The external data file of the input is protected too.
    let ext = dir + "/e.onnx"
    XCTAssertEqual(try compressor(["convert", mlp, ext, "--external-data"]).code, 0)
    let r = try compressor(["convert", ext, dir + "/f.onnx", "--external-data", "--data-location", "e.onnx.data", "--force"])
    XCTAssertEqual(r.code, 73)
    XCTAssertTrue(r.stderr.hasSuffix("e.onnx.data is an input of this run; choose another output path\n"), r.stderr)
    XCTAssertEqual(leftovers(), [])
  }

  func test35MissingAndReadOnlyOutputDirectory() throws {
    let r = try compressor(["convert", mlp, dir + "/nope/out.onnx"])
    XCTAssertEqual(r.code, 73)
    XCTAssertEqual(r.stderr, "compressor: error: output directory \(dir)/nope does not exist\n")

    // Root ignores directory permissions, so drop to an unprivileged user where possible.
    try FileManager.default.createDirectory(atPath: dir + "/ro", withIntermediateDirectories: true)
    chmod(dir + "/ro", 0o555)
    let input = dir + "/in.onnx"
    try FileManager.default.copyItem(atPath: mlp, toPath: input)
    chmod(input, 0o644)
    var prefix: [String] = []
    if getuid() == 0 {
      guard FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else { return }
      prefix = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    }
    let ro = try compressor(["convert", input, dir + "/ro/out.onnx"], prefix: prefix)
    XCTAssertEqual(ro.code, 77, ro.stderr)
    XCTAssertEqual(ro.stderr, "compressor: error: cannot create output in \(dir)/ro: Permission denied\n")
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/ro"), [])
  }

  func test39UsageErrorsBeforeAnyIO() throws {
    let out = dir + "/never.onnx"
    for args in [["convert", mlp, out, "--bogus"], ["convert", mlp, out, "--size-threshold", "10"],
                 ["convert", mlp, out, "--external-data", "--size-threshold", "-1"],
                 ["convert", mlp, out, "--external-data", "--size-threshold", "lots"],
                 ["inspect"], ["frobnicate"], ["inspect", mlp, "--top", "-3"]] {
      let r = try compressor(args)
      XCTAssertEqual(r.code, 64, args.description)
      XCTAssertTrue(r.stderr.hasPrefix("compressor: error: "), r.stderr)
      XCTAssertTrue(r.stderr.contains("Usage: compressor") || r.stderr.contains("USAGE: compressor"), r.stderr)
      XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }
    let r = try compressor(["convert", mlp, out, "--size-threshold", "10"])
    XCTAssertTrue(r.stderr.hasPrefix("compressor: error: --size-threshold needs --external-data\n"), r.stderr)
  }

  func testErrorsAreOneLineWithTheirExitCodes() throws {
    let empty = dir + "/empty.onnx"
    FileManager.default.createFile(atPath: empty, contents: Data())
    let cases: [([String], Int32, String)] = [
      (["inspect", empty], 65, "compressor: error: \(empty): the file is empty, not an ONNX model\n"),
      (["inspect", dir + "/missing.onnx"], 66, "compressor: error: \(dir)/missing.onnx: no such file\n"),
      (["convert", dir + "/missing.onnx", dir + "/o.onnx"], 66, "compressor: error: \(dir)/missing.onnx: no such file\n"),
      (["inspect", dir], 66, "compressor: error: \(dir) is a directory\n"),
    ]
    for (args, code, message) in cases {
      let r = try compressor(args)
      XCTAssertEqual(r.code, code, args.description)
      XCTAssertEqual(r.stderr, message)
      XCTAssertEqual(r.stdout, "")
    }
  }

  /// bad-inputs 36: a write that fails (here, the file size limit) exits 74 and leaves no
  /// temporary and no output behind.
  func testFileSizeLimitIsAnIOErrorWithNothingLeft() throws {
    let out = dir + "/out.onnx"
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", "ulimit -f 16; exec \"$0\" convert \"$1\" \"$2\"", binary, mlp, out]
    let err = Pipe()
    p.standardError = err
    try p.run()
    let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    XCTAssertEqual(p.terminationStatus, 74)
    XCTAssertEqual(message, "compressor: error: cannot write \(out): File too large\n")
    XCTAssertEqual(leftovers(), [])
    XCTAssertFalse(FileManager.default.fileExists(atPath: out))
  }

  func testInterruptedConvertLeavesNothingBehind() throws {
    // A FIFO as the "model" blocks the reader; the temporary is created only after reading, so
    // instead interrupt while writing a large output into a slow pipe is not possible: check that
    // SIGTERM during a read leaves no temporary and exits 143.
    let fifo = dir + "/fifo.onnx"
    XCTAssertEqual(mkfifo(fifo, 0o644), 0)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: binary)
    p.arguments = ["convert", fifo, dir + "/out.onnx"]
    p.standardError = Pipe()
    try p.run()
    usleep(300_000)
    p.terminate()
    p.waitUntilExit()
    XCTAssertEqual(p.terminationStatus, 143)
    XCTAssertEqual(leftovers(), [])
    XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out.onnx"))
  }

  // MARK: - inspect

  /// `inspect --json` of every fixture matches the golden file committed beside this test.
  /// Regenerate with UPDATE_GOLDEN=1 after an intended change, and review the diff.
  func testInspectGoldenJSON() throws {
    let golden = repoRoot.appendingPathComponent("Tests/CompressorCLITests/golden")
    let update = ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1"
    let names = try FileManager.default.contentsOfDirectory(atPath: fixtures.path).filter { $0.hasSuffix(".onnx") }.sorted()
    XCTAssertGreaterThanOrEqual(names.count, 12)
    for name in names {
      let r = try compressor(["inspect", "--json", name], cwd: fixtures.path)
      XCTAssertEqual(r.code, 0, r.stderr)
      let file = golden.appendingPathComponent(name.replacingOccurrences(of: ".onnx", with: ".json"))
      if update {
        try FileManager.default.createDirectory(at: golden, withIntermediateDirectories: true)
        try Data(r.stdout.utf8).write(to: file)
      }
      XCTAssertEqual(r.stdout, String(decoding: (try? Data(contentsOf: file)) ?? Data(), as: UTF8.self), name)
      // The same bytes from another directory and time zone.
      let again = try compressor(["inspect", "--json", fixtures.appendingPathComponent(name).path], cwd: "/")
      XCTAssertEqual(again.stdout, r.stdout)
    }
  }

  func testInspectHumanTable() throws {
    let r = try compressor(["inspect", "mlp.onnx"], cwd: fixtures.path)
    XCTAssertEqual(r.code, 0)
    XCTAssertTrue(r.stdout.hasPrefix("""
      mlp.onnx  (67.8 KiB)
        IR version 8; producer compressor-fixtures 1
        opsets: ai.onnx 13

      inputs:
        input  tensor(float)  [batch, 64]
      outputs:
        logits  tensor(float)  [batch, 10]

      operators: 5 nodes, 0 subgraphs, 0 functions
        Gemm  3
        Relu  2

      parameters: 17226 elements, 67.3 KiB
        float  6 tensors, 17226 elements, 67.3 KiB
      """), r.stdout)
  }

  /// Every quantization mode on every ORT-runnable fixture (under the sanitizers too): exit 0,
  /// and the same options give byte-identical models and reports run after run.
  func testQuantizeModesAreDeterministicOnEveryFixture() throws {
    let data = fixtures.appendingPathComponent("data").path
    let calibration = ["cnn_residual": "calib_img.npy", "mobile_cnn": "calib_img.npy", "opset9": "calib_img.npy",
                       "transformer_block": "calib_tokens.npz"]
    let names = ["mlp", "cnn_residual", "mobile_cnn", "transformer_block", "constant_weights", "float16", "if_model",
                 "loop_scan", "opset9", "external_data"]
    let modes: [[String]] = [[], ["--mode", "dynamic"], ["--mode", "static", "--calibration", "entropy"],
                             ["--mode", "static", "--format", "qoperator", "--calibration", "percentile:99.9"]]
    for name in names {
      let model = fixtures.appendingPathComponent("\(name).onnx").path
      for (m, mode) in modes.enumerated() {
        var args = mode
        if mode.contains("static") { args += ["--data", "\(data)/\(calibration[name] ?? "calib_x.npy")", "--calibration-samples", "32", "--eval-samples", "16"] }
        var outputs = [Data?]()
        for run in 0..<2 {
          // The same file name in two directories: external data is named after its model.
          let sub = "\(dir)/run\(run)"
          try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: true)
          let out = "\(sub)/\(name).\(m).onnx", report = "\(sub)/\(name).\(m).json"
          let r = try compressor(["quantize", model, "-o", out, "--report", report, "--no-timings"] + args)
          XCTAssertEqual(r.code, 0, "\(name) \(args): \(r.stderr)")
          outputs += [bytes(out), bytes(out + ".data"), bytes(report).map { Data(String(decoding: $0, as: UTF8.self)
            .replacingOccurrences(of: "run\(run)/", with: "X/").utf8) }]
        }
        XCTAssertEqual(outputs[0], outputs[3], "\(name) \(args): model differs between runs")
        XCTAssertEqual(outputs[1], outputs[4], "\(name) \(args): external data differs between runs")
        XCTAssertEqual(outputs[2], outputs[5], "\(name) \(args): report differs between runs")
      }
    }
    XCTAssertEqual(leftovers(), [])
  }

  /// Every pruning mode and factorization on the fixtures (under the sanitizers too): exit 0,
  /// byte-identical models and reports run after run.
  func testPruneAndFactorizeAreDeterministic() throws {
    let data = fixtures.appendingPathComponent("data").path
    let cases: [(String, [String])] = [
      ("mlp", ["--sparsity", "0.5", "--global"]),
      ("transformer_block", ["--pattern", "2:4"]),
      ("cnn_residual", ["--structured", "--ratio", "0.3", "--criterion", "activation", "--data", "\(data)/calib_img.npy"]),
      ("mobile_cnn", ["--structured", "--ratio", "0.3", "--channel-multiple", "1"]),
      ("transformer_block", ["--structured", "--heads", "--ratio", "0.5"]),
      ("cnn_residual", ["--structured", "--target-macs", "0.8", "--channel-multiple", "1", "--data", "\(data)/calib_img.npy"]),
      ("mlp", ["factorize", "--target-params", "0.5", "--data", "\(data)/calib_x.npy"]),
      ("transformer_block", ["factorize", "--energy", "0.9"]),
    ]
    for (c, (name, given)) in cases.enumerated() {
      let model = fixtures.appendingPathComponent("\(name).onnx").path
      let command = given.first == "factorize" ? "factorize" : "prune"
      let args = given.first == "factorize" ? Array(given.dropFirst()) : given
      var outputs = [Data?]()
      for run in 0..<2 {
        let out = "\(dir)/case\(c).\(run).onnx", report = "\(dir)/case\(c).\(run).json"
        let r = try compressor([command, model, "-o", out, "--report", report, "--no-timings"] + args)
        XCTAssertEqual(r.code, 0, "\(name) \(args): \(r.stderr)")
        outputs += [bytes(out), bytes(report).map { Data(String(decoding: $0, as: UTF8.self).replacingOccurrences(of: "case\(c).\(run)", with: "X").utf8) }]
      }
      XCTAssertEqual(outputs[0], outputs[2], "\(name) \(args): model differs between runs")
      XCTAssertEqual(outputs[1], outputs[3], "\(name) \(args): report differs between runs")
    }
    XCTAssertEqual(leftovers(), [])
  }
}
