//! `credcache daemon install-service` and `uninstall-service`: hand the
//! daemon to the platform's service manager.
//!
//! - Linux: systemd user units `credcached.socket` (socket activation: the
//!   daemon starts on the first connection, and may exit when idle) and
//!   `credcached.service` (`Type=notify`), written to
//!   `~/.config/systemd/user/`, then `systemctl --user daemon-reload` and
//!   `systemctl --user enable --now credcached.socket`.
//! - macOS: the launchd agent `dev.credcache.credcached.plist` in
//!   `~/Library/LaunchAgents/`, then `launchctl bootstrap gui/<uid>`.
//! - Windows: a per-user logon task, `credcached.xml` in
//!   `%LOCALAPPDATA%\credcache\`, registered with `schtasks /Create /XML`
//!   and started with `schtasks /Run`.
//!
//! The files come from the templates in `packaging/` (embedded here), with
//! the absolute paths of the installed binaries put in, so the .deb, the
//! install script and this command write the same units. `--unit-dir` and
//! `--bin-dir` exist for packaging: write units for `/usr/bin` into a
//! staging tree. When the service manager cannot be reached (no `systemctl`,
//! no user session bus), the files stay written and the error says what to
//! run.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::commands::daemon;
use crate::connect::Endpoint;
use crate::exit::Error;
use crate::output;

const SERVICE_TEMPLATE: &str = include_str!("../../../packaging/systemd/credcached.service.in");
const SOCKET_TEMPLATE: &str = include_str!("../../../packaging/systemd/credcached.socket.in");
const PLIST_TEMPLATE: &str =
    include_str!("../../../packaging/launchd/dev.credcache.credcached.plist.in");
const TASK_TEMPLATE: &str = include_str!("../../../packaging/windows/credcached.xml.in");

/// The Task Scheduler task's name, also its XML file's name without `.xml`.
pub const TASK_NAME: &str = "credcached";

/// The launchd label, also the plist's file name without `.plist`.
pub const LAUNCHD_LABEL: &str = "dev.credcache.credcached";
const SYSTEMD_SOCKET: &str = "credcached.socket";
const SYSTEMD_SERVICE: &str = "credcached.service";

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Only write the files; enable and start nothing.
    #[arg(long)]
    pub no_enable: bool,

    /// Write the files into this directory instead of the service
    /// manager's (for packaging; implies nothing is enabled).
    #[arg(long, value_name = "DIR")]
    pub unit_dir: Option<PathBuf>,

    /// Where the credcache and credcached that the service runs are
    /// (default: the directory of this credcache).
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,

    /// Which service manager to write for (default: this platform's).
    #[arg(long, value_enum, hide = true)]
    pub platform: Option<Platform>,
}

#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    /// Only remove the files; stop and disable nothing.
    #[arg(long)]
    pub no_disable: bool,

    /// Remove the files from this directory instead of the service
    /// manager's (implies nothing is disabled).
    #[arg(long, value_name = "DIR")]
    pub unit_dir: Option<PathBuf>,

    /// Which service manager to remove from (default: this platform's).
    #[arg(long, value_enum, hide = true)]
    pub platform: Option<Platform>,
}

/// The service managers credcache writes files for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Platform {
    /// systemd user units (Linux).
    Systemd,
    /// A launchd user agent (macOS).
    Launchd,
    /// A per-user logon task (Windows Task Scheduler).
    TaskScheduler,
}

impl Platform {
    fn current() -> Result<Self, Error> {
        if cfg!(target_os = "macos") {
            Ok(Self::Launchd)
        } else if cfg!(target_os = "linux") {
            Ok(Self::Systemd)
        } else if cfg!(windows) {
            Ok(Self::TaskScheduler)
        } else {
            Err(Error::Other(
                "no service manager support on this platform; let `credcache` start the daemon \
                 on demand"
                    .into(),
            ))
        }
    }

