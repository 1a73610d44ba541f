//! The allocator the `surfaces` binary installs.
//!
//! Why this exists: per message the runtime allocates and frees many small blocks (ids,
//! journal records, actor messages), across threads; in the pipeline benchmark glibc's malloc
//! took about a quarter of all instructions (consolidation, arena locks). mimalloc does the
//! same work in a fraction of that. It is named here so the binary and the benchmarks (which
//! wrap it to count bytes) run the same one.
//!
//! The process also turns transparent huge pages off for itself ([`settle`]): mimalloc asks
//! the kernel for huge pages, and each first touch of one then zeroes 2 MiB however little of
//! it is used. In the pipeline benchmark that zeroing was a tenth of all the CPU time
//! (`ops/bench/RESULTS.md`, "Work per message, sixth pass"); with 4 KiB pages it is gone, and
//! resident memory follows what is used. Databases and caches advise the same (Redis,
//! MongoDB) for the same reason.

/// The global allocator of the binary (`main.rs`) and the benchmarks.
pub type Allocator = mimalloc::MiMalloc;

/// An instance, for `#[global_allocator]` statics.
pub const ALLOCATOR: Allocator = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process (Linux: `prctl(PR_SET_THP_DISABLE)`;
/// every mapping, old and new, faults in 4 KiB pages from then on). Called by the binary as
/// soon as its logging is up (so a failure is logged) and first thing by the pipeline
/// benchmark (which measures the core as the binary runs it). An error leaves the kernel's
/// default in place, which works, only with more memory zeroed and resident.
pub fn settle() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::thread::disable_transparent_huge_pages(true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn settling_turns_transparent_huge_pages_off_for_the_process() {
        // The flag belongs to the process (its memory map), so every test shares it: the
        // test only ever turns it on, as the binary does.
        super::settle().expect("prctl");
        assert!(rustix::thread::transparent_huge_pages_are_disabled().expect("prctl"));
    }
}
