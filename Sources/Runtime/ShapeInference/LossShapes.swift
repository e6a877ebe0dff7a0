import IR

/// Losses reduce to a scalar ("mean", "sum") or keep one value per target ("none");
/// SoftmaxCrossEntropyLoss's second output is the log-probabilities, shaped like the scores.
extension ShapeRules {
  static let loss: [String: ShapeRule] = [
    "NegativeLogLikelihoodLoss": { c in
      [InferredTensor(type: c.type(0), shape: c.string("reduction", "mean") == "none" ? c.shape(1) : [])]
    },
    "SoftmaxCrossEntropyLoss": { c in
      [InferredTensor(type: c.type(0), shape: c.string("reduction", "mean") == "none" ? c.shape(1) : []),
       InferredTensor(type: c.type(0), shape: c.shape(0))]
    },
  ]
}