    /// The files this platform's service manager reads, by name.
    fn file_names(self) -> &'static [&'static str] {
        match self {
            Self::Systemd => &[SYSTEMD_SOCKET, SYSTEMD_SERVICE],
            Self::Launchd => &["dev.credcache.credcached.plist"],
            Self::TaskScheduler => &["credcached.xml"],
        }
    }

    /// Where the service manager looks for a user's files.
    fn default_dir(self) -> Result<PathBuf, Error> {
        let home = home()?;
        Ok(match self {
            Self::Systemd => std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .unwrap_or_else(|| home.join(".config"))
                .join("systemd/user"),
            Self::Launchd => home.join("Library/LaunchAgents"),
            Self::TaskScheduler => std::env::var_os("LOCALAPPDATA")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .unwrap_or_else(|| home.join("AppData").join("Local"))
                .join("credcache"),
        })
    }
}

/// The programs a service runs, as absolute paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Programs {
    pub credcache: PathBuf,
    pub credcached: PathBuf,
    /// `--config PATH` to pass on, if the user gave one.
    pub config: Option<PathBuf>,
}

/// The files for `platform`, as (file name, text).
pub fn render(platform: Platform, programs: &Programs, log_file: &Path) -> Vec<(String, String)> {
    match platform {
        Platform::Systemd => {
            let mut exec_start = systemd_word(&programs.credcached);
            if let Some(config) = &programs.config {
                exec_start.push_str(" --config ");
                exec_start.push_str(&systemd_word(config));
            }
            let service = SERVICE_TEMPLATE
                .replace("@EXEC_START@", &exec_start)
                .replace("@CREDCACHE@", &systemd_word(&programs.credcache));
            vec![
                (SYSTEMD_SOCKET.to_owned(), SOCKET_TEMPLATE.to_owned()),
                (SYSTEMD_SERVICE.to_owned(), service),
            ]
        }
        Platform::Launchd => {
            let mut args = vec![programs.credcached.clone()];
            if let Some(config) = &programs.config {
                args.extend([PathBuf::from("--config"), config.clone()]);
            }
            let arguments = args
                .iter()
                .map(|a| format!("\t\t<string>{}</string>", xml_text(&a.to_string_lossy())))
                .collect::<Vec<_>>()
                .join("\n");
            let plist = PLIST_TEMPLATE
                .replace("@PROGRAM_ARGUMENTS@", &arguments)
                .replace("@LOG_FILE@", &xml_text(&log_file.to_string_lossy()));
            vec![(format!("{LAUNCHD_LABEL}.plist"), plist)]
        }
        Platform::TaskScheduler => {
            // --detach: the daemon logs to its log file (a task has no
            // console) and reports nothing to anyone.
            let mut arguments = "--detach".to_owned();
            if let Some(config) = &programs.config {
                arguments.push_str(" --config ");
                arguments.push_str(&windows_word(&config.to_string_lossy()));
            }
            let task = TASK_TEMPLATE
                .replace("@USER@", &xml_text(&task_user()))
                .replace(
                    "@COMMAND@",
                    &xml_text(&programs.credcached.to_string_lossy()),
                )
                .replace("@ARGUMENTS@", &xml_text(&arguments));
            vec![(format!("{TASK_NAME}.xml"), task)]
        }
    }
}

/// One argument of a Windows command line: quoted when it holds blanks or
/// quotes (backslashes before a quote doubled, as the C runtime reads it).
fn windows_word(arg: &str) -> String {
    if !arg.is_empty() && !arg.contains([' ', '\t', '"']) {
        return arg.to_owned();
    }
    let mut out = String::from('"');
    let mut backslashes = 0;
    for c in arg.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                out.extend(std::iter::repeat_n('\\', backslashes + 1));
                backslashes = 0;
            }
            _ => backslashes = 0,
        }
        out.push(c);
    }
    out.extend(std::iter::repeat_n('\\', backslashes));
    out.push('"');
    out
}

