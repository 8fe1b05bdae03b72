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

/// A memory figure of this process from `/proc/self/status` (`VmHWM`, `VmRSS`), in MiB.
fn status_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The process's peak resident memory since it started (or since `/proc/self/clear_refs` was
/// told to reset it), in MiB.
pub fn peak_resident_mb() -> f64 {
    status_mb("VmHWM")
}

/// The process's resident memory now, in MiB.
pub fn resident_mb() -> f64 {
    status_mb("VmRSS")
}

// The binary's unit tests run with this allocator and these options, as `serve` does.
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn memory_a_burst_freed_goes_back_to_the_system_unasked() {
        // Many small blocks, every thousandth kept: the free ones lie between live ones, as a
        // million idle workers' states do, so the heap cannot simply shrink from its top.
        let blocks: Vec<Box<[u8; 512]>> = (0..400_000).map(|i| Box::new([(i % 251) as u8; 512])).collect();
        let before = resident_mb();
        let kept: Vec<Box<[u8; 512]>> = blocks.into_iter().step_by(1000).collect();
        // Nothing asks for it: the allocator's background thread purges on its own.
        let deadline = std::time::Instant::now() + 4 * RETURNED_WITHIN;
        let mut after = resident_mb();
        while before - after < 150.0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            after = resident_mb();
        }
        assert!(before - after >= 150.0, "resident {before} -> {after} MiB");
        assert_eq!(kept.len(), 400);
        assert!(kept.iter().enumerate().all(|(i, b)| b[0] == ((i * 1000) % 251) as u8));
    }
}
