import Foundation
import XCTest

/// `compressor pipeline` and the options every transforming command shares: bad recipes are one
/// line naming the place and exit 64/65 with nothing written; --print-step, --dry-run and gates.
/// (Runs under the sanitizers too: the Makefile's filter matches CLITests.)
final class PipelineCLITests: XCTestCase {
  var dir = ""
  let mlp = fixtures.appendingPathComponent("mlp.onnx").path
  let data = fixtures.appendingPathComponent("data").path

  override func setUp() {
    dir = FileManager.default.temporaryDirectory.appendingPathComponent("compressor-pipeline-\(UUID().uuidString)").path
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
  }

  override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

  /// Writes `recipe.yaml` in the test's directory and runs it there.
  func pipeline(_ recipe: String, _ extra: [String] = []) throws -> Run {
    try recipe.write(toFile: dir + "/recipe.yaml", atomically: true, encoding: .utf8)
    return try compressor(["pipeline", "recipe.yaml", "-o", "out.onnx", "--report", "out.json"] + extra, cwd: dir)
  }

  func written() -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0 != "recipe.yaml" }.sorted()
  }

  /// Each bad recipe: its exit code and its one line, naming the recipe's line and column.
  func testBadRecipesAreOneLineNamingThePlace() throws {
    let head = "model: \(mlp)\n"
    let cases: [(String, String, Int32, String)] = [
      ("unknown step", head + "steps:\n  - prnue: {sparsity: 0.5}\n", 64,
       "unknown step 'prnue' (did you mean 'prune'?) (steps: optimize, quantize, prune, factorize, distill, repeat), recipe.yaml:3:5"),
      ("misspelt key", head + "steps:\n  - prune: {sparsity: 0.5, ratoi: 0.3}\n", 64,
       "unknown key 'ratoi' for step prune (did you mean 'ratio'?) (its keys: sparsity, global, pattern, structured, ratio, criterion, heads, analyze, target-macs, target-params, channel-multiple, overrides, prune-first-last, data, labels, threads, seed, keep, gate), recipe.yaml:3:28"),
      ("misspelt top-level key", head + "step:\n  - optimize\n", 64,
       "unknown key 'step' in the recipe (did you mean 'steps'?) (keys: model, output, report, html, data, labels, eval-data, eval-labels, threads, seed, steps, gates), recipe.yaml:2:1"),
      ("a step that needs data and has none", head + "steps:\n  - quantize: {mode: static}\n", 64,
       "step quantize: --mode static needs --data (calibration samples), recipe.yaml:3:22"),
      ("distill without data", head + "steps:\n  - distill: {teacher: original}\n", 64,
       "step distill: data is required, recipe.yaml:3:5"),
      ("an accuracy gate without labels", head + "data: \(data)/digits_x.npy\nsteps:\n  - quantize: {}\ngates:\n  accuracy-drop: 1\n", 64,
       "the gate accuracy-drop needs labels (accuracy), and the recipe has none (labels:), recipe.yaml:6:3"),
      ("a step gate without data", head + "steps:\n  - quantize: {gate: {agreement: 0.99}}\n", 64,
       "the gate agreement of step quantize measures quality, and the step has no data for it, recipe.yaml:3:23"),
      ("repeat 0", head + "steps:\n  - repeat: 0\n    steps: [{prune: {sparsity: 0.5}}]\n", 64,
       "repeat must be 1 or more, not 0, recipe.yaml:3:13"),
      ("a value of the wrong type", head + "steps:\n  - prune: {structured: true, ratio: lots}\n", 64,
       "step prune: The value 'lots' is invalid for '--ratio <ratio>', recipe.yaml:3:38"),
      ("a flag that is not true or false", head + "steps:\n  - prune: {structured: 3, ratio: 0.3}\n", 64,
       "step prune: structured must be true or false, recipe.yaml:3:25"),
      ("a list for a single value", head + "steps:\n  - prune: {sparsity: [0.5, 0.6]}\n", 64,
       "step prune: sparsity takes one value, not a list, recipe.yaml:3:23"),
      ("an impossible combination", head + "steps:\n  - prune: {structured: true}\n", 64,
       "step prune: --structured needs --ratio, recipe.yaml:3:25"),
      ("an unknown gate", head + "steps:\n  - optimize\ngates:\n  speed: 2\n", 64,
       "gates: unknown gate 'speed' (gates: accuracy-drop, accuracy, agreement, cosine, iou, size, params, macs, latency-p50), recipe.yaml:5:3"),
      ("a gate bound the wrong way", head + "steps:\n  - optimize\ngates:\n  size: '>= 0.5'\n", 64,
       "gates: size is an upper bound (<=), recipe.yaml:5:9"),
      ("two names in one step", head + "steps:\n  - {optimize: {}, prune: {sparsity: 0.5}}\n", 64,
       "a step is one name with its keys (prune: {ratio: 0.3}), not 2 names (optimize, prune), recipe.yaml:3:5"),
      ("prune --analyze as a step", head + "data: \(data)/digits_x.npy\nsteps:\n  - prune: {structured: true, analyze: true}\n", 64,
       "step prune: prune analyze writes no model, recipe.yaml:4:5"),
      ("no steps", head, 64, "the recipe has no steps (steps: [...]), recipe.yaml:1:1"),
      ("a key given twice", head + "steps:\n  - prune: {sparsity: 0.5, sparsity: 0.6}\n", 65,
       "not a valid YAML or JSON recipe: duplicated key 'sparsity', recipe.yaml:3:13"),
      ("not YAML", head + "steps: [\n", 65, "not a valid YAML or JSON recipe: did not find expected node content, recipe.yaml:3:1"),
      ("an alias as a key", head + "steps:\n  - prune: {&k sparsity: 0.5, *k : 0.6}\n", 64,
       "an alias (*k) cannot be a key in a recipe, recipe.yaml:3:31"),
      ("a complex key", head + "steps:\n  - prune:\n      ? [a, b]\n      : 1\n", 64, "complex keys ('? ') are not allowed in a recipe, recipe.yaml:4:7"),
      ("a missing model", "model: nothere.onnx\nsteps:\n  - optimize\n", 66, "nothere.onnx: no such file or directory, recipe.yaml"),
      ("JSON: a misspelt key", "{\"model\": \"\(mlp)\",\n \"steps\": [{\"prune\": {\"sparsity\": 0.5, \"globl\": true}}]}\n", 64,
       "unknown key 'globl' for step prune (did you mean 'global'?) (its keys: sparsity, global, pattern, structured, ratio, criterion, heads, analyze, target-macs, target-params, channel-multiple, overrides, prune-first-last, data, labels, threads, seed, keep, gate), recipe.yaml:2:40"),
    ]
    for (what, recipe, code, message) in cases {
      let r = try pipeline(recipe)
      XCTAssertEqual(r.code, code, "\(what): \(r.stderr)")
      XCTAssertEqual(r.stderr, "compressor: error: \(message)\n", what)
      XCTAssertEqual(r.stdout, "", what)
      XCTAssertEqual(written(), [], what)
    }
  }

  /// Anchors that would expand to 10^10 nodes: refused after the node budget, at once.
  func testBillionLaughsIsBounded() throws {
    var recipe = "model: \(mlp)\nsteps:\n  - repeat: 1\n    steps: &l0 [" + Array(repeating: "{prune: {sparsity: 0.1}}", count: 10).joined(separator: ", ") + "]\n"
    for level in 1...9 {
      recipe += "  - repeat: 1\n    steps: &l\(level) [" + Array(repeating: "{repeat: 1, steps: *l\(level - 1)}", count: 10).joined(separator: ", ") + "]\n"
    }
    let start = Date()
    let r = try pipeline(recipe)
    XCTAssertEqual(r.code, 65, r.stderr)
    XCTAssertTrue(r.stderr.hasPrefix("compressor: error: the recipe expands to more than 10000 YAML nodes (anchors and aliases count each time they are used), recipe.yaml:"), r.stderr)
    XCTAssertEqual(r.stderr.split(separator: "\n").count, 1)
    XCTAssertLessThan(Date().timeIntervalSince(start), 20)
    XCTAssertEqual(written(), [])
  }

  /// --print-step: non-default options as a recipe step, gates included; a printed step runs.
  func testPrintStepRoundTrips() throws {
    let q = try compressor(["quantize", mlp, "--mode", "static", "--data", "\(data)/calib_x.npy", "--calibration", "percentile",
                            "--include", "gemm*", "--include", "Conv", "--no-symmetric-weights", "--gate", "size<=0.3",
                            "--gate", "agreement>=0.99", "--print-step"])
    XCTAssertEqual(q.code, 0, q.stderr)
    XCTAssertEqual(q.stdout, """
      - quantize:
          mode: static
          data: \(data)/calib_x.npy
          calibration: percentile
          symmetric-weights: false
          include: [gemm*, Conv]
          gate:
            size: 0.3
            agreement: 0.99

      """)
    let p = try compressor(["prune", mlp, "--structured", "--ratio", "0.3", "--channel-multiple", "1", "--print-step"])
    XCTAssertEqual(p.stdout, "- prune:\n    structured: true\n    ratio: 0.3\n    channel-multiple: 1\n")
    XCTAssertEqual(try compressor(["optimize", mlp, "--print-step"]).stdout, "- optimize: {}\n")
    XCTAssertEqual(written(), [])
    // The printed step is a recipe step: the dry run gives back the same options.
    let r = try pipeline("model: \(mlp)\nsteps:\n" + p.stdout, ["--dry-run"])
    XCTAssertEqual(r.code, 0, r.stderr)
    XCTAssertTrue(r.stdout.contains("  1  compressor prune --structured --ratio=0.3 --channel-multiple=1\n"), r.stdout)
    XCTAssertTrue(r.stdout.hasSuffix("dry run: recipe, files and outputs checked; nothing was run\n"), r.stdout)
    XCTAssertEqual(written(), [])
  }

  /// --dry-run checks files and outputs: a missing data file is 66, an existing output 73.
  func testDryRunChecksFilesAndOutputs() throws {
    let missing = try pipeline("model: \(mlp)\ndata: nothere\nsteps:\n  - optimize\n", ["--dry-run"])
    XCTAssertEqual(missing.code, 66)
    XCTAssertEqual(missing.stderr, "compressor: error: nothere: no such file or directory, recipe.yaml:4:5\n")
    FileManager.default.createFile(atPath: dir + "/out.onnx", contents: Data("keep".utf8))
    let exists = try pipeline("model: \(mlp)\nsteps:\n  - optimize\n", ["--dry-run"])
    XCTAssertEqual(exists.code, 73)
    XCTAssertEqual(exists.stderr, "compressor: error: out.onnx exists (use --force to replace it)\n")
  }

  /// A failed gate on a subcommand: the model and the report are written, the line says by how
  /// much, exit 2; the same gates met exit 0.
  func testSubcommandGateFailureStillWritesEverything() throws {
    let out = dir + "/q.onnx", report = dir + "/q.json"
    let r = try compressor(["quantize", mlp, "-o", out, "--report", report, "--data", "\(data)/digits_x.npy",
                            "--labels", "\(data)/digits_y.npy", "--gate", "size<=0.2", "--gate", "accuracy-drop<=1", "--no-timings"])
    XCTAssertEqual(r.code, 2, r.stderr)
    XCTAssertNotNil(bytes(out))
    XCTAssertEqual(r.stderr.split(separator: "\n").last.map(String.init),
                   "compressor: gate failed: size 0.2812 > 0.2 (failed by 0.08117)")
    XCTAssertTrue(r.stderr.hasPrefix("wrote \(out) (weight-only int8, 3 nodes/weights quantized, 19509 bytes, 0.28× the input"), r.stderr)
    XCTAssertTrue(r.stderr.contains("; gates 1 of 2 FAILED: size 0.2812 > 0.2 (failed by 0.08117), accuracy-drop 0 <= 1)\n"), r.stderr)
    let json = try JSONSerialization.jsonObject(with: bytes(report) ?? Data()) as? [String: Any]
    let gates = json?["gates"] as? [[String: Any]]
    XCTAssertEqual(gates?.map { $0["gate"] as? String }, ["size", "accuracy-drop"])
    XCTAssertEqual(gates?.map { $0["passed"] as? Bool }, [false, true])
    XCTAssertNil(json?["timings"])
    let ok = try compressor(["quantize", mlp, "-o", out, "--force", "--gate", "size<=0.3", "--gate", "params<=1.1"])
    XCTAssertEqual(ok.code, 0, ok.stderr)
    // Quality gates need data; a lower bound written as an upper one is refused.
    let noData = try compressor(["quantize", mlp, "-o", dir + "/n.onnx", "--gate", "agreement>=0.99"])
    XCTAssertEqual(noData.code, 64)
    XCTAssertEqual(noData.stderr, "compressor: error: the gate agreement needs data to measure quality on, and this command has none\n")
    let wrongWay = try compressor(["quantize", mlp, "-o", dir + "/n.onnx", "--gate", "agreement<=0.99"])
    XCTAssertEqual(wrongWay.code, 64)
    XCTAssertTrue(wrongWay.stderr.hasPrefix("compressor: error: --gate 'agreement<=0.99': agreement is a lower bound; write agreement>=0.99\n"), wrongWay.stderr)
    XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/n.onnx"))
  }

  /// eval takes gates too: against --reference, accuracy alone against the labels.
  func testEvalGates() throws {
    let failing = try compressor(["eval", mlp, "--data", "\(data)/digits_x.npy", "--labels", "\(data)/digits_y.npy",
                                  "--gate", "accuracy>=0.99", "--json"])
    XCTAssertEqual(failing.code, 2, failing.stderr)
    XCTAssertEqual(failing.stdout, "{\"gates\": [{\"gate\": \"accuracy\", \"limit\": 0.99, \"passed\": false, \"value\": 0.969444}], \"accuracy\": 0.969444, \"samples\": 360}\n")
    XCTAssertEqual(failing.stderr, "gates 1 of 1 FAILED: accuracy 0.9694 < 0.99 (failed by 0.02056)\n")
    let passing = try compressor(["eval", mlp, "--reference", mlp, "--data", "\(data)/digits_x.npy", "--labels", "\(data)/digits_y.npy",
                                  "--gate", "agreement>=1", "--gate", "size<=1", "--gate", "accuracy-drop<=0"])
    XCTAssertEqual(passing.code, 0, passing.stderr)
    XCTAssertEqual(passing.stderr, "gates all 3 passed: agreement 1 >= 1, size 1 <= 1, accuracy-drop 0 <= 0\n")
    let noReference = try compressor(["eval", mlp, "--data", "\(data)/digits_x.npy", "--labels", "\(data)/digits_y.npy", "--gate", "size<=1"])
    XCTAssertEqual(noReference.code, 64)
    XCTAssertTrue(noReference.stderr.hasPrefix("compressor: error: the gate size compares with a reference model; give --reference\n"), noReference.stderr)
  }

  /// A recipe whose step gate fails stops there: that step's model is the output, the report
  /// says which gate and that the later steps did not run; exit 2.
  func testStepGateStopsThePipeline() throws {
    let r = try pipeline("""
      model: \(mlp)
      data: \(data)/digits_x.npy
      labels: \(data)/digits_y.npy
      steps:
        - prune: {sparsity: 0.9, prune-first-last: true, gate: {accuracy-drop: 5}}
        - quantize
      """, ["--no-timings"])
    XCTAssertEqual(r.code, 2, r.stderr)
    XCTAssertEqual(written(), ["out.json", "out.onnx"])
    XCTAssertTrue(r.stdout.hasPrefix("pipeline recipe.yaml: wrote out.onnx (1 of 2 steps, "), r.stdout)
    XCTAssertTrue(r.stdout.contains("; step 1 failed its gate: accuracy-drop 74.17 > 5 (failed by 69.17))"), r.stdout)
    XCTAssertTrue(r.stderr.hasSuffix("compressor: gate failed: step 1: accuracy-drop 74.17 > 5 (failed by 69.17)\n"), r.stderr)
    let json = try JSONSerialization.jsonObject(with: bytes(dir + "/out.json") ?? Data()) as? [String: Any]
    XCTAssertEqual((json?["steps"] as? [Any])?.count, 1)
    XCTAssertEqual(json?["warnings"] as? [String], ["step 1 (prune) failed its gate; the steps after it were not run"])
  }

  /// Latency gates are measured in the same run; absolute limits in ms.
  func testLatencyGate() throws {
    let r = try pipeline("model: \(mlp)\ndata: \(data)/digits_x.npy\nsteps:\n  - quantize\ngates:\n  latency-p50: 10s\n", ["--json"])
    XCTAssertEqual(r.code, 0, r.stderr)
    let summary = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
    let gate = (summary?["gates"] as? [[String: Any]])?.first
    XCTAssertEqual(gate?["gate"] as? String, "latency-p50")
    XCTAssertEqual(gate?["unit"] as? String, "ms")
    XCTAssertEqual(gate?["passed"] as? Bool, true)
    XCTAssertGreaterThan(gate?["value"] as? Double ?? 0, 0)
    let report = try JSONSerialization.jsonObject(with: bytes(dir + "/out.json") ?? Data()) as? [String: Any]
    let latency = (report?["timings"] as? [String: Any])?["latency"] as? [[String: Any]]
    XCTAssertEqual(latency?.count, 1)
  }
}
