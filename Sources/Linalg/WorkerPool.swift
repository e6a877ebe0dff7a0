import COpenBLAS
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Threads that stay awake between the many short parallel loops of one inference. A kernel
/// takes tens of microseconds; waking a sleeping thread (futex, scheduler) takes about as long,
/// so Dispatch's pool gains nothing on such loops. These workers spin on a generation counter
/// for about a millisecond after each job and only then sleep on a condition variable.
public final class WorkerPool: @unchecked Sendable {
  /// The pool of the process; `resize` sets its width (the executor's `--threads`).
  public static let shared = WorkerPool()

  private let generation = Atomic<Int>(0)
  /// Workers that have not yet acknowledged the current job (every worker acknowledges every
  /// job, so none can lag into the next one).
  private let remaining = Atomic<Int>(0)
  private let sleepers = Atomic<Int>(0)
  /// The next part of the current job to be taken: parts go to whichever thread is free first,
  /// so a worker the machine has not scheduled yet delays nothing — the caller takes its parts.
  private let next = Atomic<Int>(0)
  private let busy = Atomic<Bool>(false)
  private var job: ((Int) -> Void)?
  private var parts = 0
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
      // The worker must start from the generation of now: a job posted before its thread runs
      // is still its to acknowledge.
      let index = workers, start = generation.load(ordering: .sequentiallyConsistent)
      let box = Unmanaged.passRetained(WorkerStart { [self] in self.workerLoop(index, from: start) })
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
  /// takes it first; returns when all are done and every worker has seen the job. From inside a
  /// running job, or with too few workers, the parts run one after another on the calling thread.
  public func run(parts: Int, _ body: (Int) -> Void) {
    guard parts > 1, parts - 1 <= workers,
          busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
      for p in 0..<parts { body(p) }
      return
    }
    withoutActuallyEscaping(body) { escapable in
      job = escapable
      self.parts = parts
      next.store(0, ordering: .sequentiallyConsistent)
      remaining.store(workers, ordering: .sequentiallyConsistent)
      generation.add(1, ordering: .sequentiallyConsistent)
      if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
        pthread_mutex_lock(&mutex)
        pthread_cond_broadcast(&wake)
        pthread_mutex_unlock(&mutex)
      }
      takeParts(escapable, parts)
      while remaining.load(ordering: .acquiring) > 0 { compressor_cpu_relax() }
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

  /// A worker's share of the current job. Its own function so that every copy of the job the
  /// worker made is released when it returns: the caller's `withoutActuallyEscaping` checks, once
  /// all workers have acknowledged, that nothing kept one (unoptimized builds keep such copies to
  /// the end of the enclosing scope, which was after the acknowledgement).
  private func workOnCurrentJob() {
    guard let job else { return }
    takeParts(job, parts)
  }

  private func workerLoop(_ index: Int, from start: Int) {
    var seen = start
    while true {
      var spins = 0
      while generation.load(ordering: .acquiring) == seen {
        spins += 1
        if spins < 1 << 16 {
          compressor_cpu_relax()
          continue
        }
        pthread_mutex_lock(&mutex)
        sleepers.add(1, ordering: .sequentiallyConsistent)
        while generation.load(ordering: .sequentiallyConsistent) == seen { pthread_cond_wait(&wake, &mutex) }
        sleepers.subtract(1, ordering: .sequentiallyConsistent)
        pthread_mutex_unlock(&mutex)
        spins = 0
      }
      seen += 1
      workOnCurrentJob()
      remaining.subtract(1, ordering: .releasing)
    }
  }
}

private final class WorkerStart {
  let body: () -> Void
  init(_ body: @escaping () -> Void) { self.body = body }
}
