//! `kind = "azure"`: a Microsoft Entra access token, by one of the methods
//! users sign in with (one module each). `auto` takes the first method that
//! is configured, in the Azure SDK's `DefaultAzureCredential` order.
//!
//! The environment is read as the Azure SDK reads it (an empty variable is
//! an unset one). Settings in the config file win over the environment.
//!
//! | variable | used for |
//! |---|---|
//! | `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` | tenant and app when the config has no `tenant_id`/`client_id` (client secret, workload identity); under `auto`, also the user-assigned managed identity, as `DefaultAzureCredential` does |
//! | `AZURE_CLIENT_SECRET` | `auto`'s client secret |
//! | `AZURE_CLIENT_CERTIFICATE_PATH`, `AZURE_CLIENT_CERTIFICATE_PASSWORD`, `AZURE_CLIENT_SEND_CERTIFICATE_CHAIN` | the certificate (`auto`'s, or when the config names none) |
//! | `AZURE_FEDERATED_TOKEN_FILE` | workload identity's assertion, re-read on every fetch |
//! | `AZURE_AUTHORITY_HOST` | the Entra host when the config has no `authority_host` |
//! | `IDENTITY_ENDPOINT`, `IDENTITY_HEADER` | App Service managed identity |
//! | `MSI_ENDPOINT`, `MSI_SECRET` | Cloud Shell, App Service's 2017 API |
//! | `IDENTITY_ENDPOINT`, `IMDS_ENDPOINT` | Azure Arc |
//! | `CREDCACHE_AZ` | the Azure CLI program (default `az` from `PATH`) |
//! | `CREDCACHE_AZD` | the Azure Developer CLI program (default `azd` from `PATH`) |
//!
//! What the environment decides is resolved once, into a [`Plan`], when the
//! config is loaded: the provider fetches by it and the settings fingerprint
//! hashes it, so the two always agree on which identity a credential is.
//! Secrets (the client secret, the certificate's password, the federated
//! token, `IDENTITY_HEADER`, `MSI_SECRET`) are not part of a plan: they are
//! read afresh on every fetch.

pub(crate) mod azd;
pub(crate) mod certificate;
pub(crate) mod cli;
mod client_secret;
pub(crate) mod managed_identity;
mod workload_identity;

use std::path::PathBuf;

use credcache_shared::config::{AzureMethod, AzureSettings, DEFAULT_AUTHORITY_HOST, SecretSource};
use serde::Serialize;

use super::{BoxFuture, FetchContext, FetchError, Fetched, Provider, token_response};
use crate::http;

pub use managed_identity::{MiEndpoint, UserAssigned};

/// Reads an environment variable; `None` when unset or empty.
pub type Env<'a> = &'a (dyn Fn(&str) -> Option<String> + Sync);

/// The daemon's own environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A method with everything the environment decided for it resolved; no
/// secrets. Missing pieces stay `None` and are reported at fetch, where the
/// error reaches the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Plan {
    ClientSecret {
        tenant_id: Option<String>,
        client_id: Option<String>,
        secret: Option<SecretSource>,
        authority: String,
    },
    /// The assertion file is named by `AZURE_FEDERATED_TOKEN_FILE`, read at
    /// fetch: its content rotates and is no part of the identity.
    WorkloadIdentity {
        tenant_id: Option<String>,
        client_id: Option<String>,
        authority: String,
    },
    /// The certificate file is part of the identity (its content is
    /// fingerprinted); its password is read at fetch.
    Certificate {
        tenant_id: Option<String>,
        client_id: Option<String>,
        file: Option<PathBuf>,
        password: Option<SecretSource>,
        send_chain: bool,
        authority: String,
    },
    ManagedIdentity {
        endpoint: MiEndpoint,
        /// A user-assigned identity; `None` is the system-assigned one.
        identity: Option<UserAssigned>,
    },
    Cli {
        program: String,
        tenant_id: Option<String>,
    },
    Azd {
        program: String,
        tenant_id: Option<String>,
    },
    /// A user signed in with `credcache login` (`signed_in.rs`): tenant,
    /// client and authority are in the sign-in, derived from the settings.
    SignedIn,
}

impl Plan {
    /// The method, as `auto`'s messages name it.
    pub fn describe(&self) -> &'static str {
        match self {
            Plan::ClientSecret { .. } => "client secret",
            Plan::Certificate { .. } => "certificate",
            Plan::WorkloadIdentity { .. } => "workload identity",
            Plan::ManagedIdentity { .. } => "managed identity",
            Plan::Cli { .. } => "the Azure CLI",
            Plan::Azd { .. } => "the Azure Developer CLI",
            Plan::SignedIn => "a signed-in user",
        }
    }
}

