import IR

/// Per-node decisions for static quantization (`quantize --overrides FILE`), in file order: the
/// first rule whose pattern matches a node (a name glob, or an op type) decides for it.
/// `--save-overrides` writes a run's decisions in the same form, so a search's result can be
/// reproduced without searching, and edited.
public struct QuantizeOverrides: Equatable {
  public struct Rule: Equatable {
    public var pattern: String
    /// Leave the node float (its activations; its weight stays int8 unless `floatWeights`).
    public var skip: Bool
    public var floatWeights: Bool
    /// The calibration of the node's activations (its inputs and quantized output).
    public var calibration: CalibrationMethod?
    /// The width of the node's activations: 8, or 16 for a node too sensitive for 8 bits that
    /// should still run quantized (nil: the command's, 8).
    public var bits: Int?
    /// Zero-point scheme of the node's activations: symmetric (signed, zero point 0) or
    /// asymmetric (unsigned with a zero point); nil: the command's.
    public var symmetric: Bool?
    /// One scale for the whole weight instead of one per output channel.
    public var perTensorWeight: Bool
    public init(pattern: String, skip: Bool = false, floatWeights: Bool = false, calibration: CalibrationMethod? = nil,
                bits: Int? = nil, symmetric: Bool? = nil, perTensorWeight: Bool = false) {
      self.pattern = pattern; self.skip = skip; self.floatWeights = floatWeights; self.calibration = calibration
      self.bits = bits; self.symmetric = symmetric; self.perTensorWeight = perTensorWeight
    }
  }

  public var rules: [Rule]
  public init(rules: [Rule] = []) { self.rules = rules }

  func rule(for n: Node) -> Rule? { rules.first { NodeFilter.matches($0.pattern, n) } }

  /// A node name as a pattern that matches only it (glob characters escaped).
  public static func exactPattern(_ name: String) -> String {
    var out = ""
    for c in name {
      if "*?[]\\".contains(c) { out.append("\\") }
      out.append(c)
    }
    return out
  }

  /// The file `--overrides` reads: one entry per rule under `nodes:`, in order.
  public func yaml(header: String) -> String {
    var text = header.split(separator: "\n").map { "# \($0)\n" }.joined() + "nodes:\n"
    if rules.isEmpty { return text.replacingOccurrences(of: "nodes:\n", with: "nodes: {}\n") }
    for r in rules {
      var fields = [String]()
      if r.skip { fields.append("skip: true") }
      if r.floatWeights { fields.append("weights: float") }
      if r.perTensorWeight { fields.append("weights: per-tensor") }
      if let b = r.bits { fields.append("bits: \(b)") }
      if let s = r.symmetric { fields.append("scheme: \(s ? "symmetric" : "asymmetric")") }
      if let c = r.calibration { fields.append("calibration: \"\(c)\"") }
      let key = "\"" + r.pattern.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
      text += "  \(key): {\(fields.joined(separator: ", "))}\n"
    }
    return text
  }
}
