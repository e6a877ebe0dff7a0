/// A tensor dimension that may depend on symbols: `224`, `batch`, `2*height`, `ceil(width/32)`,
/// `3*batch*height*width`, `min(seq, 512)`.
///
/// The form is canonical, so two expressions that simplification can prove equal compare equal
/// with `==` (and print the same): a sum of terms `coefficient × monomial`, where a monomial is a
/// sorted product of atoms — symbols, `floor(a/b)`, `min(…)`, `max(…)` — merged, with no zero
/// coefficients, kept in one fixed order. Floor division by a constant `d` keeps only what it must
/// inside the floor: multiples of `d` move out (`floor((2h+1)/2) = h`), the constant left inside
/// is in `0..<d` (`floor((h-1)/2)+1 = floor((h+1)/2)`, printed `ceil(h/2)`), common factors
/// cancel, and nested floors merge (`floor(floor(h/2)/2) = floor(h/4)`), so the output sizes of a
/// stack of stride-2 layers stay short (`ceil(h/32)`). Ceil division is floor division of
/// `a + d - 1`. Division by a symbolic expression is exact polynomial division when there is one
/// (`3*b*h*w / (b*h) = 3*w`), else a `floor` atom.
///
/// Every symbol is a size, assumed to lie in 1...2³¹−1. `min`/`max` drop an argument that
/// interval bounds under that assumption prove can never be chosen, which is what clamps in
/// Slice need (`min(9223372036854775807, n) = n`, `max(n-1, 0) = n-1`).
///
/// Arithmetic throws `DimExpr.Overflow` rather than trapping when a coefficient or constant
/// leaves 64-bit integers (sizes come from files).
public struct DimExpr: Hashable, Comparable, Sendable, CustomStringConvertible, ExpressibleByIntegerLiteral {
  /// coefficient × product of atoms (sorted, repeated for powers); the empty product is 1.
  struct Term: Hashable, Sendable {
    var coefficient: Int
    var atoms: [Atom]
  }

  /// The non-polynomial building blocks. `floor(n, d)` holds a numerator and a denominator in the
  /// canonical form `floorDiv` leaves them in; `min`/`max` hold two or more sorted arguments.
  indirect enum Atom: Hashable, Sendable {
    case symbol(String)
    case floor(DimExpr, DimExpr)
    case min([DimExpr])
    case max([DimExpr])
  }

  /// The error every arithmetic operation throws instead of trapping.
  public struct Overflow: Error, CustomStringConvertible {
    public var description: String
  }

  /// Sorted by `Term.order`; the constant term (no atoms), if not 0, first.
  private(set) var terms: [Term]

  /// The range every symbol is assumed to lie in.
  public static let symbolRange = 1...Int(Int32.max)

  // MARK: Construction

  public init(_ value: Int) { terms = value == 0 ? [] : [Term(coefficient: value, atoms: [])] }
  public init(integerLiteral value: Int) { self.init(value) }
  public static func symbol(_ name: String) -> DimExpr { DimExpr(atom: .symbol(name)) }

  init(atom: Atom) { terms = [Term(coefficient: 1, atoms: [atom])] }

  /// Merges like terms, drops zeros and sorts.
  init(collecting raw: [Term]) throws {
    var merged = [[Atom]: Int]()
    for t in raw where t.coefficient != 0 {
      let (sum, overflow) = merged[t.atoms, default: 0].addingReportingOverflow(t.coefficient)
      if overflow { throw Overflow(description: "a size overflows 64-bit integers") }
      merged[t.atoms] = sum
    }
    terms = merged.filter { $0.value != 0 }.map { Term(coefficient: $0.value, atoms: $0.key) }.sorted(by: Term.precedes)
  }

  // MARK: Queries

  /// The value when it does not depend on any symbol.
  public var constant: Int? {
    if terms.isEmpty { return 0 }
    return terms.count == 1 && terms[0].atoms.isEmpty ? terms[0].coefficient : nil
  }

  public var isConstant: Bool { constant != nil }

  /// The constant term (0 when there is none).
  var constantTerm: Int { terms.first.flatMap { $0.atoms.isEmpty ? $0.coefficient : nil } ?? 0 }

