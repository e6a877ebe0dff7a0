import IR
@testable import Runtime
import Support
import XCTest

/// Shape rules of ONNX Runtime's com.microsoft operators and of sequences and optionals: each
/// model is inferred once with symbolic dimensions, then run at several sizes, and every output
/// the executor produces must have the inferred type and (evaluated) shape, the peak activation
/// the inferred one.
extension ShapeInferenceTests {
  // MARK: Helpers

  func tensor<T: ElementType>(_ name: String, _ values: [T], _ dims: [Int]) -> Tensor {
    Tensor(name: name, dataType: T.dataType, dims: dims.map(Int64.init), data: ByteBuffer(copying: values.withUnsafeBytes { Array($0) }))
  }

  func floatAttr(_ name: String, _ v: Float) -> Attribute { Attribute(name: name, value: .float(v)) }
  func graphAttr(_ name: String, _ v: Graph) -> Attribute { Attribute(name: name, value: .graph(v)) }

  func ms(_ opType: String, _ inputs: [String], _ outputs: [String], _ attributes: [Attribute] = []) -> Node {
    Node(name: outputs[0], opType: opType, domain: "com.microsoft", inputs: inputs, outputs: outputs, attributes: attributes)
  }

  func op(_ opType: String, _ inputs: [String], _ outputs: [String], _ attributes: [Attribute] = []) -> Node {
    Node(name: outputs[0], opType: opType, inputs: inputs, outputs: outputs, attributes: attributes)
  }

  func contribModel(_ nodes: [Node], inputs: [ValueInfo], initializers: [Tensor] = [], outputs: [String], opset: Int64 = 21) -> Model {
    Model(irVersion: 10, opsetImports: [OpsetImport(domain: "", version: opset), OpsetImport(domain: "com.microsoft", version: 1)],
          graph: Graph(name: "g", nodes: nodes, initializers: initializers, inputs: inputs,
                       outputs: outputs.map { ValueInfo(name: $0, type: nil) }))
  }

  /// Infers `m` with its symbols, runs it at each of `sizes` (inputs from `feeds`), and checks
  /// every node output the executor produces against the inferred type and shape evaluated at
  /// those sizes, and the peak activation when it is known.
  @discardableResult
  func checkAgainstExecution(_ m: Model, sizes: [[String: Int]], feeds: ([String: Int]) throws -> [String: NDArray],
                             file: StaticString = #filePath, line: UInt = #line) throws -> ShapeInference {
    let inferred = try ShapeInference(model: m, bindings: [:])
    var values = [String: ShapeInference.Value]()
    for n in inferred.nodes { for v in n.outputs { values[v.name] = v } }
    for env in sizes {
      let executor = try Executor(model: m)
      var actual = [String: NDArray]()
      executor.observer = { node, _, outs in for (name, v) in zip(node.outputs, outs) where !name.isEmpty { actual[name] = v } }
      _ = try executor.run(try feeds(env))
      XCTAssertFalse(actual.isEmpty, file: file, line: line)
      for (name, v) in actual.sorted(by: { $0.key < $1.key }) {
        guard let value = values[name] else { XCTFail("\(name) was not inferred", file: file, line: line); continue }
        XCTAssertEqual(value.dims?.map { $0?.evaluate(env) }, v.shape.map { Optional($0) },
                       "\(name) at \(env): inferred \(value.shape ?? [])", file: file, line: line)
        XCTAssertEqual(value.type, v.dataType, "the type of \(name)", file: file, line: line)
      }
      if !inferred.peakActivationIncomplete {
        XCTAssertEqual(inferred.peakActivation.evaluate(env), executor.peakLiveBytes, "peak activation at \(env)", file: file, line: line)
      }
    }
    return inferred
  }

  func zeros(_ type: DataType, _ shape: [Int]) -> NDArray { NDArray(zeros: type, shape) }

  // MARK: com.microsoft

