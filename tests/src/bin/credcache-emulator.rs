//! `credcache-emulator`: the cloud emulator as a process, to try credcache
//! by hand and for demos that cannot link it in.
//!
//! `demo` runs the product against the emulator (see `credcache_tests::demo`).
//! `serve` writes the credential files, registers what its flags name,
//! prints `listening on http://127.0.0.1:PORT` and then a config.toml
//! snippet pointing every kind at itself (ending with
//! [`snippet::END_MARKER`]) to stdout, then serves until SIGINT or SIGTERM.
//! Everything else is driven over `/__emulator/`, listed by `serve --help`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use credcache_shared::config::Config;
use credcache_tests::emulator::snippet::{self, ContainerApp, EntraClient, Snippet};
use credcache_tests::emulator::{CONTROL_ENDPOINTS, Emulator, Endpoint, FAULT_PRESETS};

/// The emulated Google, Entra, GKE, Container Apps and API Management
/// endpoints on 127.0.0.1, for trying credcache offline.
#[derive(Debug, Parser)]
#[command(name = "credcache-emulator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the emulated clouds on 127.0.0.1 and print a config.toml for credcache
    #[command(after_help = serve_after_help())]
    Serve(ServeArgs),
    /// Show credcache at work against the emulator, in a throwaway home (about five seconds)
    ///
    /// Starts the emulator, writes a config for it in a temporary directory,
    /// and runs the real `credcache` (which starts the real `credcached`)
    /// from beside this binary: a token of each cloud kind, what kubectl and curl
    /// get, a background refresh seen through `credcache watch`, and
    /// `credcache status`. Nothing leaves 127.0.0.1 and nothing is kept.
    Demo,
}

