//! The HTTP server: the route table, and [`Emulator`], which runs it on a
//! thread with its own tokio runtime so that sync tests and tokio tests can
//! use it alike.

use std::future::IntoFuture as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get, post};
use tokio::sync::oneshot;

use super::state::Shared;
use super::{arm, control, entra, google, iam, managed_identity, signin};

/// A running emulator on `127.0.0.1`. Dropping it stops the server and
/// abandons in-flight requests (including ones sleeping a fault's delay).
#[derive(Debug)]
pub struct Emulator {
    addr: SocketAddr,
    pub(crate) shared: Shared,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Emulator {
    /// Starts on an OS-chosen port and returns once it accepts connections.
    ///
    /// # Panics
    /// If no loopback port can be bound or no thread spawned: a test cannot
    /// go on without its emulator.
    pub fn start() -> Emulator {
        match Emulator::start_on_port(0) {
            Ok(emulator) => emulator,
            Err(e) => panic!("credcache-emulator: failed to start: {e}"),
        }
    }

    /// Starts on `127.0.0.1:port` (0 = OS-chosen) and returns once it
    /// accepts connections.
    pub fn start_on_port(port: u16) -> io::Result<Emulator> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Shared::new(format!("http://{addr}"));
        let app = router(shared.clone());
        let (stop_tx, stop_rx) = oneshot::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("credcache-emulator".to_owned())
            .spawn(move || serve_on_own_runtime(listener, app, stop_rx, ready_tx))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Emulator {
                addr,
                shared,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::other("emulator thread exited before listening")),
        }
    }

    /// `http://127.0.0.1:PORT`, the base every endpoint hangs off.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The Google token URI written into the key files: `{url}/token`.
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.url())
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The server may already be gone; nothing is left to stop then.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The emulator thread's body: a runtime of its own, the server until told
/// to stop, then the runtime dropped, which cancels every in-flight handler.
fn serve_on_own_runtime(
    listener: TcpListener,
    app: Router,
    stop: oneshot::Receiver<()>,
    ready: mpsc::Sender<io::Result<()>>,
) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("credcache-emulator-worker")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        tokio::select! {
            _ = axum::serve(listener, app).into_future() => {}
            _ = stop => {}
        }
    });
    // Key generation for the control API runs on the blocking pool; give it
    // a moment to finish rather than waiting for it without bound.
    runtime.shutdown_timeout(Duration::from_secs(2));
}

