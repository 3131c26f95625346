//! Windows only: the named pipe's DACL, the squatting refusal, the daemon
//! started with no handle of the client's, and a busy pipe given up on.
//! The rest of the suite runs on Windows as it is.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use credcache_shared::windows::{current_user_sid, wide};
use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, INVALID_HANDLE_VALUE, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW, GetSecurityInfo, SDDL_REVISION_1,
    SE_KERNEL_OBJECT,
};
use windows_sys::Win32::Security::{DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_GENERIC_READ, OPEN_EXISTING,
    PIPE_ACCESS_DUPLEX, READ_CONTROL,
};
use windows_sys::Win32::System::Pipes::{CreateNamedPipeW, PIPE_TYPE_BYTE};

use crate::harness::Sandbox;

/// A handle closed when dropped.
struct Owned(HANDLE);

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: a handle this test opened.
        unsafe { CloseHandle(self.0) };
    }
}

fn started(sb: &Sandbox) {
    let out = sb.run(["daemon", "start"]);
    assert_eq!(out.code, 0, "{out:#?}");
}

/// The DACL of the daemon's pipe, as SDDL, read through a client handle.
fn pipe_dacl(sb: &Sandbox) -> String {
    let name = wide(sb.paths().socket.as_os_str());
    // SAFETY: a NUL-terminated name; the handle is checked and owned.
    let handle = unsafe {
        CreateFileW(
            name.as_ptr(),
            FILE_GENERIC_READ | READ_CONTROL,
            0,
            std::ptr::null(),
            OPEN_EXISTING,
            0,
            std::ptr::null_mut(),
        )
    };
    assert_ne!(
        handle,
        INVALID_HANDLE_VALUE,
        "{}",
        std::io::Error::last_os_error()
    );
    let handle = Owned(handle);
    let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: a valid handle; the descriptor is LocalAlloc'd and freed below.
    let err = unsafe {
        GetSecurityInfo(
            handle.0,
            SE_KERNEL_OBJECT,
            DACL_SECURITY_INFORMATION,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut sd,
        )
    };
    assert_eq!(err, 0, "GetSecurityInfo failed: {err}");
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: `sd` is valid; `text` is LocalAlloc'd and freed below.
    let ok = unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(
            sd,
            SDDL_REVISION_1,
            DACL_SECURITY_INFORMATION,
            &mut text,
            std::ptr::null_mut(),
        )
    };
    assert_ne!(ok, 0, "{}", std::io::Error::last_os_error());
    // SAFETY: a NUL-terminated string from the call above.
    unsafe {
        let len = (0..).take_while(|&i| *text.add(i) != 0).count();
        let sddl = String::from_utf16_lossy(std::slice::from_raw_parts(text, len));
        LocalFree(text.cast());
        LocalFree(sd);
        sddl
    }
}

#[test]
fn the_pipe_admits_this_user_alone() {
    let sb = Sandbox::new();
    started(&sb);
    let sddl = pipe_dacl(&sb);
    let sid = current_user_sid().unwrap();
    assert!(sddl.starts_with("D:P"), "a protected DACL: {sddl}");
    let aces: Vec<&str> = sddl["D:P".len()..]
        .split(['(', ')'])
        .filter(|a| !a.is_empty())
        .collect();
    assert_eq!(aces.len(), 1, "one ACE: {sddl}");
    assert!(
        aces[0].starts_with("A;;") && aces[0].ends_with(&format!(";;;{sid}")),
        "allow for {sid} only: {sddl}"
    );
    assert_eq!(sb.run(["daemon", "stop"]).code, 0);
}

