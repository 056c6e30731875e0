//! Memory: a bump allocator over linear memory. Buffers the host asks for through `anbiq_alloc` are persistent;
//! everything a call allocates is released when the call returns (the export macros open a [`CallScope`]). No
//! fragmentation, no frees to get wrong, and the same addresses on every call.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;

const PAGE: usize = 65536;

struct Heap {
    /// Next free byte; 0 until first use.
    top: UnsafeCell<usize>,
}

// wasm32-unknown-unknown plugins are single-threaded.
unsafe impl Sync for Heap {}

static HEAP: Heap = Heap { top: UnsafeCell::new(0) };

#[cfg(target_arch = "wasm32")]
fn heap_base() -> usize {
    extern "C" {
        static __heap_base: u8;
    }
    core::ptr::addr_of!(__heap_base) as usize
}

#[cfg(target_arch = "wasm32")]
fn ensure(end: usize) -> bool {
    let have = core::arch::wasm32::memory_size(0) * PAGE;
    if end <= have {
        return true;
    }
    let pages = (end - have).div_ceil(PAGE);
    core::arch::wasm32::memory_grow(0, pages) != usize::MAX
}

#[cfg(not(target_arch = "wasm32"))]
fn heap_base() -> usize {
    PAGE
}

#[cfg(not(target_arch = "wasm32"))]
fn ensure(_end: usize) -> bool {
    false
}

fn bump(size: usize, align: usize) -> usize {
    let top = unsafe { &mut *HEAP.top.get() };
    if *top == 0 {
        *top = heap_base();
    }
    let align = align.max(1);
    let start = (*top + align - 1) & !(align - 1);
    let end = start + size;
    if !ensure(end) {
        return 0;
    }
    *top = end;
    start
}

pub(crate) fn alloc_persistent(size: usize, align: usize) -> usize {
    bump(size, align)
}

/// Releases what a call allocated when dropped.
pub struct CallScope {
    mark: usize,
}

/// Opens a scope: allocations until it drops are released then.
pub fn call_scope() -> CallScope {
    let top = unsafe { &mut *HEAP.top.get() };
    if *top == 0 {
        *top = heap_base();
    }
    CallScope { mark: *top }
}

impl Drop for CallScope {
    fn drop(&mut self) {
        unsafe { *HEAP.top.get() = self.mark };
    }
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Bump;

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump(layout.size(), layout.align()) as *mut u8
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: Bump = Bump;

/// A fixed-size text buffer for formatting without the heap (panic messages).
pub(crate) struct FixedBuf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> FixedBuf<N> {
    pub(crate) fn new() -> Self {
        FixedBuf { bytes: [0; N], len: 0 }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only whole UTF-8 sequences are ever appended.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("(panic)")
    }
}

impl<const N: usize> core::fmt::Write for FixedBuf<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let mut take = s.len().min(N - self.len);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}