/// The options of `serve`.
#[derive(Debug, Args)]
struct ServeArgs {
    /// The loopback port (0: one the system picks)
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Write service-account.json and authorized-user.json here (created
    /// 0700 if missing) [default: a temporary directory, removed at exit]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Write a Google service-account key file here too (repeatable; the
    /// config uses the first)
    #[arg(long, value_name = "PATH")]
    service_account: Vec<PathBuf>,
    /// Write a Google authorized-user file here too (repeatable; the config
    /// uses the first)
    #[arg(long, value_name = "PATH")]
    authorized_user: Vec<PathBuf>,
    /// Accept this Entra app; its client secret is read from the variable
    /// SECRET_ENV, never from the command line (repeatable; the config uses
    /// the first)
    // Checked in `serve`, not by clap, whose error would repeat the value:
    // that may be a secret typed where its variable's name belongs.
    #[arg(long, value_name = "TENANT:CLIENT_ID:SECRET_ENV")]
    entra_client: Vec<String>,
    /// Accept only these GKE clusters, projects/P/locations/L/azureClusters/C
    /// (repeatable) [default: any]
    #[arg(long, value_name = "NAME")]
    cluster: Vec<String>,
    /// Accept only these container apps (repeatable) [default: any]
    #[arg(long, value_name = "SUBSCRIPTION/RESOURCE_GROUP/APP", value_parser = parse_container_app)]
    container_app: Vec<ContainerApp>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Demo => credcache_tests::demo::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("credcache-emulator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let entra_clients = args
        .entra_client
        .iter()
        .map(|text| parse_entra_client(text))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--entra-client: {e}"))?;
    // Every secret is read before anything starts, so a missing one fails fast.
    let mut secrets = Vec::new();
    for client in &entra_clients {
        let name = &client.secret_env;
        match std::env::var(name) {
            Ok(secret) if !secret.is_empty() => secrets.push(secret),
            _ => {
                bail!("--entra-client: {name} is not set: export the client secret as {name} first")
            }
        }
    }
    let emulator = Emulator::start_on_port(args.port)
        .with_context(|| format!("failed to listen on 127.0.0.1:{}", args.port))?;
    let (dir, _temporary) = match &args.dir {
        Some(dir) => {
            create_private_dir(dir)?;
            (dir.clone(), None)
        }
        None => {
            let temporary = tempfile::Builder::new()
                .prefix("credcache-emulator")
                .tempdir()
                .context("failed to create a temporary directory")?;
            (temporary.path().to_owned(), Some(temporary))
        }
    };

    let mut service_accounts = args.service_account.clone();
    if service_accounts.is_empty() {
        service_accounts.push(dir.join("service-account.json"));
    }
    for path in &service_accounts {
        emulator
            .try_write_service_account_key(path)
            .with_context(|| format!("failed to write service account key {}", path.display()))?;
    }
    let mut authorized_users = args.authorized_user.clone();
    if authorized_users.is_empty() {
        authorized_users.push(dir.join("authorized-user.json"));
    }
    for path in &authorized_users {
        emulator
            .try_write_authorized_user(path, None)
            .with_context(|| format!("failed to write authorized user file {}", path.display()))?;
    }
    for (client, secret) in entra_clients.iter().zip(&secrets) {
        emulator.register_client(&client.tenant, &client.client_id, secret);
    }
    for cluster in &args.cluster {
        emulator.register_cluster(cluster);
    }
    for app in &args.container_app {
        emulator.register_container_app(&app.subscription_id, &app.resource_group, &app.app);
    }

    let snippet = Snippet {
        url: emulator.url(),
        service_account: absolute(&service_accounts[0])?,
        authorized_user: absolute(&authorized_users[0])?,
        entra: entra_clients.first().cloned(),
        cluster: args
            .cluster
            .first()
            .cloned()
            .unwrap_or_else(|| snippet::DEFAULT_CLUSTER.to_owned()),
        container_app: args.container_app.first().cloned().unwrap_or_default(),
    }
    .render();
    // What the flags named must make a config credcache accepts.
    if let Err(e) = Config::parse(&snippet, Path::new("the printed config")) {
        let problems: Vec<String> = e.lines().collect();
        bail!("{}", problems.join("; "));
    }

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", emulator.url()).context("failed to write to stdout")?;
    stdout
        .write_all(snippet.as_bytes())
        .context("failed to write to stdout")?;
    stdout.flush().context("failed to flush stdout")?;
    drop(stdout);
    wait_for_shutdown_signal()?;
    drop(emulator);
    Ok(())
}

/// `TENANT:CLIENT_ID:SECRET_ENV`, checked as credcache's config would.
fn parse_entra_client(text: &str) -> Result<EntraClient, String> {
    let [tenant, client_id, secret_env] = text.split(':').collect::<Vec<_>>()[..] else {
        return Err("expected TENANT:CLIENT_ID:SECRET_ENV (the secret itself is read from the variable SECRET_ENV)".to_owned());
    };
    if tenant.is_empty()
        || !tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
    {
        return Err(format!("'{tenant}' is not a tenant UUID or domain"));
    }
    let uuid_shape = client_id.len() == 36
        && client_id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if !uuid_shape {
        return Err(format!(
            "client id '{client_id}' is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
        ));
    }
    let env_shape = secret_env
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && secret_env
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !env_shape {
        // Not quoted: it may be the secret itself.
        return Err(
            "SECRET_ENV is not an environment variable name: name the variable that holds the secret, not the secret".to_owned(),
        );
    }
    Ok(EntraClient {
        tenant: tenant.to_owned(),
        client_id: client_id.to_ascii_lowercase(),
        secret_env: secret_env.to_owned(),
    })
}

/// `SUBSCRIPTION/RESOURCE_GROUP/APP`.
fn parse_container_app(text: &str) -> Result<ContainerApp, String> {
    match text.split('/').collect::<Vec<_>>()[..] {
        [subscription_id, resource_group, app]
            if [subscription_id, resource_group, app]
                .iter()
                .all(|part| !part.is_empty()) =>
        {
            Ok(ContainerApp {
                subscription_id: subscription_id.to_owned(),
                resource_group: resource_group.to_owned(),
                app: app.to_owned(),
            })
        }
        _ => Err("expected SUBSCRIPTION/RESOURCE_GROUP/APP".to_owned()),
    }
}

/// Creates `dir` (and its parents) with mode 0700 if it is missing.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("failed to create {}", dir.display()))
}

/// The config must name files wherever credcache is run from.
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("failed to resolve {}", path.display()))
}

