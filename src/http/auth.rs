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

    /// Checks the `Authorization` header of a request (the first one, as Go
    /// reads it).
    pub async fn check(&self, headers: &HeaderMap) -> Verdict {
        let Some((user, password)) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| parse_basic(v.as_bytes()))
        else {
            return Verdict::Denied;
        };
        let known = std::str::from_utf8(&user)
            .ok()
            .and_then(|u| self.users.get(u))
            .cloned();
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
        let verified = tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash))
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
fn cache_key(user: &[u8], hash: &str, password: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [user, hash.as_bytes(), password] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// `Basic base64(user:password)` -> (user, password), as Go's
/// `Request.BasicAuth` reads it: the scheme in any case followed by exactly
/// one space, then standard base64 with its padding; user and password are
/// bytes (not necessarily UTF-8) split at the first colon.
pub fn parse_basic(value: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    use base64::Engine as _;
    const PREFIX: &[u8] = b"basic ";
    // Go's header reader trims the value's ends; hyper keeps them.
    let value = value.trim_ascii();
    if value.len() < PREFIX.len() || !value[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let decoded = GO_STD_ENCODING.decode(&value[PREFIX.len()..]).ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

/// Go's `base64.StdEncoding`: padding required, trailing bits not checked.
const GO_STD_ENCODING: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireCanonical),
);

/// A `basic_auth_users` hash as Go's bcrypt reads it, rewritten in the
/// form the `bcrypt` crate verifies (`$2b$CC$` + salt and hash). Go takes
/// any minor version letter (or none) and a major version up to 2, as long
/// as the cost is 4 to 31 and the hash is 59 bytes or more; all compute the
/// same. A hash Go takes but can never match (a bad salt, a wrong length)
/// is taken here too, and never matches either.
pub fn go_bcrypt_hash(hash: &str) -> Result<String, String> {
    let b = hash.as_bytes();
    if b.len() < 59 {
        return Err(format!("{} bytes long, 59 at least expected", b.len()));
    }
    if b[0] != b'$' {
        return Err("it does not start with `$`".into());
    }
    if b[1] > b'2' {
        return Err(format!("bcrypt version {} is too new", char::from(b[1])));
    }
    let n = if b[2] == b'$' { 3 } else { 4 };
    let cost = std::str::from_utf8(&b[n..n + 2])
        .ok()
        .and_then(|c| c.parse::<i64>().ok())
        .ok_or_else(|| {
            format!(
                "cost {:?} is not a number",
                String::from_utf8_lossy(&b[n..n + 2])
            )
        })?;
    if !(4..=31).contains(&cost) {
        return Err(format!("cost {cost} is outside 4 to 31"));
    }
    // Go skips the byte after the cost without looking at it.
    let rest = std::str::from_utf8(&b[n + 3..]).map_err(|_| "it is not ASCII".to_string())?;
    Ok(format!("$2b${cost:02}${rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(user: &str, password: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        Some((user.as_bytes().to_vec(), password.as_bytes().to_vec()))
    }

    #[test]
    fn basic_credentials_as_go_reads_them() {
        // "prometheus:s3cret:with:colons"
        assert_eq!(
            parse_basic(b"Basic cHJvbWV0aGV1czpzM2NyZXQ6d2l0aDpjb2xvbnM="),
            pair("prometheus", "s3cret:with:colons")
        );
        assert_eq!(parse_basic(b"basic YTpi"), pair("a", "b"));
        assert_eq!(parse_basic(b"BASIC YTpi"), pair("a", "b"));
        assert_eq!(parse_basic(b"  Basic YTpi  "), pair("a", "b"));
        assert_eq!(parse_basic(b"Basic Og=="), pair("", ""));
        // Not UTF-8: Go compares bytes.
        assert_eq!(parse_basic(b"Basic /zr/"), Some((vec![0xff], vec![0xff])));
        // Go's StdEncoding: padding required, trailing bits not checked.
        assert_eq!(parse_basic(b"Basic YTpiYw"), None);
        assert_eq!(parse_basic(b"Basic YTpiYx=="), pair("a", "bc"));
        for refused in [
            &b"Bearer YTpi"[..],
            b"Basic !!!",
            b"Basic bm9jb2xvbg==", // "nocolon"
            b"Basic  YTpi",        // two spaces
            b"Basic\tYTpi",
            b"BasicYTpi",
            b"Basic",
            b"",
        ] {
            assert_eq!(parse_basic(refused), None, "{refused:?}");
        }
    }

    #[test]
    fn bcrypt_hashes_as_go_takes_them() {
        let h = "$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG";
        let tail = "X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG";
        assert_eq!(go_bcrypt_hash(h).unwrap(), format!("$2b$10${tail}"));
        // No minor version, another minor letter, an older major: Go takes them.
        assert_eq!(
            go_bcrypt_hash(&format!("$2$10${tail}")).unwrap(),
            format!("$2b$10${tail}")
        );
        assert_eq!(
            go_bcrypt_hash(&format!("$2c$10${tail}")).unwrap(),
            format!("$2b$10${tail}")
        );
        assert_eq!(
            go_bcrypt_hash(&format!("$1a$+5${tail}")).unwrap(),
            format!("$2b$05${tail}")
        );
        for bad in [
            format!("$3a$10${tail}"),
            format!("$2a$03${tail}"),
            format!("$2a$32${tail}"),
            format!("$2a$1x${tail}"),
            format!("x2a$10${tail}"),
            "$2a$10$short".to_string(),
        ] {
            assert!(go_bcrypt_hash(&bad).is_err(), "{bad}");
        }
        // What Go computes for the rewritten hash: the same check.
        let real = bcrypt::hash("pw", 4).unwrap();
        let as_2a = format!("$2a{}", &real[3..]);
        assert!(bcrypt::verify("pw", &go_bcrypt_hash(&as_2a).unwrap()).unwrap());
    }

    fn request(user: &str, password: &str) -> HeaderMap {
        use base64::Engine as _;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
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
            cache.insert(cache_key(b"u", "h", i.to_string().as_bytes()));
        }
        assert_eq!(cache.len(), CACHE_ENTRIES);
        assert!(!cache.contains(&cache_key(b"u", "h", b"0")));
        assert!(cache.contains(&cache_key(
            b"u",
            "h",
            (CACHE_ENTRIES + 9).to_string().as_bytes()
        )));
    }
}
