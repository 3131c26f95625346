//! The Win32 calls both binaries need and std does not offer: who the
//! current user is (name and SID), which user runs another process, and
//! files and directories created with an owner-only DACL (the Windows form
//! of modes 0600 and 0700, applied at creation, never after).

use std::ffi::{OsStr, OsString, c_void};
use std::fs::File;
use std::io;
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::os::windows::io::{FromRawHandle, RawHandle};
use std::path::Path;
use std::ptr;

use windows_sys::Win32::Foundation::{
    CloseHandle, GENERIC_READ, GENERIC_WRITE, HANDLE, INVALID_HANDLE_VALUE, LocalFree,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    GetTokenInformation, PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES, TOKEN_QUERY, TOKEN_USER,
    TokenUser,
};
use windows_sys::Win32::Storage::FileSystem::{
    CREATE_NEW, CreateDirectoryW, CreateFileW, FILE_ATTRIBUTE_NORMAL, FILE_SHARE_DELETE,
    FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_ALWAYS,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
};
use windows_sys::Win32::System::WindowsProgramming::GetUserNameW;

/// A NUL-terminated UTF-16 copy of `s`, as Win32 wants names.
pub fn wide(s: &OsStr) -> Vec<u16> {
    s.encode_wide().chain(Some(0)).collect()
}

/// The current user's logon name, as `GetUserNameW` gives it (the
/// `<user>` of the default pipe name).
pub fn user_name() -> io::Result<String> {
    let mut buf = vec![0u16; 257];
    let mut len = buf.len() as u32;
    // SAFETY: `buf` holds `len` u16s; on success `len` counts the NUL.
    if unsafe { GetUserNameW(buf.as_mut_ptr(), &mut len) } == 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(len.saturating_sub(1) as usize);
    Ok(OsString::from_wide(&buf).to_string_lossy().into_owned())
}

/// Closes a handle when dropped.
struct Handle(HANDLE);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: a handle we opened and own.
        unsafe { CloseHandle(self.0) };
    }
}

/// The SID (`S-1-5-21-…`) of the user the current process runs as.
pub fn current_user_sid() -> io::Result<String> {
    // SAFETY: the pseudo-handle of this process needs no closing.
    token_user_sid(unsafe { GetCurrentProcess() })
}

/// The SID of the user process `pid` runs as: the peer check behind a
/// named pipe (`GetNamedPipeClientProcessId` gives the pid).
pub fn process_user_sid(pid: u32) -> io::Result<String> {
    // SAFETY: plain call; the handle is checked and closed by `Handle`.
    let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if process.is_null() {
        return Err(io::Error::last_os_error());
    }
    let process = Handle(process);
    token_user_sid(process.0)
}

fn token_user_sid(process: HANDLE) -> io::Result<String> {
    let mut token: HANDLE = ptr::null_mut();
    // SAFETY: `process` is a valid process handle; `token` receives ours.
    if unsafe { OpenProcessToken(process, TOKEN_QUERY, &mut token) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let token = Handle(token);
    let mut needed = 0u32;
    // SAFETY: asking for the size only.
    unsafe { GetTokenInformation(token.0, TokenUser, ptr::null_mut(), 0, &mut needed) };
    if needed == 0 {
        return Err(io::Error::last_os_error());
    }
    // u64s: the buffer must be aligned for TOKEN_USER.
    let mut buf = vec![0u64; (needed as usize).div_ceil(8)];
    // SAFETY: `buf` holds at least `needed` bytes.
    if unsafe {
        GetTokenInformation(
            token.0,
            TokenUser,
            buf.as_mut_ptr().cast::<c_void>(),
            needed,
            &mut needed,
        )
    } == 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the call filled a TOKEN_USER at the start of `buf`.
    let sid = unsafe { (*buf.as_ptr().cast::<TOKEN_USER>()).User.Sid };
    let mut text: *mut u16 = ptr::null_mut();
    // SAFETY: `sid` points into `buf`, alive here; `text` is LocalAlloc'd.
    if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a NUL-terminated string from ConvertSidToStringSidW.
    let out = unsafe {
        let len = (0..).take_while(|&i| *text.add(i) != 0).count();
        let s = String::from_utf16_lossy(std::slice::from_raw_parts(text, len));
        LocalFree(text.cast());
        s
    };
    Ok(out)
}

/// The SDDL of an object only `sid` may use: a protected DACL (nothing
/// inherited from the parent) with one ACE granting `sid` full access,
/// inherited by what is created inside a directory.
pub fn owner_only_sddl(sid: &str) -> String {
    format!("D:P(A;OICI;FA;;;{sid})")
}

/// A security descriptor parsed from SDDL, as `SECURITY_ATTRIBUTES`.
pub struct SecurityAttributes {
    descriptor: PSECURITY_DESCRIPTOR,
    attributes: SECURITY_ATTRIBUTES,
}

impl SecurityAttributes {
    /// Parses `sddl`.
    pub fn from_sddl(sddl: &str) -> io::Result<Self> {
        let text = wide(OsStr::new(sddl));
        let mut descriptor: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // SAFETY: `text` is NUL-terminated; the descriptor is LocalAlloc'd
        // and freed in Drop.
        if unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                text.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                ptr::null_mut(),
            )
        } == 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            descriptor,
            attributes: SECURITY_ATTRIBUTES {
                nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
                lpSecurityDescriptor: descriptor,
                bInheritHandle: 0,
            },
        })
    }

    /// Only the current user.
    pub fn owner_only() -> io::Result<Self> {
        Self::from_sddl(&owner_only_sddl(&current_user_sid()?))
    }

    /// For Win32 calls that take `SECURITY_ATTRIBUTES`.
    pub fn as_ptr(&self) -> *const SECURITY_ATTRIBUTES {
        &self.attributes
    }

    /// The self-relative security descriptor.
    pub fn descriptor(&self) -> PSECURITY_DESCRIPTOR {
        self.descriptor
    }
}

