import Runtime
import Support
import XCTest

/// The symbolic dimension expressions: canonical forms print the same, simplification is exact
/// (checked by evaluating against plain integer arithmetic over many bindings), parsing reads
/// back what printing writes.
final class DimExprTests: XCTestCase {
  let h = DimExpr.symbol("h"), w = DimExpr.symbol("w"), b = DimExpr.symbol("batch")

  func testCanonicalFormsPrintTheSame() throws {
    XCTAssertEqual(try DimExpr(2) * h, try h * 2)
    XCTAssertEqual((try DimExpr(2) * h).description, "2*h")
    XCTAssertEqual((try h * w * b).description, (try b * h * w).description)
    XCTAssertEqual((try h * w * b).description, "batch*h*w")
    XCTAssertEqual((try h + w - h).description, "w")
    XCTAssertEqual((try h - 1).description, "h-1")
    XCTAssertEqual((try -h + 3).description, "-h+3")
    XCTAssertEqual((try (h + 1) * (h - 1)).description, "h*h-1")
    XCTAssertEqual((try DimExpr(150528) * b).description, "150528*batch")
    XCTAssertEqual(DimExpr(0).description, "0")
  }

  func testFloorDivisionNormalizes() throws {
    // A 3×3, stride-2, pad-1 convolution: ⌊(h + 2 − 2 − 1)/2⌋ + 1 = ⌈h/2⌉.
    let conv = try DimExpr.floorDiv(h - 1, 2) + 1
    XCTAssertEqual(conv.description, "ceil(h/2)")
    XCTAssertEqual(conv, try DimExpr.ceilDiv(h, 2))
    // Five of them: ⌈h/32⌉.
    var x = h
    for _ in 0..<5 { x = try DimExpr.floorDiv(x - 1, 2) + 1 }
    XCTAssertEqual(x.description, "ceil(h/32)")
    // Without padding: ⌊(h − 3)/2⌋ + 1 = ⌈h/2⌉ − 1.
    XCTAssertEqual((try DimExpr.floorDiv(h - 3, 2) + 1).description, "ceil(h/2)-1")
    XCTAssertEqual((try DimExpr.floorDiv(h * 2 + 1, 2)).description, "h")
    XCTAssertEqual((try DimExpr.floorDiv(h * 4 + 6, 8)).description, "ceil(h/2)")
    XCTAssertEqual((try DimExpr.floorDiv(h * 3 + 1, 4)).description, "floor((3*h+1)/4)")
    XCTAssertEqual((try DimExpr.floorDiv(h * 2 + 2, 4)).description, "ceil(h/2)")
    XCTAssertEqual((try DimExpr.floorDiv(DimExpr.floorDiv(h, 2), 2)).description, "floor(h/4)")
    XCTAssertEqual((try DimExpr.floorDiv(h + 1, 3)).description, "floor((h+1)/3)")
    XCTAssertEqual((try DimExpr.floorDiv(DimExpr(7), 2)), 3)
    XCTAssertEqual((try DimExpr.floorDiv(DimExpr(-7), 2)), -4)
    XCTAssertEqual((try DimExpr.ceilDiv(DimExpr(-7), 2)), -3)
  }

  func testSymbolicDivisionIsExactWhereItDivides() throws {
    let total = try b * 3 * h * w
    XCTAssertEqual(try DimExpr.floorDiv(total, b * h), try w * 3)
    XCTAssertEqual(try DimExpr.floorDiv(total, total), 1)
    XCTAssertEqual(try DimExpr.floorDiv(h * h - 1, h - 1), try h + 1)
    XCTAssertEqual((try DimExpr.floorDiv(h, w)).description, "floor(h/w)")
    XCTAssertEqual((try DimExpr.ceilDiv(h, w)).description, "floor((h+w-1)/w)")
    XCTAssertThrowsError(try DimExpr.floorDiv(h, 0))
  }

  func testMinAndMaxDropWhatBoundsExclude() throws {
    // Sizes are at least 1 and below 2³¹: clamps in Slice settle.
    XCTAssertEqual(try DimExpr.min(DimExpr(Int.max), h), h)
    XCTAssertEqual(try DimExpr.max(h - 1, 0), try h - 1)
    XCTAssertEqual(try DimExpr.min(h, h + 2), h)
    XCTAssertEqual(try DimExpr.max([3, 5, 4]), 5)
    XCTAssertEqual((try DimExpr.min(h, 300)).description, "min(h, 300)")
    XCTAssertEqual(try DimExpr.min(DimExpr.min(h, 300), 200), try DimExpr.min(h, 200))
    XCTAssertEqual(try DimExpr.min(w, h), try DimExpr.min(h, w))
  }