/// What `auto` chose and why, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub plan: Plan,
    /// `Some` when `auto` chose: the reason, in a few words.
    pub because: Option<&'static str>,
}

/// Resolves the method for `settings` in `env`.
pub fn plan(settings: &AzureSettings, env: Env<'_>) -> Chosen {
    let (method, because) = match settings.method {
        AzureMethod::Auto => {
            let (m, why) = choose(settings, env);
            (m, Some(why))
        }
        configured => (configured, None),
    };
    let or_env = |configured: &Option<String>, var: &str| configured.clone().or_else(|| env(var));
    let authority = authority_host(settings, env);
    let plan = match method {
        AzureMethod::ClientSecret => Plan::ClientSecret {
            tenant_id: or_env(&settings.tenant_id, "AZURE_TENANT_ID"),
            client_id: or_env(&settings.client_id, "AZURE_CLIENT_ID"),
            secret: settings.client_secret.clone().or_else(|| {
                env("AZURE_CLIENT_SECRET").map(|_| SecretSource::Env("AZURE_CLIENT_SECRET".into()))
            }),
            authority,
        },
        AzureMethod::WorkloadIdentity => Plan::WorkloadIdentity {
            tenant_id: or_env(&settings.tenant_id, "AZURE_TENANT_ID"),
            client_id: or_env(&settings.client_id, "AZURE_CLIENT_ID"),
            authority,
        },
        AzureMethod::Certificate => Plan::Certificate {
            tenant_id: or_env(&settings.tenant_id, "AZURE_TENANT_ID"),
            client_id: or_env(&settings.client_id, "AZURE_CLIENT_ID"),
            file: settings
                .certificate_file
                .clone()
                .or_else(|| env("AZURE_CLIENT_CERTIFICATE_PATH").map(PathBuf::from)),
            password: settings.certificate_password.clone().or_else(|| {
                env("AZURE_CLIENT_CERTIFICATE_PASSWORD")
                    .map(|_| SecretSource::Env("AZURE_CLIENT_CERTIFICATE_PASSWORD".into()))
            }),
            send_chain: settings.send_certificate_chain.unwrap_or_else(|| {
                env("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN")
                    .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true"))
            }),
            authority,
        },
        AzureMethod::ManagedIdentity | AzureMethod::Auto => Plan::ManagedIdentity {
            endpoint: managed_identity::endpoint(settings, env, because.is_some()),
            // `ManagedIdentityCredential` alone takes no client id from the
            // environment; `DefaultAzureCredential` passes AZURE_CLIENT_ID.
            identity: UserAssigned::from_settings(
                settings,
                if because.is_some() {
                    or_env(&settings.client_id, "AZURE_CLIENT_ID")
                } else {
                    settings.client_id.clone()
                },
            ),
        },
        AzureMethod::Cli => Plan::Cli {
            program: cli::program(env),
            tenant_id: settings.tenant_id.clone(),
        },
        AzureMethod::Azd => Plan::Azd {
            program: azd::program(env),
            tenant_id: settings.tenant_id.clone(),
        },
        AzureMethod::DeviceCode | AzureMethod::Browser => Plan::SignedIn,
    };
    Chosen { plan, because }
}

/// `auto`: client secret (configured, or all three of AZURE_TENANT_ID,
/// AZURE_CLIENT_ID and AZURE_CLIENT_SECRET), then a certificate (configured,
/// or AZURE_CLIENT_CERTIFICATE_PATH, with both ids), then workload identity,
/// then a managed identity whose endpoint is set, then the Azure CLI if
/// installed, then azd if installed, and last IMDS, as on an Azure VM.
fn choose(settings: &AzureSettings, env: Env<'_>) -> (AzureMethod, &'static str) {
    let known = |configured: &Option<String>, var: &str| configured.is_some() || env(var).is_some();
    let secret = settings.client_secret.is_some() || env("AZURE_CLIENT_SECRET").is_some();
    if secret
        && known(&settings.tenant_id, "AZURE_TENANT_ID")
        && known(&settings.client_id, "AZURE_CLIENT_ID")
    {
        let why = if settings.client_secret.is_some() {
            "a client secret is configured"
        } else {
            "AZURE_CLIENT_SECRET is set"
        };
        return (AzureMethod::ClientSecret, why);
    }
    let certificate =
        settings.certificate_file.is_some() || env("AZURE_CLIENT_CERTIFICATE_PATH").is_some();
    if certificate
        && known(&settings.tenant_id, "AZURE_TENANT_ID")
        && known(&settings.client_id, "AZURE_CLIENT_ID")
    {
        let why = if settings.certificate_file.is_some() {
            "a certificate is configured"
        } else {
            "AZURE_CLIENT_CERTIFICATE_PATH is set"
        };
        return (AzureMethod::Certificate, why);
    }
    if env("AZURE_FEDERATED_TOKEN_FILE").is_some() {
        return (
            AzureMethod::WorkloadIdentity,
            "AZURE_FEDERATED_TOKEN_FILE is set",
        );
    }
    if settings.identity_endpoint.is_some() {
        return (
            AzureMethod::ManagedIdentity,
            "identity_endpoint is configured",
        );
    }
    if let Some(why) = managed_identity::known_in(env) {
        return (AzureMethod::ManagedIdentity, why);
    }
    if cli::locate(&cli::program(env), env).is_some() {
        return (AzureMethod::Cli, "az is installed");
    }
    if cli::locate(&azd::program(env), env).is_some() {
        return (AzureMethod::Azd, "azd is installed");
    }
    (
        AzureMethod::ManagedIdentity,
        "no client secret, certificate, AZURE_FEDERATED_TOKEN_FILE, IDENTITY_ENDPOINT, \
         MSI_ENDPOINT, az or azd was found, so IMDS was asked",
    )
}

