import Runtime
import Support

/// Loads `.npy` (one array) and `.npz` (arrays by name) files through a memory map.
public enum DataFile {
  public static func load(_ path: String) throws -> [(String?, NDArray)] {
    let file = try MappedFile(path: path)
    if path.hasSuffix(".npz") {
      return try NPZ.decode(file.bytes, name: path).map { ($0.0, $0.1) }
    }
    if path.hasSuffix(".npy") {
      return [(nil, try NPY.decode(file.bytes, name: path))]
    }
    throw CompressorError.usage("\(path): data files must be .npy or .npz")
  }
}
