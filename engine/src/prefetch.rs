//! Software prefetch, for state whose next accesses are known ahead: an ordered step knows
//! which keys the next few records touch, and each key's state is cold (thousands of keys
//! between two records of one key), so a record otherwise waits on a chain of cache misses.
//!
//! This is one of the two places weir uses `unsafe` (the other is [`crate::data::row`]):
//! `_mm_prefetch` is an intrinsic, so calling it is `unsafe`, although it only hints the
//! cache. It never accesses memory architecturally and never faults, whatever the address;
//! here every address comes from a live reference besides.

/// Asks for the cache lines of `value` to be loaded (into every level), without waiting.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    let start = std::ptr::from_ref(value).cast::<u8>();
    let mut offset = 0;
    while offset < std::mem::size_of::<T>().max(1) {
        line(start.wrapping_add(offset));
        offset += 64;
    }
}

/// Asks for the cache line at `at`.
#[inline(always)]
#[allow(unsafe_code)]
fn line(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing architecturally and cannot fault, for
    // any address; SSE (which has it) is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefetching_anything_is_harmless() {
        super::prefetch(&0u8);
        super::prefetch(&[0u64; 100]);
        super::prefetch(&());
        let v: Vec<u32> = Vec::new();
        super::prefetch(&v);
    }
}
