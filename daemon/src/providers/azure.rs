//! `kind = "azure"`: a Microsoft Entra access token, by one of the methods
//! users sign in with (one module each). `auto` takes the first method that
//! is configured, in the Azure SDK's order.

mod client_secret;

use credcache_shared::config::{AzureMethod, AzureSettings, DEFAULT_AUTHORITY_HOST};

use super::{BoxFuture, FetchContext, FetchError, Fetched, Provider};

pub struct Azure {
    settings: AzureSettings,
}

impl Azure {
    pub fn new(settings: AzureSettings) -> Self {
        Self { settings }
    }

    /// `authority_host` from the config, else `AZURE_AUTHORITY_HOST`, else
    /// the public cloud.
    fn authority_host(&self) -> String {
        self.settings
            .authority_host
            .clone()
            .or_else(|| {
                std::env::var("AZURE_AUTHORITY_HOST")
                    .ok()
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| DEFAULT_AUTHORITY_HOST.to_owned())
            .trim_end_matches('/')
            .to_owned()
    }
}

impl Provider for Azure {
    fn fetch<'a>(&'a self, cx: &'a FetchContext<'a>) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        Box::pin(async move {
            match self.settings.method {
                AzureMethod::ClientSecret => {
                    client_secret::fetch(&self.settings, &self.authority_host(), cx).await
                }
                other => Err(FetchError::config(format!(
                    "azure method {:?} is not supported by this credcached yet",
                    other.as_str()
                ))),
            }
        })
    }
}
