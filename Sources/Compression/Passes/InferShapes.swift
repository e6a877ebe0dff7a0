import IR
import Runtime
import Support

/// Records the element type and shape of every intermediate value of the main graph as
/// value_info, so that other tools (and people reading the model) see the shapes without running
/// it. Shapes come from static inference (`ShapeInference`): symbolic dimensions are written as
/// dim_param strings holding their expression ("batch", "2*height", "ceil(width/32)"), unknown
/// ones without a value, values of unknown type not at all. A model inference finds inconsistent
/// is left as it is, with the reason.
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
        guard v.type != .undefined else { continue }
        let shape = v.dims.map { dims in
          TensorShape(dims.map { d -> Dimension in
            guard let d else { return Dimension(.unknown) }
            if let k = d.constant, k >= 0 { return Dimension(.known(Int64(k))) }
            return Dimension(.symbolic(d.description))
          })
        }
        added.append(ValueInfo(name: v.name, type: TypeInfo(.tensor(elementType: v.type, shape: shape))))
      }
    }
    model.graph.valueInfo += added
    return PassResult(pass: Self.name, changes: added.isEmpty ? [] : [
      .init(target: model.graph.name, action: "annotated", detail: "\(added.count) value shapes recorded as value_info")])
  }
}
