//! The config as the daemon last parsed it, kept in the data directory
//! (`config.parsed`), so that a start or a reload whose config text has
//! not changed skips parsing and checking it: with 10,000 credentials that
//! was half of the daemon's start (BENCHMARKS.md, issue 15).
//!
//! The kept parse is used only when its key matches the key of this run:
//! a SHA-256 of the config's text, of the home directory `~` expands to
//! (the only thing outside the text that parsing reads), and of the
//! running executable's identity (its path, length and modification
//! time: another build, whose types may be laid out otherwise, parses
//! anew). Its body is checked against a SHA-256 too. Anything else (no
//! file, another key, a short or undecodable body) means parsing the text,
//! exactly as without it, and keeping that parse in its place.
//!
//! The checks of [`Config::load`] that read other files (identity files'
//! types) run on every load, kept parse or not: those files change
//! without the config changing. The file holds nothing secret (a config
//! names where a secret is, never the secret), and is written private
//! like everything else in the data directory.

use std::path::{Path, PathBuf};

use credcache_shared::config::{Config, ConfigError, MAX_CONFIG};
use sha2::{Digest, Sha256};

/// The file's first bytes, and the layout's version after them.
const MAGIC: &[u8; 16] = b"credcache-parsed";
const FORMAT: u8 = 1;
/// Magic, format, key, body digest.
const HEADER: usize = MAGIC.len() + 1 + 32 + 32;
/// A body larger than this is not read (a config is at most `MAX_CONFIG`,
/// and its parse is smaller than its text).
const MAX_PARSED: usize = HEADER + MAX_CONFIG;

/// Where the daemon keeps its last parse.
#[derive(Debug, Clone)]
pub struct ParsedConfig {
    path: PathBuf,
}

/// Whether a load used the kept parse (for tests: a log line here would
/// be one more line before a start's one-line refusal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Kept,
    Parsed,
}