/// `authority_host` from the config, else `AZURE_AUTHORITY_HOST`, else
/// the public cloud.
pub(crate) fn authority_host(settings: &AzureSettings, env: Env<'_>) -> String {
    settings
        .authority_host
        .clone()
        .or_else(|| env("AZURE_AUTHORITY_HOST"))
        .unwrap_or_else(|| DEFAULT_AUTHORITY_HOST.to_owned())
        .trim_end_matches('/')
        .to_owned()
}

/// Files whose content decides the identity: the certificate, and the
/// Azure CLI's profile (which account and subscription `az login` /
/// `az account set` chose).
pub fn identity_files(settings: &AzureSettings, env: Env<'_>) -> Vec<PathBuf> {
    match plan(settings, env).plan {
        Plan::Certificate { file, .. } => file.into_iter().collect(),
        Plan::Cli { .. } => cli::profile_file(env).into_iter().collect(),
        _ => Vec::new(),
    }
}

pub struct Azure {
    settings: AzureSettings,
    chosen: Chosen,
    /// Set for `device-code` and `browser`.
    sign_in: Option<super::signed_in::SignIn>,
}

impl Azure {
    /// Resolves the method in the daemon's environment. `auto` is decided
    /// here, once per config load: installing `az` later takes a
    /// `credcache daemon reload`.
    pub fn new(settings: AzureSettings) -> Self {
        let chosen = plan(&settings, &process_env);
        let sign_in = super::signed_in::SignIn::entra(&settings);
        Self {
            settings,
            chosen,
            sign_in,
        }
    }

    /// Fetches by the plan; `env` is read for what is read at fetch (the
    /// federated token file's name).
    async fn fetch_by_plan(
        &self,
        cx: &FetchContext<'_>,
        env: Env<'_>,
    ) -> Result<Fetched, FetchError> {
        // `get --scope` and the SDK endpoint ask for other scopes.
        let asked = cx.scopes().map(|s| s.join(" "));
        let scope = asked.as_deref().unwrap_or(self.settings.scope.as_str());
        if cx.audience().is_some() {
            return Err(FetchError::config(
                "azure credentials make no Google ID tokens",
            ));
        }
        match &self.chosen.plan {
            Plan::ClientSecret {
                tenant_id,
                client_id,
                secret,
                authority,
            } => {
                let tenant = required(tenant_id.as_deref(), "tenant_id", "AZURE_TENANT_ID")?;
                let client = required(client_id.as_deref(), "client_id", "AZURE_CLIENT_ID")?;
                let secret = secret.as_ref().ok_or_else(|| {
                    FetchError::config("client_secret_env or client_secret_file is not set")
                })?;
                client_secret::fetch(tenant, client, secret, authority, scope, cx).await
            }
            Plan::WorkloadIdentity {
                tenant_id,
                client_id,
                authority,
            } => {
                let tenant = required(tenant_id.as_deref(), "tenant_id", "AZURE_TENANT_ID")?;
                let client = required(client_id.as_deref(), "client_id", "AZURE_CLIENT_ID")?;
                workload_identity::fetch(tenant, client, authority, scope, env, cx).await
            }
            Plan::Certificate {
                tenant_id,
                client_id,
                file,
                password,
                send_chain,
                authority,
            } => {
                let tenant = required(tenant_id.as_deref(), "tenant_id", "AZURE_TENANT_ID")?;
                let client = required(client_id.as_deref(), "client_id", "AZURE_CLIENT_ID")?;
                let file = file.as_deref().ok_or_else(|| {
                    FetchError::config(
                        "certificate_file is not configured and AZURE_CLIENT_CERTIFICATE_PATH is \
                         not set in the daemon's environment",
                    )
                })?;
                let request = certificate::Request {
                    tenant,
                    client_id: client,
                    file,
                    password: password.as_ref(),
                    send_chain: *send_chain,
                    authority,
                    scope,
                };
                certificate::fetch(request, cx).await
            }
            Plan::ManagedIdentity { endpoint, identity } => {
                managed_identity::fetch(endpoint, identity.as_ref(), scope, cx).await
            }
            Plan::Cli { program, tenant_id } => {
                cli::fetch(program, tenant_id.as_deref(), scope, cx).await
            }
            Plan::Azd { program, tenant_id } => {
                azd::fetch(program, tenant_id.as_deref(), scope, cx).await
            }
            Plan::SignedIn => match &self.sign_in {
                Some(sign_in) => super::signed_in::entra(cx, sign_in, scope).await,
                None => Err(FetchError::config("this method does not sign a user in")),
            },
        }
    }
}

