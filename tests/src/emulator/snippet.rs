//! The config.toml snippet `credcache-emulator serve` prints: one credential
//! of every kind, each pointed at this emulator, for a user to paste into
//! their config. Secrets stay out of it: the Entra client secret is named by
//! `client_secret_env`, never written.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The subscription the snippet's ARM resources live in when none is named.
pub const DEFAULT_SUBSCRIPTION: &str = "651f8027-33e8-4ec4-97b4-f6e9f3dc8744";

/// The GKE cluster the snippet names when none is registered.
pub const DEFAULT_CLUSTER: &str =
    "projects/emu-project/locations/us-east4/azureClusters/emu-cluster";

/// The last line of the snippet, so a reader of `serve`'s output knows
/// where it ends (the process goes on serving).
pub const END_MARKER: &str = "# end of credcache config";

/// An Entra app the emulator accepts, and the variable holding its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraClient {
    pub tenant: String,
    pub client_id: String,
    /// The environment variable the secret is read from (by the emulator at
    /// start, and by `credcached` through `client_secret_env`).
    pub secret_env: String,
}

/// A container app: `SUBSCRIPTION/RESOURCE_GROUP/APP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerApp {
    pub subscription_id: String,
    pub resource_group: String,
    pub app: String,
}

impl Default for ContainerApp {
    fn default() -> ContainerApp {
        ContainerApp {
            subscription_id: DEFAULT_SUBSCRIPTION.to_owned(),
            resource_group: "rg".to_owned(),
            app: "emu-app".to_owned(),
        }
    }
}

/// What the snippet points at.
#[derive(Debug, Clone)]
pub struct Snippet {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub service_account: PathBuf,
    pub authorized_user: PathBuf,
    /// `None`: the Azure-based credentials are left out, with a comment
    /// saying how to get them.
    pub entra: Option<EntraClient>,
    pub cluster: String,
    pub container_app: ContainerApp,
}

impl Snippet {
    /// The snippet: comments, then one `[credentials.emu-*]` table per
    /// credential, then [`END_MARKER`].
    pub fn render(&self) -> String {
        let url = toml_string(&self.url);
        let mut out = String::new();
        let mut line = |text: &str| {
            out.push_str(text);
            out.push('\n');
        };
        line("# credcache config for this emulator: paste into ~/.config/credcache/config.toml");
        line("# (`credcache config path` prints where yours is).");
        if let Some(entra) = &self.entra {
            line(&format!(
                "# emu-corp, emu-app and emu-apim read the Entra client secret from ${}:",
                entra.secret_env
            ));
            line(&format!(
                "# export {}=... (the value given to the emulator) in the shell that runs credcache.",
                entra.secret_env
            ));
        }
        line("");
        line("[credentials.emu-gcp]   # google: a service-account key");
        line("kind = \"google\"");
        line(&format!("key_file = {}", toml_path(&self.service_account)));
        line(&format!(
            "token_uri = {}",
            toml_string(&format!("{}/token", self.url))
        ));
        line("");
        line(
            "[credentials.emu-gcp-user]   # google: an authorized-user file (its token_uri is the emulator's)",
        );
        line("kind = \"google\"");
        line(&format!("key_file = {}", toml_path(&self.authorized_user)));
        line("");
        line("[credentials.emu-gke]   # gke-cluster, authorized by emu-gcp");
        line("kind = \"gke-cluster\"");
        line("auth = \"emu-gcp\"");
        line(&format!("cluster = {}", toml_string(&self.cluster)));
        line(&format!("endpoint = {url}"));
        line("");
        match &self.entra {
            Some(entra) => self.azure_tables(entra, &mut line),
            None => {
                line("# azure, container-app and apim-user-token: start the emulator with");
                line("# --entra-client TENANT:CLIENT_ID:SECRET_ENV to have them here.");
                line("");
            }
        }
        line("[credentials.emu-command]   # command: whatever a program prints");
        line("kind = \"command\"");
        line("command = [\"sh\", \"-c\", \"echo emu-command-$(date +%s)\"]");
        line("lifetime = \"1h\"");
        line("");
        line(END_MARKER);
        out
    }

