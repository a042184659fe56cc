//! How `slo` treats the memory its ingest path frees. The binary runs on mimalloc (its
//! `#[global_allocator]` is in `src/main.rs`); this crate sets one of mimalloc's options,
//! which takes a call into its C API: the one `unsafe` block the workspace allows.

/// Keeps freed memory in the process for reuse instead of returning it to the system a
/// second after it was freed (mimalloc's `purge_delay` of 1,000 ms). Call it first thing
/// in `main`, before any thread is started.
///
/// Why: under load, rows and Parquet buffers are built, flushed and freed every few
/// seconds. Returned to the system, the same amount comes back as fresh pages that the
/// kernel zeroes on first touch (mimalloc asks for transparent huge pages: 2 MiB at a
/// time), about a tenth of the server's CPU in a profile at 100,000 spans/s. Kept, it is
/// reused. Measured in BENCHMARKS.md ("Freed memory kept for reuse"): 13-43% more spans per
/// server CPU-second in seven pairs, for 70-220 MiB more at peak. The memory bound
/// (README, "Memory") holds: the budgets bound the peak, and the process keeps what it
/// reached (its own share of the bound is 50 MiB larger for it).
///
/// An operator who wants freed memory back sets `MIMALLOC_PURGE_DELAY` (milliseconds;
/// `1000` is mimalloc's default, `0` returns it at once): a value from the environment
/// wins over this one.
#[allow(unsafe_code)]
pub fn keep_freed_memory() {
    // SAFETY: `mi_option_set_default` writes one entry of mimalloc's option table, which is
    // not synchronised: the caller does this before starting any thread. It leaves an option
    // read from the environment at process load as it is.
    unsafe { libmimalloc_sys::mi_option_set_default(PURGE_DELAY, -1) }
}

/// `mi_option_purge_delay` (`reset_delay` before mimalloc 2.1), which `libmimalloc-sys`
/// does not name. mimalloc keeps its options' numbers (retired ones stay as
/// `deprecated_*`); it is 15 in both the v2 and v3 headers that crate builds, and the test
/// below checks by behaviour that it is the purge delay of the library linked.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;

    /// The test binary allocates as `slo` does.
    #[global_allocator]
    static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

    /// Resident bytes of this process, from `/proc/self/statm`.
    fn resident() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
        let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("resident pages");
        pages * 4096
    }

    /// Touches 256 MiB, frees it, then asks mimalloc for a forced collection, which
    /// returns whatever is due for any delay but "never": the pages stay resident. If
    /// option 15 were not the purge delay, mimalloc's default delay (1 s) would be in
    /// force and the forced collection after 1.2 s would return them; with that delay set
    /// on option 15 instead (checked by hand: `mi_option_set(PURGE_DELAY, 1000)`),
    /// resident memory ends 272 MiB lower and this fails. nextest runs each test in a
    /// process of its own, so the option and the count are this test's alone; a
    /// `MIMALLOC_PURGE_DELAY` in the test's environment would win and fail it.
    #[test]
    fn freed_memory_stays_for_reuse() {
        keep_freed_memory();
        const MIB: usize = 1 << 20;
        let blocks: Vec<Vec<u8>> = (0..256).map(|i| vec![i as u8 | 1; MIB]).collect();
        let held = resident();
        drop(blocks);
        std::thread::sleep(std::time::Duration::from_millis(1_200));
        // SAFETY: mimalloc's own collection of this thread's heap and its arenas.
        unsafe { libmimalloc_sys::mi_collect(true) };
        let after = resident();
        assert!(
            after + 64 * MIB as u64 > held,
            "freed memory went back to the system: {} MiB resident holding 256 MiB, {} MiB after",
            held >> 20,
            after >> 20
        );
    }
}
