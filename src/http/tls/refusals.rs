//! Client certificates refused in a handshake, logged at info level once
//! per client address and certificate, with the reason: enough to find a
//! misconfigured scraper without a line every scrape interval.
//!
//! The verifier does not know which connection it verifies, so the server
//! runs each handshake inside [`during_handshake`], which makes the peer's
//! address known to [`refused`] for as long as the handshake runs.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Mutex;

/// Distinct (client, certificate) pairs remembered; past this the set is
/// emptied and each pair is logged once more.
pub(crate) const REMEMBERED: usize = 4096;

tokio::task_local! {
    static PEER: IpAddr;
}

/// Runs a TLS handshake with `peer` known to [`refused`].
pub(crate) async fn during_handshake<F: std::future::Future>(
    peer: IpAddr,
    handshake: F,
) -> F::Output {
    PEER.scope(peer, handshake).await
}

/// Which (client, certificate) pairs were logged already.
pub(crate) struct Logged {
    seen: Mutex<HashSet<(IpAddr, [u8; 32])>>,
}

impl Logged {
    /// Nothing logged yet.
    pub(crate) fn new() -> Logged {
        Logged {
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// Whether this pair is new: true the first time only (and again after
    /// [`REMEMBERED`] other pairs).
    pub(crate) fn first(&self, peer: IpAddr, certificate: &[u8]) -> bool {
        use sha2::{Digest, Sha256};
        let key = (peer, Sha256::digest(certificate).into());
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= REMEMBERED && !seen.contains(&key) {
            seen.clear();
        }
        seen.insert(key)
    }
}

static LOGGED: std::sync::LazyLock<Logged> = std::sync::LazyLock::new(Logged::new);

/// A client certificate was refused: logs it once per client and
/// certificate. `certificate` is the client's end-entity certificate (empty
/// when it sent none), `what` names it, `why` is the reason.
pub(crate) fn refused(certificate: &[u8], what: &str, why: &str) {
    let Ok(peer) = PEER.try_with(|p| *p) else {
        tracing::debug!("client certificate refused: {what}: {why}");
        return;
    };
    if LOGGED.first(peer, certificate) {
        tracing::info!(
            "client certificate of {peer} refused: {what}: {why} (logged once per client and certificate)"
        );
    } else {
        tracing::debug!("client certificate of {peer} refused: {what}: {why}");
    }
}

/// A handshake failed with `error`: a client that sent no certificate where
/// one is required is logged as [`refused`] is (the verifier never sees it).
pub(crate) fn handshake_failed(peer: IpAddr, error: &std::io::Error) {
    let no_certificate = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::NoCertificatesPresented));
    if no_certificate && LOGGED.first(peer, &[]) {
        tracing::info!(
            "client certificate of {peer} refused: the client sent none and tls_server_config requires one (client_auth_type, or client_allowed_sans) (logged once per client)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pair_once_and_bounded() {
        let logged = Logged::new();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(logged.first(a, b"cert"));
        assert!(!logged.first(a, b"cert"));
        assert!(logged.first(b, b"cert"));
        assert!(logged.first(a, b"other cert"));
        assert!(logged.first(a, b""));
        assert!(!logged.first(a, b""));
        for i in 0..REMEMBERED {
            logged.first(a, &i.to_le_bytes());
        }
        assert!(logged.seen.lock().unwrap().len() <= REMEMBERED);
    }
}
