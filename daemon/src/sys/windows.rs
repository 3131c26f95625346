//! The Windows side of [`crate::sys`]: owner-only DACLs instead of modes,
//! DPAPI for the at-rest key, a named pipe that admits only this user's
//! SID, and console control events instead of signals.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Seek};
use std::os::windows::io::IntoRawHandle;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use credcache_shared::windows::{self as win, Create, SecurityAttributes};
use interprocess::local_socket::tokio::{Listener, Stream};
use interprocess::local_socket::traits::StreamCommon;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::windows::local_socket::ListenerOptionsExt;
use interprocess::os::windows::security_descriptor::{
    AsSecurityDescriptorExt, BorrowedSecurityDescriptor,
};
use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_ACCESS_DENIED, ERROR_FILE_NOT_FOUND, ERROR_PIPE_BUSY, HANDLE, LocalFree,
};
use windows_sys::Win32::Security::Cryptography::{
    CRYPT_INTEGER_BLOB, CRYPTPROTECT_UI_FORBIDDEN, CryptProtectData, CryptUnprotectData,
};
use windows_sys::Win32::System::Console::{GetStdHandle, STD_OUTPUT_HANDLE, SetStdHandle};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectExtendedLimitInformation,
    SetInformationJobObject, TerminateJobObject,
};
use windows_sys::Win32::System::Pipes::WaitNamedPipeW;
use windows_sys::Win32::System::Threading::{CREATE_NEW_PROCESS_GROUP, CREATE_NO_WINDOW};
use zeroize::Zeroizing;

/// Nothing to do at start: files get their DACL as they are created, and
/// a detached daemon was started without a console by the client.
pub fn harden(_detach: bool) -> Option<String> {
    None
}

/// `status`'s `dumpable` means "could not make itself non-dumpable";
/// Windows has no such setting to fail (docs/machine-interface.md).
pub fn dumpable() -> bool {
    false
}

/// Points stdout at `NUL` and closes the readiness pipe the client gave
/// us, so nothing later can write into it.
pub fn release_stdout() {
    let Ok(null) = File::options().write(true).open("NUL") else {
        return;
    };
    // SAFETY: swapping the process's standard output handle; the old one
    // is ours (inherited for this purpose) and closed once replaced.
    unsafe {
        let old = GetStdHandle(STD_OUTPUT_HANDLE);
        if SetStdHandle(STD_OUTPUT_HANDLE, null.into_raw_handle() as HANDLE) != 0 && !old.is_null()
        {
            CloseHandle(old);
        }
    }
}

/// Opens (creating it with an owner-only DACL if missing) a private file.
pub fn open_private(path: &Path) -> io::Result<File> {
    win::open_private_file(path, Create::OpenOrCreate)
}

/// Opens a private file for appending (the log).
pub fn open_private_append(path: &Path) -> io::Result<File> {
    let mut file = win::open_private_file(path, Create::OpenOrCreate)?;
    file.seek(io::SeekFrom::End(0))?;
    Ok(file)
}

/// Creates a new private file that must not exist yet.
pub fn create_new_private(path: &Path) -> io::Result<File> {
    win::open_private_file(path, Create::New)
}

/// The DACL was set at creation; a key copied in from elsewhere is sealed
/// to its own user and machine by DPAPI, so there is nothing to warn of.
pub fn loose_file_warning(_path: &Path) -> Option<String> {
    None
}

/// Nothing to do: the Windows heap has no per-thread arenas to cap.
pub fn one_malloc_arena() {}

/// How the at-rest key file is protected, for `status` (after its path).
pub const KEY_PROTECTION: &str = "sealed with DPAPI for this user";

/// Seals the at-rest key with DPAPI for the current user: a copy of the
/// file on another machine or account does not open.
pub fn protect_key(key: &[u8]) -> io::Result<Vec<u8>> {
    dpapi(key, true).map(|out| out.to_vec())
}

/// Unseals a key [`protect_key`] wrote; `Err` says why it cannot be used.
pub fn unprotect_key(bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    dpapi(bytes, false).map_err(|e| format!("DPAPI cannot unseal it for this user ({e})"))
}

