//! `credcache login` and `logout` on the engine's side: the sign-in
//! sessions under way (one per credential; a new `login` replaces it), the
//! refresh token a finished sign-in yields put in the store, and the first
//! token fetched with it. Also `on_reauth`, run when a credential comes to
//! need a person.

use std::time::Duration;

use credcache_shared::Secret;
use credcache_shared::protocol::{ErrorKind, LoginMethod, LoginStep, WireError};

use super::{Engine, wire_fetch_error};
use crate::fetch_error::FetchError;
use crate::providers::signed_in::SignIn;
use crate::providers::signed_in::flow::{self, Polled, Session, SignedIn};

/// How long `on_reauth` may run before it is killed.
const ON_REAUTH_TIMEOUT: Duration = Duration::from_secs(10);

impl Engine {
    /// Starts signing in `name`: a device code to show, or a URL to open.
    pub async fn login(
        &self,
        name: &str,
        method: Option<LoginMethod>,
        redirect_port: Option<u16>,
    ) -> Result<LoginStep, WireError> {
        self.maybe_reload();
        let loaded = self.loaded();
        let entry = self.entry(&loaded, name)?;
        let sign_in = SignIn::of(&entry.cred).ok_or_else(|| {
            WireError::new(
                ErrorKind::Config,
                format!(
                    "{name} is not signed in by a person (kind {}): `credcache login` is for azure credentials with method \"device-code\" or \"browser\" and google credentials with oauth_client_file",
                    entry.cred.kind()
                ),
            )
        })?;
        let method = method.unwrap_or_else(|| sign_in.default_method());
        let now = self.0.clock.now();
        let (step, session) = flow::start(&loaded.http, name, &sign_in, method, redirect_port, now)
            .await
            .map_err(|e| wire_fetch_error(&e))?;
        self.sessions().insert(name.to_owned(), session);
        tracing::info!(credential = name, ?method, "sign-in started");
        Ok(step)
    }

    /// Device code: asks upstream whether the user has finished.
    pub async fn login_poll(&self, name: &str) -> Result<LoginStep, WireError> {
        let mut session = self.take_session(name)?;
        let loaded = self.loaded();
        let now = self.0.clock.now();
        match flow::poll(&loaded.http, name, &mut session, now).await {
            Ok(Polled::Pending(interval_secs)) => {
                self.sessions().insert(name.to_owned(), session);
                Ok(LoginStep::Pending { interval_secs })
            }
            Ok(Polled::SignedIn(done)) => self.signed_in(name, &session, done).await,
            Err(e) => {
                tracing::info!(credential = name, "sign-in failed: {}", e.message);
                Err(wire_fetch_error(&e))
            }
        }
    }

    /// Browser: redeems the code the redirect brought, `state` checked.
    pub async fn login_code(
        &self,
        name: &str,
        code: &Secret,
        state: &str,
    ) -> Result<LoginStep, WireError> {
        let session = self.take_session(name)?;
        let loaded = self.loaded();
        let now = self.0.clock.now();
        match flow::redeem(&loaded.http, name, &session, code, state, now).await {
            Ok(done) => self.signed_in(name, &session, done).await,
            Err(e) => {
                tracing::info!(credential = name, "sign-in failed: {}", e.message);
                Err(wire_fetch_error(&e))
            }
        }
    }

    /// Drops `name`'s refresh token, its cached tokens and any sign-in
    /// under way. The credential then needs a login again.
    pub async fn logout(&self, name: &str) -> Result<Vec<String>, WireError> {
        let loaded = self.loaded();
        let entry = self.entry(&loaded, name)?;
        if SignIn::of(&entry.cred).is_none() {
            return Err(WireError::new(
                ErrorKind::Config,
                format!(
                    "{name} is not signed in by a person: nothing to log out (`credcache forget {name}` drops its cached token)"
                ),
            ));
        }
        self.sessions().remove(name);
        // Its tokens, for every scope, as `forget NAME` drops them.
        self.forget(Some(name)).await?;
        let store = self.0.store.clone();
        let n = name.to_owned();
        tokio::task::spawn_blocking(move || store.remove_refresh_tokens(&n))
            .await
            .map_err(|e| WireError::new(ErrorKind::Internal, e.to_string()))?
            .map_err(|e| WireError::new(ErrorKind::Internal, e.to_string()))?;
        tracing::info!(credential = name, "logged out");
        Ok(vec![name.to_owned()])
    }

