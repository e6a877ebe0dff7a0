import ArgumentParser
import Foundation
import Support
import Yams

/// A compression recipe (`compressor pipeline recipe.yaml`): the input model, defaults for
/// every step, the steps, and gates. YAML or JSON (JSON is read as YAML). Every step is a
/// subcommand: its keys are the subcommand's long flags, turned into that subcommand's arguments
/// and parsed by its own parser, so a recipe step and a command line check and mean the same.
/// Files are relative to the recipe's directory.
///
/// Errors name the recipe file and the line and column of the key or value at fault; unknown
/// keys, wrong types and impossible combinations are usage errors (64), a file that is not YAML
/// or that expands past the node budget (aliases) is invalid input (65).
struct Recipe {
  /// The recipe file as given.
  var file: String
  var model: String
  var output: String?
  var report: String?
  var html: String?
  /// Defaults for every step that takes them (labels only together with the default data).
  var data: String?
  var labels: String?
  var threads: String?
  var seed: String?
  /// The samples the metrics after every step and the recipe's quality gates use.
  var evalData: String?
  var evalLabels: String?
  var steps: [Node]
  var gates: [(spec: GateSpec, place: String)]
  /// Every step in the order it runs, repetitions unrolled.
  var schedule: [ScheduledStep]

  indirect enum Node {
    case step(Step)
    case repeated(count: Int, steps: [Node])
  }

  /// One step as written.
  struct Step {
    var name: String
    var options: any StepOptions
    /// The arguments the step's keys became (paths resolved against the recipe's directory).
    var arguments: [String]
    /// `keep:` — write the step's model to this file (nil: it stays in memory).
    var keep: KeepSpec?
    var gates: [(spec: GateSpec, place: String)]
    /// "recipe.yaml:7:5".
    var place: String
  }

  enum KeepSpec: Equatable { case defaultName, path(String) }

  struct ScheduledStep {
    /// "3", or "4.2.1": step 4, its second repetition, sub-step 1.
    var at: String
    var step: Step
  }

  /// At most this many YAML nodes are read (aliases count every time they are used), so that a
  /// recipe whose anchors expand to a billion nodes is refused after reading ten thousand.
  static let nodeBudget = 10_000
  static let maxFileBytes = 1 << 20
  static let maxScheduledSteps = 1000

  static let stepTypes: [(name: String, type: any StepOptions.Type)] = [
    ("optimize", OptimizeStep.self), ("quantize", QuantizeStep.self), ("prune", PruneStep.self),
    ("factorize", FactorizeStep.self), ("distill", DistillStep.self),
  ]
  static let topLevelKeys = ["model", "output", "report", "html", "data", "labels", "eval-data", "eval-labels", "threads",
                             "seed", "steps", "gates"]

  var directory: String { directoryName(file) }
}

// MARK: - Reading

extension Recipe {
  static func load(_ path: String) throws -> Recipe {
    var reader = RecipeReader(file: path, text: try readText(path, what: "a recipe"))
    return try reader.read()
  }

  /// A small YAML file's text (a recipe, quantize's overrides): at most 1 MiB of UTF-8.
  static func readText(_ path: String, what: String) throws -> String {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
      throw CompressorError.missing("\(path): no such file")
    }
    if isDirectory.boolValue { throw CompressorError.missing("\(path) is a directory") }
    let file = try MappedFile(path: path)
    if file.size > maxFileBytes { throw CompressorError.invalid("\(path): \(file.size) bytes is too large for \(what) (at most 1 MiB)") }
    guard let text = String(validating: file.bytes, as: UTF8.self) else {
      throw CompressorError.invalid("\(path): not UTF-8 text")
    }
    return text
  }
}

/// Reads a recipe's YAML tree within the node budget.
struct RecipeReader {
  let file: String
  let text: String
  var visited = 0
  var parsedSteps = [String: any StepOptions]()

  init(file: String, text: String) { self.file = file; self.text = text }

  func place(_ node: Yams.Node?) -> String {
    guard let m = node?.mark else { return file }
    return "\(file):\(m.line):\(m.column)"
  }

