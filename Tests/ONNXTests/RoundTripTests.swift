import Foundation
import IR
import ONNX
import Support
import XCTest

final class RoundTripTests: XCTestCase {
  var dir = ""
  override func setUp() { dir = makeTemporaryDirectory() }
  override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

  func fixtureModels() throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: fixtures.path).filter { $0.hasSuffix(".onnx") }.sorted()
  }

  /// read → write → read gives the same IR; a second write is byte-identical to the first.
  func testEveryFixtureRoundTrips() throws {
    let names = try fixtureModels()
    XCTAssertGreaterThanOrEqual(names.count, 12)
    for name in names {
      let first = try ModelReader.read(fixtures.appendingPathComponent(name).path)
      let out1 = dir + "/1-" + name, out2 = dir + "/2-" + name
      try ModelWriter.write(first.model, to: out1)
      let second = try ModelReader.read(out1)
      XCTAssertEqual(first.model, second.model, name)
      try ModelWriter.write(second.model, to: out2)
      XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out1)), try Data(contentsOf: URL(fileURLWithPath: out2)), name)
    }
  }

  /// Every element type in every storage field, functions, training info, sparse initializers,
  /// metadata and an unknown field: written back byte for byte.
  func testKitchenSinkIsByteIdentical() throws {
    let src = fixtures.appendingPathComponent("kitchen_sink.onnx").path
    let loaded = try ModelReader.read(src)
    XCTAssertEqual(loaded.unknownFieldCount, 1)
    XCTAssertEqual(loaded.model.unknownFields, [UnknownField(tag: 100, wireType: 2, data: [5] + Array("extra".utf8))])
    let out = dir + "/k.onnx"
    try ModelWriter.write(loaded.model, to: out)
    XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: src)), try Data(contentsOf: URL(fileURLWithPath: out)))

    let inits = Dictionary(uniqueKeysWithValues: loaded.model.graph.initializers.map { ($0.name, $0) })
    XCTAssertEqual(inits["int8_typed"]?.storedIn, .int32Data)
    XCTAssertEqual(Array(inits["int8_typed"]!.data.bytes), [0x80, 0xFF, 0x00, 0x7F])
    XCTAssertEqual(inits["int4_odd"]?.data.count, 3)
    XCTAssertEqual(inits["uint32_typed"]?.storedIn, .uint64Data)
    XCTAssertEqual(Array(inits["uint32_typed"]!.data.bytes), [0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF])
    XCTAssertEqual(inits["string_typed"]?.strings, [Array("hello".utf8), [0, 0xFF] + Array(" bytes".utf8)])
    XCTAssertEqual(inits["float_raw"]?.storedIn, .rawData)
    XCTAssertEqual(inits["complex128_typed"]?.data.count, 16)
    XCTAssertEqual(inits["empty_float"]?.dims, [0, 3])
    XCTAssertEqual(loaded.model.functions.map(\.name), ["Scale2"])
    XCTAssertEqual(loaded.model.trainingInfo.count, 1)
    XCTAssertEqual(loaded.model.graph.sparseInitializers.first?.dims, [2, 4])
    XCTAssertEqual(loaded.model.metadata, [StringPair("license", "MIT"), StringPair("purpose", "every field")])
  }

  func testConstantNodeWeightsAreTensors() throws {
    let m = try ModelReader.read(fixtures.appendingPathComponent("constant_weights.onnx").path).model
    let constants = m.graph.nodes.filter { $0.opType == "Constant" }.compactMap { $0.attribute("value")?.tensor }
    XCTAssertEqual(constants.map(\.dims), [[128, 64], [128], [64, 128], [64], [10, 64], [10]])
    XCTAssertEqual(constants[2].dataType, .float16)
  }

  func testExternalDataIsMappedAndWrittenBack() throws {
    let loaded = try ModelReader.read(fixtures.appendingPathComponent("external_data.onnx").path)
    XCTAssertEqual(loaded.externalDataFiles, ["external_data.onnx.data"])
    XCTAssertEqual(loaded.inputFiles.count, 2)
    let w = loaded.model.graph.initializers.first { $0.name == "l1.weight" }!
    XCTAssertEqual(w.external?.location, "external_data.onnx.data")
    XCTAssertEqual(w.data.count, 128 * 64 * 4)

    // To a single file and back out to external data, with the same tensors throughout.
    let single = dir + "/single.onnx"
    try ModelWriter.write(loaded.model, to: single)
    let inline = try ModelReader.read(single)
    XCTAssertEqual(inline.model, loaded.model)
    XCTAssertEqual(inline.externalDataFiles, [])
    let ext = dir + "/ext.onnx"
    let result = try ModelWriter.write(inline.model, to: ext, options: WriteOptions(externalData: ExternalDataOptions(sizeThreshold: 1024)))
    XCTAssertEqual(result.externalTensors, 3)
    XCTAssertEqual(result.dataPath, dir + "/ext.onnx.data")
    let back = try ModelReader.read(ext)
    XCTAssertEqual(back.model, loaded.model)
    let offsets = back.model.graph.initializers.compactMap(\.external).map(\.offset)
    XCTAssertEqual(offsets, [0, 32768, 65536])  // l1.weight, l2.weight, l3.weight; biases stay inline
  }

  /// With spilling on, a large new tensor lives in an unlinked file in the spill directory (which
  /// therefore stays empty), is written with the same bytes, and small tensors stay in memory.
  func testSpilledTensorsAreWrittenUnchanged() throws {
    let spillDir = dir + "/spill"
    try FileManager.default.createDirectory(atPath: spillDir, withIntermediateDirectories: true)
    SpillStorage.enable(in: spillDir)
    defer { SpillStorage.disable() }
    let count = SpillStorage.threshold / 4 + 3
    let values = (0..<count).map { Float($0 % 1009) - 500.5 }
    let big = Tensor(name: "Big", dataType: .float, dims: [Int64(count)], data: values.withUnsafeBytes { ByteBuffer(copying: $0) })
    let made = ByteBuffer.make(count: SpillStorage.threshold) { $0.storeBytes(of: 0x5A, toByteOffset: 12345, as: UInt8.self) }
    let small = ByteBuffer(copying: [UInt8](repeating: 7, count: 4096))
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: spillDir), [])
    XCTAssertEqual(made.bytes[12345], 0x5A)
    XCTAssertEqual(made.bytes[12346], 0)
    XCTAssertEqual(small.bytes[4095], 7)
    var m = tinyModel()
    m.graph.initializers.append(big)
    let out = dir + "/spilled.onnx"
    try ModelWriter.write(m, to: out, options: WriteOptions(externalData: ExternalDataOptions()))
    let back = try ModelReader.read(out).model.graph.initializers[1]
    back.data.withUnsafeBytes { XCTAssertEqual(Array($0.bindMemory(to: Float.self)), values) }
  }

  func testCorrectOddInt4RoundTrips() throws {
    let t = Tensor(name: "W4", dataType: .int4, dims: [5], data: ByteBuffer(copying: [0x21, 0x43, 0x05]))
    var m = tinyModel()
    m.graph.initializers.append(t)
    let p = write(m, dir)
    let back = try ModelReader.read(p).model
    XCTAssertEqual(back.graph.initializers[1], t)
    let p2 = write(back, dir, "again.onnx")
    XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: p)), try Data(contentsOf: URL(fileURLWithPath: p2)))
  }

  /// A model over protobuf's 2 GiB limit can only be written with external data, and then
  /// round-trips; the data is a sparse file so this costs little disk.
  func testOver2GiBRequiresExternalData() throws {
    let big = 2_200_000_000
    let fd = open(dir + "/zeros.bin", O_RDWR | O_CREAT, 0o644)
    XCTAssertEqual(ftruncate(fd, off_t(big)), 0)
    close(fd)
    let mapped = try MappedFile(path: dir + "/zeros.bin")
    let w = Tensor(name: "Big", dataType: .uint8, dims: [Int64(big)], data: mapped.slice(offset: 0, count: big))
    var m = tinyModel()
    m.graph.initializers.append(w)
    XCTAssertThrowsError(try ModelWriter.write(m, to: dir + "/inline.onnx")) { e in
      XCTAssertEqual((e as? CompressorError)?.kind, .cannotCreateOutput)
      XCTAssertTrue("\(e)".contains("--external-data"))
    }
    XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/inline.onnx"))

    let out = dir + "/big.onnx"
    let result = try ModelWriter.write(m, to: out, options: WriteOptions(externalData: ExternalDataOptions()))
    XCTAssertEqual(result.dataBytes, big)
    let back = try ModelReader.read(out)
    let t = back.model.graph.initializers[1]
    XCTAssertEqual(t.dims, [Int64(big)])
    XCTAssertEqual(t.data.count, big)
    XCTAssertEqual(t.external?.location, "big.onnx.data")
    XCTAssertEqual(back.model.graph.initializers[0], m.graph.initializers[0])
  }
}

