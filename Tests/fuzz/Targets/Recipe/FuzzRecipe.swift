import CompressorCLI
import FuzzSupport
import Support

/// libFuzzer entry: the input is a recipe (YAML or JSON). Whatever it holds must be read to a
/// schedule or refused with a usage (64) or invalid-input (65) error naming the recipe — never a
/// trap, an internal error, or an error of another type escaping the parser.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRecipe(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  FuzzFiles.shared.configureOnce()
  // `pipeline` refuses files past 1 MiB and text that is not UTF-8 before parsing.
  guard size <= 1 << 20,
        let text = String(validating: UnsafeBufferPointer(start: data, count: size), as: UTF8.self) else { return 0 }
  do {
    let steps = try checkRecipe(text: text, file: "recipe.yaml")
    if steps < 1 || steps > 1000 { FuzzFiles.shared.fail("a recipe scheduled \(steps) steps") }
  } catch let e as CompressorError {
    FuzzFiles.shared.expectNotInternal(e)
    if e.kind != .usage && e.kind != .invalidInput { FuzzFiles.shared.fail("recipe error of kind \(e.kind): \(e.message)") }
    if !e.message.contains("recipe.yaml") { FuzzFiles.shared.fail("the error does not name the recipe: \(e.message)") }
  } catch {
    FuzzFiles.shared.fail("non-CompressorError: \(error)")
  }
  return 0
}
