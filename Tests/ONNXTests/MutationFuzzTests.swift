import Foundation
import IR
import ONNX
import Support
import XCTest

/// Corrupted models from the internet must be read or refused with a CompressorError — never a
/// crash, hang or any other error. Each fixture is mutated many times with a fixed seed: bytes
/// flipped, varints maxed, runs deleted or duplicated, the file cut.
final class MutationFuzzTests: XCTestCase {
  func testMutatedFixturesAreReadOrRefused() throws {
    let dir = makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var rng = SplitMix64(seed: 2026)
    var refused = [CompressorError.Kind: Int]()
    var accepted = 0
    let names = ["mlp.onnx", "transformer_block.onnx", "if_model.onnx", "kitchen_sink.onnx", "loop_scan.onnx", "opset21.onnx"]
    for name in names {
      let original = [UInt8](try Data(contentsOf: fixtures.appendingPathComponent(name)))
      for _ in 0..<300 {
        var b = original
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
          let i = Int.random(in: 0..<b.count, using: &rng)
          switch Int.random(in: 0..<5, using: &rng) {
          case 0: b[i] = UInt8.random(in: 0...255, using: &rng)
          case 1: b[i] ^= 1 << UInt8.random(in: 0..<8, using: &rng)
          case 2: b.replaceSubrange(i..<min(b.count, i + 5), with: [0xFF, 0xFF, 0xFF, 0xFF, 0x0F])
          case 3: b.removeSubrange(i..<min(b.count, i + Int.random(in: 1...64, using: &rng)))
          default: b.insert(contentsOf: b[i..<min(b.count, i + 32)], at: i)
          }
          if b.isEmpty { b = [0] }
        }
        let path = writeBytes(b, dir)
        do {
          let m = try ModelReader.read(path)
          accepted += 1
          // Whatever was accepted must also write and read back to the same IR.
          let out = dir + "/out.onnx"
          try ModelWriter.write(m.model, to: out, options: WriteOptions(force: true))
          XCTAssertEqual(try ModelReader.read(out).model, m.model, name)
        } catch let e as CompressorError {
          XCTAssertNotEqual(e.kind, .internalError, e.message)
          refused[e.kind, default: 0] += 1
        }
      }
    }
    XCTAssertEqual(accepted + refused.values.reduce(0, +), names.count * 300)
    XCTAssertGreaterThan(refused[.invalidInput] ?? 0, 500)
  }
}
