//! The web configuration file (`--web.config.file`), in the format of the
//! Prometheus exporter toolkit that every official exporter accepts:
//! `tls_server_config`, `http_server_config`, `basic_auth_users` and
//! `rate_limit`. Reading it yields [`WebSettings`], everything the server
//! needs, already checked: the TLS configuration built (certificate, key and
//! client CAs read and matched), the bcrypt hashes parsed, the headers
//! validated. Unknown keys are errors; each error names `file:line:column`.

use super::auth::{AuthCache, BasicAuth};
use super::limits::RateLimiter;
use super::tls::{self, TlsFile};
use axum::http::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The file's schema: the toolkit's keys, nothing else.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebFile {
    tls_server_config: Option<Spanned<TlsFile>>,
    http_server_config: Option<HttpFile>,
    basic_auth_users: Option<BTreeMap<String, Spanned<String>>>,
    rate_limit: Option<Spanned<RateLimitFile>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, Spanned<Option<String>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitFile {
    interval: Option<Spanned<GoDuration>>,
    burst: Option<Spanned<i64>>,
}

/// A duration as the toolkit's YAML decoder (yaml.v2) takes it: Go's
/// syntax (`100ms`, `1m30s`, `-1s`), or a number of nanoseconds (a
/// fraction is cut off). Negative durations are kept: Go accepts them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GoDuration {
    /// Below zero.
    pub negative: bool,
    /// The size.
    pub magnitude: Duration,
}

impl GoDuration {
    fn from_nanos(n: i128) -> GoDuration {
        let magnitude = u64::try_from(n.unsigned_abs()).unwrap_or(u64::MAX);
        GoDuration {
            negative: n < 0,
            magnitude: Duration::from_nanos(magnitude),
        }
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Nanos(i64),
            Fraction(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Nanos(n) => Ok(GoDuration::from_nanos(i128::from(n))),
            // yaml.v2 converts a float to int64 by truncation.
            Raw::Fraction(f) if f.is_finite() && f.abs() < 9.2e18 => {
                Ok(GoDuration::from_nanos(f.trunc() as i128))
            }
            Raw::Fraction(f) => Err(serde::de::Error::custom(format!(
                "{f} nanoseconds is out of range"
            ))),
            Raw::Text(t) => parse_go_duration(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// Parses Go's duration syntax (`300ms`, `1.5h`, `2h45m`, `-1s`, `+5m`).
pub(crate) fn parse_go_duration(text: &str) -> Result<GoDuration, String> {
    let bad = || format!("{text:?} is not a duration such as 500ms, 10s or 1m30s");
    let mut rest = text;
    let negative = match rest.as_bytes().first() {
        Some(b'-') => {
            rest = &rest[1..];
            true
        }
        Some(b'+') => {
            rest = &rest[1..];
            false
        }
        _ => false,
    };
    if rest == "0" {
        return Ok(GoDuration {
            negative: false,
            magnitude: Duration::ZERO,
        });
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let digits = &rest[..number_end];
        if digits.is_empty() || digits == "." || digits.matches('.').count() > 1 {
            return Err(bad());
        }
        let number: f64 = digits
            .strip_suffix('.')
            .unwrap_or(digits)
            .parse()
            .map_err(|_| bad())?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    // Go's durations are int64 nanoseconds: about 292 years at most.
    if total > 9.223e9 {
        return Err(format!(
            "{text:?} is out of range (Go's durations end at 2562047h)"
        ));
    }
    let magnitude = Duration::try_from_secs_f64(total).map_err(|_| bad())?;
    Ok(GoDuration {
        negative: negative && !magnitude.is_zero(),
        magnitude,
    })
}

/// An error in the web configuration, at a position of the file when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfigError {
    /// The web configuration file.
    pub path: PathBuf,
    /// 1-based line, 0 when the error is about the file as a whole.
    pub line: u64,
    /// 1-based column, 0 when unknown.
    pub column: u64,
    /// What is wrong, and where relevant what to do.
    pub message: String,
}

impl fmt::Display for WebConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}: {}", self.path.display(), self.message),
            (line, 0) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            (line, column) => write!(
                f,
                "{}:{line}:{column}: {}",
                self.path.display(),
                self.message
            ),
        }
    }
}

impl std::error::Error for WebConfigError {}

/// A file's identity and version as `stat` (following symlinks) sees it: a
/// change of any part means the file was replaced or rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    /// The file's stamp now; `None` when it cannot be stat'ed (missing).
    pub(crate) fn of(path: &Path) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        })
    }
}

