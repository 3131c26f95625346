//! The Windows side of [`crate::sys`]: processes by pid through process
//! handles, console control events instead of signals, `exec` as spawn,
//! wait and exit, and a deadline on the daemon's pipe through
//! `PeekNamedPipe`.

use std::fs::File;
use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle};
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use interprocess::local_socket::Stream;
use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_BROKEN_PIPE, ERROR_INVALID_PARAMETER, HANDLE, STILL_ACTIVE,
};
use windows_sys::Win32::System::Console::{CTRL_BREAK_EVENT, CTRL_C_EVENT, SetConsoleCtrlHandler};
use windows_sys::Win32::System::Pipes::PeekNamedPipe;
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_TERMINATE,
    TerminateProcess,
};

/// Closes a process handle when dropped.
struct Process(HANDLE);

impl Process {
    fn open(pid: u32, access: u32) -> io::Result<Self> {
        if pid == 0 {
            return Err(io::Error::from_raw_os_error(ERROR_INVALID_PARAMETER as i32));
        }
        // SAFETY: plain call; the handle is checked, then owned.
        let h = unsafe { OpenProcess(access, 0, pid) };
        if h.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(Self(h))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: a handle we opened.
        unsafe { CloseHandle(self.0) };
    }
}

/// Whether a process with this pid exists and has not exited.
pub fn process_alive(raw: u32) -> bool {
    let Ok(p) = Process::open(raw, PROCESS_QUERY_LIMITED_INFORMATION) else {
        return false;
    };
    let mut code = 0u32;
    // SAFETY: a valid process handle.
    unsafe { GetExitCodeProcess(p.0, &mut code) != 0 && code == STILL_ACTIVE as u32 }
}

/// Ends a daemon that cannot be asked over the pipe (it speaks another
/// protocol version): Windows has no SIGTERM to send another process.
pub fn terminate(raw: u32) -> io::Result<()> {
    let p = Process::open(raw, PROCESS_TERMINATE)?;
    // SAFETY: a valid process handle opened for termination.
    if unsafe { TerminateProcess(p.0, 1) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `terminate` failed because the process is gone already.
pub fn is_no_such_process(e: &io::Error) -> bool {
    e.raw_os_error() == Some(ERROR_INVALID_PARAMETER as i32)
}

/// Ctrl-C and Ctrl-Break go to every process attached to the console,
/// `exec`'s child included: this process only has to survive them and
/// wait for the child's exit code, as a Unix shell's foreground job does.
unsafe extern "system" fn ignore_ctrl(event: u32) -> windows_sys::core::BOOL {
    i32::from(event == CTRL_C_EVENT || event == CTRL_BREAK_EVENT)
}

/// Console events while `exec` runs its child: installed before the spawn.
pub struct SignalForwarding {
    forwarding: bool,
}

impl SignalForwarding {
    /// Installs the console handler.
    pub fn install() -> Self {
        // SAFETY: a handler that only compares an integer.
        unsafe { SetConsoleCtrlHandler(Some(ignore_ctrl), 1) };
        Self { forwarding: false }
    }

    /// The child shares our console and gets the events itself.
    pub fn forward_to(mut self, _child: u32) {
        self.forwarding = true;
    }
}

impl Drop for SignalForwarding {
    fn drop(&mut self) {
        if !self.forwarding {
            // SAFETY: removes the handler installed above.
            unsafe { SetConsoleCtrlHandler(Some(ignore_ctrl), 0) };
        }
    }
}

/// The exit code of a finished child, as far as a u8 carries it (Windows
/// codes are 32-bit: a larger one is 1).
pub fn exit_code_of(status: ExitStatus) -> u8 {
    status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(1)
}

/// Windows cannot replace a process: runs `command`, waits, and exits with
/// its code. Returns only if it cannot be started.
pub fn exec(command: &mut Command) -> io::Error {
    let forwarding = SignalForwarding::install();
    match command.spawn() {
        Ok(mut child) => {
            forwarding.forward_to(child.id());
            let code = child.wait().map(exit_code_of).unwrap_or(1);
            crate::start::finish();
            std::process::exit(i32::from(code))
        }
        Err(e) => e,
    }
}

/// Nothing to do for `Command` here: the daemon is started through
/// `spawn_detached`, which passes it no handle of ours.
pub fn keep_only_stdio(_command: &mut Command) {}

/// Opens (creating it with an owner-only DACL) the start lock.
pub fn open_private(path: &Path) -> io::Result<File> {
    credcache_shared::windows::open_private_file(
        path,
        credcache_shared::windows::Create::OpenOrCreate,
    )
}

/// Windows has no mode bits: a file the client writes keeps the DACL it
/// inherits from its directory (the user's profile is the user's).
pub fn set_mode(_file: &File, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// No mode bits on Windows: a merged kubeconfig is written as private.
pub fn mode_of(_meta: &std::fs::Metadata) -> u32 {
    0o600
}

/// Creates a new file with an owner-only DACL; it must not exist yet.
pub fn create_new_private(path: &Path) -> io::Result<File> {
    credcache_shared::windows::open_private_file(path, credcache_shared::windows::Create::New)
}

fn pipe_handle(stream: &Stream) -> HANDLE {
    let Stream::NamedPipe(pipe) = stream;
    pipe.as_handle().as_raw_handle() as HANDLE
}

/// Waits until the pipe has something to read, or the daemon closed it
/// (the read then says so); false if `timeout` passed first. A
/// synchronous pipe cannot be polled with a deadline, so this peeks, with
/// a pause that grows from 50 µs to 5 ms: a cached answer is seen within
/// microseconds, a slow fetch costs little CPU.
pub fn readable_within(stream: &Stream, timeout: Duration) -> io::Result<bool> {
    let handle = pipe_handle(stream);
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(50);
    loop {
        let mut available = 0u32;
        // SAFETY: a valid pipe handle; only the count is asked for.
        let ok = unsafe {
            PeekNamedPipe(
                handle,
                std::ptr::null_mut(),
                0,
                std::ptr::null_mut(),
                &mut available,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            let e = io::Error::last_os_error();
            // Closed by the daemon: readable, and the read reports it.
            if e.raw_os_error() == Some(ERROR_BROKEN_PIPE as i32) {
                return Ok(true);
            }
            return Err(e);
        }
        if available > 0 {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// Reads what the pipe has into `buf`'s spare capacity; `Ok(0)` at end.
pub fn read_spare(stream: &Stream, buf: &mut Vec<u8>) -> io::Result<usize> {
    use std::io::Read;
    let start = buf.len();
    buf.resize(buf.capacity().max(start + 1), 0);
    let mut reader: &Stream = stream;
    let read = reader.read(&mut buf[start..]);
    let n = match read {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(ERROR_BROKEN_PIPE as i32) => 0,
        Err(e) => {
            buf.truncate(start);
            return Err(e);
        }
    };
    buf.truncate(start + n);
    Ok(n)
}

/// Pipes have no receive timeout: every wait goes through
/// [`readable_within`] instead.
pub fn set_recv_timeout(_stream: &Stream, _timeout: Option<Duration>) -> io::Result<()> {
    Ok(())
}