  func usage(_ what: String, _ node: Yams.Node?) -> CompressorError { .usage("\(what), \(place(node))") }

  mutating func visit(_ node: Yams.Node) throws {
    visited += 1
    if visited > Recipe.nodeBudget {
      throw CompressorError.invalid("the recipe expands to more than \(Recipe.nodeBudget) YAML nodes (anchors and aliases count each time they are used), \(place(node))")
    }
  }

  /// The pairs of a mapping, keys as strings, refusing duplicates.
  mutating func pairs(_ node: Yams.Node, what: String) throws -> [(key: String, keyNode: Yams.Node, value: Yams.Node)] {
    try visit(node)
    guard case .mapping(let mapping) = node else { throw usage("\(what) must be a mapping (key: value)", node) }
    var result = [(key: String, keyNode: Yams.Node, value: Yams.Node)]()
    for (k, v) in mapping {
      try visit(k)
      guard case .scalar(let s) = k else { throw usage("\(what): keys must be plain names", k) }
      if result.contains(where: { $0.key == s.string }) { throw usage("\(what): '\(s.string)' is given twice", k) }
      result.append((s.string, k, v))
    }
    return result
  }

  func countNodes(_ node: Yams.Node, _ count: inout Int) throws {
    count += 1
    if count > Recipe.nodeBudget {
      throw CompressorError.invalid("the recipe expands to more than \(Recipe.nodeBudget) YAML nodes (anchors and aliases count each time they are used), \(place(node))")
    }
    switch node {
    case .mapping(let m):
      for (k, v) in m { try countNodes(k, &count); try countNodes(v, &count) }
    case .sequence(let items):
      for item in items { try countNodes(item, &count) }
    case .scalar, .alias: break
    }
  }

  mutating func scalar(_ node: Yams.Node, what: String) throws -> String? {
    try visit(node)
    switch node {
    case .scalar(let s): return isNull(s) ? nil : s.string
    case .mapping: throw usage("\(what) must be a value, not a mapping", node)
    case .sequence: throw usage("\(what) must be a single value, not a list", node)
    case .alias: throw usage("\(what) must be a value", node)
    }
  }

  /// `~`, `null` or nothing, unquoted.
  func isNull(_ s: Yams.Node.Scalar) -> Bool {
    s.style == .plain && ["", "~", "null", "Null", "NULL"].contains(s.string)
  }

  func bool(_ text: String) -> Bool? {
    switch text.lowercased() {
    case "true", "yes", "on": return true
    case "false", "no", "off": return false
    default: return nil
    }
  }

  /// A path relative to the recipe's directory.
  func resolve(_ path: String) -> String {
    if path.hasPrefix("/") { return path }
    let dir = directoryName(file)
    return dir == "." && !file.hasPrefix("./") ? path : dir + "/" + path
  }

