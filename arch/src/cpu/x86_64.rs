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
