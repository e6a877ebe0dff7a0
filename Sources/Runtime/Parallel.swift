import Linalg

/// The executor's own loops over independent items (channels, rows, element chunks). Every
/// item is computed the same way whichever thread runs it, so results do not depend on the
/// thread count.
enum Parallel {
  /// Set by the executor from `--threads`.
  nonisolated(unsafe) static var threads = 1

  /// Calls body(range) for contiguous parts of 0..<count, on up to `threads` threads when the
  /// work (count × cost per item) is large enough to pay for the hand-off: 64 K per part (the
  /// pool's threads spin between jobs, so a hand-off is a few microseconds; at 256 K the
  /// squeeze-excitation scales and means of EfficientNet-B0 ran on one thread, and two threads
  /// were 20% slower than with this).
  @inline(__always)
  static func forEach(_ count: Int, costPerItem: Int = 1, _ body: (Range<Int>) -> Void) {
    let parts = min(threads, count, max(1, count * costPerItem / (1 << 16)))
    if parts <= 1 {
      body(0..<count)
      return
    }
    WorkerPool.shared.run(parts: parts) { p in
      body((p * count / parts)..<((p + 1) * count / parts))
    }
  }
}
