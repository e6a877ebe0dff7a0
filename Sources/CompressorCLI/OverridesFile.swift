import Compression
import Foundation
import Support
import Yams

/// `quantize --overrides FILE`: per-node decisions in YAML, read with the recipe reader's
/// limits (1 MiB, ten thousand nodes), every mistake named by file, line and column:
///
///     nodes:
///       "encoder.layer.0.*": {skip: true}                  # float activations, int8 weight
///       "ffn2_matmul": {skip: true, weights: float}         # entirely float
///       "Conv": {calibration: "percentile:99.9"}            # an op type: every Conv
///       "head/*": {bits: 16}                                # 16-bit activations
///       "fc": {scheme: symmetric, weights: per-tensor}      # int8 activations, one weight scale
enum OverridesFile {
  static func read(_ path: String) throws -> QuantizeOverrides {
    let text = try Recipe.readText(path, what: "an overrides file")
    var reader = RecipeReader(file: path, text: text)
    let root: Yams.Node?
    do {
      root = try Yams.compose(yaml: text)
    } catch let e as YamlError {
      throw CompressorError.invalid("\(path): not valid YAML: \(reader.yamlProblem(e)), \(reader.yamlPlace(e))")
    }
    guard let root else { return QuantizeOverrides() }
    var count = 0
    try reader.countNodes(root, &count)
    var overrides = QuantizeOverrides()
    for (key, keyNode, value) in try reader.pairs(root, what: "the overrides file") {
      guard key == "nodes" else { throw reader.usage("unknown key '\(key)' (the overrides file has one key, nodes)", keyNode) }
      if case .scalar(let s) = value, reader.isNull(s) { continue }
      for (pattern, patternNode, body) in try reader.pairs(value, what: "nodes") {
        var rule = QuantizeOverrides.Rule(pattern: pattern)
        for (field, fieldNode, v) in try reader.pairs(body, what: "the override of '\(pattern)'") {
          let text = try reader.scalar(v, what: "\(field) of '\(pattern)'") ?? ""
          switch field {
          case "skip":
            guard let b = reader.bool(text) else { throw reader.usage("skip of '\(pattern)' must be true or false, not '\(text)'", v) }
            rule.skip = b
          case "weights":
            guard ["float", "int8", "per-tensor"].contains(text) else {
              throw reader.usage("weights of '\(pattern)' must be int8, per-tensor or float, not '\(text)'", v)
            }
            rule.floatWeights = text == "float"
            rule.perTensorWeight = text == "per-tensor"
          case "bits":
            guard text == "8" || text == "16" else { throw reader.usage("bits of '\(pattern)' must be 8 or 16 (activations), not '\(text)'", v) }
            rule.bits = Int(text)
          case "scheme":
            guard text == "symmetric" || text == "asymmetric" else {
              throw reader.usage("scheme of '\(pattern)' must be symmetric or asymmetric, not '\(text)'", v)
            }
            rule.symmetric = text == "symmetric"
          case "calibration":
            guard let m = CalibrationMethod(argument: text) else {
              throw reader.usage("calibration of '\(pattern)' must be minmax, percentile[:P], entropy, mse or auto, not '\(text)'", v)
            }
            rule.calibration = m
          default:
            throw reader.usage("unknown field '\(field)' for '\(pattern)' (skip, weights, bits, scheme, calibration)", fieldNode)
          }
        }
        if rule.floatWeights && !rule.skip { throw reader.usage("'\(pattern)': weights: float goes with skip: true", patternNode) }
        if rule.skip && (rule.bits != nil || rule.symmetric != nil || rule.perTensorWeight || rule.calibration != nil) {
          throw reader.usage("'\(pattern)': skip: true leaves the node float; bits, scheme, calibration and weights: per-tensor are for quantized nodes", patternNode)
        }
        overrides.rules.append(rule)
      }
    }
    return overrides
  }

  /// `--save-overrides`: the given rules, then one exact rule per node the quality search kept
  /// float, so the same command with `--overrides` (and `--target none`) reproduces the model
  /// without searching.
  static func save(_ given: QuantizeOverrides, results: [PassResult], to path: String, command: String) throws {
    var saved = given
    for change in results.first(where: { $0.pass == QuantizeStatic.name })?.changes ?? [] where change.action == "kept float" {
      saved.rules.append(.init(pattern: QuantizeOverrides.exactPattern(change.target), skip: true,
                               floatWeights: change.values?["floatWeights"] == 1))
    }
    let text = saved.yaml(header: "written by \(command); read back with quantize --overrides FILE --target none")
    let writer = try AtomicFileWriter(destination: path)
    try writer.write(Array(text.utf8))
    try writer.commit()
  }
}
