// Happens-before edges that ThreadSanitizer cannot see for itself.
//
// oneTBB hands messages between threads, and runs a serial node's successive bodies on
// different threads, through queues and task pools inside libtbb.so, which Debian builds
// without TSan instrumentation; so under the tsan preset every batch that crosses a graph edge
// would be reported as a race. These functions state the edges oneTBB really provides — a put
// releases the message, the receiving body acquires it; one run of a serial body releases its
// node's state to the next — and compile to nothing outside the tsan preset. Races in sluice's
// own code (anything not ordered by one of these edges) are still reported.
#pragma once

#if defined(SLUICE_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

namespace sluice::tsan {

// Before a put: everything written to *p so far happens before the receiver's Acquire(p).
inline void Release(const void* p) noexcept {
#if defined(SLUICE_TSAN)
  __tsan_release(const_cast<void*>(p));
#else
  (void)p;
#endif
}

// At the start of the body that received p.
inline void Acquire(const void* p) noexcept {
#if defined(SLUICE_TSAN)
  __tsan_acquire(const_cast<void*>(p));
#else
  (void)p;
#endif
}

// For the body of a serial node: this run sees everything the previous run (on whichever
// thread) did to the node's state, and the next run sees this one's.
class SerialBody {
 public:
  explicit SerialBody(const void* state) noexcept : state_(state) { Acquire(state_); }
  ~SerialBody() { Release(state_); }
  SerialBody(const SerialBody&) = delete;
  SerialBody& operator=(const SerialBody&) = delete;

 private:
  const void* state_;
};

// The edges between a thread that runs a graph and the graph's bodies, which oneTBB's worker
// threads run: what the caller set up before GraphStarted() happens before every body that
// opens a GraphBody, and every such body happens before the caller's GraphFinished(). The keys
// are per process (a body must acquire before it reads even its own captures), so graphs
// running at once in one process are ordered with each other's starts and ends too. Bodies
// never acquire what other bodies release, so races between nodes still show.
inline char graph_start_key;
inline char graph_end_key;

inline void GraphStarted() noexcept { Release(&graph_start_key); }  // before the first put
inline void GraphFinished() noexcept { Acquire(&graph_end_key); }   // after wait_for_all

class GraphBody {
 public:
  GraphBody() noexcept { Acquire(&graph_start_key); }
  ~GraphBody() { Release(&graph_end_key); }
  GraphBody(const GraphBody&) = delete;
  GraphBody& operator=(const GraphBody&) = delete;
};

}  // namespace sluice::tsan