  /// The contrib Attention (packed QKV weights, a [2, B, N, P, H] past) beside the default
  /// domain's Attention of the same name: each node gets its own domain's rule.
  func testAttentionOfEachDomainGetsItsOwnRule() throws {
    let nodes = [
      ms("Attention", ["x", "w", "bias", "", "past"], ["y", "present"], [attr("num_heads", 2)]),
      ms("RotaryEmbedding", ["y", "pos", "cos", "sin"], ["rotated"]),
      op("Attention", ["q", "k", "v"], ["o"]),
    ]
    let m = contribModel(nodes, inputs: [
      input("x", [.symbolic("batch"), .symbolic("seq"), .known(8)]),
      input("past", [.known(2), .symbolic("batch"), .known(2), .symbolic("past"), .known(4)]),
      input("pos", [.symbolic("batch"), .symbolic("seq")], .int64),
      input("q", [.symbolic("batch"), .known(2), .symbolic("seq"), .known(4)]),
      input("k", [.symbolic("batch"), .known(2), .symbolic("past"), .known(4)]),
      input("v", [.symbolic("batch"), .known(2), .symbolic("past"), .known(6)]),
    ], initializers: [weight("w", [8, 24]), weight("bias", [24]), weight("cos", [16, 2]), weight("sin", [16, 2])],
       outputs: ["present", "rotated", "o"], opset: 23)
    let inferred = try checkAgainstExecution(m, sizes: [["batch": 1, "seq": 3, "past": 2], ["batch": 2, "seq": 5, "past": 4]]) { e in
      let (b, s, p) = (e["batch"]!, e["seq"]!, e["past"]!)
      return ["x": self.zeros(.float, [b, s, 8]), "past": self.zeros(.float, [2, b, 2, p, 4]), "pos": self.zeros(.int64, [b, s]),
              "q": self.zeros(.float, [b, 2, s, 4]), "k": self.zeros(.float, [b, 2, p, 4]), "v": self.zeros(.float, [b, 2, p, 6])]
    }
    let s = shapes(inferred)
    XCTAssertEqual(s["y"], ["batch", "seq", "8"])
    XCTAssertEqual(s["present"], ["2", "batch", "2", "past+seq", "4"])
    XCTAssertEqual(s["rotated"], ["batch", "seq", "8"])
    XCTAssertEqual(s["o"], ["batch", "2", "seq", "6"])
  }

  func testContribNormalizationsFollowExecution() throws {
    let nodes = [
      ms("SkipLayerNormalization", ["x", "skip", "gamma", "beta", "bias"], ["sln", "mean", "inv", "sum"]),
      ms("SkipSimplifiedLayerNormalization", ["x", "skip", "gamma", "bias"], ["ssln", "smean", "sinv", "ssum"]),
      ms("SimplifiedLayerNormalization", ["x", "gamma"], ["rms", "rinv"]),
      op("SimplifiedLayerNormalization", ["x", "gamma"], ["rms2", "rinv2"]),
      ms("EmbedLayerNormalization", ["ids", "segments", "word", "position", "segment", "gamma", "beta", "mask"],
         ["embedded", "mask_index", "embedding_sum"]),
    ]
    let m = contribModel(nodes, inputs: [
      input("x", [.symbolic("batch"), .symbolic("seq"), .known(8)]), input("skip", [.symbolic("batch"), .symbolic("seq"), .known(8)]),
      input("ids", [.symbolic("batch"), .symbolic("seq")], .int32), input("segments", [.symbolic("batch"), .symbolic("seq")], .int32),
      input("mask", [.symbolic("batch"), .symbolic("seq")], .int32),
    ], initializers: [weight("gamma", [8]), weight("beta", [8]), weight("bias", [8]), weight("word", [10, 8]), weight("position", [16, 8]),
                      weight("segment", [2, 8])],
       outputs: ["sln", "ssln", "rms", "rms2", "embedded"])
    let inferred = try checkAgainstExecution(m, sizes: [["batch": 1, "seq": 3], ["batch": 3, "seq": 7]]) { e in
      let (b, s) = (e["batch"]!, e["seq"]!)
      return ["x": self.zeros(.float, [b, s, 8]), "skip": self.zeros(.float, [b, s, 8]), "ids": self.zeros(.int32, [b, s]),
              "segments": self.zeros(.int32, [b, s]), "mask": self.zeros(.int32, [b, s])]
    }
    let s = shapes(inferred)
    XCTAssertEqual(s["sln"], ["batch", "seq", "8"])
    XCTAssertEqual(s["mean"], ["batch", "seq", "1"])
    XCTAssertEqual(s["ssum"], ["batch", "seq", "8"])
    XCTAssertEqual(s["rinv"], ["batch", "seq", "1"])
    XCTAssertEqual(s["embedded"], ["batch", "seq", "8"])
    XCTAssertEqual(s["mask_index"], ["batch"])
  }

