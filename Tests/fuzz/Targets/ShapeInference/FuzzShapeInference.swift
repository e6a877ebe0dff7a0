import IR
import ONNX
import Runtime
import FuzzSupport
import Support

#if canImport(Glibc)
import Glibc
#endif

/// libFuzzer entry: the input is an ONNX file; whatever the reader accepts goes through the
/// shape-inference entry point `ShapeInference(model:bindings:)` with every symbolic input
/// dimension unbound — the path `inspect --shapes` takes. A small memory budget and loop limit
/// keep hostile sizes fast: they must be refused with a CompressorError, not allocated.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzShapeInference(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  FuzzFiles.shared.configureOnce()
  let input = FuzzFiles.shared.path("model.onnx")
  FuzzFiles.shared.write(data, size, to: input)
  do {
    let model = try ModelReader.read(input).model
    let shapes = try ShapeInference(model: model, bindings: [:])
    _ = try shapes.totalMACs
  } catch let e as CompressorError {
    FuzzFiles.shared.expectNotInternal(e)
  } catch {
    FuzzFiles.shared.fail("non-CompressorError: \(error)")
  }
  return 0
}