fn dpapi(input: &[u8], protect: bool) -> io::Result<Zeroizing<Vec<u8>>> {
    let len = u32::try_from(input.len()).map_err(io::Error::other)?;
    let data_in = CRYPT_INTEGER_BLOB {
        cbData: len,
        pbData: input.as_ptr().cast_mut(),
    };
    let mut out = CRYPT_INTEGER_BLOB {
        cbData: 0,
        pbData: std::ptr::null_mut(),
    };
    let description = win::wide(OsStr::new("credcache cache key"));
    // SAFETY: `data_in` points at `input`, alive across the call; `out` is
    // LocalAlloc'd by the call and freed below after copying.
    let ok = unsafe {
        if protect {
            CryptProtectData(
                &data_in,
                description.as_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                std::ptr::null(),
                CRYPTPROTECT_UI_FORBIDDEN,
                &mut out,
            )
        } else {
            CryptUnprotectData(
                &data_in,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
                std::ptr::null(),
                CRYPTPROTECT_UI_FORBIDDEN,
                &mut out,
            )
        }
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the call returned `cbData` bytes at `pbData`.
    let bytes = unsafe {
        let slice = std::slice::from_raw_parts_mut(out.pbData, out.cbData as usize);
        let copy = Zeroizing::new(slice.to_vec());
        slice.iter_mut().for_each(|b| *b = 0);
        LocalFree(out.pbData.cast());
        copy
    };
    Ok(bytes)
}

/// Size and mtime (no inode on Windows: 0).
pub fn file_stamp(meta: &std::fs::Metadata) -> (u64, i64, i64, u64) {
    let (secs, nanos) = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or((0, 0), |d| {
            (d.as_secs() as i64, i64::from(d.subsec_nanos()))
        });
    (meta.len(), secs, nanos, 0)
}

/// This process's user SID, looked up once.
fn my_sid() -> io::Result<&'static str> {
    static SID: OnceLock<String> = OnceLock::new();
    if let Some(sid) = SID.get() {
        return Ok(sid);
    }
    let sid = win::current_user_sid()?;
    Ok(SID.get_or_init(|| sid))
}

/// Whether the client process (`GetNamedPipeClientProcessId`) runs as
/// this user: its token's user SID must be ours.
pub fn check_peer(stream: &Stream) -> Result<(), String> {
    let mine =
        my_sid().map_err(|e| format!("refused a connection: cannot read our own SID: {e}"))?;
    let pid = match stream.peer_creds().map(|c| c.pid()) {
        Ok(Some(pid)) => pid,
        Ok(None) => return Err("refused a connection whose client process is unknown".to_owned()),
        Err(e) => {
            return Err(format!(
                "refused a connection whose peer cannot be identified: {e}"
            ));
        }
    };
    match win::process_user_sid(pid) {
        Ok(sid) if sid == mine => Ok(()),
        Ok(sid) => Err(format!(
            "refused a connection from another user (client pid {pid}, SID {sid})"
        )),
        Err(e) => Err(format!(
            "refused a connection whose user cannot be read (client pid {pid}): {e}"
        )),
    }
}

/// A helper program runs without a console window flashing up and in a
/// process group of its own (Ctrl-C at our console does not reach it).
pub fn isolate_child(command: &mut tokio::process::Command) {
    command.creation_flags(CREATE_NO_WINDOW | CREATE_NEW_PROCESS_GROUP);
}

/// The program and every process it starts, held in a Job Object: the
/// Windows twin of the Unix process group, which Windows does not have
/// for killing. The job kills whatever is left in it if the daemon dies
/// holding it (`JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`).
pub struct ChildGroup(HANDLE);

// SAFETY: a job handle is a kernel handle, usable from any thread.
unsafe impl Send for ChildGroup {}
unsafe impl Sync for ChildGroup {}

impl ChildGroup {
    /// A job holding `child`, or `None` if one cannot be made (then only
    /// the program itself is killed, by `kill_on_drop`). The program runs
    /// for a moment before it is assigned: a process it starts in that
    /// moment is outside the job. (Starting it suspended would close the
    /// gap, but std and tokio cannot resume a process they started.)
    pub fn of(child: &tokio::process::Child) -> Option<Self> {
        let process = child.raw_handle()?;
        // SAFETY: plain calls; the job handle is owned by the ChildGroup
        // from here, and `process` is the child's open handle.
        unsafe {
            let job = CreateJobObjectW(std::ptr::null(), std::ptr::null());
            if job.is_null() {
                return None;
            }
            let group = Self(job);
            if !group.set_limits(JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE)
                || AssignProcessToJobObject(job, process.cast()) == 0
            {
                tracing::debug!(
                    "cannot put a helper program in a job object: {}",
                    io::Error::last_os_error()
                );
                return None;
            }
            Some(group)
        }
    }