  func testFusedConvAndProductsFollowExecution() throws {
    let nodes = [
      ms("FusedConv", ["x", "cw", "cb"], ["conv"],
         [attr("strides", [2, 2]), attr("pads", [1, 1, 1, 1]), attr("activation", "Relu")]),
      ms("FusedGemm", ["a", "gw", "gc"], ["gemm"], [attr("transB", 1), attr("activation", "LeakyRelu"), floatAttr("activation_alpha", 0.1)]),
      ms("FusedMatMul", ["ma", "mb"], ["matmul"], [attr("transBatchA", 1), attr("transA", 1), floatAttr("alpha", 0.5)]),
    ]
    let m = contribModel(nodes, inputs: [
      input("x", [.symbolic("n"), .known(3), .symbolic("h"), .symbolic("w")]), input("a", [.symbolic("n"), .known(6)]),
      input("ma", [.known(6), .symbolic("n"), .known(4)]),
    ], initializers: [weight("cw", [4, 3, 3, 3]), weight("cb", [4]), weight("gw", [5, 6]), weight("gc", [5]), weight("mb", [6, 5])],
       outputs: ["conv", "gemm", "matmul"])
    let inferred = try checkAgainstExecution(m, sizes: [["n": 1, "h": 7, "w": 9], ["n": 2, "h": 16, "w": 5]]) { e in
      let (n, h, w) = (e["n"]!, e["h"]!, e["w"]!)
      return ["x": self.zeros(.float, [n, 3, h, w]), "a": self.zeros(.float, [n, 6]), "ma": self.zeros(.float, [6, n, 4])]
    }
    let s = shapes(inferred)
    XCTAssertEqual(s["conv"], ["n", "4", "ceil(h/2)", "ceil(w/2)"])
    XCTAssertEqual(s["gemm"], ["n", "5"])
    XCTAssertEqual(s["matmul"], ["n", "4", "5"])
    // Conv: 27 per output; Gemm and the product: 6 per output.
    let macs = Dictionary(uniqueKeysWithValues: inferred.nodes.map { ($0.opType, $0.macs) })
    XCTAssertEqual((macs["FusedConv"] ?? nil)?.evaluate(["n": 2, "h": 16, "w": 5]), 2 * 4 * 8 * 3 * 27)
    XCTAssertEqual((macs["FusedGemm"] ?? nil)?.evaluate(["n": 2]), 2 * 5 * 6)
    XCTAssertEqual((macs["FusedMatMul"] ?? nil)?.evaluate(["n": 2]), 2 * 4 * 5 * 6)
  }