/// Every route, paths exactly as the clouds have them. ARM paths are matched
/// case-insensitively by the fallback.
pub(crate) fn router(shared: Shared) -> Router {
    Router::new()
        .route("/token", post(google::token))
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/token",
            get(google::metadata_token),
        )
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/identity",
            get(google::metadata_identity),
        )
        .route("/computeMetadata/v1/{*rest}", get(google::metadata_probe))
        .route("/", get(google::metadata_root))
        .route("/{tenant}/oauth2/v2.0/token", post(entra::token))
        .route(
            "/{tenant}/oauth2/v2.0/devicecode",
            post(signin::device_code),
        )
        .route("/{tenant}/oauth2/v2.0/authorize", get(signin::authorize))
        .route("/o/oauth2/auth", get(signin::authorize))
        .route(
            "/metadata/identity/oauth2/token",
            get(managed_identity::imds),
        )
        .route("/msi/token", get(managed_identity::app_service))
        .route("/MSI/token/", get(managed_identity::app_service_2017))
        .route("/oauth2/token", post(managed_identity::cloud_shell))
        .route(
            "/arc/metadata/identity/oauth2/token",
            get(managed_identity::arc),
        )
        .route("/v1/{*rest}", any(iam::dispatch))
        .route("/oidc/token", get(iam::oidc_subject))
        .nest("/__emulator", control::routes())
        .fallback(arm::fallback)
        .with_state(shared)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::emulator::testing::{client, status_json};
    use crate::emulator::{Endpoint, Fault};

    fn imds(emu: &Emulator) -> reqwest::blocking::Response {
        let url = format!(
            "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/",
            emu.url()
        );
        client().get(url).header("Metadata", "true").send().unwrap()
    }

    #[test]
    fn fault_answers_status_and_body_then_recovers() {
        let emu = Emulator::start();
        emu.push_fault(Endpoint::Imds, Fault::html(502).times(2));
        for _ in 0..2 {
            let response = imds(&emu);
            assert_eq!(response.status(), 502);
            assert!(
                response.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/html")
            );
            assert!(response.text().unwrap().starts_with("<html>"));
        }
        assert_eq!(imds(&emu).status(), 200);
        assert_eq!(emu.calls(Endpoint::Imds), 3);
        let faulted: Vec<bool> = emu.call_log().iter().map(|c| c.faulted).collect();
        assert_eq!(faulted, [true, true, false]);
    }

    #[test]
    fn faults_queue_and_clear() {
        let emu = Emulator::start();
        emu.push_fault(Endpoint::Imds, Fault::malformed_json());
        emu.push_fault(Endpoint::Imds, Fault::empty_body(503));
        emu.push_fault(
            Endpoint::Imds,
            Fault::wrong_types(Endpoint::Imds).until_cleared(),
        );
        let response = imds(&emu);
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().unwrap(), r#"{"access_token": "#);
        let response = imds(&emu);
        assert_eq!(response.status(), 503);
        assert_eq!(response.text().unwrap(), "");
        for _ in 0..3 {
            assert_eq!(status_json(imds(&emu)).1["expires_in"], "soon");
        }
        emu.clear_faults(Endpoint::Imds);
        assert!(status_json(imds(&emu)).1["access_token"].is_string());
    }

    #[test]
    fn throttling_sends_retry_after() {
        let emu = Emulator::start();
        emu.push_fault(Endpoint::ContainerAppToken, Fault::throttled(17));
        let url = format!(
            "{}/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/a/getAuthtoken",
            emu.url()
        );
        let response = client().post(url).send().unwrap();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "17");
        // The fault answered before any auth check, as a throttling front door does.
        assert_eq!(emu.calls(Endpoint::ContainerAppToken), 1);
    }

    #[test]
    fn slow_fault_answers_normally_after_its_delay() {
        let emu = Emulator::start();
        let delay = Duration::from_millis(150);
        emu.push_fault(Endpoint::Imds, Fault::slow(delay));
        let started = Instant::now();
        let (status, _) = status_json(imds(&emu));
        assert_eq!(status, 200);
        assert!(started.elapsed() >= delay);
        assert!(!emu.call_log()[0].faulted);
    }

    #[test]
    fn hung_upstream_times_the_client_out_and_drop_does_not_wait() {
        let emu = Emulator::start();
        emu.push_fault(
            Endpoint::Imds,
            Fault::html(504).delayed(Duration::from_secs(600)),
        );
        let url = format!(
            "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=r",
            emu.url()
        );
        let impatient = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let outcome = impatient.get(url).header("Metadata", "true").send();
        assert!(outcome.is_err_and(|e| e.is_timeout()));
        assert_eq!(emu.calls(Endpoint::Imds), 1);
        drop(emu);
    }

    #[test]
    fn cut_off_drops_the_connection_mid_body() {
        let emu = Emulator::start();
        emu.push_fault(Endpoint::Imds, Fault::cut_off());
        let response = imds(&emu);
        assert_eq!(response.status(), 200);
        assert!(response.text().is_err(), "the body must not complete");
        assert!(emu.call_log()[0].faulted);
        // The next request, on a new connection, is answered normally.
        assert_eq!(status_json(imds(&emu)).0, 200);
    }

    #[test]
    fn same_token_switch_over_http() {
        let emu = Emulator::start();
        emu.set_same_token(Endpoint::Imds, true);
        let first = status_json(imds(&emu)).1;
        let second = status_json(imds(&emu)).1;
        assert_eq!(first["access_token"], second["access_token"]);
        assert_eq!(first["expires_on"], second["expires_on"]);
        emu.set_same_token(Endpoint::Imds, false);
        let third = status_json(imds(&emu)).1;
        assert_ne!(first["access_token"], third["access_token"]);
    }

    #[test]
    fn reset_counts_and_unknown_routes() {
        let emu = Emulator::start();
        imds(&emu);
        emu.reset_counts();
        assert_eq!(emu.calls(Endpoint::Imds), 0);
        assert!(emu.call_log().is_empty());
        let response = client()
            .get(format!("{}/nowhere", emu.url()))
            .send()
            .unwrap();
        assert_eq!(response.status(), 404);
        assert_eq!(emu.call_log(), []);
    }

    #[test]
    fn two_emulators_do_not_share_state() {
        let a = Emulator::start();
        let b = Emulator::start();
        assert_ne!(a.url(), b.url());
        imds(&a);
        assert_eq!((a.calls(Endpoint::Imds), b.calls(Endpoint::Imds)), (1, 0));
    }

    #[tokio::test]
    async fn usable_inside_a_tokio_runtime() {
        let emu = Emulator::start();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let response = http
            .get(format!(
                "{}/computeMetadata/v1/instance/service-accounts/default/token",
                emu.url()
            ))
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(emu.calls(Endpoint::GoogleMetadata), 1);
        drop(emu);
    }
}