#[test]
fn a_pipe_someone_else_holds_is_a_refusal_to_start() {
    let sb = Sandbox::new();
    sb.write_config("");
    // The squatter: a pipe of the daemon's name, one instance only (Wine
    // ignores FILE_FLAG_FIRST_PIPE_INSTANCE; on Windows the flag alone
    // refuses a second creator).
    let name = wide(sb.paths().socket.as_os_str());
    // SAFETY: a NUL-terminated name; the handle is checked and owned.
    let squatter = unsafe {
        CreateNamedPipeW(
            name.as_ptr(),
            PIPE_ACCESS_DUPLEX | FILE_FLAG_FIRST_PIPE_INSTANCE,
            PIPE_TYPE_BYTE,
            1,
            4096,
            4096,
            0,
            std::ptr::null(),
        )
    };
    assert_ne!(
        squatter,
        INVALID_HANDLE_VALUE,
        "{}",
        std::io::Error::last_os_error()
    );
    let _squatter = Owned(squatter);

    let out: crate::harness::Out = sb.command("credcached").output().unwrap().into();
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr
            .contains("already exists and is not served by this user's daemon"),
        "{out:#?}"
    );
    assert!(out.stderr.contains("refusing to start"), "{out:#?}");

    // A client facing the squatted pipe gives up within a bounded time,
    // exit 3, instead of waiting for an instance forever.
    let started = Instant::now();
    let mut client = sb.command("credcache");
    client.env("CREDCACHE_NO_AUTOSTART", "1").args(["list"]);
    let out: crate::harness::Out = client.output().unwrap().into();
    assert_eq!(out.code, 3, "{out:#?}");
    assert!(started.elapsed() < Duration::from_secs(60), "bounded");
}

