import IR

/// A value during execution: a tensor, a sequence of tensors, or an optional (absent, or holding
/// a tensor or a sequence). Tensors are nearly every value of nearly every model, so the enum
/// stores the NDArray inline: binding one costs what binding the NDArray itself did, and tensor
/// kernels keep seeing plain `[NDArray?]` inputs.
public enum Value: @unchecked Sendable {
  case tensor(NDArray)
  case sequence(TensorSequence)
  /// `nil`: an optional without a value (ONNX's "None").
  indirect case optional(Value?)

  public var tensor: NDArray? {
    if case .tensor(let t) = self { return t }
    return nil
  }

  var isNotOptional: Bool {
    if case .optional = self { return false }
    return true
  }

  /// Bytes of element storage this value holds (for the executor's live-byte accounting). A
  /// sequence counts each of its tensors, even when they share storage with a live tensor.
  public var byteCount: Int {
    switch self {
    case .tensor(let t): return t.storage.byteCount
    case .sequence(let s): return s.tensors.reduce(0) { $0 + $1.storage.byteCount }
    case .optional(let v): return v?.byteCount ?? 0
    }
  }

  /// "tensor(float)", "seq(tensor(int64))", "optional(seq(tensor(float)))", "optional(none)".
  public var typeDescription: String {
    switch self {
    case .tensor(let t): return "tensor(\(t.dataType))"
    case .sequence(let s): return "seq(tensor(\(s.elementType)))"
    case .optional(let v): return "optional(\(v?.typeDescription ?? "none"))"
    }
  }
}

/// An ONNX sequence: tensors of one element type, any shapes. The element type is kept apart
/// from the tensors so that an empty sequence (SequenceEmpty, a .pb with no values) still has one.
public struct TensorSequence: @unchecked Sendable {
  public var elementType: DataType
  public var tensors: [NDArray]

  public init(elementType: DataType, tensors: [NDArray]) {
    self.elementType = elementType
    self.tensors = tensors
  }
}
