import Foundation

/// JSON as every report is written: sorted keys, two-space indentation, trailing newline,
/// so the bytes depend only on the content.
public func encodeJSON<T: Encodable>(_ value: T) throws -> [UInt8] {
  let encoder = JSONEncoder()
  encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
  var data = try encoder.encode(value)
  data.append(0x0A)
  return [UInt8](data)
}
