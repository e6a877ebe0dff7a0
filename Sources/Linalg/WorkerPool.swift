import COpenBLAS
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Threads that stay awake between the many short parallel loops of one inference. A kernel
/// takes tens of microseconds; waking a sleeping thread (futex, scheduler) takes about as long,
/// so Dispatch's pool gains nothing on such loops. These workers spin on the job word for about a
/// millisecond after each job and only then sleep on a condition variable.
///
/// A job is open until the caller has seen all its parts taken; a worker joins it by counting
/// itself in (compare-and-swap on the job word, which holds the generation, a closed flag and
/// the count), and the caller, once it closes the job, waits only for the workers that joined.
/// A worker the machine has not scheduled (more runnable threads than cores) delays nothing:
/// the caller takes every part itself and never waits for a thread that is not running.
public final class WorkerPool: @unchecked Sendable {
  /// The pool of the process; `resize` sets its width (the executor's `--threads`).
  public static let shared = WorkerPool()

  /// generation << 17 | closed << 16 | workers joined (low 16 bits).
  private let word = Atomic<UInt64>(0)
  private static let closedBit: UInt64 = 1 << 16
  private static let joinedMask: UInt64 = 0xFFFF
  /// Workers of the current job that have finished with it.
  private let left = Atomic<Int>(0)
  private let sleepers = Atomic<Int>(0)
  /// The next part of the current job to be taken: parts go to whichever thread is free first.
  private let next = Atomic<Int>(0)
  private let busy = Atomic<Bool>(false)
  private var job: ((Int) -> Void)?
  private var parts = 0
  private var generation: UInt64 = 0
  private var workers = 0
  private var mutex = pthread_mutex_t()
  private var wake = pthread_cond_t()

  private init() {
    pthread_mutex_init(&mutex, nil)
    pthread_cond_init(&wake, nil)
  }

  /// Makes `threads` − 1 workers exist (they are never stopped: the pool lives with the process).
  public func resize(_ threads: Int) {
    while workers < threads - 1 {
      let start = word.load(ordering: .sequentiallyConsistent) >> 17
      let box = Unmanaged.passRetained(WorkerStart { [self] in self.workerLoop(from: start) })
      var thread = pthread_t()
      guard pthread_create(&thread, nil, { raw in
        guard let raw else { return nil }
        let start = Unmanaged<WorkerStart>.fromOpaque(raw).takeRetainedValue()
        start.body()
        return nil
      }, box.toOpaque()) == 0 else {
        box.release()
        return
      }
      pthread_detach(thread)
      workers += 1
    }
  }

  /// Calls body(p) for p in 0..<parts, each part on whichever thread (the caller or a worker)
  /// takes it first; returns when all are done. From inside a running job, or with too few
  /// workers, the parts run one after another on the calling thread.
  public func run(parts: Int, _ body: (Int) -> Void) {
    guard parts > 1, parts - 1 <= workers,
          busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
      for p in 0..<parts { body(p) }
      return
    }
    withoutActuallyEscaping(body) { escapable in
      // No worker is in a job now (the last one's joiners all left), so these plain writes race
      // with nothing; the store of the job word publishes them.
      job = escapable
      self.parts = parts
      next.store(0, ordering: .relaxed)
      left.store(0, ordering: .relaxed)
      generation += 1
      word.store(generation << 17, ordering: .sequentiallyConsistent)
      if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
        pthread_mutex_lock(&mutex)
        pthread_cond_broadcast(&wake)
        pthread_mutex_unlock(&mutex)
      }
      takeParts(escapable, parts)
      // Every part is taken: close the job to latecomers, then wait for those who joined.
      var current = word.load(ordering: .acquiring)
      while true {
        let (done, seen) = word.compareExchange(expected: current, desired: current | Self.closedBit, ordering: .acquiringAndReleasing)
        if done { break }
        current = seen
      }
      let joined = Int(current & Self.joinedMask)
      while left.load(ordering: .acquiring) < joined { compressor_cpu_relax() }
      job = nil
    }
    busy.store(false, ordering: .releasing)
  }

  /// Runs parts of the current job until none is left. Which thread runs a part never changes
  /// what the part computes.
  private func takeParts(_ job: (Int) -> Void, _ parts: Int) {
    while true {
      let p = next.wrappingAdd(1, ordering: .acquiringAndReleasing).oldValue
      guard p < parts else { return }
      job(p)
    }
  }

  /// Joins job `generation` if it is still open; false when it closed (or a later one began).
  private func join(_ generation: UInt64) -> Bool {
    var current = word.load(ordering: .acquiring)
    while current >> 17 == generation && current & Self.closedBit == 0 {
      let (done, seen) = word.compareExchange(expected: current, desired: current + 1, ordering: .acquiringAndReleasing)
      if done { return true }
      current = seen
    }
    return false
  }

  /// A worker's share of the current job. Its own function so that every copy of the job the
  /// worker made is released when it returns: the caller's `withoutActuallyEscaping` checks, once
  /// all joined workers have left, that nothing kept one.
  private func workOnCurrentJob() {
    guard let job else { return }
    takeParts(job, parts)
  }

  private func workerLoop(from start: UInt64) {
    var seen = start
    while true {
      var spins = 0
      while word.load(ordering: .acquiring) >> 17 == seen {
        spins += 1
        if spins < 1 << 16 {
          compressor_cpu_relax()
          continue
        }
        pthread_mutex_lock(&mutex)
        sleepers.add(1, ordering: .sequentiallyConsistent)
        while word.load(ordering: .sequentiallyConsistent) >> 17 == seen { pthread_cond_wait(&wake, &mutex) }
        sleepers.subtract(1, ordering: .sequentiallyConsistent)
        pthread_mutex_unlock(&mutex)
        spins = 0
      }
      seen = word.load(ordering: .acquiring) >> 17
      if join(seen) {
        workOnCurrentJob()
        left.add(1, ordering: .releasing)
      }
    }
  }
}

private final class WorkerStart {
  let body: () -> Void
  init(_ body: @escaping () -> Void) { self.body = body }
}