    fn set_limits(&self, flags: u32) -> bool {
        let mut info = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
        info.BasicLimitInformation.LimitFlags = flags;
        // SAFETY: `info` is the structure the class names, of its size.
        unsafe {
            SetInformationJobObject(
                self.0,
                JobObjectExtendedLimitInformation,
                (&raw const info).cast(),
                size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
            ) != 0
        }
    }

    /// Kills every process in the job.
    pub fn kill(self) {
        // SAFETY: our job handle, closed by drop.
        unsafe { TerminateJobObject(self.0, 1) };
    }

    /// Lets the processes left in the job live on (a daemon the program
    /// started, which let go of its output), as a Unix process group
    /// that is not signalled does.
    pub fn release(self) {
        self.set_limits(0);
    }
}

impl Drop for ChildGroup {
    fn drop(&mut self) {
        // SAFETY: our job handle. With the kill-on-close limit still set,
        // this also ends whatever is left in it.
        unsafe { CloseHandle(self.0) };
    }
}

/// The program to start for `name`: a bare name is looked up on PATH with
/// the extensions of PATHEXT, so `az` finds `az.cmd` (std only tries
/// `.exe`). std runs a `.cmd`/`.bat` through cmd.exe, quoting the
/// arguments for it (or refusing ones it cannot quote safely).
pub fn program_path(name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.components().count() > 1 {
        return p.to_path_buf();
    }
    let Some(path) = std::env::var_os("PATH") else {
        return p.to_path_buf();
    };
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .flat_map(|dir| executable_names(name).into_iter().map(move |n| dir.join(n)))
        .find(|candidate| is_executable(candidate))
        .unwrap_or_else(|| p.to_path_buf())
}

/// Whether `p` is a file Windows would run: one with a PATHEXT extension.
pub fn is_executable(p: &Path) -> bool {
    let runnable = p.extension().is_some_and(|ext| {
        let ext = format!(".{}", ext.to_string_lossy());
        extensions().iter().any(|e| e.eq_ignore_ascii_case(&ext))
    });
    runnable && p.is_file()
}

/// The names `program` may have on disk: itself if it has an extension,
/// else with each of PATHEXT's (`az` is `az.exe`, `az.cmd`, ...).
pub fn executable_names(program: &str) -> Vec<String> {
    if Path::new(program).extension().is_some() {
        return vec![program.to_owned()];
    }
    extensions()
        .iter()
        .map(|ext| format!("{program}{}", ext.to_ascii_lowercase()))
        .collect()
}

fn extensions() -> Vec<String> {
    let pathext = std::env::var("PATHEXT").unwrap_or_default();
    let list: Vec<String> = pathext
        .split(';')
        .filter(|e| e.starts_with('.') && e.len() > 1)
        .map(str::to_owned)
        .collect();
    if list.is_empty() {
        [".COM", ".EXE", ".BAT", ".CMD"].map(str::to_owned).to_vec()
    } else {
        list
    }
}

/// A future that resolves when the daemon is asked to stop: Ctrl-C or
/// Ctrl-Break at its console, the console closed, the user logging off,
/// the system shutting down. Each is logged as it comes.
pub fn terminated() -> io::Result<impl Future<Output = ()> + Send> {
    use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close, ctrl_logoff, ctrl_shutdown};
    let mut c = ctrl_c()?;
    let mut brk = ctrl_break()?;
    let mut close = ctrl_close()?;
    let mut logoff = ctrl_logoff()?;
    let mut shutdown = ctrl_shutdown()?;
    Ok(async move {
        tokio::select! {
            _ = c.recv() => tracing::info!("Ctrl-C: shutting down"),
            _ = brk.recv() => tracing::info!("Ctrl-Break: shutting down"),
            _ = close.recv() => tracing::info!("console closed: shutting down"),
            _ = logoff.recv() => tracing::info!("logoff: shutting down"),
            _ = shutdown.recv() => tracing::info!("system shutdown: shutting down"),
        }
    })
}

/// Windows has no SIGHUP: `credcache daemon reload` asks over the pipe.
pub fn reload_on_hangup(_reload: impl Fn() + Send + 'static) -> io::Result<()> {
    Ok(())
}