/// The files one reading of the web configuration depended on, each with
/// its stamp taken just before it was read: when any stamp differs later,
/// the configuration must be read again.
pub(crate) type Dependencies = Vec<(PathBuf, Option<Stamp>)>;

/// Reads one file of the configuration, recording it as a dependency.
pub(crate) struct Reader<'a> {
    /// The web configuration file, for error positions.
    pub path: &'a Path,
    /// Every file read so far, with its stamp before reading.
    pub files: Dependencies,
    /// What was accepted but does not work as it would in the toolkit, or
    /// has no effect.
    pub warnings: Vec<WebConfigError>,
}

impl Reader<'_> {
    /// The directory relative paths are taken from: the configuration file's.
    pub fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// `path` relative to the configuration file's directory.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_relative() {
            self.dir().join(p)
        } else {
            p.to_path_buf()
        }
    }

    /// Reads `path`, recording its stamp first.
    pub fn read(&mut self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.files.push((path.to_path_buf(), Stamp::of(path)));
        std::fs::read(path)
    }

    /// An error at `at` (a YAML position).
    pub fn error(&self, at: Location, message: impl Into<String>) -> WebConfigError {
        WebConfigError {
            path: self.path.to_path_buf(),
            line: at.line(),
            column: at.column(),
            message: message.into(),
        }
    }

    /// Records a warning at `at`.
    pub fn warn(&mut self, at: Location, message: impl Into<String>) {
        let warning = self.error(at, message);
        self.warnings.push(warning);
    }

    /// An error about the file as a whole.
    pub fn error_file(&self, message: impl Into<String>) -> WebConfigError {
        self.error(Location::UNKNOWN, message)
    }
}

/// The headers `http_server_config.headers` may set, and for those with a
/// fixed vocabulary the values allowed (as the toolkit has them).
const HEADERS: &[(&str, &[&str])] = &[
    ("Content-Security-Policy", &[]),
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
];

/// Everything the server takes from the web configuration, checked and built.
pub struct WebSettings {
    /// TLS, when `tls_server_config` names a certificate.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Basic authentication, when `basic_auth_users` has users.
    pub auth: Option<Arc<BasicAuth>>,
    /// Headers added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The toolkit's `rate_limit`, when its interval is not zero.
    pub rate_limit: Option<Arc<RateLimiter>>,
    /// Whether HTTP/2 is offered (through ALPN, so over TLS only).
    pub http2: bool,
    /// What the file sets that is dropped or has no effect here, each at
    /// its line: logged as warnings when the file is read.
    pub warnings: Vec<WebConfigError>,
}

impl fmt::Debug for WebSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSettings")
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth.as_ref().map(|a| a.users()))
            .field("headers", &self.headers)
            .field("rate_limit", &self.rate_limit.is_some())
            .field("http2", &self.http2)
            .finish()
    }
}

impl WebSettings {
    /// No web configuration: plain HTTP, no authentication, no extra headers.
    pub fn plain() -> WebSettings {
        WebSettings {
            tls: None,
            auth: None,
            headers: Vec::new(),
            rate_limit: None,
            http2: false,
            warnings: Vec::new(),
        }
    }

    /// One line for the log: what the endpoint requires.
    pub fn describe(&self) -> String {
        let mut parts = vec![if self.tls.is_some() {
            "TLS".to_string()
        } else {
            "plain HTTP".to_string()
        }];
        if let Some(tls) = &self.tls {
            if tls.alpn_protocols.iter().any(|p| p == b"h2") {
                parts.push("HTTP/2".into());
            }
        }
        if let Some(auth) = &self.auth {
            parts.push(format!("basic auth ({} user(s))", auth.users()));
        }
        if !self.headers.is_empty() {
            parts.push(format!("{} extra header(s)", self.headers.len()));
        }
        if self.rate_limit.is_some() {
            parts.push("rate limit".into());
        }
        parts.join(", ")
    }
}

/// Reads the web configuration at `path` and builds its settings; returns
/// them with the files they depend on. On error, the files read until then
/// come with it, so that a later change of any of them is noticed.
pub(crate) fn load(
    path: &Path,
    cache: &Arc<AuthCache>,
) -> Result<(WebSettings, Dependencies), (WebConfigError, Dependencies)> {
    let mut reader = Reader {
        path,
        files: Vec::new(),
        warnings: Vec::new(),
    };
    match load_with(&mut reader, cache) {
        Ok(settings) => Ok((settings, reader.files)),
        Err(e) => Err((e, reader.files)),
    }
}

