//! Memory: handing memory that graph-vcr has freed back to the system.
//!
//! glibc's allocator keeps freed memory in its arenas, so after one large request (a 15 MB
//! body parses into a few hundred MB) or replay's index scan (sled's pages, read and
//! dropped) the process would stay that large for the rest of the run. `malloc_trim` returns
//! it; elsewhere this does nothing.

/// Returns free memory at the top of the allocator's heaps and arenas to the system.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory at the top of glibc's heaps and arenas;
    // it touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}
