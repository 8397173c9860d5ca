//! The gateway's global allocator: mimalloc, called through its plain
//! entry points wherever they already give the alignment asked for.
//!
//! Rust hands every allocation an alignment. The `mimalloc` crate passes
//! each one to `mi_malloc_aligned`, and mimalloc's aligned path takes its
//! fast route only for blocks of 1 KiB or less: a larger block whose size
//! is not a power of two up to 4 KiB is over-allocated through a slow path
//! (`mi_theap_malloc_zero_aligned_at_overalloc`). hyper reserves an 8 KiB
//! read buffer on both sides of every proxied HTTP/1 exchange (the
//! previous head still shares the old one), so that path ran several times
//! per request and cost about a thousand instructions.
//!
//! mimalloc's own blocks already have the alignment most requests ask
//! for: block sizes are multiples of 8 bytes, and of 16 from 16 bytes up,
//! and pages start 16-byte aligned (`MI_MAX_ALIGN_SIZE`). A request whose
//! alignment is at most 16 and at most its size therefore goes to
//! `mi_malloc`, `mi_zalloc` and `mi_realloc`; any other goes to the
//! aligned functions as before. This is the rule mimalloc's author
//! recommends for language runtimes that pass an alignment with every
//! request.
//!
//! [`keep_full_pages`] turns off mimalloc 3's abandoning of full pages,
//! which costs a proxy several hundred instructions per request.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::{c_int, c_long, c_void};

use libmimalloc_sys as mi;

/// The largest alignment every mimalloc block of at least that size has
/// (`MI_MAX_ALIGN_SIZE`).
const NATURAL_ALIGN: usize = 16;

/// `mi_option_page_full_retain` in mimalloc 3's `mimalloc.h` (the
/// `libmimalloc-sys` crate names only the options of earlier versions); a
/// test checks that the options around it have their documented defaults.
const OPTION_PAGE_FULL_RETAIN: c_int = 36;

#[allow(unsafe_code)]
// SAFETY: the signatures of `mimalloc.h`; the library is linked by
// `libmimalloc-sys`.
unsafe extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
    #[cfg(test)]
    fn mi_option_get(option: c_int) -> c_long;
}

/// Keeps a thread's full pages in its own queue (mimalloc 2's behaviour)
/// instead of abandoning them to the shared arena.
///
/// mimalloc 3 by default gives a page that fills up back to the arena, so
/// that another thread could use its free space later, and takes it back
/// as soon as one of its blocks is freed. A proxy allocates and frees
/// short-lived blocks of the same sizes for every request, so a page of
/// some size class is forever just full: the round trip (abandon, then
/// reclaim on the next free) ran about every second request, at roughly
/// 650 instructions each, with nothing gained, since the freeing thread
/// is the one that filled the page.
///
/// Takes effect for threads whose heap starts afterwards: call it first
/// thing in `main`, and run the work on threads started after it (the
/// main thread's heap was set up before `main`). A
/// `MIMALLOC_PAGE_FULL_RETAIN` in the environment is left in force.
pub fn keep_full_pages() {
    if std::env::var_os("MIMALLOC_PAGE_FULL_RETAIN").is_some() {
        return;
    }
    // SAFETY: setting an option is a plain store. A negative count turns
    // abandoning off (`allow_page_abandon` in mimalloc's `init.c`).
    #[allow(unsafe_code)]
    unsafe {
        mi_option_set(OPTION_PAGE_FULL_RETAIN, -1);
    }
}

/// mimalloc as the global allocator; see the crate docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mimalloc;

/// Whether a plain allocation of `size` bytes is aligned to `align`.
#[inline(always)]
fn natural(size: usize, align: usize) -> bool {
    align <= NATURAL_ALIGN && align <= size
}

// SAFETY: every pointer returned comes from mimalloc with at least the
// requested size and alignment (plain calls only where `natural` holds,
// see the crate docs), and every pointer freed or reallocated was
// returned by this allocator, as the `GlobalAlloc` contract guarantees.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc's allocation functions accept any size.
        unsafe {
            if natural(layout.size(), layout.align()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe {
            if natural(layout.size(), layout.align()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` was returned by this allocator (the caller's
        // contract); mimalloc frees plain and aligned blocks alike.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was returned by this allocator with `layout` (the
        // caller's contract); the new block is naturally aligned when
        // `natural` holds for the new size, else the aligned call keeps
        // the alignment.
        unsafe {
            if natural(new_size, layout.align()) {
                mi::mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;

    /// Allocates `size` bytes aligned to `align`, fills them, grows and
    /// then shrinks the block, checking the alignment and the contents at
    /// each step, and frees it.
    fn round_trip(size: usize, align: usize, zeroed: bool) {
        let a = Mimalloc;
        let layout = |size| Layout::from_size_align(size, align).expect("valid layout");
        // SAFETY: every layout has a non-zero size; each pointer is used
        // within its size and freed once, with the layout it has then.
        unsafe {
            let mut p = if zeroed { a.alloc_zeroed(layout(size)) } else { a.alloc(layout(size)) };
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0, "alloc {size} aligned {align}");
            if zeroed {
                assert!(std::slice::from_raw_parts(p, size).iter().all(|b| *b == 0));
            }
            for i in 0..size {
                *p.add(i) = i as u8;
            }
            let mut current = size;
            for next in [size * 3 + 1, size.div_ceil(2)] {
                p = a.realloc(p, layout(current), next);
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0, "realloc {current} -> {next} aligned {align}");
                for i in 0..size.min(next) {
                    assert_eq!(*p.add(i), i as u8);
                }
                current = next;
            }
            a.dealloc(p, layout(current));
        }
    }

    #[test]
    fn every_block_has_the_alignment_asked_for() {
        let sizes =
            [1, 2, 3, 7, 8, 9, 15, 16, 17, 24, 40, 48, 100, 1000, 1024, 1025, 2730, 4096, 5000, 8192, 8208, 70_000];
        for size in sizes {
            for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
                round_trip(size, align, false);
                round_trip(size, align, true);
            }
        }
    }

    #[test]
    fn the_page_retain_option_is_the_one_mimalloc_3_numbers_36() {
        // The defaults of the option and its neighbours in `mimalloc.h`:
        // page_reclaim_on_free (0), page_full_retain (2),
        // page_max_candidates (4), max_vabits (0). Read before
        // `keep_full_pages` could change it: no test here calls it.
        // SAFETY: reading an option is a plain load.
        let around: Vec<c_long> =
            (OPTION_PAGE_FULL_RETAIN - 1..=OPTION_PAGE_FULL_RETAIN + 2).map(|o| unsafe { mi_option_get(o) }).collect();
        assert_eq!(around, [0, 2, 4, 0]);
    }

    #[test]
    fn the_plain_path_is_taken_only_where_blocks_are_aligned() {
        assert!(natural(8192, 8));
        assert!(natural(16, 16));
        assert!(!natural(8, 16));
        assert!(!natural(4096, 32));
    }
}
