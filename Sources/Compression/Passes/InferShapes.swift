import IR
import Runtime
import Support

/// Records the element type and shape of every intermediate value of the main graph as
/// value_info, with the inputs' symbolic dimensions carried through ("batch", "seq"), so that
/// other tools (and people reading the model) see the shapes without running it. Shapes come
/// from running the model on zero inputs under two bindings of the symbols; a model that cannot
/// be run that way (an unnamed input dimension, an unsupported op) is left as it is, with the reason.
public struct InferShapes: Pass {
  public static let name = "infer-shapes"
  public init() {}

  public func run(_ model: inout Model, _ context: PassContext) throws -> PassResult {
    let inference: ShapeInference
    do {
      inference = try ShapeInference(model: model, bindings: [:])
    } catch let e as CompressorError {
      return PassResult(pass: Self.name, changes: [.init(target: model.graph.name, action: "skipped", detail: "shapes not inferred: \(e.message)")])
    }
    var known = Set(model.graph.inputs.map(\.name) + model.graph.outputs.map(\.name) + model.graph.valueInfo.map(\.name))
    known.formUnion(model.graph.initializers.map(\.name))
    var added = [ValueInfo]()
    for node in inference.nodes {
      for v in node.outputs where !v.name.isEmpty && !known.contains(v.name) {
        known.insert(v.name)
        let dims = v.shape.map { d -> Dimension in
          if let n = Int64(d) { return Dimension(.known(n)) }
          return Dimension(d == "?" ? .unknown : .symbolic(d))
        }
        added.append(ValueInfo(name: v.name, type: TypeInfo(.tensor(elementType: v.type, shape: TensorShape(dims)))))
      }
    }
    model.graph.valueInfo += added
    return PassResult(pass: Self.name, changes: added.isEmpty ? [] : [
      .init(target: model.graph.name, action: "annotated", detail: "\(added.count) value shapes recorded as value_info")])
  }
}
