//! The process's allocator, and how memory goes back to the system after a burst.
//!
//! jemalloc, not glibc's malloc: on the command path glibc's allocator took a third of the
//! process's CPU (`_int_malloc`, `cfree`, `malloc_consolidate`, `unlink_chunk`: 34 % of the
//! samples of a `many_stores` profile; docs/benchmarks.md), jemalloc's thread caches take that
//! off the path. Memory a burst freed (a million stores' workers idling out, a rebuild's pages)
//! goes back to the system by jemalloc's background thread: pages unused for about a second
//! are purged (`MADV_DONTNEED`, so resident memory falls), whether or not the threads that
//! freed them run again. mimalloc was measured too: its purges run only on the thread that owns
//! the pages, so after a burst the idle workers' pages stayed resident (227 MiB after a million
//! stores, where this needs less than 200).

use std::time::Duration;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main` from this symbol (the library's prefixed name for
/// `malloc_conf`): a background thread purges, dirty pages are purged after about a second,
/// and purged pages are given back at once rather than kept "muzzy" (lazily freed pages still
/// count as resident on Linux until the kernel needs them).
#[allow(unsafe_code)]
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &[u8; 60] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// How long after memory is freed it is back with the system: the decay time, and a margin for
/// the background thread's schedule.
pub const RETURNED_WITHIN: Duration = Duration::from_secs(3);