  func testQuantizedContribOperatorsFollowExecution() throws {
    let q = [attr("kernel_shape", [3, 3]), attr("strides", [2, 2])]
    let nodes = [
      ms("QGemm", ["a", "s", "z", "b", "s", "z", "c", "s", "z"], ["qgemm"]),
      ms("QGemm", ["a", "s", "z", "b", "s", "z"], ["qgemm_float"], [floatAttr("alpha", 2)]),
      ms("MatMulIntegerToFloat", ["a", "b", "s", "s", "z", "z"], ["to_float"]),
      ms("QLinearConcat", ["s", "z", "a", "s", "z", "a2", "s", "z"], ["joined"], [attr("axis", 1)]),
      ms("QLinearAveragePool", ["p", "s", "z", "s", "z"], ["pooled"], q),
      ms("GatherBlockQuantized", ["data", "indices", "scales"], ["gathered"], [attr("block_size", 16)]),
    ]
    let m = contribModel(nodes, inputs: [
      input("a", [.symbolic("m"), .known(8)], .uint8), input("a2", [.symbolic("m"), .known(4)], .uint8),
      input("p", [.symbolic("m"), .known(2), .symbolic("h"), .symbolic("w")], .uint8),
      input("indices", [.symbolic("m"), .symbolic("t")], .int64),
    ], initializers: [tensor("s", [Float(0.05)], []), tensor("z", [UInt8(128)], []),
                      tensor("b", [UInt8](repeating: 3, count: 48), [8, 6]), tensor("c", [Int32](repeating: 1, count: 6), [6]),
                      tensor("data", [UInt8](repeating: 0x21, count: 48), [6, 8]), tensor("scales", [Float](repeating: 0.5, count: 6), [6, 1])],
       outputs: ["qgemm", "qgemm_float", "to_float", "joined", "pooled", "gathered"])
    let inferred = try checkAgainstExecution(m, sizes: [["m": 1, "h": 7, "w": 8, "t": 2], ["m": 3, "h": 9, "w": 5, "t": 1]]) { e in
      let (n, h, w, t) = (e["m"]!, e["h"]!, e["w"]!, e["t"]!)
      return ["a": self.zeros(.uint8, [n, 8]), "a2": self.zeros(.uint8, [n, 4]), "p": self.zeros(.uint8, [n, 2, h, w]),
              "indices": self.zeros(.int64, [n, t])]
    }
    let s = shapes(inferred)
    XCTAssertEqual(s["qgemm"], ["m", "6"])
    XCTAssertEqual(s["joined"], ["m", "12"])
    XCTAssertEqual(s["gathered"], ["m", "t", "16"])
    let types = Dictionary(uniqueKeysWithValues: inferred.nodes.flatMap(\.outputs).map { ($0.name, $0.type) })
    XCTAssertEqual(types["qgemm"], .uint8)
    XCTAssertEqual(types["qgemm_float"], .float)
  }

