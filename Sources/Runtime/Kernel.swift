import IR
import Support

/// Everything a kernel sees of the node it executes.
public struct KernelContext {
  public let node: Node
  /// Inputs in node order; nil for an omitted optional input ("").
  public let inputs: [NDArray?]
  /// The version of the node's domain in the model's opset imports.
  public let opset: Int64
  let executor: Executor
  let scope: Scope

  public func input(_ i: Int) throws -> NDArray {
    guard i < inputs.count, let v = inputs[i] else { throw fail("input \(i) is required") }
    return v
  }

  public func optionalInput(_ i: Int) -> NDArray? { i < inputs.count ? inputs[i] : nil }

  public func int(_ name: String, _ fallback: Int) -> Int {
    node.attribute(name)?.int.map { Int(clamping: $0) } ?? fallback
  }

  public func ints(_ name: String) -> [Int]? {
    node.attribute(name)?.ints.map { $0.map { Int(clamping: $0) } }
  }

  public func float(_ name: String, _ fallback: Float) -> Float { node.attribute(name)?.float ?? fallback }

  public func string(_ name: String, _ fallback: String) -> String { node.attribute(name)?.string ?? fallback }

  public func graph(_ name: String) throws -> Graph {
    guard case .graph(let g)? = node.attribute(name)?.value else { throw fail("attribute '\(name)' (a graph) is missing") }
    return g
  }

  /// Runs a subgraph of this node with `feeds` bound to its inputs, seeing this scope's values.
  public func runSubgraph(_ g: Graph, feeds: [NDArray?]) throws -> [NDArray] {
    try executor.runGraph(g, outer: scope, feeds: feeds)
  }

  /// An error naming this node: "node 'x' (Op): message".
  public func fail(_ message: String) -> CompressorError {
    .invalid("\(node.displayName): \(message)")
  }

  public func unsupported(_ message: String) -> CompressorError {
    .unsupported("\(node.displayName): \(message)")
  }

  /// Normalizes a possibly negative axis for a tensor of `rank` (a scalar has no axis).
  public func axis(_ a: Int, rank: Int) throws -> Int {
    let r = a < 0 ? a &+ rank : a
    guard r >= 0 && r < rank else { throw fail("axis \(a) is out of range for rank \(rank)") }
    return r
  }
}

public typealias Kernel = (KernelContext) throws -> [NDArray]

/// Op type → kernel, per domain. Each file in Kernels/ contributes one op family.
public enum Kernels {
  static let standard: [String: Kernel] = {
    var all = [String: Kernel]()
    for family in [elementwise, matrix, convolution, normalization, pooling, reduction, shapeOps, controlFlow,
                   quantization, softmax, resize, indexing, quantizedMatrix, recurrent, einsum] {
      all.merge(family) { a, _ in a }
    }
    return all
  }()

  public static func kernel(domain: String, opType: String) -> Kernel? {
    if domain.isEmpty || domain == "ai.onnx" { return standard[opType] }
    if domain == "com.microsoft" { return microsoft[opType] }
    return nil
  }

  /// Op types with a kernel, sorted; contrib operators carry their domain ("com.microsoft.X").
  public static var supportedOps: [String] { standard.keys.sorted() + microsoft.keys.sorted().map { "com.microsoft.\($0)" } }
}
