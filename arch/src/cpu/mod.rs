//! One file per supported target: the few facts about the CPU that the
//! overflow handler needs, a prefetch hint for the scheduler, and the stack
//! pointer, which tells on whose stack code runs. Everything
//! else goes through corosensei and libc.
//! Unsupported targets fail to build with a clear message instead of failing
//! at run time.

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod x86_64;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) use self::x86_64::fault_stack_pointer;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub use self::x86_64::{prefetch, stack_pointer};

#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
mod aarch64;
#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
pub(crate) use self::aarch64::fault_stack_pointer;
#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
pub use self::aarch64::{prefetch, stack_pointer};

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
compile_error!(
    "stackful supports Linux on x86_64 and aarch64 only; \
     other targets need a file in arch/src/cpu/"
);
