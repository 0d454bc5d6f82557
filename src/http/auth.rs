//! `basic_auth_users`: HTTP basic authentication against bcrypt hashes.
//!
//! bcrypt is slow on purpose (about 50-100 ms at cost 10), so a successful
//! verification is remembered, keyed by a SHA-256 of the user, the hash and
//! the password: a scrape every 15 s costs one bcrypt in total, not one each.
//! A wrong password is never remembered. At most one bcrypt runs at a time,
//! off the async workers, and at most [`MAX_WAITING`] requests wait for it:
//! beyond that a request is answered 503 at once instead of queueing.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Successful verifications remembered (users x passwords in use, with room
/// for password rotation); the oldest is forgotten first.
pub const CACHE_ENTRIES: usize = 256;

/// Requests that may wait for a bcrypt verification at once.
pub const MAX_WAITING: usize = 16;

/// The keys of successful verifications, and their order of arrival.
type Remembered = (HashSet<[u8; 32]>, VecDeque<[u8; 32]>);

/// Successful verifications, shared by every reading of the web config (a
/// changed hash changes the key, so a new password never matches an old entry).
pub struct AuthCache {
    entries: Mutex<Remembered>,
    /// One bcrypt at a time.
    bcrypt: tokio::sync::Semaphore,
    waiting: AtomicUsize,
}

impl AuthCache {
    /// An empty cache.
    pub fn new() -> AuthCache {
        AuthCache {
            entries: Mutex::default(),
            bcrypt: tokio::sync::Semaphore::new(1),
            waiting: AtomicUsize::new(0),
        }
    }

    fn contains(&self, key: &[u8; 32]) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.0.contains(key)
    }

    fn insert(&self, key: [u8; 32]) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *entries;
        if !set.insert(key) {
            return;
        }
        order.push_back(key);
        while order.len() > CACHE_ENTRIES {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .len()
    }

    /// Whether no verification is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The outcome of checking a request's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Right user and password.
    Allowed,
    /// Missing, malformed or wrong credentials: 401.
    Denied,
    /// Too many verifications waiting: 503.
    Busy,
}

/// The users of one reading of the web config.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    cache: Arc<AuthCache>,
}

impl BasicAuth {
    /// `users`: user -> bcrypt hash (already checked to parse).
    pub fn new(users: BTreeMap<String, String>, cache: Arc<AuthCache>) -> BasicAuth {
        BasicAuth { users, cache }
    }

    /// How many users there are.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Checks the `Authorization` header of a request.
    pub async fn check(&self, headers: &HeaderMap) -> Verdict {
        let Some((user, password)) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| parse_basic(v.as_bytes()))
        else {
            return Verdict::Denied;
        };
        let known = self.users.get(&user).cloned();
        let key = known.as_ref().map(|hash| cache_key(&user, hash, &password));
        if let Some(key) = &key {
            if self.cache.contains(key) {
                return Verdict::Allowed;
            }
        }
        // A bcrypt is needed: wait for the one slot, unless too many wait already.
        let permit = {
            let Some(_waiting) = Waiting::enter(&self.cache.waiting) else {
                return Verdict::Busy;
            };
            self.cache.bcrypt.acquire().await
        };
        let Ok(_permit) = permit else {
            return Verdict::Busy;
        };
        // An unknown user is checked against a known user's hash (and refused
        // whatever the outcome), so that it takes as long as a known one.
        let Some(hash) = known.or_else(|| self.users.values().next().cloned()) else {
            return Verdict::Denied;
        };
        let verified =
            tokio::task::spawn_blocking(move || bcrypt::verify(password.as_bytes(), &hash))
                .await
                .is_ok_and(|r| r.unwrap_or(false));
        match (verified, key) {
            (true, Some(key)) => {
                self.cache.insert(key);
                Verdict::Allowed
            }
            _ => Verdict::Denied,
        }
    }
}

/// A request counted among those waiting for a bcrypt while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Option<Waiting<'a>> {
        let before = count.fetch_add(1, Ordering::AcqRel);
        let waiting = Waiting(count);
        (before < MAX_WAITING).then_some(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The 401 answer: what a client without the right credentials gets.
pub fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"))],
        "Unauthorized\n",
    )
        .into_response()
}

/// The 503 answer when too many password verifications are waiting.
pub fn busy() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
        "Service Unavailable: too many password verifications in progress\n",
    )
        .into_response()
}

