import Foundation
import IR
import Support

/// String tensors and text features: StringConcat, StringSplit, StringNormalizer, RegexFullMatch
/// and TfIdfVectorizer (the n-gram counts of integer or string token sequences). Strings are
/// UTF-8 bytes; case changes and regular expressions work on Unicode characters.
extension Kernels {
  static let text: [String: Kernel] = [
    "TfIdfVectorizer": { c in [try tfIdfVectorizer(c)] },
    "StringConcat": { c in
      let a = try stringInput(c, 0), b = try stringInput(c, 1)
      guard let shape = broadcastShape(a.shape, b.shape) else { throw c.fail("shapes \(a.shape) and \(b.shape) do not broadcast") }
      try NDArray.checkAllocation(shape, .uint8, c)
      var out = NDArray(zeros: .string, shape)
      forEachPair(shape, a.shape, b.shape) { o, i, j in out.strings[o] = a.strings[i] + b.strings[j] }
      return [out]
    },
    "StringSplit": { c in try stringSplit(c) },
    "StringNormalizer": { c in [try stringNormalizer(c)] },
    "RegexFullMatch": { c in
      let x = try stringInput(c, 0)
      let pattern = c.string("pattern", "")
      let regex: Regex<AnyRegexOutput>
      // RE2's classes and word boundaries are ASCII (Swift's default to Unicode's, where "a.b" is one word).
      do {
        regex = try Regex(pattern).wordBoundaryKind(.simple).asciiOnlyWordCharacters().asciiOnlyDigits().asciiOnlyWhitespace()
      } catch { throw c.fail("pattern '\(pattern)' is not a valid regular expression: \(error)") }
      var out = NDArray(zeros: .bool, x.shape)
      let e = out.mutableElements(UInt8.self)
      for (i, bytes) in x.strings.enumerated() {
        e[i] = (try? regex.wholeMatch(in: String(decoding: bytes, as: UTF8.self))) != nil ? 1 : 0
      }
      return [out]
    },
  ]
}

private func stringInput(_ c: KernelContext, _ i: Int) throws -> NDArray {
  let x = try c.input(i)
  guard x.dataType == .string else { throw c.fail("input \(i) is \(x.dataType), not string") }
  return x
}

/// Each string split at the delimiter (Python's str.split: runs of whitespace without one), at
/// most maxsplit times; the pieces padded with "" to the longest split, and the piece counts.
private func stringSplit(_ c: KernelContext) throws -> [NDArray] {
  let x = try stringInput(c, 0)
  let delimiter = Array(c.string("delimiter", "").utf8)
  let maxSplit = c.node.attribute("maxsplit") != nil ? c.int("maxsplit", 0) : nil
  if let maxSplit, maxSplit < 0 { throw c.fail("maxsplit \(maxSplit) is negative") }
  let whitespace: Set<UInt8> = [0x20, 0x09, 0x0A, 0x0B, 0x0C, 0x0D]
  var pieces = [[[UInt8]]]()
  for s in x.strings {
    var parts = [[UInt8]]()
    if delimiter.isEmpty {
      var i = 0
      while i < s.count {
        while i < s.count && whitespace.contains(s[i]) { i += 1 }
        if i >= s.count { break }
        if let maxSplit, parts.count == maxSplit {
          // The rest, leading whitespace dropped, trailing kept out (as Python).
          var end = s.count
          while end > i && whitespace.contains(s[end - 1]) { end -= 1 }
          parts.append(Array(s[i..<end]))
          break
        }
        let start = i
        while i < s.count && !whitespace.contains(s[i]) { i += 1 }
        parts.append(Array(s[start..<i]))
      }
    } else {
      var start = 0, i = 0
      while i + delimiter.count <= s.count {
        if maxSplit.map({ parts.count >= $0 }) ?? false { break }
        if Array(s[i..<(i + delimiter.count)]) == delimiter {
          parts.append(Array(s[start..<i]))
          i += delimiter.count
          start = i
        } else {
          i += 1
        }
      }
      parts.append(Array(s[start...]))
    }
    pieces.append(parts)
  }
  let width = pieces.map(\.count).max() ?? 0
  try NDArray.checkAllocation(x.shape + [width], .uint8, c)
  var y = NDArray(zeros: .string, x.shape + [width])
  for (i, parts) in pieces.enumerated() { for (k, p) in parts.enumerated() { y.strings[i * width + k] = p } }
  return [y, NDArray(pieces.map { Int64($0.count) }, shape: x.shape)]
}

