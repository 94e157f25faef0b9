//! Linux on x86_64.

/// Returns the stack pointer of the interrupted code from the `ucontext_t`
/// that the kernel passes to an `SA_SIGINFO` handler.
///
/// # Safety
///
/// `ctx` must be the third argument of an `SA_SIGINFO` signal handler, which
/// points to a valid `ucontext_t` for the duration of the handler.
pub(crate) unsafe fn fault_stack_pointer(ctx: *mut libc::c_void) -> usize {
    let uc = ctx.cast::<libc::ucontext_t>();
    // SAFETY: the caller guarantees `ctx` points to the handler's `ucontext_t`.
    unsafe { (*uc).uc_mcontext.gregs[libc::REG_RSP as usize] as usize }
}

/// Asks the CPU to load the cache line holding `addr`. A hint: it reads
/// nothing architecturally and never faults, whatever the address.
#[inline(always)]
pub fn prefetch(addr: usize) {
    // SAFETY: `prefetcht0` does not fault on any address and has no effect
    // on program state; SSE is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8)
    };
}

/// The stack pointer of the caller: the real machine register, not the
/// address of a local (a compiler or sanitizer may keep locals elsewhere,
/// as AddressSanitizer's fake stacks do).
#[inline(always)]
pub fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: copies `rsp` into a register; reads no memory and changes no
    // state.
    unsafe {
        std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    sp
}