  /// The expression without its constant term.
  var withoutConstant: DimExpr {
    var e = self
    if let f = e.terms.first, f.atoms.isEmpty { e.terms.removeFirst() }
    return e
  }

  /// When the expression is exactly one symbol, its name.
  public var symbolName: String? {
    if terms.count == 1, terms[0].coefficient == 1, terms[0].atoms.count == 1, case .symbol(let s) = terms[0].atoms[0] { return s }
    return nil
  }

  /// Every symbol the expression reads, sorted.
  public var symbols: [String] {
    var found = Set<String>()
    func visit(_ e: DimExpr) {
      for t in e.terms {
        for a in t.atoms {
          switch a {
          case .symbol(let s): found.insert(s)
          case .floor(let n, let d): visit(n); visit(d)
          case .min(let xs), .max(let xs): xs.forEach(visit)
          }
        }
      }
    }
    visit(self)
    return found.sorted()
  }

  /// How big the expression is (terms and atoms, recursively): the measure by which the simpler
  /// of two expressions for the same size is chosen.
  public var complexity: Int {
    terms.reduce(0) { sum, t in
      sum + 1 + t.atoms.reduce(0) { s, a in
        switch a {
        case .symbol: return s + 1
        case .floor(let n, let d): return s + 1 + n.complexity + d.complexity
        case .min(let xs), .max(let xs): return s + 1 + xs.reduce(0) { $0 + $1.complexity }
        }
      }
    }
  }

  // MARK: Arithmetic

  public static func + (a: DimExpr, b: DimExpr) throws -> DimExpr {
    if a.terms.isEmpty { return b }
    if b.terms.isEmpty { return a }
    return try DimExpr(collecting: a.terms + b.terms)
  }

  public static prefix func - (a: DimExpr) throws -> DimExpr {
    var r = a
    for i in r.terms.indices {
      guard r.terms[i].coefficient != Int.min else { throw Overflow(description: "a size overflows 64-bit integers") }
      r.terms[i].coefficient = -r.terms[i].coefficient
    }
    return r
  }

  public static func - (a: DimExpr, b: DimExpr) throws -> DimExpr { try a + (-b) }

  public static func * (a: DimExpr, b: DimExpr) throws -> DimExpr {
    if let k = a.constant, k == 1 { return b }
    if let k = b.constant, k == 1 { return a }
    var raw = [Term]()
    raw.reserveCapacity(a.terms.count * b.terms.count)
    for x in a.terms {
      for y in b.terms {
        let (c, overflow) = x.coefficient.multipliedReportingOverflow(by: y.coefficient)
        if overflow { throw Overflow(description: "a size overflows 64-bit integers") }
        raw.append(Term(coefficient: c, atoms: (x.atoms + y.atoms).sorted(by: Atom.precedes)))
      }
    }
    return try DimExpr(collecting: raw)
  }

  /// ⌊n / d⌋, rounding toward −∞ (sizes and window arithmetic never divide negatives otherwise).
  public static func floorDiv(_ n: DimExpr, _ d: DimExpr) throws -> DimExpr {
    if let k = d.constant {
      if k == 0 { throw Overflow(description: "a size is divided by 0") }
      if k < 0 { return try floorDiv(-n, -d) }
      return try floorDiv(n, by: k)
    }
    if n.terms.isEmpty { return 0 }
    if n == d { return 1 }
    if let q = try exactQuotient(n, d) { return q }
    return DimExpr(atom: .floor(n, d))
  }

  /// ⌈n / d⌉.
  public static func ceilDiv(_ n: DimExpr, _ d: DimExpr) throws -> DimExpr {
    if let k = d.constant, k < 0 { return try ceilDiv(-n, -d) }
    if !d.isConstant, let q = try exactQuotient(n, d) { return q }
    return try floorDiv(n + d - 1, d)
  }

  /// n mod d, the remainder of floor division (never negative for positive d).
  public static func mod(_ n: DimExpr, _ d: DimExpr) throws -> DimExpr { try n - d * floorDiv(n, d) }