/// What `serve --help` says after the options: what it prints, the cloud
/// endpoints, and one line per control endpoint.
fn serve_after_help() -> String {
    let mut help = String::from(
        "Output: the line `listening on http://127.0.0.1:PORT`, then a config.toml snippet \
         with one credential of every kind (emu-gcp, emu-gcp-user, emu-gke, emu-corp, emu-app, \
         emu-apim, emu-command) pointed at this emulator, ending with the line \
         `# end of credcache config`. Paste it into ~/.config/credcache/config.toml. The \
         emulator serves until SIGINT (Ctrl-C) or SIGTERM.\n\n\
         Cloud endpoints (paths as the clouds have them):\n  \
         POST /token                                  Google OAuth (service-account JWT, refresh token)\n  \
         GET  /computeMetadata/v1/...                 GCE metadata server (GCE_METADATA_HOST=127.0.0.1:PORT)\n  \
         POST /{tenant}/oauth2/v2.0/token             Microsoft Entra (authority_host = URL)\n  \
         GET  /metadata/identity/oauth2/token         Azure IMDS managed identity\n  \
         GET  /msi/token                              App Service managed identity (IDENTITY_ENDPOINT=URL/msi/token)\n  \
         GET  /v1/projects/.../azureClusters/C:generateAzureAccessToken   GKE multi-cloud (endpoint = URL)\n  \
         POST /subscriptions/.../containerApps/A/getAuthtoken             Container Apps (arm_endpoint = URL)\n  \
         POST /subscriptions/.../service/S/users/U/token                  API Management, any service and user (arm_endpoint = URL)\n\n\
         Control endpoints (JSON in and out; `?` marks an optional field):\n",
    );
    for endpoint in CONTROL_ENDPOINTS {
        let body = if endpoint.body.is_empty() {
            String::new()
        } else {
            format!(" {}", endpoint.body)
        };
        let _ = writeln!(
            help,
            "  {:<4} {}{body}: {}",
            endpoint.method, endpoint.path, endpoint.what
        );
    }
    let endpoints: Vec<&str> = Endpoint::ALL.iter().map(|e| e.name()).collect();
    let _ = write!(
        help,
        "\nEndpoint names: {}.\nFault presets: {}. \"times\": absent once, N, null until cleared.\n\n\
         Examples:\n  \
         curl -s http://127.0.0.1:PORT/__emulator/calls\n  \
         curl -s -d '{{\"endpoint\": \"google-token\", \"preset\": \"throttled\", \"retry_after\": 30}}' \
         http://127.0.0.1:PORT/__emulator/fault",
        endpoints.join(", "),
        FAULT_PRESETS.join(", ")
    );
    help
}

/// Blocks until SIGINT or (on Unix) SIGTERM.
fn wait_for_shutdown_signal() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start a signal runtime")?;
    runtime.block_on(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).context("failed to watch SIGTERM")?;
            tokio::select! {
                result = tokio::signal::ctrl_c() => result.context("failed to watch SIGINT"),
                _ = term.recv() => Ok(()),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c()
                .await
                .context("failed to watch Ctrl-C")
        }
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn entra_client_flag() {
        let client =
            parse_entra_client("emu-tenant:11111111-1111-1111-1111-11111111111A:EMU_SECRET")
                .unwrap();
        assert_eq!(client.client_id, "11111111-1111-1111-1111-11111111111a");
        assert_eq!(client.secret_env, "EMU_SECRET");
        assert!(parse_entra_client("t:c").is_err());
        assert!(parse_entra_client("t:not-a-uuid:S").is_err());
        let inline =
            parse_entra_client("t:11111111-1111-1111-1111-111111111111:hunter2!").unwrap_err();
        assert!(
            inline.contains("not an environment variable name"),
            "{inline}"
        );
        assert!(!inline.contains("hunter2"), "{inline}");
    }

    #[test]
    fn container_app_flag() {
        let app = parse_container_app("sub/rg/app").unwrap();
        assert_eq!(
            (app.subscription_id.as_str(), app.app.as_str()),
            ("sub", "app")
        );
        assert!(parse_container_app("sub/rg").is_err());
        assert!(parse_container_app("sub//app").is_err());
    }
}
