import IR
import Support

/// The table of (operator, opset version) → adapter: for every change of every standard
/// operator from opset 8 on (`OperatorVersions.changes`), how a node written for the previous
/// schema becomes one of the changed schema. A change missing here stops the conversion with
/// exit 69 naming the node; a test checks that none is missing.
enum OpsetAdapters {
  /// Every change after this opset is in the table. Older models are read too, as long as none
  /// of their operators changed at or before it (consumed_inputs, the broadcast attributes of
  /// opset 7 …): those nodes are refused like any change without an adapter.
  static let coveredFrom: Int64 = 7

  static func adapter(_ op: String, _ version: Int64) -> OpsetAdapter? { table[op]?[version] }

  static var table: [String: [Int64: OpsetAdapter]] { built.table }
  /// Changes listed twice while the table was built (a test checks there are none).
  static var duplicates: [String] { built.duplicates }

  private static let built: (table: [String: [Int64: OpsetAdapter]], duplicates: [String]) = {
    var t = [String: [Int64: OpsetAdapter]]()
    var duplicates = [String]()
    func add(_ entries: [String: [Int64: OpsetAdapter]]) {
      for (op, versions) in entries {
        for (v, a) in versions {
          if t[op]?[v] != nil { duplicates.append("\(op)@\(v)") }
          t[op, default: [:]][v] = a
        }
      }
    }
    func compatible(_ why: String, _ entries: [String: [Int64]]) {
      add(entries.mapValues { Dictionary(uniqueKeysWithValues: $0.map { ($0, OpsetAdapter.compatible(why)) }) })
    }
    add(SoftmaxAdapters.table)
    add(ShapeAdapters.table)
    add(ReductionAdapters.table)
    add(ElementwiseAdapters.table)
    add(ResizeAdapters.table)
    add(NormalizationAdapters.table)
    add(IndexingAdapters.table)
    add(SignalAdapters.table)
    add(ControlFlowAdapters.table)
    compatible("element types added", typesAdded)
    compatible("negative axes (or indices) allowed", negativeAxes)
    compatible("attributes added whose defaults keep the old behaviour", attributesWithOldDefaults)
    compatible("inputs became optional or optional inputs were added", optionalInputs)
    compatible("multidirectional broadcasting, of which the old same-shape rule is a case", [
      "Max": [8], "Min": [8], "Mean": [8], "Sum": [8],
    ])
    compatible("modes added (Pad wrap, Resize half_pixel_symmetric, Scatter* max/min)", [
      "Pad": [19], "Resize": [19], "ScatterElements": [18], "ScatterND": [18],
    ])
    compatible("the description was clarified; the computation is the same", clarified)
    return (t, duplicates.sorted())
  }()

  /// Only the accepted element types grew (BatchNormalization 15: scale and bias may differ in
  /// type from the statistics).
  static let typesAdded: [String: [Int64]] = [
    "Abs": [13], "Acos": [22], "Acosh": [22], "Add": [13, 14], "ArgMax": [13], "ArgMin": [13], "Asin": [22],
    "Asinh": [22], "Atan": [22], "Atanh": [22], "AveragePool": [22], "BatchNormalization": [15], "Bernoulli": [22],
    "BitShift": [28], "Cast": [9, 13, 21, 23, 25, 28],
    "CastLike": [21, 23, 25], "Ceil": [13], "Celu": [28], "Clip": [12, 13], "Compress": [28], "Concat": [13],
    "Constant": [9, 13, 19, 21, 23, 24, 25], "ConstantOfShape": [20, 21, 23, 24, 25], "Conv": [22],
    "ConvTranspose": [22], "Cos": [22], "Cosh": [22], "CumSum": [14], "DeformConv": [22], "DepthToSpace": [13],
    "DequantizeLinear": [19, 24, 25, 28], "Det": [22], "Div": [13, 14], "Dropout": [13, 22], "Einsum": [28],
    "Elu": [22], "Equal": [11, 13, 19], "Exp": [13], "Expand": [13], "EyeLike": [22],
    "Flatten": [9, 13, 21, 23, 24, 25], "Floor": [13], "GRU": [22], "Gather": [13], "GatherElements": [13],
    "GatherND": [13], "Gemm": [9, 13], "GlobalAveragePool": [22], "GlobalLpPool": [22], "GlobalMaxPool": [22],
    "Greater": [9, 13], "GreaterOrEqual": [16], "GridSample": [22], "HardSigmoid": [22], "HardSwish": [22],
    "Identity": [13, 14, 16, 19, 21, 23, 24, 25], "If": [13, 16, 19, 21, 23, 24, 25], "InstanceNormalization": [22],
    "IsInf": [20], "IsNaN": [13, 20], "LRN": [13], "LSTM": [22], "LeakyRelu": [16], "Less": [9, 13],
    "LessOrEqual": [16], "Log": [13], "Loop": [13, 16, 19, 21, 23, 24, 25], "LpNormalization": [22], "LpPool": [22],
    "MatMul": [9, 13], "Max": [12, 13], "MaxPool": [12, 22], "MaxRoiPool": [22], "MaxUnpool": [22], "Mean": [13],
    "MeanVarianceNormalization": [13], "Min": [12, 13], "Mish": [22], "Mod": [13], "Mul": [13, 14],
    "Multinomial": [22], "Neg": [13], "NegativeLogLikelihoodLoss": [22], "NonZero": [13], "OneHot": [28],
    "Optional": [28], "OptionalGetElement": [28], "OptionalHasElement": [28], "PRelu": [9, 16],
    "Pad": [13, 21, 23, 24, 25], "Pow": [12, 13, 15], "QLinearMatMul": [21], "QuantizeLinear": [24, 25, 28],
    "RNN": [22], "RandomNormal": [22], "RandomNormalLike": [22], "RandomUniform": [22], "RandomUniformLike": [22],
    "Reciprocal": [13], "ReduceL1": [13], "ReduceL2": [13], "ReduceLogSum": [13], "ReduceLogSumExp": [13],
    "ReduceMax": [12, 13, 20], "ReduceMean": [13], "ReduceMin": [12, 13, 20], "ReduceProd": [13],
    "ReduceSumSquare": [13], "Relu": [13, 14], "Reshape": [13, 19, 21, 23, 24, 25], "ReverseSequence": [28],
    "RoiAlign": [22], "Round": [22], "Scan": [16, 19, 21, 23, 24, 25], "ScatterElements": [13], "ScatterND": [13],
    "Selu": [22], "Shape": [13, 19, 21, 23, 24, 25], "Sigmoid": [13], "Sign": [13], "Sin": [22], "Sinh": [22],
    "Size": [13, 19, 21, 23, 24, 25], "Slice": [13], "SoftmaxCrossEntropyLoss": [13], "Softplus": [22],
    "Softsign": [22], "SpaceToDepth": [13], "SplitToSequence": [24], "Sqrt": [13], "Squeeze": [21, 23, 24, 25],
    "Sub": [13, 14], "Sum": [13], "Tan": [22], "Tanh": [13], "ThresholdedRelu": [22], "Tile": [13], "TopK": [24],
    "Transpose": [13, 21, 23, 24, 25], "Unique": [28], "Unsqueeze": [21, 23, 24, 25], "Where": [16],
  ]