  private static func floorDiv(_ n: DimExpr, by d: Int) throws -> DimExpr {
    if d == 1 { return n }
    // Multiples of d leave the floor: ⌊(d·q + r)/d⌋ = q + ⌊r/d⌋ for integer q, with 0 ≤ r < d.
    var quotient = [Term](), remainder = [Term]()
    for t in n.terms {
      var q = t.coefficient / d, r = t.coefficient % d
      if r < 0 { q -= 1; r += d }
      if q != 0 { quotient.append(Term(coefficient: q, atoms: t.atoms)) }
      if r != 0 { remainder.append(Term(coefficient: r, atoms: t.atoms)) }
    }
    let q = try DimExpr(collecting: quotient), r = try DimExpr(collecting: remainder)
    if r.isConstant { return q }
    let b = r.bounds
    if b.lowerBound >= 0 && b.upperBound < d { return q }
    let x = r.withoutConstant, r0 = r.constantTerm
    // A factor g common to d and every coefficient cancels: ⌊(g·x + r0)/d⌋ = ⌊(x + ⌊r0/g⌋)/(d/g)⌋.
    let g = x.terms.reduce(d) { gcd($0, $1.coefficient) }
    if g > 1 {
      let reduced = try DimExpr(collecting: x.terms.map { Term(coefficient: $0.coefficient / g, atoms: $0.atoms) })
      return try q + floorDiv(reduced + DimExpr(r0 / g), by: d / g)
    }
    // Nested floors merge: ⌊(⌊a/b⌋ + r0)/d⌋ = ⌊(a + r0·b)/(b·d)⌋.
    if x.terms.count == 1, x.terms[0].coefficient == 1, x.terms[0].atoms.count == 1,
       case .floor(let a, let inner) = x.terms[0].atoms[0], let b = inner.constant, b > 0 {
      let (bd, o1) = b.multipliedReportingOverflow(by: d), (shift, o2) = r0.multipliedReportingOverflow(by: b)
      if !o1 && !o2 { return try q + floorDiv(a + DimExpr(shift), by: bd) }
    }
    return try q + DimExpr(atom: .floor(r, DimExpr(d)))
  }

  /// n / d when d divides n as polynomials (leading terms in degree, then atom order), else nil.
  private static func exactQuotient(_ n: DimExpr, _ d: DimExpr) throws -> DimExpr? {
    guard let lead = d.terms.max(by: Term.precedesGraded) else { return nil }
    var rest = n
    var quotient = [Term]()
    for _ in 0..<64 {
      guard let top = rest.terms.max(by: Term.precedesGraded) else { return try DimExpr(collecting: quotient) }
      guard top.coefficient % lead.coefficient == 0, let atoms = Atom.divide(top.atoms, by: lead.atoms) else { return nil }
      let t = Term(coefficient: top.coefficient / lead.coefficient, atoms: atoms)
      quotient.append(t)
      rest = try rest - DimExpr(collecting: [t]) * d
    }
    return nil
  }

  public static func min(_ args: [DimExpr]) throws -> DimExpr { try extremum(args, isMin: true) }
  public static func max(_ args: [DimExpr]) throws -> DimExpr { try extremum(args, isMin: false) }
  public static func min(_ a: DimExpr, _ b: DimExpr) throws -> DimExpr { try extremum([a, b], isMin: true) }
  public static func max(_ a: DimExpr, _ b: DimExpr) throws -> DimExpr { try extremum([a, b], isMin: false) }

  private static func extremum(_ args: [DimExpr], isMin: Bool) throws -> DimExpr {
    var flat = [DimExpr]()
    var folded: Int?
    for a in args {
      if let k = a.constant {
        folded = folded.map { isMin ? Swift.min($0, k) : Swift.max($0, k) } ?? k
      } else if a.terms.count == 1, a.terms[0].coefficient == 1, a.terms[0].atoms.count == 1 {
        switch (a.terms[0].atoms[0], isMin) {
        case (.min(let inner), true), (.max(let inner), false): flat += inner
        default: flat.append(a)
        }
      } else {
        flat.append(a)
      }
    }
    if let folded { flat.append(DimExpr(folded)) }
    var kept = [DimExpr]()
    for a in flat where !kept.contains(a) { kept.append(a) }
    // Drop an argument that bounds prove is never the extremum.
    var i = 0
    while i < kept.count {
      var dominated = false
      for j in kept.indices where j != i {
        if isMin ? atLeast(kept[i], kept[j]) : atLeast(kept[j], kept[i]) { dominated = true; break }
      }
      if dominated && kept.count > 1 { kept.remove(at: i) } else { i += 1 }
    }
    guard kept.count > 1 else { return kept.first ?? 0 }
    // Expressions first, the number last: min(h, 300).
    kept.sort { ($0.isConstant ? 1 : 0, $0) < ($1.isConstant ? 1 : 0, $1) }
    return DimExpr(atom: isMin ? .min(kept) : .max(kept))
  }