  mutating func read() throws -> Recipe {
    try refuseNonScalarKeys()
    let root: Yams.Node?
    do {
      root = try Yams.compose(yaml: text)
    } catch let e as YamlError {
      throw CompressorError.invalid("not a valid YAML or JSON recipe: \(yamlProblem(e)), \(yamlPlace(e))")
    }
    guard let root else { throw CompressorError.usage("the recipe is empty, \(file)") }
    // The budget first, on the bare tree: a recipe whose aliases expand past it costs ten
    // thousand visits, nothing more.
    var count = 0
    try countNodes(root, &count)
    var recipe = Recipe(file: file, model: "", steps: [], gates: [], schedule: [])
    var stepsNode: Yams.Node?, gatesNode: Yams.Node?
    var modelGiven = false
    for (key, keyNode, value) in try pairs(root, what: "a recipe") {
      switch key {
      case "model":
        guard let v = try scalar(value, what: "model") else { throw usage("model needs a file", value) }
        recipe.model = resolve(v)
        modelGiven = true
      case "output": recipe.output = try scalar(value, what: key).map(resolve)
      case "report": recipe.report = try scalar(value, what: key).map(resolve)
      case "html": recipe.html = try scalar(value, what: key).map(resolve)
      case "data": recipe.data = try scalar(value, what: key).map(resolve)
      case "labels": recipe.labels = try scalar(value, what: key).map(resolve)
      case "eval-data": recipe.evalData = try scalar(value, what: key).map(resolve)
      case "eval-labels": recipe.evalLabels = try scalar(value, what: key).map(resolve)
      case "threads":
        recipe.threads = try scalar(value, what: key)
        if let t = recipe.threads, (Int(t) ?? 0) < 1 { throw usage("threads must be 1 or more, not '\(t)'", value) }
      case "seed":
        recipe.seed = try scalar(value, what: key)
        if let s = recipe.seed, UInt64(s) == nil { throw usage("seed must be a whole number ≥ 0, not '\(s)'", value) }
      case "steps": stepsNode = value
      case "gates": gatesNode = value
      default:
        throw usage("unknown key '\(key)' in the recipe\(suggestion(key, Recipe.topLevelKeys)) (keys: \(Recipe.topLevelKeys.joined(separator: ", ")))", keyNode)
      }
    }
    if !modelGiven { throw usage("the recipe names no model (model: FILE)", root) }
    if recipe.evalLabels != nil && recipe.evalData == nil { throw CompressorError.usage("eval-labels needs eval-data, \(file)") }
    if recipe.labels != nil && recipe.data == nil { throw CompressorError.usage("labels needs data, \(file)") }
    guard let stepsNode else { throw usage("the recipe has no steps (steps: [...])", root) }
    recipe.steps = try steps(stepsNode, recipe: recipe, depth: 0)
    if recipe.steps.isEmpty { throw usage("steps is empty", stepsNode) }
    if let gatesNode { recipe.gates = try gates(gatesNode, what: "gates") }
    let qualityData = recipe.evalData ?? recipe.data
    let qualityLabels = recipe.evalData != nil ? recipe.evalLabels : recipe.labels
    for (g, at) in recipe.gates {
      if g.kind.needsQualityData && qualityData == nil {
        throw CompressorError.usage("the gate \(g.kind.rawValue) measures quality, and the recipe has no data (data: or eval-data:), \(at)")
      }
      if g.kind.needsLabels && qualityLabels == nil {
        throw CompressorError.usage("the gate \(g.kind.rawValue) needs labels (accuracy), and the recipe has none (\(recipe.evalData != nil ? "eval-labels:" : "labels:")), \(at)")
      }
    }
    recipe.schedule = try unroll(recipe.steps, prefix: "")
    return recipe
  }

  mutating func steps(_ node: Yams.Node, recipe: Recipe, depth: Int) throws -> [Recipe.Node] {
    try visit(node)
    guard case .sequence(let items) = node else { throw usage("steps must be a list", node) }
    var result = [Recipe.Node]()
    for item in items {
      try visit(item)
      if case .scalar(let s) = item {
        // `- optimize`: a step with no keys.
        result.append(.step(try step(name: s.string, nameNode: item, body: nil, recipe: recipe)))
        continue
      }
      let entries = try pairs(item, what: "a step")
      if entries.contains(where: { $0.key == "repeat" }) {
        guard depth < 4 else { throw usage("repeat is nested too deeply (at most 4 levels)", item) }
        var count: Int?
        var inner: [Recipe.Node]?
        for (key, keyNode, value) in entries {
          switch key {
          case "repeat":
            guard let text = try scalar(value, what: "repeat"), let n = Int(text) else { throw usage("repeat must be a whole number", value) }
            if n < 1 { throw usage("repeat must be 1 or more, not \(n)", value) }
            if n > Recipe.maxScheduledSteps { throw usage("repeat \(n) is more than \(Recipe.maxScheduledSteps)", value) }
            count = n
          case "steps": inner = try steps(value, recipe: recipe, depth: depth + 1)
          default: throw usage("unknown key '\(key)' beside repeat (repeat: N, steps: [...])", keyNode)
          }
        }
        guard let count, let inner, !inner.isEmpty else { throw usage("repeat needs a count and non-empty steps", item) }
        result.append(.repeated(count: count, steps: inner))
        continue
      }
      guard entries.count == 1, let (name, nameNode, body) = entries.first else {
        throw usage("a step is one name with its keys (prune: {ratio: 0.3}), not \(entries.count) names (\(entries.map(\.key).joined(separator: ", ")))", item)
      }
      result.append(.step(try step(name: name, nameNode: nameNode, body: body, recipe: recipe)))
    }
    return result
  }

