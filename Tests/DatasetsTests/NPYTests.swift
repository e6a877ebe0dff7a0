import Datasets
import IR
import Runtime
import Support
import XCTest

final class NPYTests: XCTestCase {
  func testRoundTripOfEveryWrittenType() throws {
    let arrays: [NDArray] = [
      NDArray([Float(1.5), -2, 3], shape: [3]), NDArray([Int64(-1), 2, 3, 4], shape: [2, 2]),
      NDArray([UInt8(7)], shape: []), NDArray([Double(1e300)], shape: [1, 1]), NDArray([Int32(5), 6], shape: [2]),
    ]
    for a in arrays {
      let bytes = try NPY.encode(a)
      XCTAssertEqual((bytes.count - Int(bytes[8]) - Int(bytes[9]) * 256 - 10) % 1, 0)
      XCTAssertEqual((10 + Int(bytes[8]) + Int(bytes[9]) * 256) % 64, 0, "header padded to 64 bytes")
      let b = try bytes.withUnsafeBytes { try NPY.decode($0, name: "x.npy") }
      XCTAssertEqual(b.shape, a.shape)
      XCTAssertEqual(b.dataType, a.dataType)
      XCTAssertEqual(b.withUnsafeBytes { Array($0) }, a.withUnsafeBytes { Array($0) })
    }
  }

  func testHeaderThatLiesAboutTheShape() throws {
    var bytes = try NPY.encode(NDArray([Float(1), 2, 3], shape: [3]))
    bytes.removeLast(4)
    XCTAssertThrowsError(try bytes.withUnsafeBytes { try NPY.decode($0, name: "x.npy") }) { e in
      XCTAssertEqual((e as? CompressorError)?.message,
                     "x.npy: not a valid .npy file: the header promises shape [3] of float (12 bytes) but 8 bytes follow")
    }
  }

  func testStoredArchiveRoundTrip() throws {
    let a = NDArray([Float(1), 2], shape: [2]), b = NDArray([Int64(3)], shape: [1])
    let zip = try NPZ.encode([("a", a), ("b", b)])
    let back = try zip.withUnsafeBytes { try NPZ.decode($0, name: "x.npz") }
    XCTAssertEqual(back.map(\.0), ["a", "b"])
    XCTAssertEqual(Array(back[0].1.elements(Float.self)), [1, 2])
    XCTAssertEqual(Array(back[1].1.elements(Int64.self)), [3])
    XCTAssertEqual(try NPZ.encode([("a", a), ("b", b)]), zip, "archives are byte-identical across runs")
  }
}
