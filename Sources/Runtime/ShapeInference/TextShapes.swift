import IR

/// String operators: StringConcat broadcasts, RegexFullMatch answers per element; how many pieces
/// StringSplit makes and how many words StringNormalizer's stop list keeps only the data decides.
/// TfIdfVectorizer gives one value per n-gram index.
extension ShapeRules {
  static let text: [String: ShapeRule] = [
    "StringConcat": { c in [InferredTensor(type: .string, shape: try c.broadcast([c.shape(0), c.shape(1)]))] },
    "RegexFullMatch": { c in [InferredTensor(type: .bool, shape: c.shape(0))] },
    "StringSplit": { c in
      let x = c.shape(0)
      return [InferredTensor(type: .string, shape: x.map { $0 + [c.fresh("split")] }), InferredTensor(type: .int64, shape: x)]
    },
    "StringNormalizer": { c in
      guard c.node.attribute("stopwords") != nil, let x = c.shape(0), !x.isEmpty else { return [InferredTensor(type: .string, shape: c.shape(0))] }
      return [InferredTensor(type: .string, shape: Array(x.dropLast()) + [c.fresh("words")])]
    },
    "TfIdfVectorizer": { c in
      let width = (c.ints("ngram_indexes")?.max()).map { DimExpr($0 + 1) }
      guard let x = c.shape(0) else { return [InferredTensor(type: .float, shape: nil)] }
      return [InferredTensor(type: .float, shape: x.count == 2 ? [x[0], width] : [width])]
    },
  ]
}