  func testEvaluationAndSubstitution() throws {
    let e = try DimExpr.ceilDiv(h, 32) * w + DimExpr.min(h, 10)
    XCTAssertEqual(e.evaluate(["h": 100, "w": 3]), 4 * 3 + 10)
    XCTAssertNil(e.evaluate(["h": 100]))
    XCTAssertEqual(e.symbols, ["h", "w"])
    XCTAssertEqual(try e.substituting(["h": 64]), try w * 2 + 10)
    XCTAssertEqual(try e.substituting(["w": h]).evaluate(["h": 33]), 2 * 33 + 10)
  }

  func testArithmeticThrowsInsteadOfOverflowing() {
    XCTAssertThrowsError(try DimExpr(Int.max) + 1)
    XCTAssertThrowsError(try DimExpr(1 << 40) * h * DimExpr(1 << 40))
    XCTAssertThrowsError(try -DimExpr(Int.min))
  }

  func testParseReadsWhatDescriptionWrites() throws {
    let cases: [DimExpr] = [
      h, try h * 2, try DimExpr.ceilDiv(h, 32) * 21 * DimExpr.ceilDiv(w, 32), try DimExpr.floorDiv(h + 3, 8) - 1,
      try DimExpr.min(h, 300), try DimExpr.max(h - 1, w), try DimExpr.floorDiv(h, w), try -h + 7, .symbol("p2o.DynamicDimension.0"),
    ]
    for e in cases {
      XCTAssertEqual(DimExpr.parse(e.description), e, e.description)
    }
    XCTAssertEqual(DimExpr.parse("floor((height-1)/2)+1"), try DimExpr.ceilDiv(.symbol("height"), 2))
    XCTAssertNil(DimExpr.parse("?"))
    XCTAssertNil(DimExpr.parse("h+"))
    XCTAssertNil(DimExpr.parse(""))
  }

  /// Random expressions built with the operations, evaluated at random bindings, against the
  /// same operations on plain integers.
  func testSimplificationIsExact() throws {
    var rng = SplitMix64(seed: 7)
    func pick(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
    let names = ["a", "b", "c"]
    typealias Case = (expr: DimExpr, value: ([String: Int]) -> Int, text: String)
    func build(_ depth: Int) throws -> Case {
      if depth == 0 || pick(4) == 0 {
        if pick(2) == 0 {
          let k = pick(9) - 3
          return (DimExpr(k), { _ in k }, "\(k)")
        }
        let s = names[pick(names.count)]
        return (.symbol(s), { $0[s] ?? 0 }, s)
      }
      let x = try build(depth - 1), y = try build(depth - 1)
      let k = pick(7) + 1
      switch pick(7) {
      case 0: return (try x.expr + y.expr, { x.value($0) + y.value($0) }, "(\(x.text) + \(y.text))")
      case 1: return (try x.expr - y.expr, { x.value($0) - y.value($0) }, "(\(x.text) - \(y.text))")
      case 2: return (try x.expr * y.expr, { x.value($0) * y.value($0) }, "(\(x.text) * \(y.text))")
      case 3: return (try DimExpr.floorDiv(x.expr, DimExpr(k)), { floorDiv(x.value($0), k) }, "floor(\(x.text) / \(k))")
      case 4: return (try DimExpr.ceilDiv(x.expr, DimExpr(k)), { -floorDiv(-x.value($0), k) }, "ceil(\(x.text) / \(k))")
      case 5: return (try DimExpr.min(x.expr, y.expr), { Swift.min(x.value($0), y.value($0)) }, "min(\(x.text), \(y.text))")
      default: return (try DimExpr.max(x.expr, y.expr), { Swift.max(x.value($0), y.value($0)) }, "max(\(x.text), \(y.text))")
      }
    }
    for _ in 0..<400 {
      let c = try build(4)
      for _ in 0..<20 {
        let env = Dictionary(uniqueKeysWithValues: names.map { ($0, pick(60) + 1) })
        XCTAssertEqual(c.expr.evaluate(env), c.value(env), "\(c.expr) at \(env) from \(c.text)")
      }
      XCTAssertEqual(DimExpr.parse(c.expr.description), c.expr, c.expr.description)
    }
  }

}

private func floorDiv(_ a: Int, _ b: Int) -> Int {
  let q = a / b
  return a % b != 0 && (a < 0) != (b < 0) ? q - 1 : q
}
