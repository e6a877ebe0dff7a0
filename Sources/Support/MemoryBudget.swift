#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The one memory budget (`--max-memory`): every allocation whose size comes from a model or its
/// data — tensors the runtime computes, scratch buffers, generated inputs — is checked against it
/// before anything is allocated, and refused with exit 65 naming what asked. Buffers the runtime
/// holds are counted while they live, so the budget bounds what is in use at once, not only each
/// allocation alone.
public enum MemoryBudget {
  /// Half of the machine's memory (or of the cgroup's limit, when the process runs under one),
  /// at least 1 GiB.
  public static let defaultLimit: Int = {
    var physical = Int(sysconf(Int32(_SC_PHYS_PAGES))) &* Int(sysconf(Int32(_SC_PAGESIZE)))
    if let cgroup = cgroupLimit(), cgroup > 0 { physical = min(physical, cgroup) }
    return max(physical / 2, 1 << 30)
  }()

  private static let state = Counter(limit: defaultLimit)

  /// The budget in bytes.
  public static var limit: Int { state.read().limit }
  /// Bytes of counted buffers alive now.
  public static var inUse: Int { state.read().inUse }

  /// Sets the budget (the command line does, once, before any model is read).
  public static func setLimit(_ bytes: Int) { state.setLimit(bytes) }

  /// Throws when `bytes` more would exceed the budget; `what` names the tensor or buffer and the
  /// node it belongs to.
  public static func check(bytes: Int, _ what: @autoclosure () -> String) throws {
    let (limit, inUse) = state.read()
    guard bytes > limit - inUse else { return }
    let held = inUse > 0 ? " (\(describe(inUse)) already in use)" : ""
    throw CompressorError.invalid(
      "\(what()) would need \(describe(bytes)), more than the memory budget of \(describe(limit))\(held); see --max-memory")
  }

  /// Counts a buffer of `bytes` as in use until `release` (runtime tensor storage).
  public static func claim(_ bytes: Int) { state.add(bytes) }
  public static func release(_ bytes: Int) { state.add(-bytes) }

  /// "512M", "4G", "1.5GiB", "2048" (bytes); nil when it is not a positive size.
  public static func parse(_ text: String) -> Int? {
    var digits = Substring(text.trimmingCharacters(in: " "))
    var unit = 1.0
    let k = 1024.0, m = k * k, g = m * k, t = g * k
    let suffixes: [(String, Double)] = [("KiB", k), ("MiB", m), ("GiB", g), ("TiB", t), ("KB", k), ("MB", m), ("GB", g),
                                        ("TB", t), ("K", k), ("M", m), ("G", g), ("T", t), ("B", 1)]
    for (suffix, factor) in suffixes where digits.uppercased().hasSuffix(suffix.uppercased()) {
      digits = digits.dropLast(suffix.count)
      unit = factor
      break
    }
    guard let value = Double(digits), value.isFinite, value > 0 else { return nil }
    let bytes = value * unit
    guard bytes >= 1, bytes < 9.0e18 else { return nil }
    return Int(bytes)
  }

  /// Bytes as people read them: "12.0 GiB", "512 MiB", "4.0 KiB", "100 bytes".
  public static func describe(_ bytes: Int) -> String {
    let units: [(Int, String)] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
    for (size, name) in units where bytes >= size {
      let v = Double(bytes) / Double(size)
      let tenths = Int((v * 10).rounded())
      return tenths % 10 == 0 ? "\(tenths / 10) \(name)" : "\(tenths / 10).\(tenths % 10) \(name)"
    }
    return "\(bytes) bytes"
  }

  /// cgroup v2's memory.max of this process's group, when it sets one.
  private static func cgroupLimit() -> Int? {
    guard let f = fopen("/sys/fs/cgroup/memory.max", "r") else { return nil }
    defer { fclose(f) }
    var buffer = [CChar](repeating: 0, count: 64)
    guard fgets(&buffer, 64, f) != nil else { return nil }
    let text = String(cString: buffer).trimmingCharacters(in: "\n ")
    return Int(text)
  }

  /// The budget and the bytes in use. Atomics, not a lock: tensors are made on several threads,
  /// and every tensor the runtime makes and frees counts (a lock and an unlock each, on every node).
  private final class Counter: Sendable {
    private let limit: Atomic<Int>
    private let inUse = Atomic<Int>(0)

    init(limit: Int) { self.limit = Atomic(limit) }

    func read() -> (limit: Int, inUse: Int) {
      (limit.load(ordering: .relaxed), inUse.load(ordering: .relaxed))
    }

    func setLimit(_ bytes: Int) { limit.store(bytes, ordering: .relaxed) }

    func add(_ bytes: Int) { inUse.wrappingAdd(bytes, ordering: .relaxed) }
  }
}

extension String {
  fileprivate func trimmingCharacters(in set: String) -> String {
    var s = Substring(self)
    while let f = s.first, set.contains(f) { s = s.dropFirst() }
    while let l = s.last, set.contains(l) { s = s.dropLast() }
    return String(s)
  }
}
