/// Every failure a user can cause, with the exit code design.md assigns to it.
///
/// The message reads "<what>, <where>" and becomes the single stderr line
/// `compressor: error: <message>`.
public struct CompressorError: Error, CustomStringConvertible, Equatable, Sendable {
  public enum Kind: Int32, Sendable {
    case usage = 64
    case invalidInput = 65
    case missingInput = 66
    case unsupported = 69
    case internalError = 70
    case cannotCreateOutput = 73
    case io = 74
    case permission = 77
  }

  public let kind: Kind
  public let message: String

  public init(_ kind: Kind, _ message: String) {
    self.kind = kind
    self.message = message
  }

  public var exitCode: Int32 { kind.rawValue }
  public var description: String { message }

  public static func usage(_ m: String) -> Self { .init(.usage, m) }
  public static func invalid(_ m: String) -> Self { .init(.invalidInput, m) }
  public static func missing(_ m: String) -> Self { .init(.missingInput, m) }
  public static func unsupported(_ m: String) -> Self { .init(.unsupported, m) }
  public static func output(_ m: String) -> Self { .init(.cannotCreateOutput, m) }
  public static func io(_ m: String) -> Self { .init(.io, m) }
  public static func internalError(_ m: String) -> Self { .init(.internalError, m) }
}

/// Checked arithmetic for counts and sizes that come from files: overflow is an invalid input,
/// never a trap.
public enum Checked {
  /// Product of dimensions, each of which must be non-negative.
  public static func product(_ dims: [Int64], _ what: @autoclosure () -> String) throws -> Int {
    var n = 1
    for d in dims {
      if d < 0 { throw CompressorError.invalid("\(what()) has a negative dimension \(d)") }
      guard let di = Int(exactly: d) else { throw CompressorError.invalid("\(what()) dimension \(d) is too large") }
      let (r, o) = n.multipliedReportingOverflow(by: di)
      if o { throw CompressorError.invalid("\(what()) element count overflows 64 bits (dims \(dims))") }
      n = r
    }
    return n
  }
}
