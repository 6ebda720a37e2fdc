//! Happens-before annotations for valgrind's race detectors (DRD, Helgrind), which do
//! not understand atomics' acquire/release ordering by themselves: with the `valgrind`
//! feature, the ring marks each release store of a cursor with `happens_before` and each
//! acquire load that saw a new value with `happens_after`, on the cursor's address
//! (Helgrind's `ANNOTATE_HAPPENS_BEFORE` / `_AFTER`, which DRD shares). Without the
//! feature, or off x86-64, both are nothing. Natively the client request is a few
//! register rotations that leave everything as it was; only valgrind gives it meaning.

/// `_VG_USERREQ__HG_USERSO_SEND_PRE` (valgrind/helgrind.h; the value DRD uses too).
#[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
const SEND_PRE: usize = 0x4847_0121;
/// `_VG_USERREQ__HG_USERSO_RECV_POST`.
#[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
const RECV_POST: usize = 0x4847_0122;
/// `VG_USERREQ__DRD_START_SUPPRESSION` (drd.h's `ANNOTATE_BENIGN_RACE_SIZED`).
#[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
const DRD_IGNORE: usize = 0x4452_0002;
/// `_VG_USERREQ__HG_ARANGE_MAKE_UNTRACKED` (helgrind.h's `VALGRIND_HG_DISABLE_CHECKING`).
#[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
const HG_UNTRACK: usize = 0x4847_0127;

#[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
#[inline(always)]
fn client_request(request: usize, arg: usize, arg2: usize) {
    let args: [usize; 6] = [request, arg, arg2, 0, 0, 0];
    let mut result: usize = 0;
    // SAFETY: valgrind's client-request sequence for amd64 (valgrind.h,
    // `VALGRIND_DO_CLIENT_REQUEST_EXPR`): rotating rdi by 3+13+61+51 = 128 bits leaves it
    // unchanged and `xchg rbx, rbx` is a no-op, so natively nothing changes (rdi is
    // declared clobbered anyway). Under valgrind, it reads the six words at rax, which
    // point to `args`, alive for the whole block, and writes its result to rdx.
    unsafe {
        std::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            inout("rdx") result,
            in("rax") args.as_ptr(),
            out("rdi") _,
            options(nostack, preserves_flags),
        );
    }
    let _ = result;
}

/// Everything this thread did before is ordered before what a thread does after a
/// matching [`happens_after`] on the same address.
#[inline(always)]
pub(crate) fn happens_before<T>(_addr: &T) {
    #[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
    client_request(SEND_PRE, _addr as *const T as usize, 0);
}

/// See [`happens_before`].
#[inline(always)]
pub(crate) fn happens_after<T>(_addr: &T) {
    #[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
    client_request(RECV_POST, _addr as *const T as usize, 0);
}

/// `atomic` is only ever accessed atomically: the detectors, which see its loads and
/// stores as plain ones, are told not to report them (the data they order is still
/// checked).
#[inline(always)]
pub(crate) fn atomic_word<T>(_atomic: &T) {
    #[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
    {
        let addr = _atomic as *const T as usize;
        client_request(DRD_IGNORE, addr, std::mem::size_of::<T>());
        client_request(HG_UNTRACK, addr, std::mem::size_of::<T>());
    }
}