  /// Whether a ≥ b for every binding of the symbols in `symbolRange`: the bounds of a − b say so,
  /// or every negative term of a − b is covered by positive terms whose products are at least as
  /// large factor by factor (h ≥ ceil(h/2) ≥ ceil(h/4), and extra factors are at least 1).
  /// False means "not proven".
  public static func atLeast(_ a: DimExpr, _ b: DimExpr) -> Bool {
    if a == b { return true }
    // A difference too large to compute proves nothing.
    guard let diff = try? a - b else { return false }
    if diff.bounds.lowerBound >= 0 { return true }
    var capacity = diff.terms.filter { $0.coefficient > 0 }
    // What is left over must not be negative: every positive term a product of non-negative factors.
    guard capacity.allSatisfy({ $0.atoms.allSatisfy { $0.bounds.lowerBound >= 0 } }) else { return false }
    for need in diff.terms where need.coefficient < 0 {
      var missing = need.coefficient.magnitude
      for k in capacity.indices where missing > 0 && capacity[k].coefficient > 0 && Atom.covers(capacity[k].atoms, need.atoms) {
        let used = Swift.min(missing, capacity[k].coefficient.magnitude)
        capacity[k].coefficient -= Int(used)
        missing -= used
      }
      if missing > 0 { return false }
    }
    return true
  }

  // MARK: Bounds and evaluation

  /// An interval every value lies in when each symbol is in `symbolRange` (saturating at ±2⁶²).
  public var bounds: ClosedRange<Int> {
    var lo = 0, hi = 0
    for t in terms {
      var tl = t.coefficient, th = t.coefficient
      for a in t.atoms {
        let b = a.bounds
        let corners = [Bound.mul(tl, b.lowerBound), Bound.mul(tl, b.upperBound), Bound.mul(th, b.lowerBound), Bound.mul(th, b.upperBound)]
        tl = corners.min() ?? 0
        th = corners.max() ?? 0
      }
      lo = Bound.add(lo, tl)
      hi = Bound.add(hi, th)
    }
    return lo...hi
  }

  /// The value under `bindings`, or nil when a symbol is unbound or the arithmetic overflows.
  public func evaluate(_ bindings: [String: Int]) -> Int? {
    var sum = 0
    for t in terms {
      var p = t.coefficient
      for a in t.atoms {
        guard let v = a.evaluate(bindings) else { return nil }
        let (r, o) = p.multipliedReportingOverflow(by: v)
        if o { return nil }
        p = r
      }
      let (r, o) = sum.addingReportingOverflow(p)
      if o { return nil }
      sum = r
    }
    return sum
  }

  /// The expression with symbols replaced (those not in `values` stay), simplified again.
  public func substituting(_ values: [String: DimExpr]) throws -> DimExpr {
    var sum: DimExpr = 0
    for t in terms {
      var p = DimExpr(t.coefficient)
      for a in t.atoms { p = try p * a.substituting(values) }
      sum = try sum + p
    }
    return sum
  }

  // MARK: Order and printing

  public static func < (a: DimExpr, b: DimExpr) -> Bool { compare(a, b) < 0 }

