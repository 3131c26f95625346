//! A real HTTP server on loopback that speaks the wire formats of every
//! cloud credcache talks to (Google OAuth and metadata, Entra and managed
//! identity, GKE multi-cloud, Container Apps, API Management), with call
//! counting, scripted faults and switches for the quirks real clouds have.
//! It never contacts any other host. [`Emulator`] is the in-process API;
//! `control.rs` holds the same controls over HTTP under `/__emulator/`;
//! `snippet.rs` writes the config that points credcache at it.

mod apim;
mod arm;
mod container_app;
mod control;
mod credentials;
mod endpoint;
mod entra;
mod fault;
mod gke;
mod google;
mod handle;
mod iam;
mod jwt;
mod managed_identity;
mod reply;
mod server;
mod signin;
pub mod snippet;
pub(crate) mod state;
#[cfg(test)]
mod testing;
mod timestamp;

pub use control::{CONTROL_ENDPOINTS, ControlEndpoint, FAULT_PRESETS};
pub use credentials::{AuthorizedUser, PROJECT_ID, ServiceAccount};
pub use endpoint::{Call, Endpoint};
pub use fault::Fault;
pub use server::Emulator;
pub use signin::DeviceOutcome;
pub use state::{DEFAULT_LIFETIME_SECS, IssuedToken, Msi2017Form};
pub use timestamp::TimestampForm;