  mutating func step(name: String, nameNode: Yams.Node, body: Yams.Node?, recipe: Recipe) throws -> Recipe.Step {
    let names = Recipe.stepTypes.map(\.name)
    guard let type = Recipe.stepTypes.first(where: { $0.name == name })?.type else {
      throw usage("unknown step '\(name)'\(suggestion(name, names)) (steps: \(names.joined(separator: ", ")), repeat)", nameNode)
    }
    return try parseStep(type, name: name, nameNode: nameNode, body: body, recipe: recipe)
  }

  mutating func parseStep<S: StepOptions>(_ type: S.Type, name: String, nameNode: Yams.Node, body: Yams.Node?, recipe: Recipe) throws -> Recipe.Step {
    let arguments = StepArguments.of(S.self)
    var argv = [String]()
    var keyNodes = [(key: String, node: Yams.Node, value: Yams.Node)]()
    var keep: Recipe.KeepSpec?
    var gates = [(spec: GateSpec, place: String)]()
    var givenData = false, givenKeys = Set<String>()
    var entries = [(key: String, keyNode: Yams.Node, value: Yams.Node)]()
    if let body {
      try visit(body)
      if case .scalar(let s) = body, isNull(s) {
        entries = []
      } else {
        entries = try pairs(body, what: "step \(name)")
      }
    }
    for (key, keyNode, value) in entries {
      if key == "keep" {
        guard let v = try scalar(value, what: "keep") else { continue }
        if let b = bool(v) { keep = b ? .defaultName : nil } else { keep = .path(resolve(v)) }
        continue
      }
      if key == "gate" {
        gates = try self.gates(value, what: "\(name)'s gate")
        continue
      }
      guard let a = arguments.argument(key) else {
        let keys = arguments.list.map(\.key) + ["keep", "gate"]
        throw usage("unknown key '\(key)' for step \(name)\(suggestion(key, keys)) (its keys: \(keys.joined(separator: ", ")))", keyNode)
      }
      givenKeys.insert(key)
      if key == "data" { givenData = true }
      keyNodes.append((key, keyNode, value))
      argv += try self.arguments(for: a, value: value, step: name, resolvePath: S.pathKeys.contains(key))
    }
    // The recipe's defaults, for the keys the step takes and does not set.
    var defaults: [(String, String?)] = [("threads", recipe.threads), ("seed", recipe.seed), ("data", recipe.data)]
    if !givenData { defaults.append(("labels", recipe.labels)) }
    for (key, value) in defaults {
      guard let value, !givenKeys.contains(key), arguments.argument(key) != nil else { continue }
      argv.append("--\(key)=\(value)")
    }
    let options: S
    do {
      // Aliased steps repeat the same arguments: parse each distinct step once.
      let cacheKey = name + "\u{0}" + argv.joined(separator: "\u{0}")
      if let cached = parsedSteps[cacheKey] as? S {
        options = cached
      } else {
        options = try S.parse(argv)
        parsedSteps[cacheKey] = options
      }
    } catch {
      let message = S.message(for: error).split(whereSeparator: \.isNewline).joined(separator: " ")
        .replacingOccurrences(of: "Error: ", with: "")
      // Point at the key the message names, else at the step.
      let culprit = keyNodes.first { message.contains("--\($0.key)") || message.contains("'\($0.key)'") }
      let at = culprit.map { $0.value.mark == nil ? $0.node : $0.value } ?? nameNode
      throw usage("step \(name): \(recipeWording(message))", at)
    }
    if let why = options.notAPipelineStep { throw usage("step \(name): \(why)", nameNode) }
    for (g, at) in gates {
      if g.kind.needsQualityData && options.qualityData == nil {
        throw CompressorError.usage("the gate \(g.kind.rawValue) of step \(name) measures quality, and the step has no data for it, \(at)")
      }
      if g.kind.needsLabels && options.qualityData?.labels == nil {
        throw CompressorError.usage("the gate \(g.kind.rawValue) of step \(name) needs labels (accuracy), and the step has none, \(at)")
      }
    }
    return Recipe.Step(name: name, options: options, arguments: argv, keep: keep, gates: gates, place: place(nameNode))
  }