  /// Symbolic terms first, the constant last, so that `ceil(h/2)` (= floor((h+1)/2)) sorts
  /// before `ceil(h/4)` and `ceil(h/…)` before `ceil(w/…)`.
  static func compare(_ a: DimExpr, _ b: DimExpr) -> Int {
    let x = a.withoutConstant.terms, y = b.withoutConstant.terms
    for (s, t) in zip(x, y) {
      let c = Atom.compare(s.atoms, t.atoms)
      if c != 0 { return c }
      if s.coefficient != t.coefficient { return s.coefficient < t.coefficient ? -1 : 1 }
    }
    if x.count != y.count { return x.count < y.count ? -1 : 1 }
    let p = a.constantTerm, q = b.constantTerm
    return p == q ? 0 : (p < q ? -1 : 1)
  }

  /// Highest degree first, the constant last: `h*w+2*h-1`, `150528*batch`, `ceil(h/2)-1`.
  public var description: String {
    if terms.isEmpty { return "0" }
    let ordered = terms.filter { !$0.atoms.isEmpty }.sorted {
      $0.atoms.count != $1.atoms.count ? $0.atoms.count > $1.atoms.count : Term.precedes($0, $1)
    } + terms.filter(\.atoms.isEmpty)
    var out = ""
    for (i, t) in ordered.enumerated() {
      let magnitude = t.coefficient.magnitude
      if t.coefficient < 0 { out += "-" } else if i > 0 { out += "+" }
      if t.atoms.isEmpty {
        out += String(magnitude)
      } else {
        if magnitude != 1 { out += "\(magnitude)*" }
        out += t.atoms.map(\.description).joined(separator: "*")
      }
    }
    return out
  }

  /// The form to print inside a larger expression: parenthesized unless it is one product.
  var operand: String {
    terms.count == 1 && terms[0].coefficient > 0 ? description : "(\(description))"
  }

  /// Reads what `description` prints (numbers, symbols, + − *, floor(a/b), ceil(a/b), min, max);
  /// nil for anything else.
  public static func parse(_ text: String) -> DimExpr? {
    var p = Parser(Array(text.unicodeScalars))
    guard let e = try? p.expression(), p.atEnd else { return nil }
    return e
  }
}

// MARK: - Terms and atoms

extension DimExpr.Term {
  static func precedes(_ a: Self, _ b: Self) -> Bool {
    let c = DimExpr.Atom.compare(a.atoms, b.atoms)
    return c != 0 ? c < 0 : a.coefficient < b.coefficient
  }

  /// Degree first: the order in which polynomial division picks leading terms.
  static func precedesGraded(_ a: Self, _ b: Self) -> Bool {
    a.atoms.count != b.atoms.count ? a.atoms.count < b.atoms.count : precedes(a, b)
  }
}

extension DimExpr.Atom: CustomStringConvertible {
  private var rank: Int {
    switch self {
    case .symbol: return 0
    case .floor: return 1
    case .min: return 2
    case .max: return 3
    }
  }

  static func precedes(_ a: Self, _ b: Self) -> Bool { compare(a, b) < 0 }

  static func compare(_ a: Self, _ b: Self) -> Int {
    if a.rank != b.rank { return a.rank < b.rank ? -1 : 1 }
    switch (a, b) {
    case (.symbol(let x), .symbol(let y)): return x == y ? 0 : (x < y ? -1 : 1)
    case (.floor(let n1, let d1), .floor(let n2, let d2)):
      let c = DimExpr.compare(n1, n2)
      return c != 0 ? c : DimExpr.compare(d1, d2)
    case (.min(let x), .min(let y)), (.max(let x), .max(let y)):
      for (p, q) in zip(x, y) {
        let c = DimExpr.compare(p, q)
        if c != 0 { return c }
      }
      return x.count == y.count ? 0 : (x.count < y.count ? -1 : 1)
    default: return 0
    }
  }

  static func compare(_ a: [Self], _ b: [Self]) -> Int {
    for (x, y) in zip(a, b) {
      let c = compare(x, y)
      if c != 0 { return c }
    }
    return a.count == b.count ? 0 : (a.count < b.count ? -1 : 1)
  }

  /// floor((x + c)/d) as (x, c, d); any other atom is (itself, 0, 1).
  private var ratio: (x: DimExpr, c: Int, d: Int) {
    if case .floor(let n, let den) = self, let d = den.constant, d > 0 { return (n.withoutConstant, n.constantTerm, d) }
    return (DimExpr(atom: self), 0, 1)
  }

