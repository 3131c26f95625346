//! The Windows side of [`crate::sys`]: processes by pid through process
//! handles, console control events instead of signals, `exec` as spawn,
//! wait and exit, and a deadline on the daemon's pipe through
//! `PeekNamedPipe`.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{AsHandle, AsRawHandle};
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use interprocess::local_socket::Stream;
use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_BROKEN_PIPE, ERROR_INVALID_PARAMETER, HANDLE, HANDLE_FLAG_INHERIT,
    STILL_ACTIVE, SetHandleInformation,
};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
use windows_sys::Win32::System::Console::{CTRL_BREAK_EVENT, CTRL_C_EVENT, SetConsoleCtrlHandler};
use windows_sys::Win32::System::Pipes::{CreatePipe, PeekNamedPipe};
use windows_sys::Win32::System::Threading::{
    CREATE_NEW_PROCESS_GROUP, CREATE_NO_WINDOW, CREATE_UNICODE_ENVIRONMENT, CreateProcessW,
    DETACHED_PROCESS, DeleteProcThreadAttributeList, EXTENDED_STARTUPINFO_PRESENT,
    GetExitCodeProcess, INFINITE, InitializeProcThreadAttributeList, OpenProcess,
    PROC_THREAD_ATTRIBUTE_HANDLE_LIST, PROCESS_INFORMATION, PROCESS_QUERY_LIMITED_INFORMATION,
    PROCESS_TERMINATE, STARTF_USESTDHANDLES, STARTUPINFOEXW, TerminateProcess,
    UpdateProcThreadAttribute, WaitForSingleObject,
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

/// A daemon started by [`spawn_detached`], until it reports.
pub struct Daemon {
    process: HANDLE,
    stdout: Option<File>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: the process handle CreateProcessW gave us.
        unsafe { CloseHandle(self.process) };
    }
}

impl Daemon {
    /// The read end of its readiness pipe.
    pub fn take_stdout(&mut self) -> Option<File> {
        self.stdout.take()
    }

    /// Kills it (it is stuck) and waits until it is gone.
    pub fn kill_and_wait(&mut self) {
        // SAFETY: a valid process handle with all access.
        unsafe {
            TerminateProcess(self.process, 1);
            WaitForSingleObject(self.process, INFINITE);
        }
    }

    /// How it exited, if it has; never blocks.
    pub fn try_wait(&mut self) -> Option<String> {
        let mut code = 0u32;
        // SAFETY: a valid process handle.
        let ok = unsafe { GetExitCodeProcess(self.process, &mut code) } != 0;
        (ok && code != STILL_ACTIVE as u32).then(|| format!("exit code: {code}"))
    }
}

/// One argument quoted for `CommandLineToArgvW` (and the C runtime), as
/// std does it for `Command`.
fn quote_arg(arg: &OsStr, out: &mut Vec<u16>) {
    let arg: Vec<u16> = arg.encode_wide().collect();
    let needs = arg.is_empty()
        || arg
            .iter()
            .any(|&c| c == u16::from(b' ') || c == u16::from(b'\t') || c == u16::from(b'"'));
    if !needs {
        out.extend(arg);
        return;
    }
    out.push(u16::from(b'"'));
    let mut backslashes = 0;
    for c in arg {
        if c == u16::from(b'\\') {
            backslashes += 1;
        } else {
            if c == u16::from(b'"') {
                // Escape the backslashes before a quote, and the quote.
                out.extend(std::iter::repeat_n(u16::from(b'\\'), backslashes + 1));
            }
            backslashes = 0;
        }
        out.push(c);
    }
    // Backslashes before the closing quote are doubled.
    out.extend(std::iter::repeat_n(u16::from(b'\\'), backslashes));
    out.push(u16::from(b'"'));
}