extension RoundTripTests {
  /// The onnx wheel's backend test models (installed in .venv by scripts/bootstrap.sh).
  func backendSuiteModels() throws -> [String] {
    let venvLib = repoRoot.appendingPathComponent(".venv/lib")
    let pythons = (try? FileManager.default.contentsOfDirectory(atPath: venvLib.path)) ?? []
    for python in pythons.sorted() {
      let data = venvLib.appendingPathComponent("\(python)/site-packages/onnx/backend/test/data").path
      guard let walker = FileManager.default.enumerator(atPath: data) else { continue }
      let models = walker.compactMap { $0 as? String }.filter { $0.hasSuffix(".onnx") }.sorted().map { data + "/" + $0 }
      if !models.isEmpty { return models }
    }
    throw XCTSkip("the onnx wheel is not installed in .venv; run scripts/bootstrap.sh")
  }

  /// Every model of the onnx wheel's backend suites: the IR read back equals the first IR and a
  /// second write is byte-identical.
  func testBackendSuiteModelsRoundTrip() throws {
    let models = try backendSuiteModels()
    XCTAssertGreaterThanOrEqual(models.count, 140)
    for path in models {
      let first = try ModelReader.read(path)
      let out1 = dir + "/1.onnx", out2 = dir + "/2.onnx"
      try ModelWriter.write(first.model, to: out1, options: WriteOptions(force: true))
      let second = try ModelReader.read(out1)
      XCTAssertEqual(first.model, second.model, path)
      try ModelWriter.write(second.model, to: out2, options: WriteOptions(force: true))
      XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out1)), try Data(contentsOf: URL(fileURLWithPath: out2)), path)
    }
  }
}
