//! The allocator the `surfaces` binary installs.
//!
//! Why this exists: per message the runtime allocates and frees many small blocks (ids,
//! journal records, actor messages), across threads; in the pipeline benchmark glibc's malloc
//! took about a quarter of all instructions (consolidation, arena locks). mimalloc does the
//! same work in a fraction of that. It is named here so the binary and the benchmarks (which
//! wrap it to count bytes) run the same one.

/// The global allocator of the binary (`main.rs`) and the benchmarks.
pub type Allocator = mimalloc::MiMalloc;

/// An instance, for `#[global_allocator]` statics.
pub const ALLOCATOR: Allocator = mimalloc::MiMalloc;