impl Drop for SecurityAttributes {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW.
        unsafe { LocalFree(self.descriptor) };
    }
}

/// Creates `dir` (and its missing parents) with an owner-only DACL. An
/// existing directory is left as it is.
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent()
        && !parent.as_os_str().is_empty()
    {
        create_private_dir_all(parent)?;
    }
    let sa = SecurityAttributes::owner_only()?;
    let name = wide(dir.as_os_str());
    // SAFETY: `name` is NUL-terminated; `sa` lives across the call.
    if unsafe { CreateDirectoryW(name.as_ptr(), sa.as_ptr()) } == 0 {
        let e = io::Error::last_os_error();
        if dir.is_dir() {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

/// How [`open_private_file`] treats an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Open it as it is (`OPEN_ALWAYS`).
    OpenOrCreate,
    /// Fail with `AlreadyExists` (`CREATE_NEW`).
    New,
}

/// Opens `path` for reading and writing, creating it with an owner-only
/// DACL if it does not exist: the DACL is the file's from its first
/// moment, so no other user can open it in between.
pub fn open_private_file(path: &Path, create: Create) -> io::Result<File> {
    let sa = SecurityAttributes::owner_only()?;
    let name = wide(path.as_os_str());
    let disposition = match create {
        Create::OpenOrCreate => OPEN_ALWAYS,
        Create::New => CREATE_NEW,
    };
    // SAFETY: `name` is NUL-terminated; `sa` lives across the call; the
    // handle is checked and then owned by the File.
    let handle = unsafe {
        CreateFileW(
            name.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
            sa.as_ptr(),
            disposition,
            FILE_ATTRIBUTE_NORMAL,
            ptr::null_mut(),
        )
    };
    if handle == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh, valid file handle that nothing else owns.
    Ok(unsafe { File::from_raw_handle(handle as RawHandle) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_runs_as_the_current_user() {
        let mine = current_user_sid().unwrap();
        assert!(mine.starts_with("S-1-"), "{mine}");
        assert_eq!(process_user_sid(std::process::id()).unwrap(), mine);
        assert!(!user_name().unwrap().is_empty());
    }

    #[test]
    fn private_files_and_dirs_are_created_and_reopened() {
        use std::io::{Read, Seek, Write};
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a").join("b");
        create_private_dir_all(&dir).unwrap();
        assert!(dir.is_dir());
        let path = dir.join("f");
        let mut f = open_private_file(&path, Create::New).unwrap();
        f.write_all(b"x").unwrap();
        drop(f);
        let e = open_private_file(&path, Create::New).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        let mut f = open_private_file(&path, Create::OpenOrCreate).unwrap();
        f.rewind().unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "x");
        assert!(SecurityAttributes::from_sddl("not sddl").is_err());
    }
}
