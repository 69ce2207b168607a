//! Freed heap memory handed back to the kernel.
//!
//! A connection that goes quiet gives its task and buffers back to the
//! allocator when it is parked, but glibc's `free` returns memory to the
//! kernel only from the top of a heap: thousands of connections that spoke
//! at once and then went quiet would leave their few KiB each resident,
//! free but never reused until the next burst. `malloc_trim` walks every
//! arena and returns each free page (`madvise(MADV_DONTNEED)`), so quiet
//! connections cost what never-spoken ones cost. The parking lot calls
//! [`release`] from its once-a-second sweep, and only after enough
//! connections came back to be worth the walk.
//!
//! Other allocators (musl's, or a target without glibc) keep their own
//! policy: [`release`] does nothing there.

/// Gives the heap's free pages back to the kernel (glibc), or does
/// nothing (any other C library).
pub(super) fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let start = std::time::Instant::now();
        // The crate denies unsafe code (Cargo.toml [lints]); this and the
        // parking lot's epoll registration are the two places allowed.
        #[allow(unsafe_code)]
        // SAFETY: malloc_trim has no preconditions: it takes the
        // allocator's own locks, touches only free chunks, and may be
        // called from any thread at any time. It is glibc's (this block
        // is compiled for glibc targets only).
        let released = unsafe { libc::malloc_trim(0) };
        tracing::debug!(
            released = released != 0,
            took_us = start.elapsed().as_micros() as u64,
            "free heap pages returned"
        );
    }
}