/// Whether a pipe of this name exists now (served by anything, busy or not).
pub fn pipe_exists(path: &Path) -> bool {
    let name = win::wide(path.as_os_str());
    // SAFETY: `name` is NUL-terminated. 1 ms: only "is it there" is asked.
    if unsafe { WaitNamedPipeW(name.as_ptr(), 1) } != 0 {
        return true;
    }
    io::Error::last_os_error().raw_os_error() != Some(ERROR_FILE_NOT_FOUND as i32)
}

/// Creates the daemon's named pipe: a DACL that admits only this user's
/// SID, remote clients rejected, the first instance created exclusively
/// (`FILE_FLAG_FIRST_PIPE_INSTANCE`; interprocess sets both flags). The
/// caller holds the daemon lock, so a pipe that already exists is not our
/// daemon's: another program (or user) got there first, and serving
/// beside it would let it answer our clients. That is a refusal to start.
pub fn bind(path: &Path) -> io::Result<Listener> {
    let squatted = || {
        io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "{} already exists and is not served by this user's daemon: another program holds that pipe name \
                 (named-pipe squatting?); refusing to start. Stop that program, or set CREDCACHE_SOCKET to another name",
                path.display()
            ),
        )
    };
    if pipe_exists(path) {
        return Err(squatted());
    }
    let sid = win::current_user_sid()?;
    // GA: generic all, for this user's SID only; protected (P): nothing
    // inherited. No ACE for anyone else, not even administrators.
    let attributes = SecurityAttributes::from_sddl(&format!("D:P(A;;GA;;;{sid})"))?;
    // SAFETY: a valid self-relative descriptor, alive across the copy.
    let descriptor =
        unsafe { BorrowedSecurityDescriptor::from_ptr(attributes.descriptor()) }.to_owned_sd()?;
    let name = path.to_fs_name::<GenericFilePath>()?;
    ListenerOptions::new()
        .name(name)
        .security_descriptor(descriptor)
        .create_tokio()
        .map_err(|e| match e.raw_os_error().map(|c| c as u32) {
            Some(ERROR_ACCESS_DENIED | ERROR_PIPE_BUSY) => squatted(),
            _ => e,
        })
}

/// Where an opened file really is: its canonical path (Windows resolves
/// links at open as well).
pub fn opened_path(_file: &File, path: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(path).ok()
}

/// Files under the data directory inherit its owner-only DACL.
pub fn restrict_tree(_dir: &Path, _entries: &[(PathBuf, bool)]) {}

/// No service manager passes sockets on Windows: the daemon always makes
/// its own pipe, and has no one to notify.
pub mod systemd {
    /// Never made: nothing passes a listener on Windows.
    #[derive(Debug)]
    pub enum Activated {}

    /// There is never an activated socket.
    pub fn take_activated_socket() -> Result<Option<Activated>, std::convert::Infallible> {
        Ok(None)
    }

    /// Nothing to notify.
    pub fn notify_ready(_socket: &std::path::Path) {}

    /// Nothing to notify.
    pub fn notify_stopping() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_named_with_pathext() {
        let names = executable_names("az");
        assert!(names.contains(&"az.cmd".to_owned()), "{names:?}");
        assert!(names.contains(&"az.exe".to_owned()), "{names:?}");
        assert_eq!(executable_names("az.cmd"), ["az.cmd"]);
        assert!(!is_executable(Path::new("C:\\nowhere\\az.cmd")));
    }

    #[tokio::test]
    async fn a_pipe_that_exists_already_is_never_served_beside() {
        let name = format!(r"\\.\pipe\credcache-test-{}", std::process::id());
        let path = Path::new(&name);
        assert!(!pipe_exists(path));
        let _ours = bind(path).unwrap();
        assert!(pipe_exists(path));
        let e = bind(path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains("refusing to start"), "{e}");
    }

    #[test]
    fn dpapi_round_trips_and_refuses_garbage() {
        let sealed = protect_key(&[7u8; 32]).unwrap();
        assert_ne!(sealed.len(), 32);
        assert_eq!(unprotect_key(&sealed).unwrap().as_slice(), &[7u8; 32]);
        let e = unprotect_key(b"not a DPAPI blob").unwrap_err();
        assert!(e.contains("DPAPI cannot unseal it"), "{e}");
    }
}
