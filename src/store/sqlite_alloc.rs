//! SQLite's memory from mimalloc, the gateway's allocator, instead of the C library's malloc.
//!
//! sqlx runs every SQLite connection on a thread of its own, and SQLite allocates for each bound
//! text, each value a statement returns (`sqlite3_value_dup`) and each page it caches. With
//! glibc's malloc those threads get arenas of their own, which hold freed memory: 24 MB of the
//! gateway's resident memory at 128 connections with shadow on (12.7 MB with one arena), and
//! glibc's malloc and free were 17% of the capture writer's instructions
//! (`benches/capture_path.rs`, flushes of 1,600 row-less observations, under callgrind).
//!
//! [`install`] hands SQLite mimalloc through `sqlite3_config(SQLITE_CONFIG_MALLOC)` — the
//! interface SQLite documents for this (<https://sqlite.org/c3ref/mem_methods.html>) — and turns
//! off SQLite's memory statistics (`SQLITE_CONFIG_MEMSTATUS`: a global mutex on every allocation,
//! for counters nothing here reads). Both only take effect before SQLite initializes, which it
//! does when the first connection of the process opens: `Store::connect_no_migrate` calls
//! [`install`] before it opens one, once per process. If something else in the process started
//! SQLite first, SQLite answers `SQLITE_MISUSE` and keeps its own allocator: harmless, logged at
//! debug level.
//!
//! Each block carries its requested size in an 8-byte header (SQLite asks for it back, `xSize`),
//! as SQLite's own `mem1.c` does over malloc; 8 bytes keep the 8-byte alignment SQLite needs.

use std::ffi::{c_int, c_void};
use std::ptr::null_mut;
use std::sync::Once;

use libmimalloc_sys::{mi_free, mi_malloc, mi_realloc};
use libsqlite3_sys as ffi;

/// Bytes in front of each block: its requested size.
const HEADER: usize = 8;

/// The header's address from the pointer SQLite holds.
///
/// # Safety
/// `p` came from [`x_malloc`] or [`x_realloc`] and is not freed.
unsafe fn base_of(p: *mut c_void) -> *mut u64 {
    // SAFETY: `p` is HEADER bytes past the start of its block (the caller's contract).
    unsafe { p.cast::<u8>().sub(HEADER).cast::<u64>() }
}

/// Writes the size into the header at `base` and returns the address SQLite gets.
///
/// # Safety
/// `base` is a live block of at least `HEADER + n` bytes from mimalloc (16-byte aligned).
unsafe fn finish(base: *mut c_void, n: usize) -> *mut c_void {
    let base = base.cast::<u64>();
    // SAFETY: the block holds the header and is aligned for a u64 (the caller's contract).
    unsafe {
        base.write(n as u64);
        base.cast::<u8>().add(HEADER).cast()
    }
}

unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    let Ok(n) = usize::try_from(n) else {
        return null_mut();
    };
    // SAFETY: mi_malloc has no preconditions; a null result is passed on (SQLITE_NOMEM).
    let base = unsafe { mi_malloc(n + HEADER) };
    if base.is_null() {
        return null_mut();
    }
    // SAFETY: `base` is a fresh block of HEADER + n bytes.
    unsafe { finish(base, n) }
}

unsafe extern "C" fn x_free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: SQLite frees only what x_malloc / x_realloc returned, once.
    unsafe { mi_free(base_of(p).cast()) }
}

unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    if p.is_null() {
        // SAFETY: a plain allocation.
        return unsafe { x_malloc(n) };
    }
    let Ok(n) = usize::try_from(n) else {
        return null_mut();
    };
    // SAFETY: `p` is a live block of ours; on failure mi_realloc leaves it as it was, and
    // SQLite keeps it.
    let base = unsafe { mi_realloc(base_of(p).cast(), n + HEADER) };
    if base.is_null() {
        return null_mut();
    }
    // SAFETY: `base` is a block of HEADER + n bytes.
    unsafe { finish(base, n) }
}

unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    if p.is_null() {
        return 0;
    }
    // SAFETY: `p` is a live block of ours: its header holds its size.
    let n = unsafe { base_of(p).read() };
    c_int::try_from(n).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
    // As mem1.c: to a multiple of 8.
    n.saturating_add(7) & !7
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

/// Gives SQLite mimalloc and turns its memory statistics off, once per process, before the
/// first connection opens (see the module docs).
pub(super) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(x_malloc),
            xFree: Some(x_free),
            xRealloc: Some(x_realloc),
            xSize: Some(x_size),
            xRoundup: Some(x_roundup),
            xInit: Some(x_init),
            xShutdown: Some(x_shutdown),
            pAppData: null_mut(),
        };
        // SAFETY: called before this process opens its first SQLite connection (under the Once,
        // which every connect passes first); SQLite copies `methods` before returning. Once
        // SQLite is initialized, both calls only return SQLITE_MISUSE.
        let (malloc, memstatus) = unsafe {
            (
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &raw const methods),
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, c_int::from(false)),
            )
        };
        if malloc != ffi::SQLITE_OK || memstatus != ffi::SQLITE_OK {
            tracing::debug!(
                malloc,
                memstatus,
                "SQLite was initialized already: it keeps its own allocator"
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_keep_their_size_through_reallocation_and_are_aligned() {
        // SAFETY: the functions are called as SQLite calls them, on their own blocks.
        unsafe {
            let p = x_malloc(13);
            assert!(!p.is_null());
            assert_eq!(p as usize % 8, 0);
            assert_eq!(x_size(p), 13);
            p.cast::<u8>().write_bytes(0xab, 13);
            let q = x_realloc(p, 4000);
            assert_eq!(x_size(q), 4000);
            assert_eq!(q as usize % 8, 0);
            assert!(
                std::slice::from_raw_parts(q.cast::<u8>(), 13)
                    .iter()
                    .all(|b| *b == 0xab)
            );
            x_free(q);
            x_free(null_mut());
            assert_eq!(x_size(null_mut()), 0);
            assert_eq!(x_roundup(1), 8);
            assert_eq!(x_roundup(16), 16);
            assert!(x_malloc(-1).is_null());
        }
    }
}
