import ONNX
import Runtime
import Support

/// Loads `.npy` (one array), `.npz` (arrays by name) and ONNX test-data `.pb` (one
/// TensorProto, named by its `name` field if set) files through a memory map.
public enum DataFile {
  public static func load(_ path: String) throws -> [(String?, NDArray)] {
    let file = try MappedFile(path: path)
    if path.hasSuffix(".npz") {
      return try NPZ.decode(file.bytes, name: path).map { ($0.0, $0.1) }
    }
    if path.hasSuffix(".npy") {
      return [(nil, try NPY.decode(file.bytes, name: path))]
    }
    if path.hasSuffix(".pb") {
      let t = try TensorFile.read(path)
      return [(t.name.isEmpty ? nil : t.name, try NDArray(t))]
    }
    throw CompressorError.usage("\(path): data files must be .npy, .npz or .pb")
  }
}