fn load_with(
    reader: &mut Reader<'_>,
    cache: &Arc<AuthCache>,
) -> Result<WebSettings, WebConfigError> {
    let bytes = reader
        .read(reader.path)
        .map_err(|e| reader.error_file(format!("cannot read the web config file: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| reader.error_file("the web config file is not UTF-8 text"))?;
    parse(reader, &text, cache)
}

/// Parses and checks the text of a web configuration.
pub(crate) fn parse(
    reader: &mut Reader<'_>,
    text: &str,
    cache: &Arc<AuthCache>,
) -> Result<WebSettings, WebConfigError> {
    let blank = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    let file: WebFile = if blank {
        WebFile::default()
    } else {
        serde_saphyr::from_str(text).map_err(|e| yaml_error(reader.path, text, &e))?
    };

    let http = file.http_server_config.unwrap_or_default();
    let http2 = http.http2.unwrap_or(true);
    let tls = match &file.tls_server_config {
        Some(section) => tls::build(reader, section, http2)?,
        None => None,
    };

    let headers = headers(reader, http.headers.unwrap_or_default())?;
    let auth = users(reader, file.basic_auth_users.unwrap_or_default(), cache)?;
    let rate_limit = match file.rate_limit {
        None => None,
        Some(section) => rate_limit(reader, &section)?,
    };
    let warnings = std::mem::take(&mut reader.warnings);

    Ok(WebSettings {
        tls,
        auth,
        headers,
        rate_limit,
        http2,
        warnings,
    })
}

/// `http_server_config.headers`: the toolkit's five headers (names taken in
/// any case), values as Go's HTTP server writes them (line breaks become
/// spaces, the ends are trimmed); a blank value sets nothing.
fn headers(
    reader: &Reader<'_>,
    configured: BTreeMap<String, Spanned<Option<String>>>,
) -> Result<Vec<(HeaderName, HeaderValue)>, WebConfigError> {
    let mut headers = Vec::new();
    for (name, value) in configured {
        let Some((canonical, allowed)) =
            HEADERS.iter().find(|(h, _)| h.eq_ignore_ascii_case(&name))
        else {
            let names: Vec<_> = HEADERS.iter().map(|(h, _)| *h).collect();
            return Err(reader.error(
                value.referenced,
                format!(
                    "HTTP header {name:?} can not be configured; http_server_config.headers takes {}",
                    names.join(", ")
                ),
            ));
        };
        let text = go_header_value(value.value.as_deref().unwrap_or(""));
        if text.is_empty() {
            continue; // The toolkit's "unset if blank".
        }
        if !allowed.is_empty() && !allowed.contains(&text.as_str()) {
            return Err(reader.error(
                value.referenced,
                format!(
                    "invalid value {text:?} for {canonical}: expected one of {}",
                    allowed.join(", ")
                ),
            ));
        }
        let header_value = HeaderValue::from_str(&text).map_err(|_| {
            reader.error(
                value.referenced,
                format!(
                    "{canonical}: the value holds a control character, which HTTP does not allow"
                ),
            )
        })?;
        headers.push((HeaderName::from_static(lowercase(canonical)), header_value));
    }
    Ok(headers)
}

/// A header value as Go's `net/http` writes it: CR and LF replaced by
/// spaces, then spaces and tabs trimmed at both ends. A YAML block scalar
/// (`|` or `>`) thus gives one line, as with the toolkit.
pub(crate) fn go_header_value(value: &str) -> String {
    value
        .replace(['\r', '\n'], " ")
        .trim_matches([' ', '\t'])
        .to_string()
}

/// `basic_auth_users`: each password must be a bcrypt hash Go's bcrypt
/// takes (checked as the toolkit checks it at startup).
fn users(
    reader: &Reader<'_>,
    configured: BTreeMap<String, Spanned<String>>,
    cache: &Arc<AuthCache>,
) -> Result<Option<Arc<BasicAuth>>, WebConfigError> {
    let mut users = BTreeMap::new();
    for (user, hash) in configured {
        let usable = super::auth::go_bcrypt_hash(&hash.value).map_err(|e| {
            reader.error(
                hash.referenced,
                format!(
                    "basic_auth_users: the password of user {user:?} is not a bcrypt hash ({e}); \
                     make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
                ),
            )
        })?;
        users.insert(user, usable);
    }
    Ok((!users.is_empty()).then(|| Arc::new(BasicAuth::new(users, cache.clone()))))
}

/// `rate_limit` as Go's `rate.NewLimiter(rate.Every(interval), burst)`:
/// interval 0 turns it off; a negative interval allows everything; a burst
/// of 0 or less allows nothing (but the health paths, which it never covers).
fn rate_limit(
    reader: &mut Reader<'_>,
    section: &Spanned<RateLimitFile>,
) -> Result<Option<Arc<RateLimiter>>, WebConfigError> {
    let Some(interval) = &section.value.interval else {
        return Ok(None);
    };
    if interval.value.magnitude.is_zero() {
        return Ok(None);
    }
    if interval.value.negative {
        reader.warn(
            interval.referenced,
            "rate_limit: a negative interval limits nothing (as in the exporter toolkit, whose limiter allows every request then)",
        );
        return Ok(None);
    }
    let burst = section.value.burst.as_ref().map_or(0, |b| b.value);
    if burst <= 0 {
        let at = section
            .value
            .burst
            .as_ref()
            .map_or(section.referenced, |b| b.referenced);
        reader.warn(
            at,
            format!("rate_limit: burst {burst} allows no request at all: every request but /-/healthy and /-/ready gets 429, as with the exporter toolkit (set burst to 1 or more)"),
        );
    }
    Ok(Some(Arc::new(RateLimiter::new(
        interval.value.magnitude,
        u64::try_from(burst).unwrap_or(0),
    ))))
}

/// The header names above, in lower case as `HeaderName::from_static` wants them.
fn lowercase(name: &str) -> &'static str {
    match name {
        "Content-Security-Policy" => "content-security-policy",
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        _ => "x-xss-protection",
    }
}

/// A serde-saphyr error as one line at its position, naming the key written
/// before that position on its line when there is one.
fn yaml_error(path: &Path, text: &str, e: &serde_saphyr::Error) -> WebConfigError {
    use serde_saphyr::Error as E;
    use serde_saphyr::MessageFormatter as _;
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    let inner = e.without_snippet();
    let message = match inner {
        E::DuplicateMappingKey { key: Some(k), .. } => {
            format!("duplicate key `{k}`: a key may appear only once in a mapping")
        }
        other => {
            let message = serde_saphyr::DefaultMessageFormatter.format_message(other);
            let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
            match other {
                E::SerdeUnknownField { .. } => message,
                E::ExternalMessage { .. } => format!("{message} (YAML syntax error)"),
                _ => match key_before(text, line, column) {
                    Some(key) => format!("`{key}`: {message}"),
                    None => message,
                },
            }
        }
    };
    WebConfigError {
        path: path.to_path_buf(),
        line,
        column,
        message,
    }
}

/// The key written just before `line:column` on that line (`http2: maybe` -> `http2`).
fn key_before(text: &str, line: u64, column: u64) -> Option<&str> {
    let source = text
        .lines()
        .nth(usize::try_from(line.checked_sub(1)?).ok()?)?;
    let end = source
        .char_indices()
        .nth(usize::try_from(column.checked_sub(1)?).ok()?)
        .map_or(source.len(), |(i, _)| i);
    let before = source[..end].trim_end().strip_suffix(':')?;
    let start = before
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .map_or(0, |i| i + 1);
    Some(&before[start..]).filter(|k| !k.is_empty())
}

#[cfg(test)]
#[path = "web_config_tests.rs"]
mod tests;

#[cfg(test)]
mod duration_tests {
    use super::*;

    fn d(text: &str) -> Result<(bool, Duration), String> {
        parse_go_duration(text).map(|g| (g.negative, g.magnitude))
    }

    #[test]
    fn go_durations() {
        assert_eq!(d("0"), Ok((false, Duration::ZERO)));
        assert_eq!(d("-0"), Ok((false, Duration::ZERO)));
        assert_eq!(d("100ms"), Ok((false, Duration::from_millis(100))));
        assert_eq!(d("1m30s"), Ok((false, Duration::from_secs(90))));
        assert_eq!(d("1.5h"), Ok((false, Duration::from_secs(5400))));
        assert_eq!(d(".5s"), Ok((false, Duration::from_millis(500))));
        assert_eq!(d("1.s"), Ok((false, Duration::from_secs(1))));
        assert_eq!(d("250us"), Ok((false, Duration::from_micros(250))));
        assert_eq!(d("250\u{b5}s"), Ok((false, Duration::from_micros(250))));
        assert_eq!(d("+5m"), Ok((false, Duration::from_secs(300))));
        // Go takes negative durations; rate_limit then limits nothing.
        assert_eq!(d("-1s"), Ok((true, Duration::from_secs(1))));
        for bad in ["10", "1d", "", "-", ".s", "1..5s", " 1s", "1s ", "3000000h"] {
            assert!(d(bad).is_err(), "{bad:?}");
        }
    }
}