/// The account the logon task is for: `DOMAIN\user` as Windows names it.
fn task_user() -> String {
    #[cfg(windows)]
    let user = credcache_shared::windows::user_name().ok();
    #[cfg(unix)]
    let user = std::env::var("USER").ok();
    let user = user.unwrap_or_else(|| "user".to_owned());
    match std::env::var("USERDOMAIN") {
        Ok(domain) if !domain.is_empty() => format!("{domain}\\{user}"),
        _ => user,
    }
}

/// A path as one word of a systemd command line: quoted when it holds
/// blanks or quotes, and with `%` and `$` (specifiers, variables) doubled.
fn systemd_word(path: &Path) -> String {
    let raw = path.to_string_lossy();
    let escaped = raw.replace('%', "%%").replace('$', "$$");
    if escaped.contains(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';')) {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        escaped
    }
}

fn xml_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn install(
    endpoint: &Endpoint,
    config_flag: Option<&Path>,
    args: &InstallArgs,
) -> Result<(), Error> {
    let platform = args.platform.map_or_else(Platform::current, Ok)?;
    let programs = programs(args.bin_dir.as_deref(), config_flag)?;
    let dir = match &args.unit_dir {
        Some(dir) => dir.clone(),
        None => platform.default_dir()?,
    };
    let log_file = home()?.join("Library/Logs/credcache/credcached.log");
    let files = render(platform, &programs, &log_file);
    let written = write_files(&dir, &files).map_err(|e| {
        Error::Other(format!(
            "cannot write the service files to {}: {e}",
            dir.display()
        ))
    })?;
    for path in &written {
        output::note(format!("wrote {}", path.display()));
    }
    if args.no_enable || args.unit_dir.is_some() {
        output::note(format!(
            "to enable it: {}",
            enable_commands(platform, &dir).join(" && ")
        ));
        return Ok(());
    }
    if platform == Platform::Systemd {
        warn_if_socket_differs(endpoint);
    }
    if platform == Platform::Launchd
        && let Some(logs) = log_file.parent()
    {
        std::fs::create_dir_all(logs)
            .map_err(|e| Error::Other(format!("cannot create {}: {e}", logs.display())))?;
    }
    // A daemon the client started would hold the socket and the lock that
    // the service's daemon needs: stop it first.
    daemon::stop(endpoint)?;
    let steps = match platform {
        Platform::Systemd => vec![
            Step::required(["systemctl", "--user", "daemon-reload"]),
            Step::required(["systemctl", "--user", "enable", "--now", SYSTEMD_SOCKET]),
        ],
        Platform::Launchd => {
            let domain = launchd_domain();
            let plist = dir.join(&files[0].0).to_string_lossy().into_owned();
            vec![
                // Re-installing replaces a loaded agent; none loaded is fine.
                Step::optional(["launchctl", "bootout", &format!("{domain}/{LAUNCHD_LABEL}")]),
                Step::required(["launchctl", "bootstrap", &domain, &plist]),
            ]
        }
        Platform::TaskScheduler => {
            let xml = dir.join(&files[0].0).to_string_lossy().into_owned();
            vec![
                // /F replaces a task registered before.
                Step::required(["schtasks", "/Create", "/TN", TASK_NAME, "/XML", &xml, "/F"]),
                Step::required(["schtasks", "/Run", "/TN", TASK_NAME]),
            ]
        }
    };
    run_steps(&steps, &enable_commands(platform, &dir))?;
    output::note(match platform {
        Platform::Systemd => "credcached.socket is enabled: the daemon starts on the first request",
        Platform::Launchd => "the credcached agent is loaded: it starts at login",
        Platform::TaskScheduler => "the credcached logon task is registered and started",
    });
    Ok(())
}

