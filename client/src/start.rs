//! What the client does before `main`'s work, in place of std's runtime
//! set-up (`std::rt::lang_start`), which the binary skips (`#![no_main]`).
//!
//! std's set-up costs about a quarter of a cached `credcache get` in
//! instructions (BENCHMARKS.md, client): to know the main thread's stack
//! for its stack-overflow message it calls `pthread_getattr_np`, which
//! reads and `sscanf`s `/proc/self/maps`, then installs a SIGSEGV handler
//! on an alternate stack. The client keeps the two parts that matter to
//! it: descriptors 0–2 are open before anything else is, and SIGPIPE is
//! ignored (so a closed stdout is an error `output` turns into exit 0).
//! It gives up the "has overflowed its stack" message (a stack overflow is
//! a plain SIGSEGV) and the main thread's name in a panic message.
//!
//! `std::env::args_os` still works: on Linux with glibc std takes argv
//! from an `.init_array` constructor, not from `lang_start`. Children
//! (`exec`, the daemon auto-start spawns) get SIGPIPE back at its default,
//! as std resets it in every child it spawns.

use std::io::Write;

/// Windows: std's own runtime set-up runs (the binary has a normal
/// `main` there), and there are neither descriptors nor SIGPIPE to fix.
#[cfg(windows)]
pub fn init() {}

/// std's checks before `main`: runs first in the C `main`.
#[cfg(unix)]
pub fn init() {
    open_standard_descriptors();
    // SAFETY: setting a disposition, no handler of ours runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// What std's runtime does after `main` returns: flush stdout, whose
/// buffer a `print!` without a newline may still hold.
pub fn finish() {
    let _ = std::io::stdout().flush();
}

/// Opens `/dev/null` on any of 0, 1 and 2 that is closed, as std does, so
/// that no socket or file the client opens becomes "stdout" and gets a
/// token written into it.
#[cfg(unix)]
fn open_standard_descriptors() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    loop {
        // SAFETY: three valid pollfd entries, no timeout.
        let ret = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) };
        if ret >= 0 {
            break;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // poll refused (resource limits): ask each descriptor instead.
            for pfd in &mut fds {
                // SAFETY: F_GETFD on any number only reads.
                if unsafe { libc::fcntl(pfd.fd, libc::F_GETFD) } == -1 {
                    pfd.revents = libc::POLLNVAL;
                }
            }
            break;
        }
    }
    for pfd in fds {
        if pfd.revents & libc::POLLNVAL != 0 {
            // SAFETY: a constant C string; the lowest free descriptor, which
            // is this one, is the one it gets.
            let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if fd == -1 {
                std::process::abort();
            }
        }
    }
}