  /// Whether a ≥ b always: (x + c₁)/d₁ ≥ (x + c₂)/d₂ for every x ≥ 1 when d₁ ≤ d₂ and
  /// (1 + c₁)·d₂ ≥ (1 + c₂)·d₁, and floor keeps the order.
  static func atLeast(_ a: Self, _ b: Self) -> Bool {
    if a == b { return true }
    let p = a.ratio, q = b.ratio
    guard p.x == q.x, p.x.bounds.lowerBound >= 1, p.c >= 0, q.c >= 0, p.d <= q.d else { return false }
    let (l, o1) = (1 + p.c).multipliedReportingOverflow(by: q.d), (r, o2) = (1 + q.c).multipliedReportingOverflow(by: p.d)
    return !o1 && !o2 && l >= r
  }

  /// Whether the product of `big` is at least the product of `small` for every binding: each
  /// factor of `small` (all non-negative) is matched by a larger or equal factor of `big`, and the
  /// factors of `big` left over are at least 1.
  static func covers(_ big: [Self], _ small: [Self]) -> Bool {
    var unused = big
    for b in small {
      guard b.bounds.lowerBound >= 0, let k = unused.firstIndex(where: { atLeast($0, b) }) else { return false }
      unused.remove(at: k)
    }
    return unused.allSatisfy { $0.bounds.lowerBound >= 1 }
  }

  /// The sorted multiset a ∖ b when b ⊆ a, else nil.
  static func divide(_ a: [Self], by b: [Self]) -> [Self]? {
    var rest = a
    for x in b {
      guard let i = rest.firstIndex(of: x) else { return nil }
      rest.remove(at: i)
    }
    return rest
  }

  var bounds: ClosedRange<Int> {
    switch self {
    case .symbol: return DimExpr.symbolRange
    case .floor(let n, let d):
      let nb = n.bounds, db = d.bounds
      guard db.lowerBound >= 1 else { return -Bound.limit...Bound.limit }
      let corners = [nb.lowerBound, nb.upperBound].flatMap { x in
        [db.lowerBound, db.upperBound].map { y -> Int in
          let q = x / y
          return (x % y != 0 && x < 0) ? q - 1 : q
        }
      }
      return (corners.min() ?? 0)...(corners.max() ?? 0)
    case .min(let xs):
      let bs = xs.map(\.bounds)
      return (bs.map(\.lowerBound).min() ?? 0)...(bs.map(\.upperBound).min() ?? 0)
    case .max(let xs):
      let bs = xs.map(\.bounds)
      return (bs.map(\.lowerBound).max() ?? 0)...(bs.map(\.upperBound).max() ?? 0)
    }
  }

  func evaluate(_ bindings: [String: Int]) -> Int? {
    switch self {
    case .symbol(let s): return bindings[s]
    case .floor(let n, let d):
      guard let x = n.evaluate(bindings), let y = d.evaluate(bindings), y != 0, !(x == Int.min && y == -1) else { return nil }
      let q = x / y
      return (x % y != 0 && (x < 0) != (y < 0)) ? q - 1 : q
    case .min(let xs):
      var best: Int?
      for x in xs {
        guard let v = x.evaluate(bindings) else { return nil }
        best = Swift.min(best ?? v, v)
      }
      return best
    case .max(let xs):
      var best: Int?
      for x in xs {
        guard let v = x.evaluate(bindings) else { return nil }
        best = Swift.max(best ?? v, v)
      }
      return best
    }
  }

  func substituting(_ values: [String: DimExpr]) throws -> DimExpr {
    switch self {
    case .symbol(let s): return values[s] ?? DimExpr(atom: self)
    case .floor(let n, let d): return try DimExpr.floorDiv(n.substituting(values), d.substituting(values))
    case .min(let xs): return try DimExpr.min(xs.map { try $0.substituting(values) })
    case .max(let xs): return try DimExpr.max(xs.map { try $0.substituting(values) })
    }
  }

