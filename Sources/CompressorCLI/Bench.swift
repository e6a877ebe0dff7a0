import ArgumentParser
import Foundation
import IR
import ONNX
import Runtime
import Support

extension Compressor {
  struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Measure inference latency and peak memory of compressor's own runtime on a model.",
      discussion: """
        Without --input, inputs are random (seeded) with the model's shapes; symbolic dimensions \
        must then be bound with --input-shape NAME=1x3x224x224 (or are taken as 1).
        """)

    @Argument(help: "The ONNX model to run.")
    var model: String

    @Option(name: .customLong("input"), help: "An input file, as for `compressor run` (repeatable).")
    var inputs: [String] = []

    @Option(name: .customLong("input-shape"), help: "NAME=D0xD1x… for a generated input (repeatable).")
    var inputShapes: [String] = []

    @Option(help: "Timed runs after warm-up.")
    var runs = 20

    @Option(help: "Untimed warm-up runs.")
    var warmup = 3

    @Option(help: "Threads for BLAS.")
    var threads = 1

    @Option(help: "Seed for generated inputs.")
    var seed = 0

    @Flag(help: "Print the results as JSON on stdout.")
    var json = false

    @Flag(help: "Also print the time spent per operator type over the timed runs, and the slowest nodes (stderr).")
    var profile = false

    @Option(help: "How many of the slowest nodes --profile lists.")
    var profileNodes = 10

    @OptionGroup var memory: MemoryOptions

    func validate() throws {
      if runs < 1 { throw ValidationError("--runs must be 1 or more, not \(runs)") }
      if warmup < 0 { throw ValidationError("--warmup must be 0 or more, not \(warmup)") }
      if threads < 1 { throw ValidationError("--threads must be 1 or more, not \(threads)") }
      if profileNodes < 0 { throw ValidationError("--profile-nodes must be 0 or more, not \(profileNodes)") }
      _ = try parseShapes()
    }

    func parseShapes() throws -> [String: [Int]] { try parseInputShapes(inputShapes) }

    func run() throws {
      let loaded = try ModelReader.read(model)
      let executor = try Executor(model: loaded.model, threads: threads)
      var feeds = try Compressor.Run.feeds(inputs, model: loaded.model)
      let shapes = try parseShapes()
      var rng = SplitMix64(seed: UInt64(truncatingIfNeeded: seed))
      let initializers = Set(loaded.model.graph.initializers.map(\.name))
      for input in loaded.model.graph.inputs where !initializers.contains(input.name) && feeds[input.name] == nil {
        guard case .tensor(let type, let shape)? = input.type?.kind else {
          throw CompressorError.unsupported("input '\(input.name)' is not a tensor; give it with --input")
        }
        let dims = try shapes[input.name] ?? (shape?.dims ?? []).map { d -> Int in
          d.size.map { Int(clamping: $0) } ?? 1
        }
        if shapes[input.name] == nil && shape == nil {
          throw CompressorError.usage("input '\(input.name)' has no shape; give --input-shape \(input.name)=…")
        }
        try NDArray.checkAllocation(dims, type, what: "input '\(input.name)'")
        let count = dims.reduce(1, *)
        let values = (0..<count).map { _ in type.isFloatingPoint ? Double(rng.nextFloat()) : Double(rng.next() % 2) }
        feeds[input.name] = try NDArray(doubles: values, as: type, shape: dims)
      }
      for _ in 0..<warmup { _ = try executor.run(feeds) }
      if profile { executor.profile = [:] }
      var times = [Double]()
      for _ in 0..<runs {
        let start = DispatchTime.now().uptimeNanoseconds
        _ = try executor.run(feeds)
        times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
      }
      times.sort()
      if let spent = executor.profile {
        var byOp = [String: UInt64]()
        for (_, entry) in spent { byOp[entry.opType, default: 0] += entry.nanoseconds }
        let total = Double(byOp.values.reduce(0, +))
        func line(_ label: String, _ ns: UInt64) {
          FileHandle.standardError.write("\(label)  \(jsonNumber(Double(ns) / 1e6 / Double(runs))) ms/run  \(jsonNumber((Double(ns) / total * 1000).rounded() / 10))%\n")
        }
        for (op, ns) in byOp.sorted(by: { ($0.value, $1.key) > ($1.value, $0.key) }) { line(op, ns) }
        FileHandle.standardError.write("slowest nodes:\n")
        for (name, entry) in spent.sorted(by: { ($0.value.nanoseconds, $1.key) > ($1.value.nanoseconds, $0.key) }).prefix(profileNodes) {
          line("  \(name)", entry.nanoseconds)
        }
      }
      func percentile(_ p: Double) -> Double { times[min(times.count - 1, Int((p * Double(times.count - 1)).rounded()))] }
      var usage = rusage()
      getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
      let result: [(String, Double)] = [
        ("meanMs", times.reduce(0, +) / Double(times.count)), ("p50Ms", percentile(0.5)), ("p95Ms", percentile(0.95)),
        ("peakActivationBytes", Double(executor.peakLiveBytes)), ("peakRSSBytes", Double(usage.ru_maxrss) * 1024),
        ("runs", Double(runs)), ("threads", Double(threads)),
      ]
      if json {
        FileHandle.standardOutput.write("{" + result.map { "\"\($0.0)\": \(jsonNumber($0.1))" }.joined(separator: ", ") + "}\n")
      } else {
        for (k, v) in result { FileHandle.standardOutput.write("\(k)  \(jsonNumber(v))\n") }
      }
    }
  }
}

/// `NAME=D0xD1x…` options, as `inspect`, `bench` and later commands take them.
func parseInputShapes(_ specs: [String]) throws -> [String: [Int]] {
  var shapes = [String: [Int]]()
  for spec in specs {
    guard let eq = spec.lastIndex(of: "="), eq != spec.startIndex else { throw ValidationError("--input-shape '\(spec)' is not NAME=D0xD1x…") }
    let dims = spec[spec.index(after: eq)...].split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
    guard !dims.isEmpty, dims.allSatisfy({ ($0 ?? -1) >= 0 }) else { throw ValidationError("--input-shape '\(spec)' has an invalid dimension") }
    shapes[String(spec[..<eq])] = dims.map { $0 ?? 0 }
  }
  return shapes
}