impl Provider for Azure {
    fn fetch<'a>(&'a self, cx: &'a FetchContext<'a>) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        Box::pin(async move {
            let Some(why) = self.chosen.because else {
                return self.fetch_by_plan(cx, &process_env).await;
            };
            let method = self.chosen.plan.describe();
            tracing::debug!(credential = cx.name, "azure auto chose {method} ({why})");
            self.fetch_by_plan(cx, &process_env)
                .await
                .map_err(|e| e.context(format_args!("auto chose {method} ({why})")))
        })
    }
}

/// The client-credentials grant at `{authority}/{tenant}/oauth2/v2.0/token`,
/// shared by client secret and workload identity; `form` carries the proof.
async fn entra_token(
    cx: &FetchContext<'_>,
    authority: &str,
    tenant: &str,
    form: &[(&str, &str)],
) -> Result<Fetched, FetchError> {
    let url = format!("{authority}/{tenant}/oauth2/v2.0/token");
    let request = cx.http.client()?.post(url).form(form);
    let answer = http::send("entra token endpoint", request).await?;
    if !answer.is_success() {
        return Err(answer.error(cx.now));
    }
    token_response::parse(&answer, cx.now)
}

/// A required value from the config or the environment, or a config error
/// naming both.
fn required<'a>(value: Option<&'a str>, key: &str, var: &str) -> Result<&'a str, FetchError> {
    value.ok_or_else(|| {
        FetchError::config(format!(
            "{key} is not configured and {var} is not set in the daemon's environment \
             (set it, then run `credcache daemon restart` from that shell)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use credcache_shared::config::DEFAULT_AZURE_SCOPE;

    use super::*;

    fn settings(method: AzureMethod) -> AzureSettings {
        AzureSettings {
            method,
            ..AzureSettings::default()
        }
    }

    fn chosen(settings: &AzureSettings, vars: &[(&str, &str)]) -> Chosen {
        let vars: HashMap<&str, &str> = vars.iter().copied().collect();
        plan(settings, &|n: &str| vars.get(n).map(|v| v.to_string()))
    }

    #[cfg(unix)] // a fake `az` script
    #[test]
    fn auto_follows_the_sdk_order() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let az = tmp.path().join("az");
        std::fs::write(&az, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = tmp.path().display().to_string();
        let auto = settings(AzureMethod::Auto);
        let ids = [("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c")];
        let secret = [("AZURE_CLIENT_SECRET", "s")];
        let federated = [("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token")];
        let app_service = [
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token"),
            ("IDENTITY_HEADER", "h"),
        ];
        let on_path = [("PATH", path.as_str())];
        let all = [&ids[..], &secret, &federated, &app_service, &on_path].concat();
        let c = chosen(&auto, &all);
        assert_eq!(
            c.plan,
            Plan::ClientSecret {
                tenant_id: Some("t".into()),
                client_id: Some("c".into()),
                secret: Some(SecretSource::Env("AZURE_CLIENT_SECRET".into())),
                authority: DEFAULT_AUTHORITY_HOST.into(),
            }
        );
        assert_eq!(c.because, Some("AZURE_CLIENT_SECRET is set"));
        // A secret without the ids is not enough.
        let c = chosen(&auto, &[&secret[..], &ids[..1], &federated].concat());
        assert!(matches!(c.plan, Plan::WorkloadIdentity { .. }), "{c:?}");

        // Without the secret, the federated token file is next.
        let c = chosen(
            &auto,
            &[&ids[..], &federated, &app_service, &on_path].concat(),
        );
        assert_eq!(
            c.plan,
            Plan::WorkloadIdentity {
                tenant_id: Some("t".into()),
                client_id: Some("c".into()),
                authority: DEFAULT_AUTHORITY_HOST.into(),
            }
        );
        assert_eq!(c.because, Some("AZURE_FEDERATED_TOKEN_FILE is set"));
        // Then App Service, as the user-assigned identity AZURE_CLIENT_ID if set.
        let c = chosen(&auto, &[&app_service[..], &on_path].concat());
        assert_eq!(
            c.plan,
            Plan::ManagedIdentity {
                endpoint: MiEndpoint::AppService {
                    url: "http://127.0.0.1:1/msi/token".into()
                },
                identity: None,
            }
        );
        let c = chosen(&auto, &[&ids[1..], &app_service].concat());
        assert!(
            matches!(c.plan, Plan::ManagedIdentity { identity: Some(UserAssigned::ClientId(ref id)), .. } if id == "c"),
            "{c:?}"
        );
        // Then the CLI, if found; IMDS last, marked as a guess.
        let c = chosen(&auto, &[("PATH", path.as_str())]);
        assert_eq!(
            c.plan,
            Plan::Cli {
                program: "az".into(),
                tenant_id: None
            }
        );
        let c = chosen(&auto, &[("CREDCACHE_AZ", &az.display().to_string())]);
        assert!(matches!(c.plan, Plan::Cli { .. }));
        let c = chosen(
            &auto,
            &[("CREDCACHE_AZ", "/nonexistent/az"), ("PATH", &path)],
        );
        assert_eq!(
            c.plan,
            Plan::ManagedIdentity {
                endpoint: MiEndpoint::Imds {
                    base: "http://169.254.169.254".into(),
                    guessed: true
                },
                identity: None,
            }
        );
        assert!(c.because.unwrap().contains("so IMDS was asked"));
    }

    #[test]
    #[cfg(unix)] // executable stand-ins for az and azd
    fn auto_takes_a_certificate_after_a_secret_and_azd_after_az() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        for tool in ["az", "azd"] {
            let p = tmp.path().join(tool);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let azd = tmp.path().join("azd").display().to_string();
        let auto = settings(AzureMethod::Auto);
        let ids = [("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c")];
        let cert = [
            ("AZURE_CLIENT_CERTIFICATE_PATH", "/certs/sp.pfx"),
            ("AZURE_CLIENT_CERTIFICATE_PASSWORD", "pw"),
            ("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "True"),
        ];
        let c = chosen(&auto, &[&ids[..], &cert].concat());
        assert_eq!(
            c.plan,
            Plan::Certificate {
                tenant_id: Some("t".into()),
                client_id: Some("c".into()),
                file: Some("/certs/sp.pfx".into()),
                password: Some(SecretSource::Env(
                    "AZURE_CLIENT_CERTIFICATE_PASSWORD".into()
                )),
                send_chain: true,
                authority: DEFAULT_AUTHORITY_HOST.into(),
            }
        );
        assert_eq!(c.because, Some("AZURE_CLIENT_CERTIFICATE_PATH is set"));
        // A secret comes first; a certificate without the ids is not enough.
        let c = chosen(
            &auto,
            &[&ids[..], &cert, &[("AZURE_CLIENT_SECRET", "s")]].concat(),
        );
        assert!(matches!(c.plan, Plan::ClientSecret { .. }), "{c:?}");
        let c = chosen(
            &auto,
            &[&cert[..], &[("MSI_ENDPOINT", "http://127.0.0.1:1/")]].concat(),
        );
        assert!(
            matches!(
                c.plan,
                Plan::ManagedIdentity {
                    endpoint: MiEndpoint::CloudShell { .. },
                    ..
                }
            ),
            "{c:?}"
        );
        assert_eq!(c.because, Some("MSI_ENDPOINT is set"));
        // A configured certificate file, the chain off by default.
        let mut s = settings(AzureMethod::Auto);
        s.certificate_file = Some("/certs/sp.pem".into());
        let c = chosen(&s, &ids);
        assert!(
            matches!(
                c.plan,
                Plan::Certificate {
                    send_chain: false,
                    ..
                }
            ),
            "{c:?}"
        );
        assert_eq!(c.because, Some("a certificate is configured"));
        // az before azd; azd before IMDS.
        let path = tmp.path().display().to_string();
        let c = chosen(&auto, &[("PATH", path.as_str())]);
        assert!(matches!(c.plan, Plan::Cli { .. }), "{c:?}");
        let c = chosen(
            &auto,
            &[
                ("CREDCACHE_AZ", "/nonexistent/az"),
                ("CREDCACHE_AZD", azd.as_str()),
            ],
        );
        assert_eq!(
            c.plan,
            Plan::Azd {
                program: azd.clone(),
                tenant_id: None
            }
        );
        assert_eq!(c.because, Some("azd is installed"));
    }

    #[test]
    fn user_assigned_by_object_or_resource_id() {
        let mut s = settings(AzureMethod::ManagedIdentity);
        s.object_id = Some("o-1".into());
        let c = chosen(&s, &[("AZURE_CLIENT_ID", "c")]);
        assert!(
            matches!(c.plan, Plan::ManagedIdentity { identity: Some(UserAssigned::ObjectId(ref o)), .. } if o == "o-1"),
            "{c:?}"
        );
        s.object_id = None;
        s.mi_res_id = Some("/subscriptions/x/providers/y".into());
        let c = chosen(&s, &[]);
        assert!(
            matches!(
                c.plan,
                Plan::ManagedIdentity {
                    identity: Some(UserAssigned::ResourceId(_)),
                    ..
                }
            ),
            "{c:?}"
        );
    }

    #[test]
    fn auto_takes_config_before_environment() {
        let mut s = settings(AzureMethod::Auto);
        s.identity_endpoint = Some("http://127.0.0.1:9/".into());
        let c = chosen(
            &s,
            &[
                ("IDENTITY_ENDPOINT", "http://x/msi"),
                ("IDENTITY_HEADER", "h"),
            ],
        );
        assert_eq!(
            c.plan,
            Plan::ManagedIdentity {
                endpoint: MiEndpoint::Imds {
                    base: "http://127.0.0.1:9".into(),
                    guessed: false
                },
                identity: None,
            }
        );
        assert_eq!(c.because, Some("identity_endpoint is configured"));

        // A configured secret file with the ids from the environment.
        s.client_secret = Some(SecretSource::File("/s".into()));
        s.tenant_id = Some("config-tenant".into());
        s.authority_host = Some("https://login.example/".into());
        let c = chosen(
            &s,
            &[
                ("AZURE_TENANT_ID", "env-tenant"),
                ("AZURE_CLIENT_ID", "env-client"),
                ("AZURE_AUTHORITY_HOST", "https://ignored"),
            ],
        );
        assert_eq!(
            c.plan,
            Plan::ClientSecret {
                tenant_id: Some("config-tenant".into()),
                client_id: Some("env-client".into()),
                secret: Some(SecretSource::File("/s".into())),
                authority: "https://login.example".into(),
            }
        );
        assert_eq!(c.because, Some("a client secret is configured"));
    }

    #[test]
    fn configured_methods_are_not_chosen() {
        let vars = [
            ("AZURE_CLIENT_ID", "env-client"),
            ("AZURE_TENANT_ID", "env-tenant"),
            ("AZURE_AUTHORITY_HOST", "https://login.example"),
            ("CREDCACHE_AZ", "/opt/az"),
        ];
        let c = chosen(&settings(AzureMethod::ManagedIdentity), &vars);
        assert_eq!(c.because, None);
        assert_eq!(
            c.plan,
            Plan::ManagedIdentity {
                endpoint: MiEndpoint::Imds {
                    base: "http://169.254.169.254".into(),
                    guessed: false
                },
                // ManagedIdentityCredential alone: system-assigned.
                identity: None,
            }
        );
        assert_eq!(
            chosen(&settings(AzureMethod::Cli), &vars).plan,
            Plan::Cli {
                program: "/opt/az".into(),
                tenant_id: None
            }
        );
        assert_eq!(
            chosen(&settings(AzureMethod::WorkloadIdentity), &vars).plan,
            Plan::WorkloadIdentity {
                tenant_id: Some("env-tenant".into()),
                client_id: Some("env-client".into()),
                authority: "https://login.example".into(),
            }
        );
    }

    #[test]
    fn missing_ids_name_the_key_and_the_variable() {
        let e = required(None, "client_id", "AZURE_CLIENT_ID").unwrap_err();
        assert!(
            e.message
                .starts_with("client_id is not configured and AZURE_CLIENT_ID is not set"),
            "{}",
            e.message
        );
        assert_eq!(e.class, crate::providers::ErrorClass::Config);
    }

    /// Each method fetching from a loopback peer (or a fake `az`).
    mod fetch {
        use super::*;
        use crate::fetch_error::ErrorClass;
        use crate::loopback::{Peer, Reply};
        use crate::providers::testing::Harness;

        /// An hour after [`now`], as Entra and IMDS send it.
        const TOKEN: &str = r#"{"access_token":"eyJ.entra","expires_in":3600,"expires_on":"1893459600","token_type":"Bearer"}"#;

        fn azure(settings: AzureSettings, vars: &[(&str, &str)]) -> Azure {
            let chosen = chosen(&settings, vars);
            Azure {
                sign_in: crate::providers::signed_in::SignIn::entra(&settings),
                settings,
                chosen,
            }
        }

        fn with_ids(method: AzureMethod, authority: &Peer) -> AzureSettings {
            let mut s = settings(method);
            s.tenant_id = Some("tenant-1".into());
            s.client_id = Some("client-1".into());
            s.authority_host = Some(authority.url());
            s
        }

        #[tokio::test]
        async fn client_secret_posts_the_secret_from_its_file() {
            let peer = Peer::start(vec![Reply::json(200, TOKEN)]).await;
            let dir = tempfile::tempdir().unwrap();
            let secret = dir.path().join("secret");
            std::fs::write(&secret, "s3cret\n").unwrap();
            let mut s = with_ids(AzureMethod::ClientSecret, &peer);
            s.client_secret = Some(SecretSource::File(secret));
            let h = Harness::new();
            let f = azure(s, &[])
                .fetch_by_plan(&h.cx(), &|_| None)
                .await
                .unwrap();
            assert_eq!(f.token.expose(), "eyJ.entra");
            assert_eq!(f.expires_at.timestamp(), 1_893_459_600);
            let r = &peer.requests()[0];
            assert_eq!(r.path(), "/tenant-1/oauth2/v2.0/token");
            assert_eq!(r.form("client_secret").as_deref(), Some("s3cret"));
            assert_eq!(r.form("grant_type").as_deref(), Some("client_credentials"));
            assert_eq!(r.form("scope").as_deref(), Some(DEFAULT_AZURE_SCOPE));
        }

        #[tokio::test]
        async fn client_secret_refused_is_permanent_in_entras_words() {
            let peer = Peer::start(vec![Reply::json(
                401,
                r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}"#,
            )])
            .await;
            let dir = tempfile::tempdir().unwrap();
            let secret = dir.path().join("secret");
            std::fs::write(&secret, "wrong").unwrap();
            let mut s = with_ids(AzureMethod::ClientSecret, &peer);
            s.client_secret = Some(SecretSource::File(secret));
            let h = Harness::new();
            let e = azure(s, &[])
                .fetch_by_plan(&h.cx(), &|_| None)
                .await
                .unwrap_err();
            assert_eq!((e.class, e.status), (ErrorClass::Permanent, Some(401)));
            assert!(e.message.contains("AADSTS7000215"), "{}", e.message);
        }

        #[tokio::test]
        async fn workload_identity_sends_the_federated_token_as_assertion() {
            let peer = Peer::start(vec![Reply::json(200, TOKEN)]).await;
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("token");
            std::fs::write(&file, "eyJ.federated\n").unwrap();
            let path = file.display().to_string();
            let env = |n: &str| (n == "AZURE_FEDERATED_TOKEN_FILE").then(|| path.clone());
            let h = Harness::new();
            let f = azure(with_ids(AzureMethod::WorkloadIdentity, &peer), &[])
                .fetch_by_plan(&h.cx(), &env)
                .await
                .unwrap();
            assert_eq!(f.token.expose(), "eyJ.entra");
            let r = &peer.requests()[0];
            assert_eq!(r.form("client_assertion").as_deref(), Some("eyJ.federated"));
            assert_eq!(r.form("client_id").as_deref(), Some("client-1"));
        }

        #[tokio::test]
        async fn workload_identity_without_its_file_asks_nobody() {
            let peer = Peer::start(vec![]).await;
            let h = Harness::new();
            let e = azure(with_ids(AzureMethod::WorkloadIdentity, &peer), &[])
                .fetch_by_plan(&h.cx(), &|_| None)
                .await
                .unwrap_err();
            assert_eq!(e.class, ErrorClass::Config);
            assert!(
                e.message
                    .starts_with("AZURE_FEDERATED_TOKEN_FILE is not set"),
                "{}",
                e.message
            );
            assert!(peer.requests().is_empty());
        }

        #[tokio::test]
        async fn managed_identity_asks_imds_for_the_resource() {
            let peer = Peer::start(vec![Reply::json(200, TOKEN)]).await;
            let mut s = settings(AzureMethod::ManagedIdentity);
            s.identity_endpoint = Some(peer.url());
            s.client_id = Some("user-assigned".into());
            let h = Harness::new();
            let f = azure(s, &[])
                .fetch_by_plan(&h.cx(), &|_| None)
                .await
                .unwrap();
            assert_eq!(f.expires_at.timestamp(), 1_893_459_600);
            let r = &peer.requests()[0];
            assert_eq!(r.path(), "/metadata/identity/oauth2/token");
            assert_eq!(r.header("metadata"), Some("true"));
            assert_eq!(
                r.query("resource").as_deref(),
                Some("https://management.azure.com")
            );
            assert_eq!(r.query("client_id").as_deref(), Some("user-assigned"));
        }

        #[tokio::test]
        async fn managed_identity_errors_keep_imds_status() {
            let peer = Peer::start(vec![Reply::json(
                400,
                r#"{"error":"invalid_request","error_description":"Identity not found"}"#,
            )])
            .await;
            let mut s = settings(AzureMethod::ManagedIdentity);
            s.identity_endpoint = Some(peer.url());
            let h = Harness::new();
            let e = azure(s, &[])
                .fetch_by_plan(&h.cx(), &|_| None)
                .await
                .unwrap_err();
            assert_eq!(e.status, Some(400));
            assert!(e.message.contains("Identity not found"), "{}", e.message);
            assert_eq!(peer.requests().len(), 1);
        }

        /// Windows: `az` is `az.cmd`, run by cmd.exe with the arguments
        /// quoted for it, without a console.
        #[cfg(windows)]
        #[tokio::test]
        async fn the_cli_is_az_cmd_on_windows() {
            let dir = tempfile::tempdir().unwrap();
            let args = dir.path().join("args");
            std::fs::write(
                dir.path().join("az.cmd"),
                format!(
                    "@echo off\r\n>\"{}\" echo %*\r\necho {{\"accessToken\":\"eyJ.cmd\",\"expires_on\":1893459600,\"tokenType\":\"Bearer\"}}\r\n",
                    args.display()
                ),
            )
            .unwrap();
            let mut s = settings(AzureMethod::Cli);
            s.tenant_id = Some("tenant-1".into());
            let h = Harness::new();
            let az = dir.path().join("az.cmd").display().to_string();
            let f = azure(s, &[("CREDCACHE_AZ", &az)])
                .fetch_by_plan(&h.cx(), &|_| None)
                .await
                .unwrap();
            assert_eq!(f.token.expose(), "eyJ.cmd");
            let args = std::fs::read_to_string(&args).unwrap();
            assert_eq!(
                args.trim(),
                format!(
                    "account get-access-token -o json --scope {DEFAULT_AZURE_SCOPE} --tenant tenant-1"
                )
            );
        }

        /// A fake `az` that records its arguments and runs `body`.
        #[cfg(unix)]
        fn fake_az(dir: &tempfile::TempDir, body: &str) -> String {
            let az = dir.path().join("az");
            let args = dir.path().join("args");
            std::fs::write(
                &az,
                format!("#!/bin/sh\necho \"$@\" > '{}'\n{body}\n", args.display()),
            )
            .unwrap();
            std::fs::set_permissions(
                &az,
                <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
            )
            .unwrap();
            az.display().to_string()
        }

        #[cfg(unix)] // a fake `az` script
        #[tokio::test]
        async fn the_cli_prints_a_token_for_the_scope() {
            let dir = tempfile::tempdir().unwrap();
            let az = fake_az(
                &dir,
                r#"printf '{"accessToken":"eyJ.cli","expires_on":1893459600,"tokenType":"Bearer"}'"#,
            );
            let mut s = settings(AzureMethod::Cli);
            s.tenant_id = Some("tenant-1".into());
            let h = Harness::new();
            let f = azure(s, &[("CREDCACHE_AZ", &az)])
                .fetch_by_plan(&h.cx(), &|_| None)
                .await
                .unwrap();
            assert_eq!(f.token.expose(), "eyJ.cli");
            assert_eq!(f.expires_at.timestamp(), 1_893_459_600);
            let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
            assert_eq!(
                args.trim(),
                format!(
                    "account get-access-token -o json --scope {DEFAULT_AZURE_SCOPE} --tenant tenant-1"
                )
            );
        }

        #[cfg(unix)] // a fake `az` script
        #[tokio::test]
        async fn the_cli_logged_out_is_permanent() {
            let dir = tempfile::tempdir().unwrap();
            let az = fake_az(
                &dir,
                "echo \"ERROR: Please run 'az login' to setup account.\" >&2; exit 1",
            );
            let h = Harness::new();
            let e = azure(settings(AzureMethod::Cli), &[("CREDCACHE_AZ", &az)])
                .fetch_by_plan(&h.cx(), &|_| None)
                .await
                .unwrap_err();
            assert_eq!(e.class, ErrorClass::Permanent);
            assert!(
                e.message
                    .starts_with("Azure CLI is not logged in: run `az login`"),
                "{}",
                e.message
            );
        }
    }
}