  /// GroupQueryAttention over a KV cache whose total length the graph computes from shapes (as
  /// exported decoders do), and with packed QKV on a first prompt.
  func testGroupQueryAttentionFollowsExecution() throws {
    let gqa = [attr("num_heads", 4), attr("kv_num_heads", 2)]
    let nodes = [
      op("Shape", ["pk"], ["pk_shape"]), op("Gather", ["pk_shape", "two"], ["past_length"]),
      op("Shape", ["q"], ["q_shape"]), op("Gather", ["q_shape", "one"], ["new_length"]),
      op("Add", ["past_length", "new_length"], ["total64"]), op("Cast", ["total64"], ["total"], [attr("to", Int64(DataType.int32.rawValue))]),
      op("Cast", ["new_length"], ["prompt_total"], [attr("to", Int64(DataType.int32.rawValue))]),
      ms("GroupQueryAttention", ["q", "k", "v", "pk", "pv", "seqlens", "total"], ["gy", "gk", "gv"], gqa),
      ms("GroupQueryAttention", ["qkv", "", "", "", "", "prompt_seqlens", "prompt_total"], ["py", "pk2", "pv2"], gqa),
    ]
    let m = contribModel(nodes, inputs: [
      input("q", [.symbolic("batch"), .symbolic("seq"), .known(16)]), input("k", [.symbolic("batch"), .symbolic("seq"), .known(8)]),
      input("v", [.symbolic("batch"), .symbolic("seq"), .known(8)]),
      input("pk", [.symbolic("batch"), .known(2), .symbolic("past"), .known(4)]), input("pv", [.symbolic("batch"), .known(2), .symbolic("past"), .known(4)]),
      input("seqlens", [.symbolic("batch")], .int32), input("prompt_seqlens", [.symbolic("batch")], .int32),
      input("qkv", [.symbolic("batch"), .symbolic("seq"), .known(32)]),
    ], initializers: [tensor("two", [Int64(2)], []), tensor("one", [Int64(1)], [])], outputs: ["gy", "gk", "py", "pk2"])
    let inferred = try checkAgainstExecution(m, sizes: [["batch": 1, "seq": 1, "past": 3], ["batch": 2, "seq": 4, "past": 2]]) { e in
      let (b, s, p) = (e["batch"]!, e["seq"]!, e["past"]!)
      return ["q": self.zeros(.float, [b, s, 16]), "k": self.zeros(.float, [b, s, 8]), "v": self.zeros(.float, [b, s, 8]),
              "pk": self.zeros(.float, [b, 2, p, 4]), "pv": self.zeros(.float, [b, 2, p, 4]),
              "seqlens": NDArray([Int32](repeating: Int32(p + s - 1), count: b), shape: [b]),
              "prompt_seqlens": NDArray([Int32](repeating: Int32(s - 1), count: b), shape: [b]),
              "qkv": self.zeros(.float, [b, s, 32])]
    }
    let s = shapes(inferred)
    XCTAssertEqual(s["gy"], ["batch", "seq", "16"])
    XCTAssertEqual(s["gk"], ["batch", "2", "past+seq", "4"])
    XCTAssertEqual(s["py"], ["batch", "seq", "16"])
    XCTAssertEqual(s["pk2"], ["batch", "2", "seq", "4"])
  }

  func testMultiHeadAttentionFollowsExecution() throws {
    let heads = [attr("num_heads", 2)]
    let nodes = [
      ms("MultiHeadAttention", ["q", "k", "v", "", "", "", "pk", "pv"], ["my", "mk", "mv"], heads),
      ms("MultiHeadAttention", ["q", "k4", "v4"], ["cy"], heads),
      ms("MultiHeadAttention", ["qkv"], ["py"], heads),
    ]
    let m = contribModel(nodes, inputs: [
      input("q", [.symbolic("batch"), .symbolic("seq"), .known(8)]),
      input("k", [.symbolic("batch"), .symbolic("kv"), .known(8)]), input("v", [.symbolic("batch"), .symbolic("kv"), .known(8)]),
      input("pk", [.symbolic("batch"), .known(2), .symbolic("past"), .known(4)]), input("pv", [.symbolic("batch"), .known(2), .symbolic("past"), .known(4)]),
      input("k4", [.symbolic("batch"), .known(2), .symbolic("kv"), .known(4)]), input("v4", [.symbolic("batch"), .known(2), .symbolic("kv"), .known(6)]),
      input("qkv", [.symbolic("batch"), .symbolic("seq"), .known(2), .known(3), .known(4)]),
    ], outputs: ["my", "mk", "mv", "cy", "py"])
    let inferred = try checkAgainstExecution(m, sizes: [["batch": 1, "seq": 2, "kv": 3, "past": 1], ["batch": 2, "seq": 5, "kv": 4, "past": 3]]) { e in
      let (b, s, l, p) = (e["batch"]!, e["seq"]!, e["kv"]!, e["past"]!)
      return ["q": self.zeros(.float, [b, s, 8]), "k": self.zeros(.float, [b, l, 8]), "v": self.zeros(.float, [b, l, 8]),
              "pk": self.zeros(.float, [b, 2, p, 4]), "pv": self.zeros(.float, [b, 2, p, 4]),
              "k4": self.zeros(.float, [b, 2, l, 4]), "v4": self.zeros(.float, [b, 2, l, 6]), "qkv": self.zeros(.float, [b, s, 2, 3, 4])]
    }
    let s = shapes(inferred)
    XCTAssertEqual(s["my"], ["batch", "seq", "8"])
    XCTAssertEqual(s["mk"], ["batch", "2", "kv+past", "4"])
    XCTAssertEqual(s["cy"], ["batch", "seq", "12"])
    XCTAssertEqual(s["py"], ["batch", "seq", "8"])
  }

