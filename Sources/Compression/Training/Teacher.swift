import IR
import Runtime
import Support

/// What the student learns from: the teacher's outputs and matched intermediate tensors for a
/// set of samples, with the samples along the leading axis.
struct TeacherTargets {
  var outputs: [NDArray]
  var features: [String: NDArray]

  /// The targets of the samples at `indices`.
  func rows<C: Collection>(_ indices: C) -> TeacherTargets where C.Element == Int {
    TeacherTargets(outputs: outputs.map { $0.gatherRows(indices) }, features: features.mapValues { $0.gatherRows(indices) })
  }
}

/// Runs the teacher (inference, its own executor) and captures the tensors feature matching needs.
final class Teacher {
  private let executor: Executor
  private let wanted: Set<String>
  private var captured = [String: NDArray]()

  init(_ model: Model, features: [String], threads: Int) throws {
    executor = try Executor(model: model, threads: threads)
    wanted = Set(features)
    if !wanted.isEmpty {
      executor.observer = { [unowned self] node, _, results in
        for (k, name) in node.outputs.enumerated() where self.wanted.contains(name) && k < results.count {
          self.captured[name] = results[k]
        }
      }
    }
  }

  /// The targets of one batch.
  func run(_ feeds: [String: NDArray]) throws -> TeacherTargets {
    captured = [:]
    let result = try executor.run(feeds)
    var features = [String: NDArray]()
    for name in wanted.sorted() {
      guard let v = captured[name] ?? result.first(where: { $0.name == name })?.value else {
        throw CompressorError.invalid("the teacher has no tensor named '\(name)' (--match)")
      }
      features[name] = try v.asFloat()
    }
    return TeacherTargets(outputs: try result.map { try $0.value.asFloat() }, features: features)
  }

  /// The targets of every sample, computed once in batches of 256.
  func run(_ samples: Samples) throws -> TeacherTargets {
    var parts = [TeacherTargets]()
    for start in stride(from: 0, to: samples.count, by: 256) {
      parts.append(try run(samples.rows(start..<min(start + 256, samples.count))))
    }
    let outputs = (parts.first?.outputs.indices ?? 0..<0).compactMap { k in concatenateRows(parts.map { $0.outputs[k] }) }
    var features = [String: NDArray]()
    for name in wanted { features[name] = concatenateRows(parts.compactMap { $0.features[name] }) }
    return TeacherTargets(outputs: outputs, features: features)
  }
}