impl ParsedConfig {
    /// `config.parsed` in `data_dir`.
    pub fn in_dir(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join("config.parsed"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// [`Config::load`], answered from the kept parse when it is of this
    /// very text (and home, and build).
    pub fn load(&self, config_file: &Path) -> Result<Config, ConfigError> {
        self.load_telling(config_file).map(|(config, _)| config)
    }

    /// [`ParsedConfig::load`], saying whether the kept parse was used.
    pub fn load_telling(&self, config_file: &Path) -> Result<(Config, Source), ConfigError> {
        let mut source = Source::Parsed;
        let config = Config::load_with(config_file, |text| {
            let key = key_of(text, home().as_deref(), build().as_deref());
            if let Some(config) = self.read(&key) {
                source = Source::Kept;
                return Ok(config);
            }
            let config = Config::parse(text, config_file)?;
            self.write(&key, &config);
            Ok(config)
        })?;
        Ok((config, source))
    }

    /// The kept parse, if it is one of `key` and whole.
    fn read(&self, key: &[u8; 32]) -> Option<Config> {
        let bytes = match credcache_shared::files::read_regular(&self.path, MAX_PARSED) {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => return None,
            Err(e) => {
                tracing::debug!("not using {}: {e}", self.path.display());
                return None;
            }
        };
        let decoded = decode(&bytes, key);
        if let Err(why) = &decoded {
            tracing::debug!("not using {}: {why}", self.path.display());
        }
        decoded.ok()
    }

    /// Keeps `config` as the parse of `key`. Failing to is only slower
    /// starts: logged, not an error.
    fn write(&self, key: &[u8; 32], config: &Config) {
        if let Err(e) = replace(&self.path, key, config) {
            tracing::debug!(
                "could not keep the parsed config in {}: {e}",
                self.path.display()
            );
        }
    }
}

/// Writes the file: to `NAME.tmp` beside it, private from its creation,
/// then renamed over it. Streamed (a megabyte at 10,000 credentials is
/// not held in memory at once, where it would stay in the daemon's heap),
/// and without `files::replace_private`'s `fsync`: a file torn by a crash
/// fails its digest and is parsed over, and a reload need not wait on the
/// disk.
fn replace(path: &Path, key: &[u8; 32], config: &Config) -> Result<(), String> {
    use std::io::{Seek as _, SeekFrom, Write as _};
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let io = |e: std::io::Error| e.to_string();
    let file = crate::sys::create_new_private(&tmp).map_err(io)?;
    let mut out = std::io::BufWriter::new(file);
    out.write_all(MAGIC).map_err(io)?;
    out.write_all(&[FORMAT]).map_err(io)?;
    out.write_all(key).map_err(io)?;
    out.write_all(&[0; 32]).map_err(io)?;
    let mut body = Hashing {
        out: &mut out,
        hash: Sha256::new(),
    };
    bincode::serde::encode_into_std_write(config, &mut body, bincode::config::standard())
        .map_err(|e| e.to_string())?;
    let digest = body.hash.finalize();
    out.seek(SeekFrom::Start((HEADER - 32) as u64))
        .map_err(io)?;
    out.write_all(&digest).map_err(io)?;
    out.into_inner().map_err(|e| e.error().to_string())?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Hashes what it passes on.
struct Hashing<W> {
    out: W,
    hash: Sha256,
}

impl<W: std::io::Write> std::io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

fn decode(bytes: &[u8], key: &[u8; 32]) -> Result<Config, String> {
    if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a parsed config".to_owned());
    }
    if bytes[MAGIC.len()] != FORMAT {
        return Err(format!("format {}, not {FORMAT}", bytes[MAGIC.len()]));
    }
    let (header, body) = bytes.split_at(HEADER);
    if &header[MAGIC.len() + 1..HEADER - 32] != key {
        return Err("of another config text, home or build".to_owned());
    }
    if header[HEADER - 32..] != Sha256::digest(body)[..] {
        return Err("damaged (its digest does not match)".to_owned());
    }
    let limits = bincode::config::standard().with_limit::<MAX_PARSED>();
    let (config, used): (Config, usize) =
        bincode::serde::decode_from_slice(body, limits).map_err(|e| e.to_string())?;
    if used != body.len() {
        return Err(format!("{} bytes after the config", body.len() - used));
    }
    Ok(config)
}

/// What a parse depends on: the text, the home `~` expands to, the build.
fn key_of(text: &str, home: Option<&Path>, build: Option<&[u8]>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"credcache-parsed-config\0");
    for part in [
        text.as_bytes(),
        home.map_or(&b""[..], |p| p.as_os_str().as_encoded_bytes()),
        build.unwrap_or_default(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// The home `~` expands to in the config (`paths::expand_tilde`).
fn home() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|b| b.home_dir().to_path_buf())
}

/// This executable's path, length and modification time: a rebuilt
/// daemon does not read what another build kept.
fn build() -> Option<Vec<u8>> {
    let exe = std::env::current_exe().ok()?;
    let meta = std::fs::metadata(&exe).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let mut id = exe.into_os_string().into_encoded_bytes();
    id.extend_from_slice(&meta.len().to_le_bytes());
    id.extend_from_slice(&modified.as_nanos().to_le_bytes());
    id.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
[daemon]
refresh_ahead = "2m"

[credentials.gcp]
kind = "google"
key_file = "~/sa.json"

[credentials.c1]
kind = "gke-cluster"
auth = "gcp"
cluster = "projects/p/locations/us-east4/azureClusters/c1"

[[git]]
host = "*.example.com"
path_prefix = "org"
credential = "gcp"
"#;

    fn setup() -> (tempfile::TempDir, PathBuf, ParsedConfig) {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("config.toml");
        std::fs::write(&config, TEXT).unwrap();
        let kept = ParsedConfig::in_dir(tmp.path());
        (tmp, config, kept)
    }

    #[test]
    fn a_config_is_parsed_once_and_then_read_back_the_same() {
        let (_tmp, config, kept) = setup();
        let (first, source) = kept.load_telling(&config).unwrap();
        assert_eq!(source, Source::Parsed);
        assert!(kept.path().exists());
        let (second, source) = kept.load_telling(&config).unwrap();
        assert_eq!(source, Source::Kept);
        assert_eq!(first, second);
        assert_eq!(second, Config::load(&config).unwrap());
    }

    #[test]
    fn an_edited_config_is_parsed_anew_and_kept_in_place_of_the_old() {
        let (_tmp, config, kept) = setup();
        kept.load(&config).unwrap();
        std::fs::write(&config, TEXT.replace("\"2m\"", "\"3m\"")).unwrap();
        let (edited, source) = kept.load_telling(&config).unwrap();
        assert_eq!(source, Source::Parsed);
        assert_eq!(
            edited.daemon.refresh_ahead,
            std::time::Duration::from_secs(180)
        );
        assert_eq!(kept.load_telling(&config).unwrap().1, Source::Kept);
    }

    /// The kept parse is what is served: proved by keeping one that the
    /// text would not give, under the text's own key.
    #[test]
    fn the_kept_parse_is_served_only_under_its_own_key() {
        let (_tmp, config, kept) = setup();
        let key = key_of(TEXT, home().as_deref(), build().as_deref());
        let mut other = Config::parse(TEXT, &config).unwrap();
        other.daemon.refresh_ahead = std::time::Duration::from_secs(7);
        kept.write(&key, &other);
        assert_eq!(kept.load(&config).unwrap(), other);

        // Another home or another build: another key.
        assert_ne!(
            key,
            key_of(TEXT, Some(Path::new("/elsewhere")), build().as_deref())
        );
        assert_ne!(key, key_of(TEXT, home().as_deref(), Some(b"another build")));
        // The same parts split differently: another key.
        assert_ne!(
            key_of("ab", None, Some(b"c")),
            key_of("a", None, Some(b"bc"))
        );
    }

    #[test]
    fn a_damaged_or_foreign_file_is_parsed_over_and_replaced() {
        let (_tmp, config, kept) = setup();
        let good = Config::load(&config).unwrap();
        kept.load(&config).unwrap();
        let whole = std::fs::read(kept.path()).unwrap();
        let mut flipped = whole.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let damaged: [Vec<u8>; 5] = [
            Vec::new(),
            b"garbage".to_vec(),
            whole[..HEADER + 3].to_vec(),
            flipped,
            {
                let mut format = whole.clone();
                format[MAGIC.len()] = FORMAT + 1;
                format
            },
        ];
        for bytes in damaged {
            std::fs::write(kept.path(), &bytes).unwrap();
            let (config, source) = kept.load_telling(&config).unwrap();
            assert_eq!(source, Source::Parsed);
            assert_eq!(config, good);
            assert_eq!(std::fs::read(kept.path()).unwrap(), whole, "written anew");
        }
    }

    #[test]
    fn a_bad_config_is_an_error_whatever_was_kept() {
        let (_tmp, config, kept) = setup();
        kept.load(&config).unwrap();
        std::fs::write(&config, "[credentials.x]\nkind = \"nope\"\n").unwrap();
        let e = kept.load(&config).unwrap_err();
        assert_eq!(e.problems[0].at, "credentials.x.kind");
        // A missing config is the built-in one, as without a kept parse.
        std::fs::remove_file(&config).unwrap();
        assert_eq!(kept.load(&config).unwrap(), Config::builtin());
    }

    #[cfg(unix)]
    #[test]
    fn the_kept_parse_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let (_tmp, config, kept) = setup();
        kept.load(&config).unwrap();
        let mode = std::fs::metadata(kept.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    /// The checks that read other files are made on a kept parse too: a
    /// key file that is no longer one `lifetime` applies to fails the
    /// load, though the config text (and so the kept parse) is the same.
    #[test]
    fn the_checks_that_read_files_run_on_a_kept_parse_too() {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("key.json");
        std::fs::write(&key, r#"{"type":"impersonated_service_account"}"#).unwrap();
        let config = tmp.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[credentials.g]\nkind = \"google\"\nkey_file = {:?}\nlifetime = \"2h\"\n",
                key.display().to_string()
            ),
        )
        .unwrap();
        let kept = ParsedConfig::in_dir(tmp.path());
        assert_eq!(kept.load_telling(&config).unwrap().1, Source::Parsed);
        assert_eq!(kept.load_telling(&config).unwrap().1, Source::Kept);
        std::fs::write(&key, r#"{"type":"service_account"}"#).unwrap();
        let e = kept.load(&config).unwrap_err();
        assert_eq!(e.problems[0].at, "credentials.g.lifetime", "{e}");
    }
}