  /// A key's value as its flag's arguments.
  mutating func arguments(for a: StepArgument, value: Yams.Node, step: String, resolvePath: Bool) throws -> [String] {
    if a.isFlag {
      guard let text = try scalar(value, what: "\(step).\(a.key)"), let b = bool(text) else {
        throw usage("step \(step): \(a.key) must be true or false", value)
      }
      if b { return ["--\(a.key)"] }
      return a.hasInversion ? ["--no-\(a.key)"] : []
    }
    var values = [String]()
    try visit(value)
    if case .sequence(let items) = value {
      guard a.isRepeating else { throw usage("step \(step): \(a.key) takes one value, not a list", value) }
      for item in items {
        guard let v = try scalar(item, what: "\(step).\(a.key)") else { throw usage("step \(step): an empty value in \(a.key)", item) }
        values.append(v)
      }
    } else {
      guard let v = try scalar(value, what: "\(step).\(a.key)") else { return [] }
      values = [v]
    }
    if resolvePath {
      values = values.map { step == "distill" && a.key == "teacher" && $0 == "original" ? $0 : resolve($0) }
    }
    return values.map { "--\(a.key)=\($0)" }
  }

  mutating func gates(_ node: Yams.Node, what: String) throws -> [(spec: GateSpec, place: String)] {
    var result = [(spec: GateSpec, place: String)]()
    for (key, keyNode, value) in try pairs(node, what: what) {
      guard let text = try scalar(value, what: "\(what) \(key)") else { throw usage("\(what): \(key) needs a limit", value) }
      do {
        result.append((try GateSpec.make(name: key, value: text, where: "\(what)"), place(keyNode)))
      } catch let e as ValidationError {
        throw usage(e.message, GateSpec.Kind(rawValue: key) == nil ? keyNode : value)
      }
    }
    return result
  }

  func unroll(_ nodes: [Recipe.Node], prefix: String) throws -> [Recipe.ScheduledStep] {
    var result = [Recipe.ScheduledStep]()
    for (i, node) in nodes.enumerated() {
      let at = prefix + String(i + 1)
      switch node {
      case .step(let s): result.append(.init(at: at, step: s))
      case .repeated(let count, let inner):
        for r in 1...count {
          result += try unroll(inner, prefix: "\(at).\(r).")
          if result.count > Recipe.maxScheduledSteps {
            throw CompressorError.usage("the recipe runs more than \(Recipe.maxScheduledSteps) steps (repeat), \(file)")
          }
        }
      }
    }
    return result
  }

  /// Command-line words in a parser message, said as recipe keys.
  func recipeWording(_ message: String) -> String {
    message.replacingOccurrences(of: "Missing expected argument '--data <data>'", with: "data is required")
  }

