import Foundation
import XCTest

/// Every crash the graph-level fuzzer (Tests/fuzz/mutate_graphs.py) found, as the mutated model
/// and the command line that crashed: the command now ends with the exit code and the error
/// line recorded in Tests/fuzz/regressions/regressions.json, leaves nothing behind, and never
/// ends by a signal. Cases are added with `mutate_graphs.py --promote`.
final class FuzzRegressionTests: XCTestCase {
  struct Case: Decodable {
    var name: String
    var note: String
    var args: [String]
    var exit: Int32
    var error: String
  }

  func testEveryFuzzFindingEndsCleanly() throws {
    let regressions = repoRoot.appendingPathComponent("Tests/fuzz/regressions")
    let cases = try JSONDecoder().decode([Case].self, from: Data(contentsOf: regressions.appendingPathComponent("regressions.json")))
    XCTAssertGreaterThan(cases.count, 0)
    for c in cases {
      let dir = FileManager.default.temporaryDirectory.appendingPathComponent("compressor-fuzz-\(UUID().uuidString)").path
      try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
      defer { try? FileManager.default.removeItem(atPath: dir) }
      let out = dir + "/out.onnx"
      func expand(_ s: String) -> String {
        s.replacingOccurrences(of: "{model}", with: regressions.appendingPathComponent("\(c.name).onnx").path)
          .replacingOccurrences(of: "{data}", with: regressions.appendingPathComponent("data").path)
          .replacingOccurrences(of: "{fixtures}", with: fixtures.path)
          .replacingOccurrences(of: "{out}", with: out)
      }
      let args = c.args.map(expand)
      let r = try compressor(args)
      XCTAssertEqual(r.code, c.exit, "\(c.name) (\(c.note)): \(r.stderr)")
      if c.exit != 0 {
        XCTAssertEqual(r.stderr, "compressor: error: \(expand(c.error))\n", c.name)
        XCTAssertEqual(r.stderr.filter { $0 == "\n" }.count, 1, "\(c.name): \(r.stderr)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), c.name)
      }
      let left = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains(".tmp-") }
      XCTAssertEqual(left, [], c.name)
    }
  }
}
