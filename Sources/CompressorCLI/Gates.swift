import ArgumentParser
import Compression
import Foundation
import Report
import Support

/// A quality gate: a bound on one measure of the result. Relative limits compare with the
/// reference model (the command's input, the recipe's input); a limit with a unit is absolute.
struct GateSpec: Equatable {
  enum Kind: String, CaseIterable {
    case accuracyDrop = "accuracy-drop", accuracy, agreement, cosine, iou, size, params, macs, latencyP50 = "latency-p50"

    /// Lower bounds (the value must be at least the limit) or upper bounds.
    var isLowerBound: Bool { [.accuracy, .agreement, .cosine, .iou].contains(self) }
    var needsLabels: Bool { [.accuracyDrop, .accuracy].contains(self) }
    var needsQualityData: Bool { [.accuracyDrop, .accuracy, .agreement, .cosine, .iou].contains(self) }
  }

  var kind: Kind
  var limit: Double
  /// Absolute limits: bytes, parameters, MACs or milliseconds; nil for relative ones.
  var absoluteUnit: String?
  /// iou: the value above which an output element counts as on (`iou>=0.95@0.3`; default 0.5).
  var threshold: Double?

  /// The report's and the quality section's name of an iou gate's measure: "iou@0.3".
  var measureKey: String? { kind == .iou ? QualityMetrics.iouKey(threshold ?? 0.5) : nil }

  var comparison: String { kind.isLowerBound ? ">=" : "<=" }

  /// The unit the report gives the limit in.
  var unit: String {
    if let absoluteUnit { return absoluteUnit }
    switch kind {
    case .accuracyDrop: return "points"
    case .accuracy, .agreement, .cosine, .iou: return "fraction"
    case .size, .params, .macs, .latencyP50: return "ratio"
    }
  }

  /// The limit as a recipe writes it.
  var recipeText: String {
    switch absoluteUnit {
    case "bytes"?: return "\(jsonNumber(limit))B"
    case "parameters"?: return "\(jsonNumber(limit))params"
    case "macs"?: return "\(jsonNumber(limit))macs"
    case "ms"?: return "\(jsonNumber(limit))ms"
    default: return jsonNumber(limit) + (threshold.map { "@\(jsonNumber($0))" } ?? "")
    }
  }

  /// `NAME<=LIMIT` / `NAME>=LIMIT` as --gate takes it.
  static func parse(_ text: String) throws -> GateSpec {
    let ops = ["<=", ">=", "="]
    guard let op = ops.first(where: { text.contains($0) }), let r = text.range(of: op) else {
      throw ValidationError("--gate '\(text)' is not NAME<=LIMIT or NAME>=LIMIT (\(Kind.allCases.map(\.rawValue).joined(separator: ", ")))")
    }
    let name = text[..<r.lowerBound].trimmingCharacters(in: .whitespaces)
    let value = text[r.upperBound...].trimmingCharacters(in: .whitespaces)
    let spec = try make(name: name, value: value, where: "--gate '\(text)'")
    if op != "=" && op != spec.comparison {
      throw ValidationError("--gate '\(text)': \(name) is \(spec.kind.isLowerBound ? "a lower" : "an upper") bound; write \(name)\(spec.comparison)\(value)")
    }
    return spec
  }