  /// Complex keys (`? …`, a list, mapping or alias as a key) are refused before the YAML is
  /// composed: Yams hashes mapping keys to find duplicates, and an alias key can stand for an
  /// exponentially large tree.
  func refuseNonScalarKeys() throws {
    var line = 1, column = 0
    var quote: Character?
    var comment = false
    var previous: Character = "\n"
    var token = ""
    let chars = Array(text)
    var i = 0
    while i < chars.count {
      let c = chars[i]
      column += 1
      defer {
        if c == "\n" { line += 1; column = 0; comment = false }
        previous = c
        i += 1
      }
      if comment { continue }
      if let q = quote {
        if c == q && !(q == "\"" && i > 0 && chars[i - 1] == "\\") { quote = nil }
        continue
      }
      switch c {
      case "\"", "'":
        if previous == " " || previous == "\n" || previous == "[" || previous == "{" || previous == "," || previous == ":" { quote = c }
      case "#":
        if previous == " " || previous == "\n" || previous == "\t" { comment = true }
      case "?":
        let next = i + 1 < chars.count ? chars[i + 1] : "\n"
        if (next == " " || next == "\n") && (previous == " " || previous == "\n" || previous == "{" || previous == ",") {
          throw CompressorError.usage("complex keys ('? ') are not allowed in a recipe, \(file):\(line):\(column)")
        }
      case "*":
        // `*alias:` (block) or `*alias :` (flow) — an alias as a key.
        var j = i + 1
        token = ""
        while j < chars.count, !" \t\n,[]{}:".contains(chars[j]) { token.append(chars[j]); j += 1 }
        while j < chars.count, chars[j] == " " || chars[j] == "\t" { j += 1 }
        if !token.isEmpty && (previous == " " || previous == "\n" || previous == "{" || previous == "," || previous == "[" || previous == "-"),
           j < chars.count, chars[j] == ":", j + 1 >= chars.count || " \n\t,}".contains(chars[j + 1]) {
          throw CompressorError.usage("an alias (*\(token)) cannot be a key in a recipe, \(file):\(line):\(column)")
        }
      case "]", "}":
        var j = i + 1
        while j < chars.count, chars[j] == " " || chars[j] == "\t" { j += 1 }
        if j < chars.count, chars[j] == ":", j + 1 >= chars.count || " \n\t,}".contains(chars[j + 1]) {
          throw CompressorError.usage("a list or mapping cannot be a key in a recipe, \(file):\(line):\(column)")
        }
      default: break
      }
    }
  }

  func yamlProblem(_ e: YamlError) -> String {
    switch e {
    case .scanner(_, let problem, _, _), .parser(_, let problem, _, _), .composer(_, let problem, _, _): return problem
    case .reader(let problem, _, _, _): return problem
    case .duplicatedKeysInMapping(let duplicates, _): return "duplicated key \(duplicates.map { "'\($0)'" }.joined(separator: ", "))"
    default: return "\(e)".split(whereSeparator: \.isNewline).first.map(String.init) ?? "unreadable"
    }
  }

  func yamlPlace(_ e: YamlError) -> String {
    switch e {
    case .scanner(_, _, let m, _), .parser(_, _, let m, _), .composer(_, _, let m, _): return "\(file):\(m.line):\(m.column)"
    case .duplicatedKeysInMapping(_, let context):
      return "\(file):\(context.mark.line):\(context.mark.column)"
    default: return file
    }
  }
}

/// " (did you mean 'ratio'?)" for a near miss.
func suggestion(_ word: String, _ candidates: [String]) -> String {
  func distance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    var row = Array(0...b.count)
    for i in 1...max(a.count, 1) where !a.isEmpty {
      var previous = row[0]
      row[0] = i
      for j in 1...max(b.count, 1) where !b.isEmpty {
        let current = row[j]
        row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
        previous = current
      }
    }
    return row[b.count]
  }
  var best: (name: String, distance: Int)?
  for c in candidates {
    let d = distance(word, c)
    if best == nil || d < best!.distance { best = (c, d) }
  }
  guard let best, best.distance <= max(2, word.count / 3) else { return "" }
  return " (did you mean '\(best.name)'?)"
}

/// Checks recipe text exactly as `pipeline` does, without reading the file or any model, and
/// returns how many steps it schedules. The libFuzzer target `fuzz-recipe` drives the recipe
/// parser (YAML through Yams, every step's options through its command's parser) through this.
public func checkRecipe(text: String, file: String) throws -> Int {
  var reader = RecipeReader(file: file, text: text)
  return try reader.read().schedule.count
}
