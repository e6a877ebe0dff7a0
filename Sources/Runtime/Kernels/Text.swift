import IR
import Support

/// Text features: TfIdfVectorizer, the n-gram counts of integer or string token sequences.
extension Kernels {
  static let text: [String: Kernel] = [
    "TfIdfVectorizer": { c in [try tfIdfVectorizer(c)] },
  ]
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
