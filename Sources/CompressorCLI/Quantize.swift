import ArgumentParser
import Compression
import Foundation
import IR
import ONNX
import Report
import Support

extension Compressor {
  struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Quantize a model's weights to int8, keeping compute in float (weight-only).",
      discussion: """
        Runs the preparation passes of `optimize`, then stores every MatMul, Gemm, Conv, \
        ConvTranspose and Gather weight of 256 elements or more as int8 with per-channel scales \
        followed by DequantizeLinear. --report lists every weight quantized or left alone, with \
        the reason and the weight's SQNR. Models that are already quantized are refused (exit 69).
        """)

    enum Mode: String, ExpressibleByArgument, CaseIterable { case weightOnly = "weight-only" }

    @Argument(help: "The ONNX model to quantize.")
    var model: String

    @Option(name: .shortAndLong, help: "Where to write the result (default: beside the input, MODEL.int8.onnx).")
    var output: String?

    @Option(help: "Quantization mode (\(Mode.allCases.map(\.rawValue).joined(separator: ", "))).")
    var mode: Mode = .weightOnly

    @Option(help: "Bits per weight: 8, or 4 (MatMul weights, in blocks).")
    var bits = 8

    @Option(help: "With --bits 4: rows per block of scales (32, 64 or 128).")
    var blockSize = 32

    enum Format: String, ExpressibleByArgument, CaseIterable { case qdq, matmulnbits }

    @Option(help: "With --bits 4: qdq (standard DequantizeLinear, opset 21+) or matmulnbits (ONNX Runtime's com.microsoft MatMulNBits).")
    var format: Format = .qdq

    @Option(help: "Write a JSON report of every change to this file.")
    var report: String?

    @Flag(help: "Replace the output (and report) if they exist.")
    var force = false

    func validate() throws {
      if bits != 8 && bits != 4 { throw ValidationError("--bits must be 8 or 4, not \(bits)") }
      if ![32, 64, 128].contains(blockSize) { throw ValidationError("--block-size must be 32, 64 or 128, not \(blockSize)") }
    }

    func run() throws {
      let out = output ?? defaultOutput(model, suffix: bits == 4 ? "int4" : "int8")
      let outcome = try TransformRun(command: "quantize", model: model, output: out, report: report, force: force,
                                     notLargerThanInput: true).run(
        Self.passes(bits: bits, blockSize: blockSize, format: format),
        check: { loaded in
          var alreadyQuantized: Node?
          loaded.model.graph.forEachGraph { g in
            for n in g.nodes where alreadyQuantized == nil && Self.quantizedOps.contains(n.opType) { alreadyQuantized = n }
          }
          if let n = alreadyQuantized {
            throw CompressorError.unsupported("\(model) is already quantized (\(n.displayName)); quantize the float model instead")
          }
        })
      let count = outcome.passes.reduce(0) { $0 + $1.changes.filter { $0.action == "quantized" }.count }
      let ratio = Double(outcome.written.modelBytes) / Double(max(outcome.loaded.totalBytes, 1))
      FileHandle.standardError.write("wrote \(out) (\(count) weights quantized\(bits == 4 ? " (MatMul int4, others int8)" : " int8"), \(outcome.written.modelBytes) bytes, \(String(format: "%.2f", ratio))× the input)\n")
    }

    /// The preparation passes, then 4-bit MatMul weights (with --bits 4), then int8 for the rest.
    static func passes(bits: Int, blockSize: Int, format: Format) -> [Pass] {
      var passes: [Pass] = [ConstantsToInitializers(), FoldBatchNormIntoConv(), RemoveDeadCode()]
      if bits == 4 { passes.append(QuantizeWeights4Bit(blockSize: blockSize, format: format == .qdq ? .qdq : .matmulnbits)) }
      passes.append(QuantizeWeights())
      return passes
    }

    static let quantizedOps: Set<String> = ["QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
                                            "QLinearMatMul", "MatMulInteger", "ConvInteger", "MatMulNBits"]
  }
}