    fn azure_tables(&self, entra: &EntraClient, line: &mut impl FnMut(&str)) {
        let url = toml_string(&self.url);
        let app = &self.container_app;
        line("[credentials.emu-corp]   # azure: an Entra app's client secret");
        line("kind = \"azure\"");
        line("method = \"client-secret\"");
        line(&format!("tenant_id = {}", toml_string(&entra.tenant)));
        line(&format!("client_id = {}", toml_string(&entra.client_id)));
        line(&format!(
            "client_secret_env = {}",
            toml_string(&entra.secret_env)
        ));
        line(&format!("authority_host = {url}"));
        line("");
        line("[credentials.emu-app]   # container-app, authorized by emu-corp");
        line("kind = \"container-app\"");
        line("auth = \"emu-corp\"");
        line(&format!(
            "subscription_id = {}",
            toml_string(&app.subscription_id)
        ));
        line(&format!(
            "resource_group = {}",
            toml_string(&app.resource_group)
        ));
        line(&format!("app = {}", toml_string(&app.app)));
        line(&format!("arm_endpoint = {url}"));
        line("");
        line("[credentials.emu-apim]   # apim-user-token, authorized by emu-corp");
        line("kind = \"apim-user-token\"");
        line("auth = \"emu-corp\"");
        line(&format!(
            "subscription_id = {}",
            toml_string(&app.subscription_id)
        ));
        line("resource_group = \"rg1\"");
        line("service = \"emu-apim\"");
        line("user_id = \"emu-user\"");
        line("lifetime = \"8h\"");
        line(&format!("arm_endpoint = {url}"));
        line("");
    }
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_path(path: &Path) -> String {
    toml_string(&path.display().to_string())
}

#[cfg(test)]
mod tests {
    use credcache_shared::config::Config;

    use super::*;

    fn snippet(entra: Option<EntraClient>) -> Snippet {
        Snippet {
            url: "http://127.0.0.1:4321".to_owned(),
            service_account: PathBuf::from("/tmp/emu dir/service-account.json"),
            authorized_user: PathBuf::from("/tmp/emu \"dir\"/authorized-user.json"),
            entra,
            cluster: DEFAULT_CLUSTER.to_owned(),
            container_app: ContainerApp::default(),
        }
    }

    fn entra() -> EntraClient {
        EntraClient {
            tenant: "emu-tenant".to_owned(),
            client_id: "11111111-1111-1111-1111-111111111111".to_owned(),
            secret_env: "EMU_SECRET".to_owned(),
        }
    }

    #[test]
    fn every_kind_passes_the_config_validator() {
        let text = snippet(Some(entra())).render();
        let config = Config::parse(&text, Path::new("snippet.toml"))
            .unwrap_or_else(|e| panic!("{:?}\n{text}", e.lines().collect::<Vec<_>>()));
        let mut kinds: Vec<&str> = ["emu-gcp", "emu-gcp-user", "emu-gke", "emu-corp"]
            .into_iter()
            .chain(["emu-app", "emu-apim", "emu-command"])
            .map(|name| config.credential(name).expect(name).kind())
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(
            kinds,
            [
                "apim-user-token",
                "azure",
                "command",
                "container-app",
                "gke-cluster",
                "google"
            ]
        );
        assert!(text.ends_with(&format!("{END_MARKER}\n")), "{text}");
        assert!(
            text.contains("client_secret_env = \"EMU_SECRET\""),
            "{text}"
        );
        assert!(text.contains("key_file = \"/tmp/emu \\\"dir\\\"/authorized-user.json\""));
    }

    #[test]
    fn without_an_entra_client_the_azure_kinds_are_left_out() {
        let text = snippet(None).render();
        let config = Config::parse(&text, Path::new("snippet.toml")).unwrap();
        assert!(config.credential("emu-corp").is_none());
        assert!(config.credential("emu-gke").is_some());
        assert!(
            text.contains("--entra-client TENANT:CLIENT_ID:SECRET_ENV"),
            "{text}"
        );
    }

    #[test]
    fn toml_strings_escape() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_string("x\ny"), r#""x\u000Ay""#);
    }
}