  /// A gate from its name and limit text (`0.25`, `2MiB`, `1.5M`, `4ms`, `99%`, `<= 0.25`).
  static func make(name: String, value rawValue: String, where place: String) throws -> GateSpec {
    guard let kind = Kind(rawValue: name) else {
      throw ValidationError("\(place): unknown gate '\(name)' (gates: \(Kind.allCases.map(\.rawValue).joined(separator: ", ")))")
    }
    var value = rawValue.trimmingCharacters(in: .whitespaces)
    // iou's threshold: "0.95@0.3".
    var threshold: Double?
    if let at = value.firstIndex(of: "@") {
      guard kind == .iou else { throw ValidationError("\(place): only iou takes a threshold (@T), not \(name)") }
      let t = value[value.index(after: at)...].trimmingCharacters(in: .whitespaces)
      guard let v = Double(t), v.isFinite else { throw ValidationError("\(place): the threshold of iou must be a number, not '\(t)'") }
      threshold = v
      value = value[..<at].trimmingCharacters(in: .whitespaces)
    }
    for op in ["<=", ">="] where value.hasPrefix(op) {
      if op != (kind.isLowerBound ? ">=" : "<=") {
        throw ValidationError("\(place): \(name) is \(kind.isLowerBound ? "a lower" : "an upper") bound (\(kind.isLowerBound ? ">=" : "<="))")
      }
      value = String(value.dropFirst(2)).trimmingCharacters(in: .whitespaces)
    }
    let (number, suffix) = splitNumber(value)
    guard let number, number.isFinite else {
      throw ValidationError("\(place): the limit of \(name) must be a number, not '\(rawValue)'")
    }
    var spec = GateSpec(kind: kind, limit: number, absoluteUnit: nil, threshold: threshold)
    let unit = suffix.lowercased()
    switch kind {
    case .accuracyDrop:
      guard unit.isEmpty || unit == "points" || unit == "%" else { throw badUnit(place, name, suffix, "points") }
    case .accuracy, .agreement, .cosine, .iou:
      if unit == "%" { spec.limit = number / 100 } else if !unit.isEmpty { throw badUnit(place, name, suffix, "a fraction or N%") }
      if !(spec.limit >= 0 && spec.limit <= 1) { throw ValidationError("\(place): \(name) must be in [0, 1] (or 0%…100%), not \(rawValue)") }
    case .size:
      let scale: [String: Double] = ["b": 1, "bytes": 1, "kb": 1e3, "kib": 1024, "mb": 1e6, "mib": 1048576, "gb": 1e9, "gib": 1073741824]
      if !unit.isEmpty {
        guard let s = scale[unit] else { throw badUnit(place, name, suffix, "a ratio, or bytes with B, KB, KiB, MB, MiB, GB, GiB") }
        spec.limit = number * s
        spec.absoluteUnit = "bytes"
      }
    case .params, .macs:
      let scale: [String: Double] = ["k": 1e3, "m": 1e6, "g": 1e9, "macs": 1, "params": 1, "parameters": 1]
      if !unit.isEmpty {
        guard let s = scale[unit] else { throw badUnit(place, name, suffix, "a ratio, or a count with k, M or G") }
        spec.limit = number * s
        spec.absoluteUnit = kind == .macs ? "macs" : "parameters"
      }
    case .latencyP50:
      if unit == "ms" { spec.absoluteUnit = "ms" }
      else if unit == "s" { spec.limit = number * 1000; spec.absoluteUnit = "ms" }
      else if !unit.isEmpty { throw badUnit(place, name, suffix, "a ratio, or ms") }
    }
    if spec.limit < 0 { throw ValidationError("\(place): the limit of \(name) must not be negative, not \(rawValue)") }
    if spec.absoluteUnit == nil && [.size, .params, .macs, .latencyP50].contains(kind) && spec.limit == 0 {
      throw ValidationError("\(place): a ratio limit of \(name) must be positive")
    }
    return spec
  }

  private static func badUnit(_ place: String, _ name: String, _ unit: String, _ expected: String) -> ValidationError {
    ValidationError("\(place): \(name) takes \(expected), not the unit '\(unit)'")
  }

  /// "2.5MiB" → (2.5, "MiB").
  private static func splitNumber(_ s: String) -> (Double?, String) {
    var end = s.startIndex
    for i in s.indices {
      let c = s[i]
      if c.isNumber || c == "." || c == "-" || c == "+" || ((c == "e" || c == "E") && i != s.startIndex
          && s.index(after: i) < s.endIndex && (s[s.index(after: i)].isNumber || s[s.index(after: i)] == "-")) {
        end = s.index(after: i)
      } else { break }
    }
    return (Double(s[..<end]), s[end...].trimmingCharacters(in: .whitespaces))
  }
}

/// What a gate is checked against: the measures of the reference model and of the result.
struct GateMeasures {
  /// Accuracy of the reference and of the result (labels), agreement and mean cosine of the
  /// result with the reference.
  var referenceAccuracy: Double?
  var accuracy: Double?
  var agreement: Double?
  var meanCosine: Double?
  /// IoU of thresholded maps, by the quality section's key ("iou@0.3").
  var iou: [String: Double] = [:]
  var referenceBytes: Int
  var bytes: Int
  var referenceParameters: Int
  var parameters: Int
  var referenceMACs: Int?
  var macs: Int?
  var referenceLatencyMs: Double?
  var latencyMs: Double?
}