pub fn uninstall(args: &UninstallArgs) -> Result<(), Error> {
    let platform = args.platform.map_or_else(Platform::current, Ok)?;
    let dir = match &args.unit_dir {
        Some(dir) => dir.clone(),
        None => platform.default_dir()?,
    };
    let present: Vec<PathBuf> = platform
        .file_names()
        .iter()
        .map(|name| dir.join(name))
        .filter(|path| path.exists())
        .collect();
    if present.is_empty() {
        output::note(format!("no credcache service files in {}", dir.display()));
        return Ok(());
    }
    let manage = !args.no_disable && args.unit_dir.is_none();
    if manage {
        let step = match platform {
            Platform::Systemd => Step::required([
                "systemctl",
                "--user",
                "disable",
                "--now",
                SYSTEMD_SOCKET,
                SYSTEMD_SERVICE,
            ]),
            // Not loaded is as good as unloaded.
            Platform::Launchd => Step::optional([
                "launchctl",
                "bootout",
                &format!("{}/{LAUNCHD_LABEL}", launchd_domain()),
            ]),
            Platform::TaskScheduler => {
                Step::required(["schtasks", "/Delete", "/TN", TASK_NAME, "/F"])
            }
        };
        let by_hand = [step.argv.join(" ")];
        if platform == Platform::TaskScheduler {
            // The daemon the task started keeps running unless ended; not
            // running is as good as ended.
            run_steps(
                &[Step::optional(["schtasks", "/End", "/TN", TASK_NAME])],
                &by_hand,
            )?;
        }
        run_steps(&[step], &by_hand)?;
    }
    for path in present {
        match std::fs::remove_file(&path) {
            Ok(()) => output::note(format!("removed {}", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Other(format!(
                    "cannot remove {}: {e}",
                    path.display()
                )));
            }
        }
    }
    if manage && platform == Platform::Systemd {
        run_steps(
            &[Step::required(["systemctl", "--user", "daemon-reload"])],
            &["systemctl --user daemon-reload".to_owned()],
        )?;
    }
    Ok(())
}

/// One service-manager command.
struct Step {
    argv: Vec<String>,
    /// Whether a failure (not a missing program) fails the whole command.
    required: bool,
}

impl Step {
    fn required<const N: usize>(argv: [&str; N]) -> Self {
        Self {
            argv: argv.iter().map(|a| (*a).to_owned()).collect(),
            required: true,
        }
    }

    fn optional<const N: usize>(argv: [&str; N]) -> Self {
        Self {
            required: false,
            ..Self::required(argv)
        }
    }
}

