//! What the SDK endpoints keep across restarts, beside the cache key (in
//! the config directory, 0600): `sdk.secret`, the Azure endpoint's
//! `IDENTITY_HEADER`, and `sdk-ports`, one `NAME PORT` line per
//! credential, so an IDE launch configuration keeps working.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use credcache_shared::Secret;

/// The secret's length in random bytes (hex-encoded in the file).
const SECRET_BYTES: usize = 32;

pub struct State {
    secret_file: PathBuf,
    ports_file: PathBuf,
    ports: Mutex<BTreeMap<String, u16>>,
}

impl State {
    /// Reads both files (making the secret if there is none), and any
    /// warnings for `status`.
    pub fn load(config_file: &Path) -> (Self, Secret, Vec<String>) {
        let dir = crate::seal::key_path(config_file)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let state = Self {
            secret_file: dir.join("sdk.secret"),
            ports_file: dir.join("sdk-ports"),
            ports: Mutex::new(BTreeMap::new()),
        };
        let mut warnings = Vec::new();
        match std::fs::read_to_string(&state.ports_file) {
            Ok(text) => *state.ports.lock().unwrap_or_else(|p| p.into_inner()) = parse_ports(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warnings.push(format!(
                "cannot read the SDK ports {}: {e}",
                state.ports_file.display()
            )),
        }
        let secret = match std::fs::read_to_string(&state.secret_file) {
            Ok(text) if is_secret(text.trim()) => Secret::new(text.trim()),
            _ => match state.rotate_secret() {
                Ok(s) => s,
                Err(e) => {
                    warnings.push(format!(
                        "cannot write the SDK secret {}: {e}; using one until the daemon stops",
                        state.secret_file.display()
                    ));
                    new_secret()
                }
            },
        };
        (state, secret, warnings)
    }

    pub fn ports_file(&self) -> &Path {
        &self.ports_file
    }

    /// Every credential's recorded port.
    pub fn ports(&self) -> Vec<(String, u16)> {
        let ports = self.ports.lock().unwrap_or_else(|p| p.into_inner());
        ports.iter().map(|(n, p)| (n.clone(), *p)).collect()
    }

    pub fn port(&self, name: &str) -> Option<u16> {
        self.ports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied()
    }

    /// Records `name`'s port and writes the file.
    pub fn set_port(&self, name: &str, port: u16) -> std::io::Result<()> {
        let text = {
            let mut ports = self.ports.lock().unwrap_or_else(|p| p.into_inner());
            ports.insert(name.to_owned(), port);
            ports
                .iter()
                .map(|(n, p)| format!("{n} {p}\n"))
                .collect::<String>()
        };
        crate::files::replace_private(&self.ports_file, text.as_bytes())
    }

    /// A new secret, written to the file.
    pub fn rotate_secret(&self) -> std::io::Result<Secret> {
        let secret = new_secret();
        crate::files::replace_private(
            &self.secret_file,
            format!("{}\n", secret.expose()).as_bytes(),
        )?;
        Ok(secret)
    }
}

fn new_secret() -> Secret {
    let mut bytes = [0u8; SECRET_BYTES];
    // aws-lc-rs's system random; it does not fail on a working system,
    // and a fixed secret would be worse than none: fall back to fastrand.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        bytes.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Secret::new(hex)
}

fn is_secret(s: &str) -> bool {
    s.len() == SECRET_BYTES * 2 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `NAME PORT` lines; anything else is skipped.
fn parse_ports(text: &str) -> BTreeMap<String, u16> {
    text.lines()
        .filter_map(|l| {
            let (name, port) = l.trim().split_once(' ')?;
            let port: u16 = port.trim().parse().ok()?;
            (port != 0 && !name.is_empty()).then(|| (name.to_owned(), port))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_and_ports_survive_a_reload_and_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("config.toml");
        let (state, secret, warnings) = State::load(&config);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(is_secret(secret.expose()));
        state.set_port("corp", 41234).unwrap();
        let (again, same, _) = State::load(&config);
        assert_eq!(same.expose(), secret.expose());
        assert_eq!(again.port("corp"), Some(41234));
        #[cfg(unix)]
        for f in ["sdk.secret", "sdk-ports"] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(tmp.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let rotated = again.rotate_secret().unwrap();
        assert_ne!(rotated.expose(), secret.expose());
        assert_eq!(State::load(&config).1.expose(), rotated.expose());
    }

    #[test]
    fn bad_port_lines_are_skipped() {
        let ports = parse_ports("a 1\nb x\nc 0\n\nd 70000\ne 443\n");
        assert_eq!(
            ports.into_iter().collect::<Vec<_>>(),
            [("a".into(), 1), ("e".into(), 443)]
        );
    }
}
