import Datasets
import IR
import ONNX
import Runtime
import FuzzSupport
import Support

#if canImport(Glibc)
import Glibc
#endif

/// libFuzzer entry: the first byte picks the format (.npy, .npz or ONNX test-data .pb), the rest
/// is the file. Every element of whatever is accepted is read (so ASan sees any array whose
/// bytes do not cover its shape), and a .npy is encoded again and must decode to the same array.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDataFiles(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  FuzzFiles.shared.configureOnce()
  guard size > 0 else { return 0 }
  let suffix = [".npy", ".npz", ".pb"][Int(data[0]) % 3]
  let path = FuzzFiles.shared.path("sample" + suffix)
  FuzzFiles.shared.write(data + 1, size - 1, to: path)
  do {
    for (_, array) in try DataFile.load(path) {
      touch(array)
      if suffix == ".npy" {
        let bytes = try NPY.encode(array)
        let again = try bytes.withUnsafeBytes { try NPY.decode($0, name: "encoded") }
        if again.shape != array.shape || again.dataType != array.dataType { FuzzFiles.shared.fail("npy round trip changed the array") }
      }
    }
  } catch let e as CompressorError {
    FuzzFiles.shared.expectNotInternal(e)
  } catch {
    FuzzFiles.shared.fail("non-CompressorError: \(error)")
  }
  return 0
}

/// Reads every byte (or string) of the array.
func touch(_ a: NDArray) {
  var sum: UInt8 = 0
  a.withUnsafeBytes { for b in $0 { sum &+= b } }
  for s in a.strings { for b in s { sum &+= b } }
  if a.dataType != .string, let need = a.dataType.byteCount(elements: a.count) {
    if a.withUnsafeBytes({ $0.count }) != need { FuzzFiles.shared.fail("an array of shape \(a.shape) holds the wrong number of bytes") }
  }
  blackHole(sum)
}

@inline(never) func blackHole(_ x: UInt8) { if x == 0x5A && getpid() == 0 { print(x) } }