/// The daemon the client starts holds none of the client's handles: a
/// caller reading the client's stdout (`$(credcache get …)`, PowerShell,
/// kubectl) sees end-of-file when the client exits, though the daemon
/// runs on. (Wine hands a child its creator's stderr whatever the flags,
/// so only stdout is judged.)
#[test]
fn the_started_daemon_inherits_no_handle_of_the_client() {
    let sb = Sandbox::new();
    sb.write_config("");
    let mut child = sb
        .command("credcache")
        .args(["daemon", "start"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let text = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("stdout stayed open after the client exited: the daemon inherited it");
    assert!(
        sb.daemon_pid_alive().is_some(),
        "the daemon runs on: {text}"
    );
    assert_eq!(sb.run(["daemon", "stop"]).code, 0);
}

/// A `command` program that hangs is killed on timeout together with
/// what it started: the Job Object is Windows' process group. The script
/// starts an emulator in the background (a process that would otherwise
/// run for ever, listening on a port), waits until the emulator has
/// written its files (it writes them once listening), then hangs.
#[test]
fn a_command_that_hangs_is_killed_with_what_it_started() {
    let sb = Sandbox::new();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let emulator = crate::harness::bin_dir().join("credcache-emulator.exe");
    let dir = sb.dir.path().join("emu");
    let up = dir.join("authorized-user.json");
    let script = sb.dir.path().join("hang.cmd");
    std::fs::write(
        &script,
        format!(
            "@echo off\r\nstart \"\" /b \"{}\" serve --port {port} --dir \"{}\" >nul\r\n\
             :wait\r\nif not exist \"{}\" goto wait\r\nping -n 600 127.0.0.1 >nul\r\n",
            emulator.display(),
            dir.display(),
            up.display()
        ),
    )
    .unwrap();
    sb.write_config(&format!(
        "[daemon]\nhttp_timeout = \"10s\"\n{}",
        Sandbox::command_credential("hang", &script)
    ));
    let out = sb.run(["get", "hang"]);
    assert_eq!(out.code, 5, "{out:#?}");
    assert!(
        out.stderr
            .contains("did not finish within 10 s; killed it and its process group"),
        "{out:#?}"
    );
    assert!(
        up.is_file(),
        "the background emulator never came up, so nothing was tested"
    );
    // The job was terminated: the emulator's port closes once Wine or
    // Windows has finished tearing it down.
    credcache_tests::eventually::eventually(Duration::from_secs(60), || {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(_) => Err("the emulator the script started still listens"),
            Err(_) => Ok(()),
        }
    });
}

/// `exec` passes the child's exit code through, a `.cmd`'s and an
/// `.exe`'s alike, and the token is in the child's environment.
#[test]
fn exec_passes_the_exit_code_through() {
    let sb = Sandbox::new();
    let (script, _) = sb.counting_script("v");
    sb.write_config(&format!(
        "{}env_var = \"VAULT_TOKEN\"\n",
        Sandbox::command_credential("vault", &script)
    ));
    for code in [0, 3, 42, 255] {
        let out = sb.run(["exec", "vault", "--", "cmd", "/c", &format!("exit {code}")]);
        assert_eq!(out.code, code, "{out:#?}");
    }
    let out = sb.run(["exec", "vault", "--", "cmd", "/c", "echo %VAULT_TOKEN%"]);
    assert_eq!(out.ok().trim_end(), "tok-1-v");
    let missing = sb.dir.path().join("no-such-program.exe");
    let out = sb.run(["exec", "vault", "--", missing.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.starts_with("credcache: cannot run "), "{out:#?}");
}

/// `kubeconfig --merge` writes the `.exe`'s absolute Windows path as the
/// exec plugin's command (a drive path with backslashes, as kubectl on
/// Windows runs it, not a `\\?\` verbatim one), and that command with
/// its args prints an ExecCredential.
#[test]
fn kubeconfig_merge_writes_the_exe_as_a_windows_path() {
    let sb = Sandbox::new();
    let (script, _) = sb.counting_script("k");
    sb.write_config(&Sandbox::command_credential("prod", &script));
    let path = sb.home.join(".kube").join("config");
    let out = sb.run(["kubeconfig", "prod", "--merge", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:#?}");
    let v: serde_json::Value =
        serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let exec = &v["users"][0]["user"]["exec"];
    let command = exec["command"].as_str().unwrap();
    let bytes = command.as_bytes();
    assert!(
        bytes.len() > 3 && bytes[0].is_ascii_alphabetic() && &bytes[1..3] == b":\\",
        "a drive path: {command}"
    );
    assert!(!command.contains('/'), "backslashes only: {command}");
    assert!(command.ends_with("\\credcache.exe"), "{command}");
    assert_eq!(
        std::path::Path::new(command).canonicalize().unwrap(),
        crate::harness::bin_dir()
            .join("credcache.exe")
            .canonicalize()
            .unwrap()
    );
    let args: Vec<&str> = exec["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let ec = sb.command_for(command).args(&args).output().unwrap();
    assert!(ec.status.success(), "{ec:?}");
    let ec: serde_json::Value = serde_json::from_slice(&ec.stdout).unwrap();
    assert_eq!(ec["kind"], "ExecCredential");
    assert_eq!(ec["status"]["token"], "tok-1-k");
}

/// `install-service` registers a logon task with Task Scheduler and starts
/// it; `uninstall-service` ends and deletes it and removes the task's XML.
/// Windows looks for a bare `schtasks` in the program's own directory
/// before System32, so the stand-in sits beside a copy of `credcache.exe`
/// (the Linux test `packaging::logon_task_is_registered_and_removed_with_schtasks`
/// drives the same code with a shell stand-in).
#[test]
fn the_logon_task_is_registered_and_removed_with_schtasks() {
    let sb = Sandbox::new();
    let bins = crate::harness::bin_dir();
    let app = sb.dir.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    let client = app.join("credcache.exe");
    std::fs::copy(bins.join("credcache.exe"), &client).unwrap();
    std::fs::copy(
        bins.join("credcache-stand-in.exe"),
        app.join("schtasks.exe"),
    )
    .unwrap();
    let calls = || -> Vec<String> {
        std::fs::read_to_string(app.join("schtasks.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    // The copy has no credcached.exe beside it: --bin-dir names the real one.
    let service = |args: &[&std::ffi::OsStr]| {
        let out = sb
            .command_for(&client)
            .arg("daemon")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let said = service(&[
        "install-service".as_ref(),
        "--bin-dir".as_ref(),
        bins.as_os_str(),
    ]);
    assert!(
        said.contains("logon task is registered and started"),
        "{said}"
    );
    let xml_path = sb.home.join("AppData\\Local\\credcache\\credcached.xml");
    assert_eq!(
        calls(),
        [
            format!("/Create /TN credcached /XML {} /F", xml_path.display()),
            "/Run /TN credcached".to_owned(),
        ]
    );
    let xml = std::fs::read_to_string(&xml_path).unwrap();
    let daemon = bins.join("credcached.exe");
    assert!(
        xml.contains(&format!("<Command>{}</Command>", daemon.display())),
        "{xml}"
    );
    assert!(xml.contains("<Arguments>--detach</Arguments>"), "{xml}");
    assert!(xml.contains("<LogonTrigger>"), "{xml}");

    service(&["uninstall-service".as_ref()]);
    assert!(!xml_path.exists(), "the task's XML is removed");
    assert_eq!(
        calls()[2..],
        ["/End /TN credcached", "/Delete /TN credcached /F"]
    );
}
