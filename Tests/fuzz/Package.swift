// swift-tools-version:6.0
import PackageDescription

// libFuzzer targets, one executable per entry point. Built only by `make fuzz` (with
// `--sanitize fuzzer --sanitize address`), never by the main package's `swift build` or `make test`:
// libFuzzer provides `main`, so these executables link only under the fuzzer sanitizer.
let package = Package(
  name: "compressor-fuzz",
  dependencies: [.package(name: "compressor", path: "../..")],
  targets: [
    .target(name: "FuzzSupport", dependencies: [.product(name: "CompressorLibraries", package: "compressor")],
            path: "Targets/Support"),
    // Bytes as an ONNX file: read → validate → write → read, the two reads equal.
    .executableTarget(name: "fuzz-onnx", dependencies: ["FuzzSupport", .product(name: "CompressorLibraries", package: "compressor")],
                      path: "Targets/ONNX"),
    // Bytes as a .npy, .npz or ONNX test-data .pb sample (the first byte picks which).
    .executableTarget(name: "fuzz-data", dependencies: ["FuzzSupport", .product(name: "CompressorLibraries", package: "compressor")],
                      path: "Targets/DataFiles"),
    // Bytes as an ONNX file, then the shape-inference entry point on it.
    .executableTarget(name: "fuzz-shapes", dependencies: ["FuzzSupport", .product(name: "CompressorLibraries", package: "compressor")],
                      path: "Targets/ShapeInference"),
    // Bytes as a pipeline recipe (YAML or JSON), parsed as `pipeline` does, every step's options included.
    .executableTarget(name: "fuzz-recipe", dependencies: ["FuzzSupport", .product(name: "CompressorLibraries", package: "compressor")],
                      path: "Targets/Recipe"),
  ],
  swiftLanguageModes: [.v5]
)