  // MARK: Sequences and optionals

  /// Sequences are tracked tensor by tensor where their number is known, else by length and
  /// common element; they and optionals are reported as values of unknown shape, and the
  /// tensors taken out of them have the shapes the executor gives.
  func testSequencesAndOptionalsFollowExecution() throws {
    let body = Graph(name: "body", nodes: [Node(opType: "Relu", inputs: ["row"], outputs: ["r"])],
                     inputs: [input("row", [.known(6)])], outputs: [ValueInfo(name: "r", type: nil)])
    // Run once per tensor of a sequence of known length, with a tensor input passed whole.
    let sum = Graph(name: "sum", nodes: [Node(opType: "Add", inputs: ["item", "whole"], outputs: ["total"])],
                    inputs: [ValueInfo(name: "item", type: nil), ValueInfo(name: "whole", type: nil)],
                    outputs: [ValueInfo(name: "total", type: nil)])
    let nodes = [
      op("SplitToSequence", ["x", "sizes"], ["pieces"], [attr("axis", 1)]),
      op("SequenceAt", ["pieces", "one"], ["second"]),
      op("SequenceLength", ["pieces"], ["count"]),
      op("SequenceInsert", ["pieces", "x"], ["three"]),
      op("ConcatFromSequence", ["three"], ["joined"], [attr("axis", 1)]),
      op("SequenceErase", ["three"], ["two"]),
      op("SequenceAt", ["two", "minus_one"], ["last"]),
      op("SplitToSequence", ["x"], ["rows"], [attr("axis", 0), attr("keepdims", 0)]),
      op("SequenceMap", ["rows"], ["mapped"], [graphAttr("body", body)]),
      op("ConcatFromSequence", ["mapped"], ["stacked"], [attr("axis", 0), attr("new_axis", 1)]),
      op("SequenceConstruct", ["x", "x"], ["pair"]),
      op("SequenceMap", ["pair", "x"], ["sums"], [graphAttr("body", sum)]),
      op("ConcatFromSequence", ["sums"], ["both"], [attr("axis", 0)]),
      op("SequenceEmpty", [], ["empty"]),
      op("SequenceInsert", ["empty", "second"], ["single"]),
      op("SequenceAt", ["single", "zero"], ["only"]),
      op("Optional", ["x"], ["maybe"]),
      op("OptionalHasElement", ["maybe"], ["has"]),
      op("OptionalGetElement", ["maybe"], ["got"]),
    ]
    let m = contribModel(nodes, inputs: [input("x", [.symbolic("n"), .known(6)])],
                         initializers: [ints("sizes", [2, 4]), tensor("zero", [Int64(0)], []), tensor("one", [Int64(1)], []),
                                        tensor("minus_one", [Int64(-1)], [])],
                         outputs: ["second", "count", "joined", "last", "stacked", "both", "only", "has", "got"], opset: 18)
    let inferred = try checkAgainstExecution(m, sizes: [["n": 1], ["n": 3], ["n": 5]]) { e in ["x": self.zeros(.float, [e["n"]!, 6])] }
    XCTAssertFalse(inferred.peakActivationIncomplete)
    let s = shapes(inferred)
    XCTAssertEqual(s["second"], ["n", "4"])
    XCTAssertEqual(s["count"], [])
    XCTAssertEqual(s["joined"], ["n", "12"])
    XCTAssertEqual(s["last"], ["n", "4"])
    XCTAssertEqual(s["stacked"], ["n", "6"])
    XCTAssertEqual(s["both"], ["2*n", "6"])
    XCTAssertEqual(s["only"], ["n", "4"])
    XCTAssertEqual(s["has"], [])
    XCTAssertEqual(s["got"], ["n", "6"])
    for name in ["pieces", "three", "two", "rows", "mapped", "pair", "sums", "empty", "single", "maybe"] {
      let v = inferred.nodes.flatMap(\.outputs).first { $0.name == name }
      XCTAssertNotNil(v, name)
      XCTAssertNil(v?.dims, "\(name) is not a tensor")
      XCTAssertEqual(v?.type, .undefined, name)
    }
  }

