#if canImport(Glibc)
import Glibc
#endif

/// Arrays kernels derive from constant inputs — an 8-bit weight shifted by its zero point into
/// floats, say — made on the first run and kept for the executor's life, so the preparation of a
/// weight costs once, not on every call. Keyed by the constants' storage, which the executor's
/// initializers keep alive (so an identity is never reused), and by what was derived.
final class DerivedArrays: @unchecked Sendable {
  private struct Key: Hashable {
    var sources: [ObjectIdentifier]
    var purpose: String
  }
  private var entries: [Key: NDArray] = [:]
  private var lock = pthread_mutex_t()

  init() { pthread_mutex_init(&lock, nil) }
  deinit { pthread_mutex_destroy(&lock) }

  func value(sources: [NDArray.Storage], purpose: String, _ make: () throws -> NDArray) rethrows -> NDArray {
    let key = Key(sources: sources.map(ObjectIdentifier.init), purpose: purpose)
    pthread_mutex_lock(&lock)
    let hit = entries[key]
    pthread_mutex_unlock(&lock)
    if let hit { return hit }
    let made = try make()
    pthread_mutex_lock(&lock)
    entries[key] = made
    pthread_mutex_unlock(&lock)
    return made
  }
}
