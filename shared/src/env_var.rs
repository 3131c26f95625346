//! Which environment variables a token may be put in (`env_var`, used by
//! `get --format env` and `exec`).
//!
//! A token lands in a variable that the next program reads. Some variables
//! are read by the dynamic loader, a shell or an interpreter as code to
//! run, as a place to load code or configuration from, or as where to send
//! traffic: `BASH_ENV=/tmp/x` makes every `bash -c` run `/tmp/x`,
//! `KUBECONFIG` names a file whose exec plugin kubectl runs. Whoever can
//! choose the name and the value (a hostile config edit, or a fake daemon
//! on a planted socket) then runs their code in the user's next command.
//!
//! The rule: a token never goes in a variable that a common program reads
//! as
//!
//! 1. code, options or a program to start: shell startup and prompt
//!    variables (`BASH_ENV`, `ENV`, `BASH_*`, `PROMPT_COMMAND`, `PS1`–`PS4`,
//!    `SHELLOPTS`, `BASHOPTS`, `IFS`, `ZDOTDIR`), interpreter options
//!    (`PYTHON*`, `PERL*`, `RUBY*`, `NODE_*`, `LUA_*`, `JAVA_TOOL_OPTIONS`,
//!    `_JAVA_OPTIONS`, `JDK_JAVA_OPTIONS`), programs other programs start
//!    (`EDITOR`, `VISUAL`, `PAGER`, `MANPAGER`, `BROWSER`, `*ASKPASS`,
//!    `CREDCACHE_AZ`, `CREDCACHE_AZD`, `CLOUDSDK_PYTHON`) and git's own
//!    (`GIT_*`);
//! 2. a place to find code, libraries or configuration: `PATH`, `LD_*`,
//!    `DYLD_*`, `GLIBC_TUNABLES`, `GCONV_PATH`, `LOCPATH`, `NLSPATH`,
//!    `CLASSPATH`, `HOME`, `SHELL`, `TMPDIR`, `CDPATH`, `FPATH`, `XDG_*`,
//!    `KUBECONFIG`, `DOCKER_CONFIG`, `AWS_CONFIG_FILE`,
//!    `AWS_SHARED_CREDENTIALS_FILE`, `GOOGLE_APPLICATION_CREDENTIALS`,
//!    `CLOUDSDK_CONFIG`, and credcache's own `CREDCACHE_CONFIG`,
//!    `CREDCACHE_SOCKET`, `CREDCACHE_DATA_DIR`;
//! 3. where to send requests or whom to trust: `HTTP_PROXY`, `HTTPS_PROXY`,
//!    `ALL_PROXY`, `NO_PROXY`, `SSL_CERT_FILE`, `SSL_CERT_DIR`,
//!    `CURL_CA_BUNDLE`, `REQUESTS_CA_BUNDLE`, `DOCKER_HOST`, `SSH_*`,
//!    `AZURE_AUTHORITY_HOST`, `IDENTITY_ENDPOINT`, `IDENTITY_HEADER`,
//!    `IMDS_ENDPOINT`, `MSI_ENDPOINT`, `MSI_SECRET`,
//!    `AZURE_CLIENT_CERTIFICATE_PATH`, `GCE_METADATA_HOST`,
//!    `GCE_METADATA_IP`.
//!
//! Names are compared ignoring case (curl reads `http_proxy`, zsh ties
//! `path` to `PATH`). The default names, `CREDCACHE_<NAME>_TOKEN`, never
//! match, and neither do the variables tokens are meant for
//! (`VAULT_TOKEN`, `GITHUB_TOKEN`, `AWS_SESSION_TOKEN`, `ARM_ACCESS_TOKEN`,
//! `CLOUDSDK_AUTH_ACCESS_TOKEN`, …). The list is checked when the config is
//! loaded and again by the client before it exports anything, since the
//! daemon's answer is not trusted.

