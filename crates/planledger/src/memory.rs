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

// The binary's unit tests run with this allocator and these options, as `serve` does.
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn resident_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }

    #[test]
    fn memory_a_burst_freed_goes_back_to_the_system_unasked() {
        // Many small blocks, every thousandth kept: the free ones lie between live ones, as a
        // million idle workers' states do, so the heap cannot simply shrink from its top.
        let blocks: Vec<Box<[u8; 512]>> = (0..400_000).map(|i| Box::new([(i % 251) as u8; 512])).collect();
        let before = resident_bytes();
        let kept: Vec<Box<[u8; 512]>> = blocks.into_iter().step_by(1000).collect();
        // Nothing asks for it: the allocator's background thread purges on its own.
        let deadline = std::time::Instant::now() + 4 * RETURNED_WITHIN;
        let mut after = resident_bytes();
        while before - after.min(before) < 150 << 20 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            after = resident_bytes();
        }
        assert!(before - after.min(before) >= 150 << 20, "resident {before} -> {after} bytes");
        assert_eq!(kept.len(), 400);
        assert!(kept.iter().enumerate().all(|(i, b)| b[0] == ((i * 1000) % 251) as u8));
    }
}
