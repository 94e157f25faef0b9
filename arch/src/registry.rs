//! The registry of live stacks that the overflow handler searches.
//!
//! A signal handler may not take locks or allocate, so the handler's side of
//! this structure is lock-free reads only. Slots live in segments that are
//! allocated once and never freed (segment `k` holds `FIRST << k` slots), so a
//! `&'static Slot` stays valid forever and the handler can scan the segments
//! with plain atomic loads. Registering and unregistering a stack happens only
//! when a stack is mapped or unmapped, which costs system calls anyway, so
//! that side simply takes a mutex to find a free slot.

use std::panic::Location;
use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::overflow::{Label, Owner};

/// Slots in segment 0; segment `k` holds `FIRST << k`.
const FIRST: usize = 1024;
/// Enough segments for more slots than a 64-bit address space has stacks.
const SEGMENTS: usize = 40;

/// One live stack, as the overflow handler sees it.
pub(crate) struct Slot {
    /// Start of the mapping (the guard page's first byte); 0 while free.
    start: AtomicUsize,
    /// End of the guard page: faults in `start..guard_end` are overflows.
    guard_end: AtomicUsize,
    /// Top of the stack.
    base: AtomicUsize,
    /// What kind of coroutine runs here; null while unlabelled.
    owner: AtomicPtr<Owner>,
    name_ptr: AtomicPtr<u8>,
    name_len: AtomicUsize,
    site: AtomicPtr<Location<'static>>,
}

/// What the handler reads from a slot when a fault hits its guard page.
pub(crate) struct Seen {
    pub(crate) guard_end: usize,
    pub(crate) base: usize,
    pub(crate) owner: Option<&'static Owner>,
    /// Raw because its lifetime is guaranteed only by `set_label`'s contract.
    pub(crate) name: Option<(*const u8, usize)>,
    pub(crate) site: Option<&'static Location<'static>>,
}