  /// A graph input declared as a sequence gives its declared element; its length is unknown.
  func testDeclaredSequenceInputsGiveTheirElement() throws {
    let element = TypeInfo.tensor(.float, TensorShape([IR.Dimension(.symbolic("len")), IR.Dimension(.known(6))]))
    let m = contribModel([op("SequenceAt", ["items", "zero"], ["first"]), op("ConcatFromSequence", ["items"], ["all"], [attr("axis", 1)]),
                          op("SequenceLength", ["items"], ["count"])],
                         inputs: [ValueInfo(name: "items", type: TypeInfo(.sequence(element)))],
                         initializers: [tensor("zero", [Int64(0)], [])], outputs: ["first", "all", "count"])
    let s = shapes(try ShapeInference(model: m, bindings: [:]))
    XCTAssertEqual(s["first"], ["len", "6"])
    XCTAssertEqual(s["all"], ["len", "?"])
    XCTAssertEqual(s["count"], [])
  }

  // MARK: ai.onnx.preview.training

  func testTrainingOperatorsKeepTheirTensorsShapes() throws {
    func training(_ opType: String, _ inputs: [String], _ outputs: [String], _ attributes: [Attribute] = []) -> Node {
      Node(name: outputs[0], opType: opType, domain: "ai.onnx.preview.training", inputs: inputs, outputs: outputs, attributes: attributes)
    }
    let nodes = [
      op("Mul", ["x", "x"], ["square"]),
      training("Gradient", ["x"], ["dx"], [Attribute(name: "xs", value: .strings([Array("x".utf8)])), attr("y", "square")]),
      training("Adam", ["rate", "step", "x", "w", "dx", "g2", "v", "v2", "h", "h2"], ["x_new", "w_new", "v_new", "v2_new", "h_new", "h2_new"]),
      training("Momentum", ["rate", "step", "x", "dx", "v"], ["mx", "mv"], [floatAttr("alpha", 0.9), floatAttr("beta", 1)]),
    ]
    var m = contribModel(nodes, inputs: [
      input("x", [.symbolic("n"), .known(3)]), input("v", [.symbolic("n"), .known(3)]), input("h", [.symbolic("n"), .known(3)]),
      input("w", [.known(4)]), input("g2", [.known(4)]), input("v2", [.known(4)]), input("h2", [.known(4)]),
    ], initializers: [tensor("rate", [Float(0.1)], []), tensor("step", [Int64(1)], [])], outputs: ["x_new", "w_new", "h2_new", "mx", "mv"])
    m.opsetImports.append(OpsetImport(domain: "ai.onnx.preview.training", version: 1))
    let inferred = try checkAgainstExecution(m, sizes: [["n": 1], ["n": 4]]) { e in
      let n = e["n"]!
      return ["x": self.zeros(.float, [n, 3]), "v": self.zeros(.float, [n, 3]), "h": self.zeros(.float, [n, 3]), "w": self.zeros(.float, [4]),
              "g2": self.zeros(.float, [4]), "v2": self.zeros(.float, [4]), "h2": self.zeros(.float, [4])]
    }
    let s = shapes(inferred)
    XCTAssertEqual(s["dx"], ["n", "3"])
    XCTAssertEqual(s["x_new"], ["n", "3"])
    XCTAssertEqual(s["h2_new"], ["4"])
    XCTAssertEqual(s["mv"], ["n", "3"])
  }
}