    /// A sign-in finished: the refresh token goes to the store (replacing
    /// any other), the old tokens and a kept "needs login" go, and the
    /// access token the sign-in brought becomes the first token (or, if it
    /// brought none usable, one is fetched with the refresh token).
    async fn signed_in(
        &self,
        name: &str,
        session: &Session,
        done: SignedIn,
    ) -> Result<LoginStep, WireError> {
        let SignedIn {
            refresh_token,
            first,
        } = done;
        let store = self.0.store.clone();
        let (n, identity) = (name.to_owned(), session.identity.clone());
        tokio::task::spawn_blocking(move || {
            store.remove(&n)?;
            store.put_refresh_token(&n, &identity, &refresh_token)
        })
        .await
        .map_err(|e| WireError::new(ErrorKind::Internal, e.to_string()))?
        .map_err(|e| {
            WireError::new(
                ErrorKind::Internal,
                format!("signed in, but the refresh token could not be kept: {e}"),
            )
        })?;
        tracing::info!(credential = name, "signed in");
        let slot = self.slot(name);
        let loaded = self.loaded();
        let entry = self.entry(&loaded, name)?;
        self.note_asked(name);
        let token = {
            let _flight = slot.fetch.lock().await;
            slot.clear();
            self.fetch(&loaded, entry, None, name, &slot, first).await
        }
        .map_err(|e| wire_fetch_error(&e))?;
        Ok(LoginStep::Done {
            expires_at: token.expires_at,
        })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Session>> {
        self.0.logins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session of `name`, taken out while a request works on it; an
    /// expired one is gone.
    fn take_session(&self, name: &str) -> Result<Session, WireError> {
        let now = self.0.clock.now();
        match self.sessions().remove(name) {
            Some(s) if s.expires_at > now => Ok(s),
            Some(_) => Err(WireError::new(
                ErrorKind::Upstream,
                format!("the sign-in of {name} took too long: run `credcache login {name}` again"),
            )),
            None => Err(WireError::new(
                ErrorKind::BadRequest,
                format!("no sign-in of {name} is under way: run `credcache login {name}`"),
            )),
        }
    }

    /// Runs `on_reauth` for `name`, in the background: the program and its
    /// arguments with `{name}` replaced, no shell, killed after 10 s.
    pub(super) fn on_reauth(&self, name: &str, error: &FetchError) {
        let command = self.loaded().config.daemon.on_reauth.clone();
        tracing::warn!(
            credential = name,
            "needs a person to sign in: {}",
            error.message
        );
        let Some((program, args)) = command.split_first() else {
            return;
        };
        let program = program.replace("{name}", name);
        let args: Vec<String> = args.iter().map(|a| a.replace("{name}", name)).collect();
        let name = name.to_owned();
        tokio::spawn(async move {
            let what = format!("on_reauth {program:?}");
            let ran =
                crate::providers::process::run(&program, &args, &what, ON_REAUTH_TIMEOUT, |e| {
                    FetchError::config(format!("{what} cannot be started: {e}"))
                })
                .await;
            match ran {
                Ok((status, _, _)) if status.success() => {
                    tracing::info!(credential = name, "ran on_reauth")
                }
                Ok((status, _, _)) => {
                    tracing::warn!(credential = name, "on_reauth exited with {status}")
                }
                Err(e) => tracing::warn!(credential = name, "on_reauth failed: {}", e.message),
            }
        });
    }
}