impl Slot {
    fn empty() -> Slot {
        Slot {
            start: AtomicUsize::new(0),
            guard_end: AtomicUsize::new(0),
            base: AtomicUsize::new(0),
            owner: AtomicPtr::new(ptr::null_mut()),
            name_ptr: AtomicPtr::new(ptr::null_mut()),
            name_len: AtomicUsize::new(0),
            site: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Stores a label. The owner pointer is written last with `Release` so
    /// that a reader that sees it also sees the name and site.
    pub(crate) fn set_label(&self, label: Label<'_>) {
        let (p, n) = label
            .name
            .map_or((ptr::null(), 0), |s| (s.as_ptr(), s.len()));
        self.name_ptr.store(p.cast_mut(), Ordering::Relaxed);
        self.name_len.store(n, Ordering::Relaxed);
        let site = label.site.map_or(ptr::null(), ptr::from_ref);
        self.site.store(site.cast_mut(), Ordering::Relaxed);
        self.owner
            .store(ptr::from_ref(label.owner).cast_mut(), Ordering::Release);
    }

    pub(crate) fn clear_label(&self) {
        self.owner.store(ptr::null_mut(), Ordering::Release);
    }

    fn read(&self) -> Seen {
        let owner = self.owner.load(Ordering::Acquire);
        let name_ptr = self.name_ptr.load(Ordering::Relaxed);
        let site = self.site.load(Ordering::Relaxed);
        // SAFETY: `owner` and `site` are null or came from `&'static`
        // references in `set_label`.
        let (owner_ref, site_ref) = unsafe { (owner.as_ref(), site.as_ref()) };
        Seen {
            guard_end: self.guard_end.load(Ordering::Relaxed),
            base: self.base.load(Ordering::Relaxed),
            owner: owner_ref,
            name: (!owner.is_null() && !name_ptr.is_null())
                .then(|| (name_ptr.cast_const(), self.name_len.load(Ordering::Relaxed))),
            site: owner_ref.and(site_ref),
        }
    }
}

static TABLE: [AtomicPtr<Slot>; SEGMENTS] = [const { AtomicPtr::new(ptr::null_mut()) }; SEGMENTS];
/// Slot indices handed out so far; the handler scans `0..HIGH`.
static HIGH: AtomicUsize = AtomicUsize::new(0);
/// Slots given back by unmapped stacks, ready for reuse.
static FREE: Mutex<Vec<&'static Slot>> = Mutex::new(Vec::new());

/// Segment and offset of slot index `n`.
fn locate(n: usize) -> (usize, usize) {
    let k = (n / FIRST + 1).ilog2() as usize;
    (k, n - FIRST * ((1 << k) - 1))
}

/// Records a newly mapped stack and returns its slot.
pub(crate) fn register(start: usize, guard_end: usize, base: usize) -> &'static Slot {
    let mut free = FREE.lock().unwrap_or_else(|e| e.into_inner());
    let slot = match free.pop() {
        Some(slot) => slot,
        None => {
            let n = HIGH.load(Ordering::Relaxed);
            let (k, i) = locate(n);
            let mut seg = TABLE[k].load(Ordering::Acquire);
            if seg.is_null() {
                let slots: Box<[Slot]> = (0..FIRST << k).map(|_| Slot::empty()).collect();
                seg = Box::leak(slots).as_mut_ptr();
                TABLE[k].store(seg, Ordering::Release);
            }
            // SAFETY: segment k was allocated with FIRST << k slots and i is
            // below that by `locate`; segments are leaked, so the reference is
            // valid for 'static.
            let slot = unsafe { &*seg.add(i) };
            HIGH.store(n + 1, Ordering::Release);
            slot
        }
    };
    drop(free);
    slot.clear_label();
    slot.guard_end.store(guard_end, Ordering::Relaxed);
    slot.base.store(base, Ordering::Relaxed);
    slot.start.store(start, Ordering::Release);
    slot
}

/// Forgets a stack that is about to be unmapped.
pub(crate) fn unregister(slot: &'static Slot) {
    slot.start.store(0, Ordering::Release);
    slot.clear_label();
    FREE.lock().unwrap_or_else(|e| e.into_inner()).push(slot);
}

/// Finds the stack whose guard page contains `addr`. Async-signal-safe: only
/// atomic loads over memory that is never freed.
pub(crate) fn find_guard(addr: usize) -> Option<Seen> {
    let high = HIGH.load(Ordering::Acquire);
    for n in 0..high {
        let (k, i) = locate(n);
        let seg = TABLE[k].load(Ordering::Acquire);
        if seg.is_null() {
            break;
        }
        // SAFETY: as in `register`: index i is inside segment k, which is never freed.
        let slot = unsafe { &*seg.add(i) };
        let start = slot.start.load(Ordering::Acquire);
        if start != 0 && start <= addr && addr < slot.guard_end.load(Ordering::Relaxed) {
            return Some(slot.read());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_walks_the_segments() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(FIRST - 1), (0, FIRST - 1));
        assert_eq!(locate(FIRST), (1, 0));
        assert_eq!(locate(3 * FIRST - 1), (1, 2 * FIRST - 1));
        assert_eq!(locate(3 * FIRST), (2, 0));
    }

    #[test]
    fn registered_guards_are_found_until_unregistered() {
        // Addresses far from any real mapping; the registry only stores numbers.
        let slot = register(0x7000_0000_0000, 0x7000_0000_1000, 0x7000_0004_1000);
        let seen = find_guard(0x7000_0000_0800).expect("guard address not found");
        assert_eq!(seen.base, 0x7000_0004_1000);
        assert!(seen.owner.is_none());
        assert!(
            find_guard(0x7000_0000_1000).is_none(),
            "usable memory is not a guard"
        );
        unregister(slot);
        assert!(find_guard(0x7000_0000_0800).is_none());
    }
}