extension GateSpec {
  /// The gate's result; `against` names the reference in the report.
  func evaluate(_ m: GateMeasures, against: String, includeTimings: Bool) -> GateResult {
    func ratio(_ a: Double?, _ b: Double?) -> Double? {
      guard let a, let b, b > 0 else { return nil }
      return a / b
    }
    var value: Double?
    switch kind {
    case .accuracyDrop:
      if let a = m.referenceAccuracy, let b = m.accuracy { value = ((a - b) * 100 * 1e6).rounded() / 1e6 }
    case .accuracy: value = m.accuracy
    case .agreement: value = m.agreement
    case .cosine: value = m.meanCosine
    case .iou: value = measureKey.flatMap { m.iou[$0] }
    case .size: value = absoluteUnit != nil ? Double(m.bytes) : ratio(Double(m.bytes), Double(m.referenceBytes))
    case .params: value = absoluteUnit != nil ? Double(m.parameters) : ratio(Double(m.parameters), Double(m.referenceParameters))
    case .macs: value = absoluteUnit != nil ? m.macs.map(Double.init) : ratio(m.macs.map(Double.init), m.referenceMACs.map(Double.init))
    case .latencyP50: value = absoluteUnit != nil ? m.latencyMs : ratio(m.latencyMs, m.referenceLatencyMs)
    }
    let passed: Bool
    var margin: Double?
    if let value {
      margin = kind.isLowerBound ? value - limit : limit - value
      passed = margin! >= -1e-12
    } else {
      passed = false
    }
    let shown = value.map(gateNumber) ?? "unmeasured"
    var summary = "\(measureKey ?? kind.rawValue) \(shown)"
    if let value {
      let holds = kind.isLowerBound ? value >= limit : value <= limit
      summary += " \(holds ? (kind.isLowerBound ? ">=" : "<=") : (kind.isLowerBound ? "<" : ">")) \(limitText)"
      if !passed { summary += " (failed by \(gateNumber(abs(margin ?? 0))))" }
    } else {
      summary += " (limit \(limitText); nothing to measure it on)"
    }
    let hideValue = kind == .latencyP50 && !includeTimings
    return GateResult(gate: kind.rawValue, comparison: comparison, limit: limit, unit: unit, against: against,
                      value: hideValue ? nil : value, margin: hideValue ? nil : margin, passed: passed,
                      summary: hideValue ? nil : summary)
  }

  var limitText: String {
    switch absoluteUnit {
    case "bytes"?: return "\(jsonNumber(limit)) bytes"
    case "ms"?: return "\(gateNumber(limit)) ms"
    default: return gateNumber(limit)
    }
  }
}

/// Four significant digits: what a person reads in a gate line.
func gateNumber(_ v: Double) -> String {
  if v == v.rounded() && abs(v) < 1e15 { return String(Int(v)) }
  return String(format: "%.4g", v)
}

/// The thresholds at which `gates` measure IoU.
func iouThresholds(_ gates: [GateSpec]) -> [Double] {
  var seen = [Double]()
  for g in gates where g.kind == .iou && !seen.contains(g.threshold ?? 0.5) { seen.append(g.threshold ?? 0.5) }
  return seen
}

/// The IoU measures of a quality dictionary ("iou@0.3": …).
func iouMeasures(_ quality: [String: Double]?) -> [String: Double] {
  quality?.filter { $0.key.hasPrefix("iou@") } ?? [:]
}

/// Checks that the gates can be measured with what the step or run has; usage errors.
func checkGatesMeasurable(_ gates: [GateSpec], hasQualityData: Bool, hasLabels: Bool, where place: String) throws {
  for g in gates {
    if g.kind.needsQualityData && !hasQualityData {
      throw CompressorError.usage("the gate \(g.kind.rawValue) needs data to measure quality on, and \(place) has none")
    }
    if g.kind.needsLabels && !hasLabels {
      throw CompressorError.usage("the gate \(g.kind.rawValue) needs labels (accuracy), and \(place) has none")
    }
  }
}