/// Drops the elements that are stop words (ignoring case unless is_case_sensitive), then changes
/// case; [C] or [1, C] in, the same rank out ([""] when nothing is left).
private func stringNormalizer(_ c: KernelContext) throws -> NDArray {
  let x = try stringInput(c, 0)
  guard x.rank == 1 || (x.rank == 2 && x.shape[0] == 1) else { throw c.fail("input must be [C] or [1, C], not \(x.shape)") }
  let action = c.string("case_change_action", "NONE")
  guard ["NONE", "LOWER", "UPPER"].contains(action) else { throw c.fail("case_change_action '\(action)' is not NONE, LOWER or UPPER") }
  let caseSensitive = c.int("is_case_sensitive", 0) != 0
  let stops = Set((c.strings("stopwords") ?? []).map { caseSensitive ? $0 : $0.lowercased() })
  var kept = [[UInt8]]()
  for bytes in x.strings {
    let word = String(decoding: bytes, as: UTF8.self)
    if stops.contains(caseSensitive ? word : word.lowercased()) { continue }
    switch action {
    case "LOWER": kept.append(Array(word.lowercased().utf8))
    case "UPPER": kept.append(Array(word.uppercased().utf8))
    default: kept.append(bytes)
    }
  }
  if kept.isEmpty { kept = [[]] }
  var out = NDArray(zeros: .string, x.rank == 1 ? [kept.count] : [1, kept.count])
  out.strings = kept
  return out
}

/// For each row of [C] or [N, C] tokens, how often each pooled n-gram (min_gram_length…
/// max_gram_length tokens, taken every 1…max_skip_count + 1 positions; unigrams once) occurs,
/// weighted by mode: TF counts, IDF the weight where the count is positive, TFIDF both.
private func tfIdfVectorizer(_ c: KernelContext) throws -> NDArray {
  let x = try c.input(0)
  guard x.rank == 1 || x.rank == 2 else { throw c.fail("input must be [C] or [N, C], not \(x.shape)") }
  let minGram = c.int("min_gram_length", 0), maxGram = c.int("max_gram_length", 0), maxSkip = c.int("max_skip_count", 0)
  guard minGram >= 1, maxGram >= minGram, maxSkip >= 0, maxGram < 1 << 16, maxSkip < 1 << 16 else {
    throw c.fail("min_gram_length (\(minGram)), max_gram_length (\(maxGram)) and max_skip_count (\(maxSkip)) are out of range")
  }
  let mode = c.string("mode", "")
  guard ["TF", "IDF", "TFIDF"].contains(mode) else { throw c.fail("mode must be TF, IDF or TFIDF, not '\(mode)'") }
  let counts = c.ints("ngram_counts") ?? [], indexes = c.ints("ngram_indexes") ?? []
  let weights = c.floats("weights") ?? []
  // Tokens as strings so integer and string pools share one dictionary.
  let pool: [String]
  if let ints = c.node.attribute("pool_int64s")?.ints {
    pool = ints.map { String($0) }
  } else if let strings = c.strings("pool_strings") {
    pool = strings
  } else {
    throw c.fail("pool_int64s or pool_strings is required")
  }
  guard let top = indexes.max(), top >= 0, indexes.allSatisfy({ $0 >= 0 }), top < 1 << 24 else {
    throw c.fail("ngram_indexes must be non-negative")
  }
  let outputSize = top + 1
  if !weights.isEmpty && weights.count != outputSize { throw c.fail("weights has \(weights.count) values for \(outputSize) outputs") }
  // The pool's n-grams of the counted lengths → their output column. Pool entries are grouped by
  // length: ngram_counts[i] is where the (i+1)-grams start.
  var columns = [[String]: Int]()
  var id = 0
  for (i, start) in counts.enumerated() {
    let end = i + 1 < counts.count ? counts[i + 1] : pool.count
    let size = i + 1
    guard start >= 0, end >= start, end <= pool.count else { throw c.fail("ngram_counts \(counts) do not fit the pool of \(pool.count)") }
    let grams = (end - start) / size
    for g in 0..<grams {
      if size >= minGram && size <= maxGram {
        guard id < indexes.count else { throw c.fail("ngram_indexes has fewer entries than the pool has n-grams") }
        columns[Array(pool[(start + g * size)..<(start + (g + 1) * size)]), default: indexes[id]] = indexes[id]
      }
      id += 1
    }
  }
  let tokens: [String]
  switch x.dataType {
  case .string: tokens = x.strings.map { String(decoding: $0, as: UTF8.self) }
  case .int32, .int64: tokens = try x.integers().map { String($0) }
  default: throw c.fail("input is \(x.dataType); it must be int32, int64 or string")
  }
  let rows = x.rank == 2 ? x.shape[0] : 1, length = x.shape[x.rank - 1]
  var frequencies = [Int](repeating: 0, count: rows * outputSize)
  for r in 0..<rows {
    let row = Array(tokens[(r * length)..<((r + 1) * length)])
    var smallest = minGram
    for skip in 1...(maxSkip + 1) {
      for start in 0..<length {
        var gram = [String]()
        var at = start
        while gram.count < maxGram && at < length {
          gram.append(row[at])
          if gram.count >= smallest, let column = columns[gram] { frequencies[r * outputSize + column] += 1 }
          at += skip
        }
      }
      // Unigrams are the same whatever the skip: counted on the first pass only.
      if smallest == 1 { smallest = 2 }
      if smallest > maxGram { break }
    }
  }
  let values: [Float] = frequencies.enumerated().map { i, f in
    let w = weights.isEmpty ? 1 : weights[i % outputSize]
    switch mode {
    case "TF": return Float(f)
    case "IDF": return f > 0 ? w : 0
    default: return w * Float(f)
    }
  }
  return NDArray(values, shape: x.rank == 2 ? [rows, outputSize] : [outputSize])
}
