import IR
import ONNX
import FuzzSupport
import Support

#if canImport(Glibc)
import Glibc
#endif

/// libFuzzer entry: the input is an ONNX file. It is read (wire scan, bounded decode, IR,
/// validation); whatever is accepted is written and read back, and must come back equal.
/// A CompressorError is a correct refusal; a crash, a sanitizer report, an internal error (70)
/// or a round trip that changes the model is a finding.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzONNX(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  FuzzFiles.shared.configureOnce()
  let input = FuzzFiles.shared.path("model.onnx")
  FuzzFiles.shared.write(data, size, to: input)
  let model: Model
  do {
    model = try ModelReader.read(input).model
  } catch let e as CompressorError {
    FuzzFiles.shared.expectNotInternal(e)
    return 0
  } catch {
    FuzzFiles.shared.fail("non-CompressorError from the reader: \(error)")
  }
  let output = FuzzFiles.shared.path("written.onnx")
  do {
    try ModelWriter.write(model, to: output, options: WriteOptions(force: true))
    let again = try ModelReader.read(output).model
    if again != model { FuzzFiles.shared.fail("the model changed in a write and read back") }
  } catch let e as CompressorError {
    // A model that was read must be writable, except where the writer refuses by design.
    FuzzFiles.shared.expectNotInternal(e)
  } catch {
    FuzzFiles.shared.fail("non-CompressorError from the writer: \(error)")
  }
  return 0
}
