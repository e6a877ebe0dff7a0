import IR
import Runtime
import Support

/// Feature distillation: each matched student tensor is mapped by a learned linear adapter over
/// its channel axis (axis 1 of a 4-D feature map, the last axis otherwise) when its width differs
/// from the teacher's, and pulled towards the teacher's tensor by mean squared error. Adapters
/// train with the student and are not part of the written model.
struct Adapters {
  private struct Match {
    var teacher: String
    var student: String
    /// Adapter weight name (nil when the widths agree).
    var adapter: String?
  }

  var weights: [String: NDArray] = [:]
  private(set) var names: [String] = []
  /// Adapter gradients from the last `loss` call.
  private(set) var gradients: [String: NDArray] = [:]
  private var matches: [Match] = []
  private let executor: Executor

  /// `student` and `teacher`: both models' values on one sample, for the tensors' widths.
  init(_ pairs: [(teacher: String, student: String)], executor: Executor, student: [String: NDArray],
       teacher targets: TeacherTargets?, rng: inout SplitMix64) throws {
    self.executor = executor
    guard !pairs.isEmpty else { return }
    guard let targets else { throw CompressorError.usage("--match needs a teacher") }
    for (i, pair) in pairs.enumerated() {
      guard let s = student[pair.student] else {
        throw CompressorError.invalid("the student has no tensor named '\(pair.student)' (--match)")
      }
      guard let t = targets.features[pair.teacher] else {
        throw CompressorError.invalid("the teacher has no tensor named '\(pair.teacher)' (--match)")
      }
      let cs = s.shape[Self.channelAxis(s.rank)], ct = t.shape[Self.channelAxis(t.rank)]
      guard s.rank == t.rank, s.count / cs == t.shape.dropFirst().reduce(1, *) / ct else {
        throw CompressorError.invalid("student tensor '\(pair.student)' \(s.shape) and teacher tensor '\(pair.teacher)' \(t.shape) differ in more than their channels")
      }
      var match = Match(teacher: pair.teacher, student: pair.student, adapter: nil)
      if cs != ct {
        let name = "adapter\(i)"
        let bound = 1 / Float(cs).squareRoot()
        weights[name] = NDArray((0..<(ct * cs)).map { _ in (rng.nextFloat() * 2 - 1) * bound }, shape: [ct, cs])
        names.append(name)
        match.adapter = name
      }
      matches.append(match)
    }
  }

  static func channelAxis(_ rank: Int) -> Int { rank == 4 ? 1 : max(rank - 1, 0) }

  /// Adds each match's MSE gradient to `seeds`; returns the summed loss (before `weight`).
  mutating func loss(_ trace: TrainingGraph.Trace, _ targets: TeacherTargets, weight: Float,
                     seeds: inout [String: NDArray]) throws -> Double {
    gradients = [:]
    var total = 0.0
    for m in matches {
      guard let s = try trace.values[m.student]?.asFloat(), let t = targets.features[m.teacher] else { continue }
      let x = try rows(s), target = try rows(t)
      var y = x
      if let a = m.adapter, let w = weights[a] {
        y = matrixProduct(x, w, m: x.shape[0], n: w.shape[0], k: x.shape[1], transposeB: true)
      }
      let (loss, dy0) = Loss.meanSquared(student: y, teacher: target)
      total += loss
      let dy = dy0.scaled(by: weight)
      var dx = dy
      if let a = m.adapter, let w = weights[a] {
        gradients[a] = matrixProduct(dy, x, m: dy.shape[1], n: x.shape[1], k: dy.shape[0], transposeA: true)
        dx = matrixProduct(dy, w, m: dy.shape[0], n: w.shape[1], k: dy.shape[1])
      }
      var g = try unrows(dx, like: s)
      if let existing = seeds[m.student] { g.add(existing) }
      seeds[m.student] = g
    }
    return total
  }

  /// [positions, channels] view of a feature tensor.
  private func rows(_ a: NDArray) throws -> NDArray {
    guard a.rank == 4 else { return a.reshaped([a.count / max(a.shape.last ?? 1, 1), a.shape.last ?? 1]) }
    let t = try transpose(a, [0, 2, 3, 1])
    return t.reshaped([t.count / a.shape[1], a.shape[1]])
  }

  private func unrows(_ r: NDArray, like a: NDArray) throws -> NDArray {
    guard a.rank == 4 else { return r.reshaped(a.shape) }
    return try transpose(r.reshaped([a.shape[0], a.shape[2], a.shape[3], a.shape[1]]), [0, 3, 1, 2])
  }

  private func transpose(_ a: NDArray, _ perm: [Int64]) throws -> NDArray {
    let node = Node(opType: "Transpose", inputs: ["x"], outputs: ["y"], attributes: [Attribute(name: "perm", value: .ints(perm))])
    guard let out = try executor.evaluate(node, [a]).first else { throw CompressorError.internalError("Transpose gave no output") }
    return out
  }
}
