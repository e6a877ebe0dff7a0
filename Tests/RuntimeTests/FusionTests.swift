import IR
import Runtime
import Support
import XCTest

/// MatMul → Add(mask) → Softmax → Where(IsNaN) → MatMul runs fused (no Softmax node is left to
/// observe) and gives what the five nodes give one by one (an observer undoes the fusion), with
/// fully masked rows, broadcast masks, batch dimensions that broadcast (the unfused fallback),
/// and the same bytes at one and two threads.
final class FusedAttentionTests: XCTestCase {
  func values(_ n: Int, seed: Int) -> [Float] { (0..<n).map { Float(((($0 + seed) * 7919) % 211) - 105) / 50 } }

  func attention(mask maskShape: [Int]?, kBatch: [Int] = [2, 3]) -> (Model, [String: NDArray]) {
    var nodes = [Node(name: "qk", opType: "MatMul", inputs: ["q", "kT"], outputs: ["s"])]
    var scores = "s"
    if maskShape != nil {
      nodes.append(Node(name: "mask", opType: "Add", inputs: ["m", "s"], outputs: ["sm"]))
      scores = "sm"
    }
    nodes += [
      Node(name: "softmax", opType: "Softmax", inputs: [scores], outputs: ["p"], attributes: [Attribute(name: "axis", value: .int(-1))]),
      Node(name: "nan", opType: "IsNaN", inputs: ["p"], outputs: ["isnan"]),
      Node(name: "where", opType: "Where", inputs: ["isnan", "zero", "p"], outputs: ["pz"]),
      Node(name: "pv", opType: "MatMul", inputs: ["pz", "v"], outputs: ["y"]),
    ]
    let zero = Tensor(name: "zero", dataType: .float, dims: [], data: ByteBuffer(copying: [Float(0)].withUnsafeBytes { Array($0) }))
    let names = ["q", "kT", "v"] + (maskShape == nil ? [] : ["m"])
    let m = Model(irVersion: 8, opsetImports: [OpsetImport(domain: "", version: 17)],
                  graph: Graph(name: "g", nodes: nodes, initializers: [zero], inputs: names.map { ValueInfo(name: $0, type: nil) },
                               outputs: [ValueInfo(name: "y", type: nil)]))
    // S 37 query rows, T 300 keys (more rows than one block), head sizes 8 and 5.
    var feeds = ["q": NDArray(values(2 * 3 * 37 * 8, seed: 1), shape: [2, 3, 37, 8]),
                 "kT": NDArray(values(kBatch.reduce(1, *) * 8 * 300, seed: 2), shape: kBatch + [8, 300]),
                 "v": NDArray(values(2 * 3 * 300 * 5, seed: 3), shape: [2, 3, 300, 5])]
    if let maskShape {
      var mask = values(maskShape.reduce(1, *), seed: 4)
      // Some keys masked out, and with a full-size mask one query row masked entirely (NaN → 0).
      for i in mask.indices where i % 7 == 0 { mask[i] = -.infinity }
      if maskShape.last == 300 && maskShape.dropLast().last == 37 { for j in 0..<300 { mask[5 * 300 + j] = -.infinity } }
      feeds["m"] = NDArray(mask, shape: maskShape)
    }
    return (m, feeds)
  }

  func check(mask: [Int]?, kBatch: [Int] = [2, 3], fused: Bool = true) throws {
    let (m, feeds) = attention(mask: mask, kBatch: kBatch)
    let executor = try Executor(model: m)
    let got = try executor.run(feeds)[0].value
    let twoThreads = try Executor(model: m, threads: 2).run(feeds)[0].value
    let reference = try Executor(model: m)
    var seen = Set<String>()
    reference.observer = { node, _, _ in seen.insert(node.opType) }
    let want = try reference.run(feeds)[0].value
    XCTAssertEqual(seen, Set(["MatMul", "Softmax", "IsNaN", "Where"] + (mask == nil ? [] : ["Add"])))
    // Fused, the [2, 3, 37, 300] scores (266 KB) are never a tensor of the run.
    if fused { XCTAssertLessThan(executor.peakLiveBytes + 2 * 3 * 37 * 300 * 4, reference.peakLiveBytes) }
    XCTAssertEqual(got.shape, [2, 3, 37, 5])
    XCTAssertEqual(got.shape, want.shape)
    let a = try got.floats(), b = try want.floats()
    for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-5) }
    XCTAssertFalse(a.contains { $0.isNaN })
    XCTAssertEqual(try twoThreads.floats(), a)
  }

  func testNoMask() throws { try check(mask: nil) }
  func testFullMaskWithAMaskedRow() throws { try check(mask: [2, 3, 37, 300]) }
  func testBroadcastMasks() throws {
    try check(mask: [300])
    try check(mask: [2, 1, 1, 300])
    try check(mask: [37, 1])
  }
  func testBroadcastBatchFallsBackToTheNodesOneByOne() throws { try check(mask: [1, 3, 37, 300], kBatch: [1, 3], fused: false) }
}

/// Conv → Sigmoid, Mul (SiLU as exporters write it) runs as one Conv and gives the same bits
/// as the three nodes one by one (an observer undoes the fusion).
final class FusedSiLUTests: XCTestCase {
  func testSiLUFusedIntoConvGivesTheSameBits() throws {
    func values(_ n: Int, seed: Int) -> [Float] { (0..<n).map { Float(((($0 + seed) * 7919) % 211) - 105) / 60 } }
    let w = Tensor(name: "w", dataType: .float, dims: [6, 3, 3, 3], data: ByteBuffer(copying: values(162, seed: 1).withUnsafeBytes { Array($0) }))
    let b = Tensor(name: "b", dataType: .float, dims: [6], data: ByteBuffer(copying: values(6, seed: 2).withUnsafeBytes { Array($0) }))
    let m = Model(irVersion: 8, opsetImports: [OpsetImport(domain: "", version: 17)], graph: Graph(name: "g", nodes: [
      Node(name: "conv", opType: "Conv", inputs: ["x", "w", "b"], outputs: ["c"], attributes: [Attribute(name: "pads", value: .ints([1, 1, 1, 1]))]),
      Node(name: "sig", opType: "Sigmoid", inputs: ["c"], outputs: ["s"]),
      Node(name: "silu", opType: "Mul", inputs: ["s", "c"], outputs: ["y"]),
    ], initializers: [w, b], inputs: [ValueInfo(name: "x", type: nil)], outputs: [ValueInfo(name: "y", type: nil)]))
    let x = NDArray(values(2 * 3 * 7 * 5, seed: 3), shape: [2, 3, 7, 5])
    let fused = try Executor(model: m)
    let got = try fused.run(["x": x])[0].value.floats()
    let reference = try Executor(model: m)
    var seen = [String]()
    reference.observer = { node, _, _ in seen.append(node.opType) }
    let want = try reference.run(["x": x])[0].value.floats()
    XCTAssertEqual(seen, ["Conv", "Sigmoid", "Mul"])
    XCTAssertEqual(got, want)
    // The conv output and the sigmoid are not tensors of the fused run.
    XCTAssertLessThan(fused.peakLiveBytes, reference.peakLiveBytes)
  }
}
