//! Giving memory back to the system once a burst is over.
//!
//! glibc's allocator keeps what a burst freed (a million stores' workers idling out, a
//! rebuild's pages) in its arenas, and resident memory stays at the burst's high-water mark
//! although nothing uses it. Every few seconds the process asks the allocator how much it holds
//! free; past a threshold, `malloc_trim` hands the free pages back. Trimming walks every arena
//! under its lock, so it runs only when there is something worth giving back.

use std::time::Duration;

use tokio::sync::watch;

/// Free memory the allocator may keep for reuse before it is asked to give it back.
const KEEP_FREE_BYTES: usize = 32 << 20;

/// How often the allocator is asked.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Bytes the allocator holds free (allocated from the system, not in use).
#[allow(unsafe_code)]
pub fn free_bytes() -> usize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        unsafe { libc::mallinfo2() }.fordblks
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        0
    }
}

/// Gives free memory back to the system if the allocator holds more than it should keep.
/// Returns whether it did.
#[allow(unsafe_code)]
pub fn release_if_worth_it() -> bool {
    if free_bytes() <= KEEP_FREE_BYTES {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim is safe to call at any time; it only returns free pages.
        unsafe { libc::malloc_trim(0) };
    }
    true
}

/// Checks every `every` until told to stop.
pub async fn release_after_bursts(every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if tokio::task::spawn_blocking(release_if_worth_it).await.unwrap_or(false) {
            tracing::debug!("gave free memory back to the system");
        }
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    fn resident_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }

    #[test]
    fn memory_a_burst_freed_goes_back_to_the_system() {
        // Many small blocks, every hundredth kept: the free ones are scattered between live ones,
        // as a million idle workers' states are, so the heap cannot simply shrink from its top.
        let blocks: Vec<Box<[u8; 512]>> = (0..400_000).map(|i| Box::new([(i % 251) as u8; 512])).collect();
        let kept: Vec<Box<[u8; 512]>> = blocks.into_iter().step_by(100).collect();
        assert!(free_bytes() > KEEP_FREE_BYTES, "the burst left {} bytes free", free_bytes());
        let before = resident_bytes();
        assert!(release_if_worth_it());
        let after = resident_bytes();
        assert!(before - after > 100 << 20, "resident {before} -> {after} bytes");
        assert_eq!(kept.len(), 4_000);
        assert!(kept.iter().enumerate().all(|(i, b)| b[0] == ((i * 100) % 251) as u8));
    }
}