/// Names refused whole, with the reason a user reads.
const EXACT: &[(&str, &str)] = &[
    ("ENV", "sh runs the file it names"),
    ("PROMPT_COMMAND", "bash runs it"),
    ("PS1", "shells expand it as code"),
    ("PS2", "shells expand it as code"),
    ("PS3", "shells expand it as code"),
    ("PS4", "shells expand it as code"),
    ("SHELLOPTS", "it sets bash's options"),
    ("BASHOPTS", "it sets bash's options"),
    ("IFS", "it changes how shells split words"),
    ("ZDOTDIR", "zsh reads its startup files from it"),
    ("CDPATH", "it changes where shells `cd`"),
    ("FPATH", "zsh loads functions from it"),
    ("JAVA_TOOL_OPTIONS", "the JVM reads options from it"),
    ("_JAVA_OPTIONS", "the JVM reads options from it"),
    ("JDK_JAVA_OPTIONS", "the JVM reads options from it"),
    ("CLASSPATH", "the JVM loads code from it"),
    ("EDITOR", "programs run it"),
    ("VISUAL", "programs run it"),
    ("PAGER", "programs run it"),
    ("MANPAGER", "programs run it"),
    ("BROWSER", "programs run it"),
    ("CREDCACHE_AZ", "credcached runs it"),
    ("CREDCACHE_AZD", "credcached runs it"),
    ("CLOUDSDK_PYTHON", "gcloud runs it"),
    ("PATH", "programs are looked up in it"),
    ("GLIBC_TUNABLES", "the C library reads settings from it"),
    ("GCONV_PATH", "the C library loads code from it"),
    ("LOCPATH", "the C library loads locales from it"),
    ("NLSPATH", "the C library loads messages from it"),
    ("HOME", "programs read their configuration under it"),
    ("SHELL", "programs run it"),
    ("TMPDIR", "programs write temporary files in it"),
    (
        "KUBECONFIG",
        "kubectl reads it, and runs the exec plugins it names",
    ),
    (
        "DOCKER_CONFIG",
        "docker runs the credential helpers it names",
    ),
    ("DOCKER_HOST", "docker sends everything to it"),
    (
        "AWS_CONFIG_FILE",
        "AWS SDKs run the credential_process it names",
    ),
    (
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS SDKs read credentials from it",
    ),
    (
        "GOOGLE_APPLICATION_CREDENTIALS",
        "Google SDKs read their identity from it",
    ),
    ("CLOUDSDK_CONFIG", "gcloud reads its configuration from it"),
    (
        "CREDCACHE_CONFIG",
        "credcache reads its configuration from it",
    ),
    ("CREDCACHE_SOCKET", "credcache trusts the daemon on it"),
    ("CREDCACHE_DATA_DIR", "credcached keeps its cache in it"),
    ("HTTP_PROXY", "programs send their requests through it"),
    ("HTTPS_PROXY", "programs send their requests through it"),
    ("ALL_PROXY", "programs send their requests through it"),
    ("NO_PROXY", "it decides which requests bypass the proxy"),
    ("SSL_CERT_FILE", "TLS libraries trust what it names"),
    ("SSL_CERT_DIR", "TLS libraries trust what it names"),
    ("CURL_CA_BUNDLE", "curl trusts what it names"),
    ("REQUESTS_CA_BUNDLE", "Python requests trusts what it names"),
    ("AZURE_AUTHORITY_HOST", "Azure SDKs send secrets to it"),
    ("IDENTITY_ENDPOINT", "Azure SDKs take tokens from it"),
    ("IDENTITY_HEADER", "Azure SDKs send it with token requests"),
    ("IMDS_ENDPOINT", "Azure SDKs take tokens from it"),
    ("MSI_ENDPOINT", "Azure SDKs take tokens from it"),
    ("MSI_SECRET", "Azure SDKs send it with token requests"),
    (
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "Azure SDKs sign in with the key it names",
    ),
    ("GCE_METADATA_HOST", "Google SDKs take tokens from it"),
    ("GCE_METADATA_IP", "Google SDKs take tokens from it"),
];

/// Name prefixes refused, with the reason.
const PREFIXES: &[(&str, &str)] = &[
    ("LD_", "the dynamic loader reads it"),
    ("DYLD_", "the dynamic loader reads it"),
    ("BASH_", "bash reads it (BASH_ENV runs a file)"),
    ("PYTHON", "Python reads code or options from it"),
    ("PERL", "Perl reads code or options from it"),
    ("RUBY", "Ruby reads code or options from it"),
    ("NODE_", "Node.js reads code or options from it"),
    ("LUA_", "Lua reads code from it"),
    (
        "GIT_",
        "git reads commands and settings from GIT_* variables",
    ),
    ("XDG_", "programs read their configuration or data under it"),
    ("SSH_", "ssh reads it (an agent socket, a program to run)"),
];

