import Support

/// Structural checks that make a model safe for every pass: supported versions, single
/// assignment, every input produced somewhere in scope, no cycles, no recursive functions.
/// `file` names the model in error messages.
public func validate(_ model: Model, file: String) throws {
  if model.irVersion <= 0 {
    throw CompressorError.invalid("\(file): ir_version is missing")
  }
  if model.irVersion > Model.supportedIRVersions.upperBound {
    throw CompressorError.invalid(
      "\(file): ir_version \(model.irVersion) is newer than supported (up to \(Model.supportedIRVersions.upperBound))")
  }
  if model.irVersion >= 3 && model.opsetImports.isEmpty {
    throw CompressorError.invalid("\(file): no opset_import (required from IR version 3)")
  }
  var seenDomains = Set<String>()
  for op in model.opsetImports {
    let domain = op.isDefaultDomain ? "" : op.domain
    if !seenDomains.insert(domain).inserted {
      throw CompressorError.invalid("\(file): opset_import lists domain '\(op.domain)' twice")
    }
    if op.version <= 0 {
      throw CompressorError.invalid("\(file): opset_import of domain '\(op.domain)' has version \(op.version)")
    }
    if op.isDefaultDomain && !Model.supportedDefaultOpsets.contains(op.version) {
      throw CompressorError.unsupported(
        "\(file): opset \(op.version) of the default domain is outside the supported range \(Model.supportedDefaultOpsets.lowerBound)...\(Model.supportedDefaultOpsets.upperBound)")
    }
  }
  try validateGraph(model.graph, outerScope: [], file: file, path: "graph '\(model.graph.name)'")
  try validateFunctionsAreNotRecursive(model.functions, file: file)
}

private func validateGraph(_ g: Graph, outerScope: Set<String>, file: String, path: String) throws {
  var defined = Set<String>()
  for (i, t) in g.initializers.enumerated() {
    if t.name.isEmpty { throw CompressorError.invalid("\(file): initializer #\(i) of \(path) has no name") }
    if !defined.insert(t.name).inserted {
      throw CompressorError.invalid("\(file): initializer '\(t.name)' appears twice in \(path)")
    }
  }
  for (i, s) in g.sparseInitializers.enumerated() {
    if s.name.isEmpty { throw CompressorError.invalid("\(file): sparse initializer #\(i) of \(path) has no name") }
    if !defined.insert(s.name).inserted {
      throw CompressorError.invalid("\(file): initializer '\(s.name)' appears twice in \(path)")
    }
  }
  var inputNames = Set<String>()
  var initializerByName = [String: Tensor]()
  for t in g.initializers { initializerByName[t.name] = t }
  for (i, v) in g.inputs.enumerated() {
    if v.name.isEmpty { throw CompressorError.invalid("\(file): input #\(i) of \(path) has no name") }
    if !inputNames.insert(v.name).inserted {
      throw CompressorError.invalid("\(file): input '\(v.name)' appears twice in \(path)")
    }
    // Before IR 4 every initializer was also listed as an input, so that overlap is allowed —
    // but the two must describe one tensor: the initializer is the value every pass uses.
    if let t = initializerByName[v.name], case .tensor(let type, let shape)? = v.type?.kind {
      let clash = (type != .undefined && type != t.dataType)
        || shape.map { s in s.dims.count != t.dims.count || zip(s.dims, t.dims).contains { d, n in d.size.map { $0 != n } ?? false } } ?? false
      if clash {
        throw CompressorError.invalid(
          "\(file): initializer '\(t.name)' (\(t.dataType) \(t.dims)) shadows input '\(v.name)' of \(path) declared \(v.type?.description ?? "?")")
      }
    }
    defined.insert(v.name)
  }

  // Single assignment: each value has one producer.
  var producer = [String: Int]()
  for (n, node) in g.nodes.enumerated() {
    for out in node.outputs where !out.isEmpty {
      if defined.contains(out) {
        throw CompressorError.invalid(
          "\(file): \(node.displayName) in \(path) writes '\(out)', which is already a graph input or initializer")
      }
      if let other = producer[out] {
        throw CompressorError.invalid(
          "\(file): value '\(out)' is produced twice in \(path), by \(g.nodes[other].displayName) and \(node.displayName)")
      }
      producer[out] = n
    }
  }

  // Every input is produced somewhere in scope; edges between nodes for the cycle check.
  var consumers = [[Int]](repeating: [], count: g.nodes.count)
  var indegree = [Int](repeating: 0, count: g.nodes.count)
  for (n, node) in g.nodes.enumerated() {
    var needed = node.inputs.filter { !$0.isEmpty }
    for attr in node.attributes {
      for sub in attr.subgraphs { needed += freeNames(of: sub) }
    }
    for (k, name) in needed.enumerated() {
      if let p = producer[name] {
        consumers[p].append(n)
        indegree[n] += 1
      } else if !defined.contains(name) && !outerScope.contains(name) {
        if k < node.inputs.count {
          throw CompressorError.invalid(
            "\(file): \(node.displayName) in \(path) reads '\(name)', which no node, initializer or graph input produces")
        }
        // A name a subgraph reads but nobody produces is reported when the subgraph is checked.
      }
    }
  }
  var ready = (0..<g.nodes.count).filter { indegree[$0] == 0 }
  var visited = 0
  while let n = ready.popLast() {
    visited += 1
    for c in consumers[n] {
      indegree[c] -= 1
      if indegree[c] == 0 { ready.append(c) }
    }
  }
  if visited != g.nodes.count {
    let stuck = (0..<g.nodes.count).first { indegree[$0] > 0 }.map { g.nodes[$0].displayName } ?? "?"
    throw CompressorError.invalid("\(file): \(path) contains a cycle through \(stuck)")
  }

  for out in g.outputs {
    if out.name.isEmpty { throw CompressorError.invalid("\(file): an output of \(path) has no name") }
    if producer[out.name] == nil && !defined.contains(out.name) && !outerScope.contains(out.name) {
      throw CompressorError.invalid("\(file): output '\(out.name)' of \(path) is not produced by any node")
    }
  }

  let inner = outerScope.union(defined).union(producer.keys)
  for node in g.nodes {
    for attr in node.attributes {
      for (i, sub) in attr.subgraphs.enumerated() {
        let name = sub.name.isEmpty ? "\(attr.name)[\(i)]" : sub.name
        try validateGraph(sub, outerScope: inner, file: file,
                          path: "subgraph '\(name)' of \(node.displayName)")
      }
    }
  }
}