/// Runs each step. A missing program or a failed required step is an error
/// that says what to run by hand.
fn run_steps(steps: &[Step], by_hand: &[String]) -> Result<(), Error> {
    let advice = || format!("run it by hand: {}", by_hand.join(" && "));
    for Step { argv, required } in steps {
        let shown = argv.join(" ");
        let status = Command::new(&argv[0]).args(&argv[1..]).status();
        match status {
            Ok(s) if s.success() => {}
            Ok(_) if !required => {}
            Ok(s) => {
                return Err(Error::Other(format!(
                    "`{shown}` failed ({s}); {}",
                    advice()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::Other(format!(
                    "cannot run `{shown}`: {} is not on PATH; {}",
                    argv[0],
                    advice()
                )));
            }
            Err(e) => {
                return Err(Error::Other(format!(
                    "cannot run `{shown}`: {e}; {}",
                    advice()
                )));
            }
        }
    }
    Ok(())
}

/// The commands that enable the written files, for the user to run.
fn enable_commands(platform: Platform, dir: &Path) -> Vec<String> {
    match platform {
        Platform::Systemd => vec![
            "systemctl --user daemon-reload".to_owned(),
            format!("systemctl --user enable --now {SYSTEMD_SOCKET}"),
        ],
        Platform::Launchd => vec![format!(
            "launchctl bootstrap {} {}",
            launchd_domain(),
            dir.join(format!("{LAUNCHD_LABEL}.plist")).display()
        )],
        Platform::TaskScheduler => vec![
            format!(
                "schtasks /Create /TN {TASK_NAME} /XML {} /F",
                windows_word(&dir.join(format!("{TASK_NAME}.xml")).to_string_lossy())
            ),
            format!("schtasks /Run /TN {TASK_NAME}"),
        ],
    }
}

fn launchd_domain() -> String {
    #[cfg(unix)]
    let uid = rustix::process::getuid().as_raw();
    // launchd is macOS's; `--platform launchd` elsewhere only writes files.
    #[cfg(windows)]
    let uid = 501;
    format!("gui/{uid}")
}

/// The socket unit listens where clients look by default; a client told
/// otherwise (CREDCACHE_SOCKET, no XDG_RUNTIME_DIR) would start its own.
fn warn_if_socket_differs(endpoint: &Endpoint) {
    let expected = std::env::var_os("XDG_RUNTIME_DIR")
        .map(|d| PathBuf::from(d).join("credcache/credcache.sock"));
    if expected.as_deref() != Some(endpoint.paths.socket.as_path()) {
        output::warning(format!(
            "this shell's clients use {}, but credcached.socket listens on \
             $XDG_RUNTIME_DIR/credcache/credcache.sock; unset CREDCACHE_SOCKET (or edit \
             ListenStream=) so they meet",
            endpoint.paths.socket.display()
        ));
    }
}

fn home() -> Result<PathBuf, Error> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        // Windows sets USERPROFILE; HOME only in some shells.
        .or_else(|| {
            std::env::var_os("USERPROFILE")
                .map(PathBuf::from)
                .filter(|p| cfg!(windows) && p.is_absolute())
        })
        .ok_or_else(|| Error::Other("cannot find the home directory: set HOME".into()))
}

/// The absolute paths the service files name.
fn programs(bin_dir: Option<&Path>, config_flag: Option<&Path>) -> Result<Programs, Error> {
    let config = config_flag
        .map(|p| {
            std::path::absolute(p)
                .map_err(|e| Error::Usage(format!("--config {}: {e}", p.display())))
        })
        .transpose()?;
    if let Some(dir) = bin_dir {
        // Packaging: the binaries are where they will be installed, not here.
        if !dir.is_absolute() {
            return Err(Error::Usage(format!(
                "--bin-dir {}: must be an absolute path",
                dir.display()
            )));
        }
        return Ok(Programs {
            credcache: dir.join(exe_name("credcache")),
            credcached: dir.join(exe_name("credcached")),
            config,
        });
    }
    let exe = std::env::current_exe()
        .map_err(|e| Error::Other(format!("cannot find this executable's path: {e}")))?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let credcached = dir.join(exe_name("credcached"));
    if !credcached.is_file() {
        return Err(Error::Other(format!(
            "credcached is not next to this credcache (in {}); install both together, or pass --bin-dir",
            dir.display()
        )));
    }
    Ok(Programs {
        credcache: dir.join(exe_name("credcache")),
        credcached,
        config,
    })
}

/// A program's file name on this platform (`credcached.exe` on Windows).
fn exe_name(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

/// Writes each file (0644, as service managers expect) and returns the paths.
fn write_files(dir: &Path, files: &[(String, String)]) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        crate::replace_file::replace(&path, text.as_bytes(), 0o644)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn programs() -> Programs {
        Programs {
            credcache: PathBuf::from("/opt/cc bin/credcache"),
            credcached: PathBuf::from("/usr/bin/credcached"),
            config: None,
        }
    }

    #[test]
    fn systemd_units_name_the_binaries_and_keep_no_placeholder() {
        let files = render(Platform::Systemd, &programs(), Path::new("/unused"));
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["credcached.socket", "credcached.service"]);
        let service = &files[1].1;
        assert!(
            service.contains("\nExecStart=/usr/bin/credcached\n"),
            "{service}"
        );
        assert!(
            service.contains("\nExecReload=\"/opt/cc bin/credcache\" daemon reload\n"),
            "{service}"
        );
        assert!(service.contains("\nType=notify\n"));
        let socket = &files[0].1;
        assert!(socket.contains("\nListenStream=%t/credcache/credcache.sock\n"));
        assert!(
            socket.contains("\nSocketMode=0600\n") && socket.contains("\nDirectoryMode=0700\n")
        );
        for (_, text) in &files {
            assert!(!text.contains('@'), "{text}");
        }
    }

    #[test]
    fn a_config_flag_is_passed_on() {
        let mut p = programs();
        p.config = Some(PathBuf::from("/etc/100%/cc.toml"));
        let files = render(Platform::Systemd, &p, Path::new("/unused"));
        assert!(
            files[1]
                .1
                .contains("\nExecStart=/usr/bin/credcached --config /etc/100%%/cc.toml\n"),
            "{}",
            files[1].1
        );
        let plist = &render(Platform::Launchd, &p, Path::new("/l"))[0].1;
        assert!(plist.contains("<string>--config</string>"), "{plist}");
    }

    #[test]
    fn the_logon_task_runs_the_daemon_detached_at_logon() {
        let mut p = programs();
        p.credcached = PathBuf::from(r"C:\Program Files\credcache\credcached.exe");
        p.config = Some(PathBuf::from(r"C:\Users\a b\cc&.toml"));
        let files = render(Platform::TaskScheduler, &p, Path::new("/unused"));
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, "credcached.xml");
        let xml = &files[0].1;
        assert!(xml.contains("<LogonTrigger>"), "{xml}");
        assert!(
            xml.contains(r"<Command>C:\Program Files\credcache\credcached.exe</Command>"),
            "{xml}"
        );
        assert!(
            xml.contains(
                r#"<Arguments>--detach --config &quot;C:\Users\a b\cc&amp;.toml&quot;</Arguments>"#
            ),
            "{xml}"
        );
        assert!(xml.contains("<ExecutionTimeLimit>PT0S</ExecutionTimeLimit>"));
        assert!(!xml.contains('@'), "{xml}");
    }

    #[test]
    fn windows_words_are_quoted_as_the_c_runtime_reads_them() {
        assert_eq!(windows_word(r"C:\x\y.toml"), r"C:\x\y.toml");
        assert_eq!(windows_word(r"C:\a b\"), r#""C:\a b\\""#);
        assert_eq!(windows_word(r#"a"b"#), r#""a\"b""#);
        assert_eq!(windows_word(""), r#""""#);
    }

    #[test]
    fn systemd_words_are_quoted_and_escaped() {
        assert_eq!(systemd_word(Path::new("/usr/bin/x")), "/usr/bin/x");
        assert_eq!(systemd_word(Path::new("/a b/x")), "\"/a b/x\"");
        assert_eq!(systemd_word(Path::new("/a$b%c")), "/a$$b%%c");
        assert_eq!(systemd_word(Path::new("/a\"b c")), "\"/a\\\"b c\"");
    }

    #[test]
    fn the_plist_runs_credcached_at_load_and_logs_where_asked() {
        let files = render(
            Platform::Launchd,
            &programs(),
            Path::new("/Users/me/Library/Logs/credcache/credcached.log"),
        );
        assert_eq!(files[0].0, "dev.credcache.credcached.plist");
        let plist = &files[0].1;
        assert!(
            plist.contains("<string>/usr/bin/credcached</string>"),
            "{plist}"
        );
        assert!(plist.contains("<key>RunAtLoad</key>\n\t<true/>"), "{plist}");
        assert!(plist.contains("/Users/me/Library/Logs/credcache/credcached.log"));
        assert!(!plist.contains('@'));
        assert_eq!(xml_text("a&b<c>\""), "a&amp;b&lt;c&gt;&quot;");
    }
}