/// Starts `program args…` as the detached daemon: no console
/// (`DETACHED_PROCESS`, `CREATE_NO_WINDOW`), its own process group (a
/// Ctrl-C at our console does not reach it), stdin and stderr on `NUL`,
/// stdout the write end of the readiness pipe, and exactly those handles
/// inherited (`PROC_THREAD_ATTRIBUTE_HANDLE_LIST`). `std::process::Command`
/// would pass every inheritable handle of ours, our stdout among them, and
/// `$(credcache get …)` would then wait for the daemon to exit.
pub fn spawn_detached(program: &Path, args: &[&OsStr]) -> io::Result<Daemon> {
    use std::os::windows::io::{FromRawHandle, RawHandle};

    let inheritable = SECURITY_ATTRIBUTES {
        nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: std::ptr::null_mut(),
        bInheritHandle: 1,
    };
    let (mut read, mut write): (HANDLE, HANDLE) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: out-pointers to two handles; both are owned below.
    if unsafe { CreatePipe(&mut read, &mut write, &inheritable, 0) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh handles that nothing else owns.
    let (read, write) = unsafe {
        (
            File::from_raw_handle(read as RawHandle),
            File::from_raw_handle(write as RawHandle),
        )
    };
    // Only the write end goes to the child.
    // SAFETY: a valid handle of ours.
    unsafe { SetHandleInformation(read.as_raw_handle() as HANDLE, HANDLE_FLAG_INHERIT, 0) };
    let null = File::options().read(true).write(true).open("NUL")?;
    // SAFETY: a valid handle of ours, made inheritable for the child only
    // through the handle list below.
    unsafe {
        SetHandleInformation(
            null.as_raw_handle() as HANDLE,
            HANDLE_FLAG_INHERIT,
            HANDLE_FLAG_INHERIT,
        )
    };
    let handles: [HANDLE; 2] = [
        write.as_raw_handle() as HANDLE,
        null.as_raw_handle() as HANDLE,
    ];

    let mut size = 0usize;
    // SAFETY: asking for the size of a one-attribute list.
    unsafe { InitializeProcThreadAttributeList(std::ptr::null_mut(), 1, 0, &mut size) };
    let mut list = vec![0u64; size.div_ceil(8)];
    let list_ptr = list.as_mut_ptr().cast::<std::ffi::c_void>();
    // SAFETY: `list` holds `size` bytes, aligned.
    if unsafe { InitializeProcThreadAttributeList(list_ptr, 1, 0, &mut size) } == 0 {
        return Err(io::Error::last_os_error());
    }
    struct List(*mut std::ffi::c_void);
    impl Drop for List {
        fn drop(&mut self) {
            // SAFETY: initialized above.
            unsafe { DeleteProcThreadAttributeList(self.0) };
        }
    }
    let _list = List(list_ptr);
    // SAFETY: `handles` outlives CreateProcessW below.
    if unsafe {
        UpdateProcThreadAttribute(
            list_ptr,
            0,
            PROC_THREAD_ATTRIBUTE_HANDLE_LIST as usize,
            handles.as_ptr().cast(),
            size_of_val(&handles),
            std::ptr::null_mut(),
            std::ptr::null(),
        )
    } == 0
    {
        return Err(io::Error::last_os_error());
    }

    // SAFETY: plain-old-data structures, zero is their empty value.
    let mut startup: STARTUPINFOEXW = unsafe { std::mem::zeroed() };
    startup.StartupInfo.cb = size_of::<STARTUPINFOEXW>() as u32;
    startup.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    startup.StartupInfo.hStdInput = handles[1];
    startup.StartupInfo.hStdOutput = handles[0];
    startup.StartupInfo.hStdError = handles[1];
    startup.lpAttributeList = list_ptr;

    let application = credcache_shared::windows::wide(program.as_os_str());
    let mut command_line = Vec::new();
    quote_arg(program.as_os_str(), &mut command_line);
    for arg in args {
        command_line.push(u16::from(b' '));
        quote_arg(arg, &mut command_line);
    }
    command_line.push(0);
    // SAFETY: zero is the empty value.
    let mut info: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
    // A path without a directory is looked up on PATH by CreateProcessW
    // itself (lpApplicationName null).
    let has_dir = program.components().count() > 1;
    // SAFETY: every pointer is valid for the call; the command line is
    // mutable and NUL-terminated, as CreateProcessW requires.
    let ok = unsafe {
        CreateProcessW(
            if has_dir {
                application.as_ptr()
            } else {
                std::ptr::null()
            },
            command_line.as_mut_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            1,
            DETACHED_PROCESS
                | CREATE_NEW_PROCESS_GROUP
                | CREATE_NO_WINDOW
                | EXTENDED_STARTUPINFO_PRESENT
                | CREATE_UNICODE_ENVIRONMENT,
            std::ptr::null(),
            std::ptr::null(),
            &startup.StartupInfo,
            &mut info,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the thread handle is ours and not needed.
    unsafe { CloseHandle(info.hThread) };
    // Our copy of the write end goes now, so the read sees end-of-file if
    // the daemon exits without a word.
    drop(write);
    drop(null);
    Ok(Daemon {
        process: info.hProcess,
        stdout: Some(read),
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_quoted_as_the_c_runtime_reads_them() {
        let q = |a: &str| {
            let mut out = Vec::new();
            quote_arg(OsStr::new(a), &mut out);
            String::from_utf16(&out).unwrap()
        };
        assert_eq!(q("--detach"), "--detach");
        assert_eq!(q(""), "\"\"");
        assert_eq!(
            q(r"C:\Program Files\x.toml"),
            r#""C:\Program Files\x.toml""#
        );
        assert_eq!(q(r#"a"b"#), r#""a\"b""#);
        assert_eq!(q(r"a b\"), r#""a b\\""#);
    }

    #[test]
    fn this_process_is_alive_and_pid_0_is_not() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(0));
        assert!(is_no_such_process(&terminate(0).unwrap_err()));
    }
}