/// Name suffixes refused, with the reason.
const SUFFIXES: &[(&str, &str)] = &[("ASKPASS", "programs run it to ask for a password")];

/// Why a token must not go in `name`, or `None` if it may. `name` is
/// assumed to be a valid variable name ([`is_name`]).
pub fn refused(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    EXACT
        .iter()
        .find(|(n, _)| *n == upper)
        .or_else(|| PREFIXES.iter().find(|(p, _)| upper.starts_with(p)))
        .or_else(|| SUFFIXES.iter().find(|(s, _)| upper.ends_with(s)))
        .map(|(_, why)| *why)
}

/// Whether `name` is a shell variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The one-line problem with `name` as a place for a token, or `None`.
pub fn problem(name: &str) -> Option<String> {
    if !is_name(name) {
        return Some(format!("{name:?} is not a valid environment variable name"));
    }
    refused(name).map(|why| {
        format!(
            "{name:?} is refused: {why}; a token may only go in a variable no program reads as code, a path or a setting (e.g. CREDCACHE_<NAME>_TOKEN, VAULT_TOKEN)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_env_var;

    #[test]
    fn the_red_team_names_and_their_kin_are_refused() {
        for name in [
            "BASH_ENV",
            "ENV",
            "LD_PRELOAD",
            "ld_library_path",
            "DYLD_INSERT_LIBRARIES",
            "PATH",
            "Path",
            "PROMPT_COMMAND",
            "PS4",
            "IFS",
            "SHELLOPTS",
            "BASHOPTS",
            "PYTHONSTARTUP",
            "PYTHONPATH",
            "NODE_OPTIONS",
            "PERL5OPT",
            "PERL5LIB",
            "RUBYOPT",
            "JAVA_TOOL_OPTIONS",
            "GIT_SSH_COMMAND",
            "GIT_CONFIG_PARAMETERS",
            "HOME",
            "SHELL",
            "KUBECONFIG",
            "https_proxy",
            "SSH_ASKPASS",
            "SUDO_ASKPASS",
            "GLIBC_TUNABLES",
            "CREDCACHE_SOCKET",
        ] {
            assert!(refused(name).is_some(), "{name} should be refused");
            let line = problem(name).unwrap();
            assert!(line.contains(name) && !line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn token_variables_and_the_defaults_are_allowed() {
        for name in [
            "VAULT_TOKEN",
            "GITHUB_TOKEN",
            "GH_TOKEN",
            "GITLAB_TOKEN",
            "AWS_SESSION_TOKEN",
            "ARM_ACCESS_TOKEN",
            "CLOUDSDK_AUTH_ACCESS_TOKEN",
            "GOOGLE_OAUTH_ACCESS_TOKEN",
            "AZURE_ACCESS_TOKEN",
            "TF_VAR_token",
            "_x",
        ] {
            assert_eq!(problem(name), None, "{name}");
        }
        for credential in ["gcp", "prod-gke", "a.b", "ld", "path", "git", "x", "az"] {
            let var = default_env_var(credential);
            assert_eq!(problem(&var), None, "{var}");
        }
    }

    #[test]
    fn the_config_reports_a_refused_env_var_on_one_line() {
        let text =
            "[credentials.v]\nkind = \"command\"\ncommand = [\"x\"]\nenv_var = \"BASH_ENV\"\n";
        let err = crate::config::Config::parse(text, std::path::Path::new("c.toml")).unwrap_err();
        let lines: Vec<String> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("c.toml: credentials.v.env_var: \"BASH_ENV\" is refused: bash"),
            "{lines:?}"
        );
    }

    #[test]
    fn names_that_are_not_names_are_refused() {
        for bad in ["", "1A", "A-B", "A=B", "A.B", "X;rm -rf ~"] {
            assert!(problem(bad).unwrap().contains("not a valid"), "{bad}");
        }
    }
}