  /// Axes and indices may count from the end (opset 11); OneHot's negative indices count from
  /// `depth` (ONNX Runtime and the reference implementation already read opset 9 that way).
  static let negativeAxes: [String: [Int64]] = [
    "ArgMax": [11], "ArgMin": [11], "Compress": [11], "Concat": [11], "Flatten": [11], "Gather": [11],
    "Hardmax": [11], "LogSoftmax": [11], "Softmax": [11], "OneHot": [11], "ReduceL1": [11], "ReduceL2": [11],
    "ReduceLogSum": [11], "ReduceLogSumExp": [11], "ReduceMax": [11], "ReduceMean": [11], "ReduceMin": [11],
    "ReduceProd": [11], "ReduceSum": [11], "ReduceSumSquare": [11], "Scan": [11], "Slice": [11], "Split": [11],
    "Squeeze": [11], "Unsqueeze": [11],
  ]

  /// New attributes whose defaults are the old behaviour: select_last_index 0, ceil_mode 0,
  /// dilations 1, saturate and round_mode (only for float 8 types, new with them), the Constant
  /// value_* forms, DepthToSpace/SpaceToDepth mode DCR, Q/DQ axis (the scale was a scalar) and
  /// block_size 0, output_dtype and precision (the scale's or zero point's type), layout 0,
  /// batch_dims 0, storage_order 0 with the new optional Indices output, allowzero 0, Resize's
  /// antialias 0 / all axes / stretch, reduction none, Shape's whole range, TopK largest and
  /// sorted 1, Attention's unbounded windows.
  static let attributesWithOldDefaults: [String: [Int64]] = [
    "ArgMax": [12], "ArgMin": [12], "AveragePool": [10, 19], "Cast": [19, 24], "CastLike": [19, 24],
    "Constant": [11, 12], "DepthToSpace": [11], "DequantizeLinear": [13, 21, 23], "GRU": [14], "LSTM": [14],
    "RNN": [14], "GatherND": [12], "LpPool": [18], "MaxPool": [8, 10], "QuantizeLinear": [13, 19, 21, 23],
    "Reshape": [14], "Resize": [18], "ScatterElements": [16], "ScatterND": [16], "Shape": [15],
    "SpaceToDepth": [28], "Attention": [25], "TopK": [11],
  ]

  /// Gemm's C, Loop's trip count and condition, OptionalHasElement's input; Pad's axes and
  /// Attention's nonpad_kv_seqlen are new optional inputs.
  static let optionalInputs: [String: [Int64]] = [
    "Gemm": [11], "Loop": [11], "OptionalHasElement": [18], "Pad": [18], "Attention": [24],
  ]

  /// Reworded descriptions (output-shape formulas spelled out, padding windows, fmod rules)
  /// without a change to what a node computes.
  static let clarified: [String: [Int64]] = [
    "AveragePool": [11], "Conv": [11], "ConvTranspose": [11],
    "DepthToSpace": [28], "If": [11], "LpPool": [11], "MaxPool": [11], "MaxUnpool": [11], "Mod": [28],
    "NegativeLogLikelihoodLoss": [13], "NonMaxSuppression": [11], "OptionalGetElement": [18],
  ]
}