/// Names a graph (and its subgraphs) read without defining them: its outer-scope references.
private func freeNames(of g: Graph) -> [String] {
  var definedHere = Set<String>()
  var used = [String]()
  g.forEachGraph { sub in
    for v in sub.inputs { definedHere.insert(v.name) }
    for t in sub.initializers { definedHere.insert(t.name) }
    for s in sub.sparseInitializers { definedHere.insert(s.name) }
    for n in sub.nodes {
      for o in n.outputs { definedHere.insert(o) }
      used += n.inputs.filter { !$0.isEmpty }
    }
    used += sub.outputs.map(\.name)
  }
  var seen = Set<String>()
  return used.filter { !definedHere.contains($0) && seen.insert($0).inserted }
}

/// Functions may call each other but never recursively, directly or through others.
private func validateFunctionsAreNotRecursive(_ functions: [Function], file: String) throws {
  func key(_ domain: String, _ name: String, _ overload: String) -> String { "\(domain)\u{0}\(name)\u{0}\(overload)" }
  var index = [String: Int]()
  for (i, f) in functions.enumerated() {
    if index.updateValue(i, forKey: key(f.domain, f.name, f.overload)) != nil {
      throw CompressorError.invalid("\(file): function '\(f.domain).\(f.name)' is defined twice")
    }
  }
  let callees: [[Int]] = functions.map { f in
    f.nodes.compactMap { index[key($0.domain, $0.opType, $0.overload)] }
  }
  // Iterative depth-first search; state 1 = on the current path, 2 = finished.
  var state = [UInt8](repeating: 0, count: functions.count)
  for start in functions.indices where state[start] == 0 {
    var stack: [(Int, Int)] = [(start, 0)]
    state[start] = 1
    while let (f, next) = stack.last {
      if next < callees[f].count {
        stack[stack.count - 1].1 += 1
        let c = callees[f][next]
        if state[c] == 1 {
          throw CompressorError.invalid(
            "\(file): function '\(functions[c].domain).\(functions[c].name)' calls itself (recursion through '\(functions[f].name)')")
        }
        if state[c] == 0 {
          state[c] = 1
          stack.append((c, 0))
        }
      } else {
        state[f] = 2
        stack.removeLast()
      }
    }
  }
}
