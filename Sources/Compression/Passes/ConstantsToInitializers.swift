import IR
import Runtime
import Support

/// Weights held in `Constant` nodes (PaddlePaddle's exporter stores whole models this way)
/// become initializers, and `Identity` and `Cast` of an initializer are folded into it, so
/// every later pass finds weights where it looks: in initializers. Subgraphs are treated the
/// same way, each keeping its own initializers.
public struct ConstantsToInitializers: Pass {
  public static let name = "constants-to-initializers"
  public init() {}

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    var changes = [PassResult.Change]()
    let readers = model.graph.uses()
    try model.graph.transformGraphs { g in
      let outputs = Set(g.outputs.map(\.name))
      var kept = [Node]()
      var initializers = Dictionary(uniqueKeysWithValues: g.initializers.map { ($0.name, $0) })
      var renames = [(String, String)]()
      for node in g.nodes {
        guard node.isDefaultDomain, let out = node.outputs.first, node.outputs.count == 1 else {
          kept.append(node)
          continue
        }
        if outputs.contains(out) && ["Constant", "Identity", "Cast"].contains(node.opType) {
          changes.append(.init(target: label(node), action: "skipped", detail: "its output '\(out)' is a graph output"))
          kept.append(node)
          continue
        }
        switch node.opType {
        case "Constant":
          if let tensor = try constantTensor(node) {
            var t = tensor
            t.name = out
            initializers[out] = t
            g.initializers.append(t)
            changes.append(.init(target: label(node), action: "moved to initializer", detail: "\(t.dataType) \(t.dims)"))
          } else {
            changes.append(.init(target: label(node), action: "skipped", detail: "sparse or string-list constants stay nodes"))
            kept.append(node)
          }
        case "Identity" where initializers[node.inputs.first ?? ""] != nil:
          let source = node.inputs[0]
          if readers[source] == 1, let i = g.initializers.firstIndex(where: { $0.name == source }) {
            // The Identity is the initializer's only reader: the initializer takes its output's name.
            g.initializers[i].name = out
            initializers[out] = g.initializers[i]
            initializers[source] = nil
            changes.append(.init(target: label(node), action: "removed", detail: "initializer '\(source)' renamed '\(out)'"))
          } else {
            renames.append((out, source))
            changes.append(.init(target: label(node), action: "removed", detail: "readers use initializer '\(source)' directly"))
          }
        case "Cast" where initializers[node.inputs.first ?? ""] != nil:
          let to = DataType(rawValue: Int32(clamping: node.attribute("to")?.int ?? 0))
          // Weights stored in a narrower float type (float16 → float): folded so passes see float
          // weights. Casts to wider integer types stay: folding would only make the model larger.
          guard let source = initializers[node.inputs[0]], source.dataType != .string, to != .string, to.isKnown,
                source.segment == nil, to.isFloatingPoint || (to.bitWidth ?? 64) <= (source.dataType.bitWidth ?? 0) else {
            kept.append(node)
            continue
          }
          var t = try NDArray(source).converted(to: to).irTensor(name: out)
          t.storedIn = .rawData
          initializers[out] = t
          g.initializers.append(t)
          changes.append(.init(target: label(node), action: "folded", detail: "\(source.dataType) → \(to) initializer '\(out)'"))
        default:
          kept.append(node)
        }
      }
      g.nodes = kept
      for (old, new) in renames { g.renameUses(old, to: new) }
    }
    return PassResult(pass: Self.name, changes: changes)
  }

  /// The tensor a Constant node defines, from whichever value attribute it uses.
  private func constantTensor(_ node: Node) throws -> Tensor? {
    guard let a = node.attributes.first else { return nil }
    func make<T>(_ type: DataType, _ values: [T], dims: [Int64]) -> Tensor {
      Tensor(name: "", dataType: type, dims: dims, data: ByteBuffer(copying: values.withUnsafeBytes { Array($0) }))
    }
    switch (a.name, a.value) {
    case ("value", .tensor(let t)): return t
    case ("value_float", .float(let f)): return make(.float, [f], dims: [])
    case ("value_floats", .floats(let f)): return make(.float, f, dims: [Int64(f.count)])
    case ("value_int", .int(let i)): return make(.int64, [i], dims: [])
    case ("value_ints", .ints(let i)): return make(.int64, i, dims: [Int64(i.count)])
    case ("value_string", .string(let s)):
      return Tensor(name: "", dataType: .string, dims: [], data: ByteBuffer(copying: []), strings: [s], storedIn: .stringData)
    default: return nil
    }
  }
}