/// The key a successful verification is remembered under.
fn cache_key(user: &str, hash: &str, password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [user, hash, password] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// `Basic base64(user:password)` -> (user, password).
fn parse_basic(value: &[u8]) -> Option<(String, String)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64_decode(encoded.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Standard base64, padding optional.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = text.trim_end_matches('=').as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        out.push((acc >> 16) as u8);
        if chunk.len() > 2 {
            out.push((acc >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(acc as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials() {
        // "prometheus:s3cret:with:colons"
        assert_eq!(
            parse_basic(b"Basic cHJvbWV0aGV1czpzM2NyZXQ6d2l0aDpjb2xvbnM="),
            Some(("prometheus".into(), "s3cret:with:colons".into()))
        );
        assert_eq!(parse_basic(b"basic YTpi"), Some(("a".into(), "b".into())));
        assert_eq!(parse_basic(b"Bearer YTpi"), None);
        assert_eq!(parse_basic(b"Basic !!!"), None);
        assert_eq!(parse_basic(b"Basic bm9jb2xvbg=="), None); // "nocolon"
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert_eq!(base64_decode("YWI").unwrap(), b"ab");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
    }

    fn request(user: &str, password: &str) -> HeaderMap {
        let raw = format!("{user}:{password}");
        let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut encoded = String::new();
        for chunk in raw.as_bytes().chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                encoded.push(table[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
            for _ in chunk.len()..3 {
                encoded.push('=');
            }
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap(),
        );
        headers
    }

    #[tokio::test]
    async fn remembers_only_successes() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let cache = Arc::new(AuthCache::new());
        let auth = Arc::new(BasicAuth::new(
            BTreeMap::from([("prom".to_string(), hash)]),
            cache.clone(),
        ));
        assert_eq!(auth.check(&HeaderMap::new()).await, Verdict::Denied);
        assert_eq!(auth.check(&request("prom", "wrong")).await, Verdict::Denied);
        assert_eq!(
            auth.check(&request("nobody", "right")).await,
            Verdict::Denied
        );
        assert!(cache.is_empty(), "a failure was remembered");
        assert_eq!(
            auth.check(&request("prom", "right")).await,
            Verdict::Allowed
        );
        assert_eq!(cache.len(), 1);
        // The second time needs no bcrypt: it is answered from the cache even
        // while the one bcrypt slot is taken.
        let _slot = cache.bcrypt.acquire().await.unwrap();
        assert_eq!(
            auth.check(&request("prom", "right")).await,
            Verdict::Allowed
        );
        // A wrong password still waits for a bcrypt, and never hits the cache.
        let wrong = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            auth.check(&request("prom", "wrong")),
        )
        .await;
        assert!(wrong.is_err(), "a wrong password skipped bcrypt");
    }

    #[tokio::test]
    async fn a_new_hash_forgets_the_old_password() {
        let cache = Arc::new(AuthCache::new());
        let old = Arc::new(BasicAuth::new(
            BTreeMap::from([("prom".to_string(), bcrypt::hash("old", 4).unwrap())]),
            cache.clone(),
        ));
        assert_eq!(old.check(&request("prom", "old")).await, Verdict::Allowed);
        let new = Arc::new(BasicAuth::new(
            BTreeMap::from([("prom".to_string(), bcrypt::hash("new", 4).unwrap())]),
            cache.clone(),
        ));
        assert_eq!(new.check(&request("prom", "old")).await, Verdict::Denied);
        assert_eq!(new.check(&request("prom", "new")).await, Verdict::Allowed);
    }

    #[tokio::test]
    async fn too_many_waiting_for_bcrypt_get_busy_at_once() {
        let cache = Arc::new(AuthCache::new());
        let auth = Arc::new(BasicAuth::new(
            BTreeMap::from([("prom".to_string(), bcrypt::hash("right", 4).unwrap())]),
            cache.clone(),
        ));
        let slot = cache.bcrypt.acquire().await.unwrap();
        let waiting: Vec<_> = (0..MAX_WAITING)
            .map(|_| {
                let auth = auth.clone();
                tokio::spawn(async move { auth.check(&request("prom", "wrong")).await })
            })
            .collect();
        while cache.waiting.load(Ordering::Acquire) < MAX_WAITING {
            tokio::task::yield_now().await;
        }
        assert_eq!(auth.check(&request("prom", "right")).await, Verdict::Busy);
        // Cancelled waiters leave the count as they found it.
        for w in &waiting {
            w.abort();
        }
        for w in waiting {
            let _ = w.await;
        }
        assert_eq!(cache.waiting.load(Ordering::Acquire), 0);
        drop(slot);
        assert_eq!(
            auth.check(&request("prom", "right")).await,
            Verdict::Allowed
        );
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = AuthCache::new();
        for i in 0..(CACHE_ENTRIES + 10) {
            cache.insert(cache_key("u", "h", &i.to_string()));
        }
        assert_eq!(cache.len(), CACHE_ENTRIES);
        assert!(!cache.contains(&cache_key("u", "h", "0")));
        assert!(cache.contains(&cache_key("u", "h", &(CACHE_ENTRIES + 9).to_string())));
    }
}