  /// `ceil(x/d)` when the constant left in a floor's numerator is d − 1, as `floorDiv` leaves it.
  var description: String {
    switch self {
    case .symbol(let s): return s
    case .floor(let n, let d):
      if let k = d.constant {
        let c = n.constantTerm, x = n.withoutConstant
        if c == 0 { return "floor(\(x.operand)/\(k))" }
        if c == k - 1 { return "ceil(\(x.operand)/\(k))" }
        return "floor(\(n.operand)/\(k))"
      }
      let den = d.terms.count == 1 && d.terms[0].coefficient == 1 && d.terms[0].atoms.count == 1 ? d.description : "(\(d.description))"
      return "floor(\(n.operand)/\(den))"
    case .min(let xs): return "min(" + xs.map(\.description).joined(separator: ", ") + ")"
    case .max(let xs): return "max(" + xs.map(\.description).joined(separator: ", ") + ")"
    }
  }
}

/// Saturating interval arithmetic for `bounds`.
private enum Bound {
  static let limit = 1 << 62
  static func clamp(_ x: Int) -> Int { Swift.min(Swift.max(x, -limit), limit) }
  static func add(_ a: Int, _ b: Int) -> Int {
    let (r, o) = a.addingReportingOverflow(b)
    return o ? (a > 0 ? limit : -limit) : clamp(r)
  }
  static func mul(_ a: Int, _ b: Int) -> Int {
    let (r, o) = a.multipliedReportingOverflow(by: b)
    return o ? ((a > 0) == (b > 0) ? limit : -limit) : clamp(r)
  }
}

private func gcd(_ a: Int, _ b: Int) -> Int {
  var x = a.magnitude, y = b.magnitude
  while y != 0 { (x, y) = (y, x % y) }
  return Int(clamping: x)
}

/// Recursive descent over `description`'s grammar.
private struct Parser {
  struct Failure: Error {}
  let text: [Unicode.Scalar]
  var at = 0
  init(_ text: [Unicode.Scalar]) { self.text = text }

  var atEnd: Bool { mutating get { skipSpaces(); return at == text.count } }

  mutating func skipSpaces() { while at < text.count, text[at] == " " { at += 1 } }

  mutating func peek() -> Unicode.Scalar? { skipSpaces(); return at < text.count ? text[at] : nil }

  mutating func expect(_ c: Unicode.Scalar) throws {
    guard peek() == c else { throw Failure() }
    at += 1
  }

  mutating func expression() throws -> DimExpr {
    var negate = false
    if peek() == "-" { at += 1; negate = true }
    var sum = try term()
    if negate { sum = try -sum }
    while let c = peek(), c == "+" || c == "-" {
      at += 1
      let t = try term()
      sum = try c == "+" ? sum + t : sum - t
    }
    return sum
  }

  mutating func term() throws -> DimExpr {
    var product = try factor()
    while peek() == "*" {
      at += 1
      product = try product * factor()
    }
    return product
  }

  mutating func factor() throws -> DimExpr {
    guard let c = peek() else { throw Failure() }
    if c == "(" {
      at += 1
      let e = try expression()
      try expect(")")
      return e
    }
    if ("0"..."9").contains(c) {
      var n = 0
      while at < text.count, ("0"..."9").contains(text[at]) {
        let (m, o1) = n.multipliedReportingOverflow(by: 10)
        let (s, o2) = m.addingReportingOverflow(Int(text[at].value - 48))
        if o1 || o2 { throw Failure() }
        n = s
        at += 1
      }
      return DimExpr(n)
    }
    guard c == "_" || c.properties.isAlphabetic else { throw Failure() }
    var name = ""
    while at < text.count, text[at] == "_" || text[at] == "." || text[at] == ":" || text[at].properties.isAlphabetic
            || ("0"..."9").contains(text[at]) {
      name.unicodeScalars.append(text[at])
      at += 1
    }
    guard peek() == "(", ["floor", "ceil", "min", "max"].contains(name) else { return .symbol(name) }
    at += 1
    switch name {
    case "floor", "ceil":
      let n = try expression()
      try expect("/")
      let d = try factor()
      try expect(")")
      return try name == "floor" ? .floorDiv(n, d) : .ceilDiv(n, d)
    default:
      var args = [try expression()]
      while peek() == "," {
        at += 1
        args.append(try expression())
      }
      try expect(")")
      return try name == "min" ? .min(args) : .max(args)
    }
  }
}
