import ArgumentParser
import Foundation
import Linalg
import Support

#if canImport(Glibc)
import Glibc
#endif

/// The `compressor` command: a thin front over the library modules. Every subcommand lives
/// in its own file as an extension of this type.
public struct Compressor: ParsableCommand {
  public static let version = "0.1.0"

  public static let configuration = CommandConfiguration(
    commandName: "compressor",
    abstract: "Make ONNX models small and fast for edge devices.",
    discussion: """
      Exit codes: 0 success, 2 quality gate not met, 64 usage, 65 invalid or unsafe model or data, \
      66 input missing or unreadable, 69 unsupported, 70 internal error, 73 cannot create output, \
      74 I/O error, 77 permission denied, 130/143 interrupted.
      """,
    version: version,
    subcommands: [Inspect.self, Convert.self, Optimize.self, Quantize.self, Prune.self, Factorize.self, Distill.self, Pipeline.self, Run.self, Eval.self, Bench.self, Ops.self])

  public init() {}

  /// Runs the command line: errors become one `compressor: error: …` line on stderr and the
  /// exit code of design.md.
  public static func runMain() -> Never {
    startWithSingleThreadedBLAS()
    TemporaryFiles.installSignalHandlers()
    do {
      var command = try parseAsRoot()
      (command as? ReadsModels)?.memory.apply()
      try command.run()
      Glibc.exit(0)
    } catch let error as CompressorError {
      printError(error.message)
      Glibc.exit(error.exitCode)
    } catch let error as ExitCode {
      Glibc.exit(error.rawValue)
    } catch {
      let code = exitCode(for: error)
      if code == .success {
        // --help and --version
        print(fullMessage(for: error))
        Glibc.exit(0)
      }
      let message = self.message(for: error)
      if code == .validationFailure {
        printError(message.replacingOccurrences(of: "Error: ", with: ""))
        FileHandle.standardError.write(usageString(for: error) + "\n")
        Glibc.exit(CompressorError.Kind.usage.rawValue)
      }
      printError(message)
      Glibc.exit(code.rawValue == 1 ? CompressorError.Kind.internalError.rawValue : code.rawValue)
    }
  }

  /// OpenBLAS starts its worker pool in a library constructor, before `main`, sized by
  /// OPENBLAS_NUM_THREADS; idle workers spin in sched_yield, which costs a whole core on every
  /// command, BLAS or not. So the process re-executes itself once with one BLAS thread (unless
  /// the user chose a number); `--threads` grows the pool where BLAS is actually used.
  ///
  /// The same re-execution picks the kernels the CPU can run when OpenBLAS 0.3.21 does not
  /// recognize it — only when OPENBLAS_CORETYPE is unset: a value in the environment is a user's
  /// or an administrator's choice (machines where a kernel misbehaves set Haswell) and is never
  /// replaced. AMD Zen 4 is taken for Haswell, and Intel's newer Xeons (family 6 model 207,
  /// Emerald Rapids) for Prescott, whose SSE3 kernels run a ResNet-18 3.5× slower than the
  /// AVX-512 ones on the same machine.
  static func startWithSingleThreadedBLAS() {
    guard getenv("OPENBLAS_NUM_THREADS") == nil else { return }
    setenv("OPENBLAS_NUM_THREADS", "1", 1)
    if getenv("OPENBLAS_CORETYPE") == nil, let better = betterCore(than: Linalg.coreName.lowercased(), flags: cpuFlags()) {
      setenv("OPENBLAS_CORETYPE", better, 1)
    }
    execv("/proc/self/exe", CommandLine.unsafeArgv)
    // /proc is not mounted: carry on with the default pool.
  }

  /// The OpenBLAS core to ask for when the detected one leaves vector width unused: SkylakeX
  /// where AVX-512 F, CD, BW, DQ and VL are all present (what its kernels use), Haswell where
  /// AVX2 and FMA are; nil when the detected core is already that good.
  static func betterCore(than detected: String, flags: Set<String>) -> String? {
    let avx512 = ["skylakex", "cooperlake", "sapphirerapids"], avx2 = ["haswell", "zen"] + avx512
    if ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"].allSatisfy(flags.contains) {
      return avx512.contains(detected) ? nil : "SkylakeX"
    }
    if flags.contains("avx2") && flags.contains("fma") {
      return avx2.contains(detected) ? nil : "Haswell"
    }
    return nil
  }

  /// The CPU's feature flags (/proc/cpuinfo), empty when unreadable.
  static func cpuFlags() -> Set<String> {
    // /proc files report size 0, so read line by line rather than by the file's size.
    guard let file = fopen("/proc/cpuinfo", "r") else { return [] }
    defer { fclose(file) }
    var line: UnsafeMutablePointer<CChar>?
    var capacity = 0
    defer { free(line) }
    while getline(&line, &capacity, file) > 0, let l = line {
      let text = String(cString: l)
      guard text.hasPrefix("flags") else { continue }
      return Set(text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).map(String.init))
    }
    return []
  }

  static func printError(_ message: String) {
    let oneLine = message.split(whereSeparator: \.isNewline).joined(separator: " ")
    FileHandle.standardError.write("compressor: error: \(oneLine)\n")
  }

  static func usageString(for error: Error) -> String {
    let full = fullMessage(for: error)
    return full.split(separator: "\n").filter { !$0.hasPrefix("Error:") }.joined(separator: "\n")
  }
}

/// Minimal stderr/stdout writer without Foundation's buffering surprises.
struct FileHandle {
  let fd: Int32
  static let standardError = FileHandle(fd: 2)
  static let standardOutput = FileHandle(fd: 1)
  func write(_ s: String) {
    var s = s
    s.withUTF8 { write(UnsafeRawBufferPointer($0)) }
  }
  func write(_ bytes: [UInt8]) {
    bytes.withUnsafeBytes { write($0) }
  }
  private func write(_ buf: UnsafeRawBufferPointer) {
    guard let base = buf.baseAddress else { return }
    var done = 0
    while done < buf.count {
      let r = Glibc.write(fd, base + done, buf.count - done)
      if r <= 0 { return }
      done += r
    }
  }
}
