//! What a client sends to be let in: the Basic auth header and the client
//! certificate.
//!
//! `basic_auth`: `parse_basic` on arbitrary header values never panics and
//! agrees with a reference written from Go's `Request.BasicAuth` rules (the
//! scheme in any case and one space, standard base64 with its padding,
//! split at the first colon).
//!
//! `client_cert`: the client-certificate verifier on certificates whose
//! subject alternative names are generated (each kind, well-formed or not,
//! spliced into a real certificate) or whose bytes are mutated. It never
//! panics; a certificate accepted without a CA has one of the allowed SANs;
//! a certificate accepted against the CA has exactly the signed bytes of a
//! real one; the SANs of a well-formed list come out in Go's forms.

use crate::engine::{self, mutate_text, shrink_text, Behaviour, Rng, Target};
use std::net::{Ipv4Addr, Ipv6Addr};
use userspace_exporter::http::{client_sans, parse_basic, verify_client_chain};

// ---------------------------------------------------------------- Basic auth

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
fn encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
        for _ in chunk.len()..3 {
            out.push('=');
        }
    }
    out
}

/// Go's `base64.StdEncoding.DecodeString`, written from its rules: groups
/// of four, `=` padding only at the end (one or two), trailing bits ignored.
/// (Go also skips CR and LF, which a header value cannot hold.)
fn reference_decode(text: &[u8]) -> Option<Vec<u8>> {
    if text.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::new();
    let groups = text.len() / 4;
    for (g, group) in text.chunks(4).enumerate() {
        let pad = group.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 || (pad > 0 && g + 1 != groups) {
            return None;
        }
        let mut n = 0u32;
        for (i, c) in group[..4 - pad].iter().enumerate() {
            let v = ALPHABET.iter().position(|a| a == c)? as u32;
            n |= v << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

/// Go's `Request.BasicAuth` on a header value (hyper keeps the value's
/// surrounding spaces, Go's header reader trims them).
fn reference_basic(value: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let value = value.trim_ascii();
    if value.len() < 6 || !value[..6].eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = reference_decode(&value[6..])?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

pub struct BasicAuthTarget;

impl Target for BasicAuthTarget {
    type Input = String;

    fn name(&self) -> &'static str {
        "basic_auth"
    }

    fn ci_executions(&self) -> u64 {
        20_000
    }

    fn seeds(&self) -> Vec<String> {
        let mut seeds = vec![
            format!("Basic {}", encode(b"prometheus:s3cret-scrape")),
            format!("basic {}", encode(b"a:b:c")),
            format!("BASIC {}", encode(b":")),
            format!("Basic {}", encode(b"nocolon")),
            "Bearer abc".to_string(),
            "Basic YTpiYx==".to_string(),
        ];
        for (_, bytes) in engine::regression_files(self.name()) {
            seeds.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        seeds
    }

    fn generate(&self, rng: &mut Rng, corpus: &[String]) -> String {
        if rng.one_in(20) {
            return (0..rng.small(40))
                .map(|_| engine::random_char(rng))
                .collect();
        }
        let scheme = rng.word(&["Basic", "basic", "BASIC", "bAsIc", "Bearer", "Basi", ""]);
        let space = rng.word(&[" ", " ", " ", "  ", "\t", ""]);
        let user: String = (0..rng.small(8))
            .map(|_| engine::random_char(rng))
            .collect();
        let password: String = (0..rng.small(12))
            .map(|_| engine::random_char(rng))
            .collect();
        let colon = rng.word(&[":", ":", ":", "", "::"]);
        let mut encoded = encode(format!("{user}{colon}{password}").as_bytes());
        if rng.one_in(4) {
            encoded = encoded.trim_end_matches('=').to_string();
        }
        let mut s = format!(
            "{}{scheme}{space}{encoded}{}",
            rng.word(&["", "", " "]),
            rng.word(&["", "", " "])
        );
        if rng.one_in(3) {
            let other = rng.pick(corpus).clone();
            for _ in 0..rng.small(3) {
                mutate_text(
                    rng,
                    &mut s,
                    &["=", "==", ":", "+", "/", "Basic ", " "],
                    &other,
                );
            }
        }
        s
    }

    fn run(&self, header: &String) -> Result<Behaviour, String> {
        let got = parse_basic(header.as_bytes());
        let want = reference_basic(header.as_bytes());
        if got != want {
            return Err(format!(
                "differs from Go's rules: {got:?} where Go reads {want:?} for {header:?}"
            ));
        }
        // What a client encodes comes back as it was.
        if let Some((user, password)) = &got {
            let again = format!(
                "Basic {}",
                encode(&[&user[..], b":", &password[..]].concat())
            );
            if parse_basic(again.as_bytes()).as_ref() != Some(&(user.clone(), password.clone())) {
                return Err(format!("no round trip for {header:?}"));
            }
        }
        Ok(format!("{}", got.is_some()))
    }

    fn shrink(&self, header: &String) -> Box<dyn Iterator<Item = String>> {
        shrink_text(header)
    }

    fn save(&self, header: &String) -> Vec<u8> {
        header.as_bytes().to_vec()
    }

    fn allocation_bound(&self, header: &String) -> usize {
        (1 << 16) + 8 * header.len()
    }
}

// ------------------------------------------------------ client certificates

/// When the committed certificates (tests/fuzz/certs, valid 2026 to 2126)
/// are verified: a day after they were made.
const NOW: u64 = 1_796_738_312;

fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    reference_decode(body.as_bytes()).expect("a committed PEM certificate")
}

const CA: &str = include_str!("certs/ca.crt");
const INTER: &str = include_str!("certs/inter.crt");
const LEAF: &str = include_str!("certs/leaf.crt");
const DIRECT: &str = include_str!("certs/direct.crt");

/// One DER element: tag, contents, rest (short and long lengths).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0, |a, b| (a << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

fn encode_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend([0x81, n as u8]);
    } else if n < 0x10000 {
        out.extend([0x82, (n >> 8) as u8, n as u8]);
    } else {
        out.extend([0x83, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(content);
    out
}

fn elements(mut content: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (tag, value, rest) = tlv(content)?;
        out.push((tag, value));
        content = rest;
    }
    Some(out)
}

/// The signed part (TBSCertificate) of a certificate, as bytes.
fn tbs(cert: &[u8]) -> Option<&[u8]> {
    let (_, outer, _) = tlv(cert)?;
    let (_, _, rest) = tlv(outer)?;
    Some(&outer[..outer.len() - rest.len()])
}

/// `cert` with its subjectAltName extension's value replaced by
/// `general_names` (the signature then no longer matches: for the path
/// without a CA, which does not check it).
fn with_sans(cert: &[u8], general_names: &[u8]) -> Option<Vec<u8>> {
    let (_, outer, _) = tlv(cert)?;
    let parts = elements(outer)?;
    let (_, tbs_content) = parts.first()?;
    let mut tbs_parts = Vec::new();
    for (tag, value) in elements(tbs_content)? {
        if tag != 0xa3 {
            tbs_parts.push(encode_tlv(tag, value));
            continue;
        }
        let (_, list, _) = tlv(value)?;
        let mut extensions = Vec::new();
        for (etag, extension) in elements(list)? {
            let fields = elements(extension)?;
            let is_san = fields.first() == Some(&(0x06, &[0x55, 0x1d, 0x11][..]));
            if is_san {
                let value = encode_tlv(0x04, &encode_tlv(0x30, general_names));
                let mut ext = encode_tlv(0x06, &[0x55, 0x1d, 0x11]);
                ext.extend(value);
                extensions.push(encode_tlv(0x30, &ext));
            } else {
                extensions.push(encode_tlv(etag, extension));
            }
        }
        tbs_parts.push(encode_tlv(0xa3, &encode_tlv(0x30, &extensions.concat())));
    }
    let mut out = encode_tlv(0x30, &tbs_parts.concat());
    for (tag, value) in &parts[1..] {
        out.extend(encode_tlv(*tag, value));
    }
    Some(encode_tlv(0x30, &out))
}

/// One generated SAN: its GeneralName tag and bytes.
type Name = (u8, Vec<u8>);

/// What Go makes of one SAN, or `None` when Go refuses the certificate for
/// it; `Some(None)` for kinds the toolkit does not compare.
fn go_form(name: &Name) -> Option<Option<String>> {
    let (tag, bytes) = name;
    match tag {
        0x81 | 0x82 => {
            let s = std::str::from_utf8(bytes).ok().filter(|s| s.is_ascii())?;
            Some(Some(s.to_string()))
        }
        0x86 => {
            let s = std::str::from_utf8(bytes).ok().filter(|s| s.is_ascii())?;
            Some(Some(match s.split_once(':') {
                Some((scheme, rest))
                    if scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                        && scheme
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
                {
                    format!("{}:{rest}", scheme.to_ascii_lowercase())
                }
                // Go's url.Parse: a colon in a first segment that is no scheme.
                Some((first, _)) if !first.contains('/') => return None,
                _ => s.to_string(),
            }))
        }
        0x87 => match bytes.len() {
            4 => Some(Some(
                Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string(),
            )),
            16 => {
                let ip = Ipv6Addr::from(<[u8; 16]>::try_from(&bytes[..]).ok()?);
                Some(Some(match ip.to_ipv4_mapped() {
                    Some(v4) => v4.to_string(),
                    None => ip.to_string(),
                }))
            }
            _ => None,
        },
        _ => None,
    }
}

#[derive(Clone, Debug)]
pub struct CertCase {
    /// Verify against the committed CA (`RequireAndVerifyClientCert`).
    with_ca: bool,
    allowed: Option<Vec<String>>,
    /// The SANs spliced into the certificate, when generated.
    sans: Option<Vec<Name>>,
    /// The client's chain, the client's certificate first.
    chain: Vec<Vec<u8>>,
}

pub struct ClientCertTarget {
    originals: Vec<Vec<u8>>,
}

impl ClientCertTarget {
    pub fn new() -> ClientCertTarget {
        ClientCertTarget {
            originals: [CA, INTER, LEAF, DIRECT]
                .iter()
                .map(|p| pem_der(p))
                .collect(),
        }
    }

    fn name_bytes(rng: &mut Rng) -> Name {
        let tag = *rng.pick(&[0x81u8, 0x82, 0x82, 0x86, 0x87, 0x87, 0xa4, 0x88]);
        let bytes = match tag {
            0x87 => {
                let len = *rng.pick(&[4usize, 4, 16, 16, 0, 5, 15, 17]);
                let mut b = rng.bytes(len);
                if len == 16 && rng.one_in(3) {
                    b[..10].fill(0);
                    b[10] = 0xff;
                    b[11] = 0xff;
                }
                b
            }
            0x86 => rng
                .word(&[
                    "spiffe://cluster/prom",
                    "SPIFFE://Cluster/Prom",
                    "urn:x:y",
                    "HTTPS://h/p?q",
                    "relative/path",
                    "1ab:c",
                    "",
                ])
                .as_bytes()
                .to_vec(),
            0x81 | 0x82 => {
                let mut s: String = rng
                    .word(&["prom.example", "ops@example.org", "*.example", "", "a"])
                    .into();
                if rng.one_in(5) {
                    s.push(engine::random_char(rng));
                }
                s.into_bytes()
            }
            _ => {
                let len = rng.small(12);
                rng.bytes(len)
            }
        };
        (tag, bytes)
    }

    fn allowed(rng: &mut Rng, sans: &[Name]) -> Option<Vec<String>> {
        if rng.one_in(5) {
            return None;
        }
        let mut allowed: Vec<String> = Vec::new();
        for _ in 0..rng.small(3) {
            if !sans.is_empty() && rng.one_in(2) {
                let name = rng.pick(sans);
                if let Some(Some(form)) = go_form(name) {
                    allowed.push(form);
                    continue;
                }
            }
            allowed.push(
                rng.word(&[
                    "prom.example",
                    "10.0.0.7",
                    "spiffe://cluster/prom",
                    "PROM.EXAMPLE",
                    "x",
                ])
                .to_string(),
            );
        }
        Some(allowed)
    }
}

impl Target for ClientCertTarget {
    type Input = CertCase;

    fn name(&self) -> &'static str {
        "client_cert"
    }

    fn ci_executions(&self) -> u64 {
        3_000
    }

    fn seeds(&self) -> Vec<CertCase> {
        let (leaf, inter, direct) = (
            self.originals[2].clone(),
            self.originals[1].clone(),
            self.originals[3].clone(),
        );
        let mut seeds = vec![
            CertCase {
                with_ca: true,
                allowed: Some(vec!["spiffe://cluster/prom".into()]),
                sans: None,
                chain: vec![leaf.clone(), inter.clone()],
            },
            CertCase {
                with_ca: true,
                allowed: None,
                sans: None,
                chain: vec![direct.clone()],
            },
            CertCase {
                with_ca: false,
                allowed: Some(vec!["10.0.0.8".into()]),
                sans: None,
                chain: vec![leaf],
            },
        ];
        for (_, bytes) in engine::regression_files(self.name()) {
            if let Some(case) = load(&bytes) {
                seeds.push(case);
            }
        }
        seeds
    }

    fn generate(&self, rng: &mut Rng, corpus: &[CertCase]) -> CertCase {
        if rng.one_in(2) {
            // Generated SANs in a real certificate, checked without a CA.
            let sans: Vec<Name> = (0..rng.small(5)).map(|_| Self::name_bytes(rng)).collect();
            let general: Vec<u8> = sans.iter().flat_map(|(t, b)| encode_tlv(*t, b)).collect();
            let cert = with_sans(&self.originals[3], &general).expect("the committed certificate");
            return CertCase {
                with_ca: false,
                allowed: Self::allowed(rng, &sans),
                sans: Some(sans),
                chain: vec![cert],
            };
        }
        // A real chain with some bytes changed.
        let mut case = rng.pick(corpus).clone();
        case.sans = None;
        case.with_ca = rng.one_in(2);
        for _ in 0..=rng.small(3) {
            let which = rng.below(case.chain.len());
            let cert = &mut case.chain[which];
            if cert.is_empty() {
                continue;
            }
            let at = rng.below(cert.len());
            match rng.below(5) {
                0 => cert[at] ^= 1 << rng.below(8),
                1 => cert[at] = rng.bytes(1)[0],
                2 => {
                    cert.remove(at);
                }
                3 => cert.insert(at, rng.bytes(1)[0]),
                _ => cert.truncate(at),
            }
        }
        if rng.one_in(4) {
            case.allowed = Self::allowed(rng, &[]);
        }
        case
    }

    fn run(&self, case: &CertCase) -> Result<Behaviour, String> {
        let ca = pem_der(CA);
        let ca_pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            encode(&ca)
        );
        let verdict = verify_client_chain(
            case.with_ca.then_some(ca_pem.as_bytes()),
            case.allowed.as_deref(),
            &case.chain,
            NOW,
        );
        let leaf = &case.chain[0];
        let sans = client_sans(leaf);
        if verdict.is_ok() {
            if let Some(allowed) = &case.allowed {
                let ok = sans
                    .as_ref()
                    .is_ok_and(|s| s.iter().any(|n| allowed.contains(n)));
                if !ok {
                    return Err(format!(
                        "accepted without an allowed SAN: {sans:?}, allowed {allowed:?}"
                    ));
                }
            }
            if case.with_ca {
                let signed = tbs(leaf);
                if !self
                    .originals
                    .iter()
                    .any(|o| tbs(o) == signed && signed.is_some())
                {
                    return Err("accepted against the CA with changed signed bytes".into());
                }
            }
        } else if !case.with_ca && case.chain.len() == 1 {
            // Without a CA (and intermediates, which must parse too) only
            // parsing and the SANs can refuse.
            if let (Ok(s), Some(allowed)) = (&sans, &case.allowed) {
                if s.iter().any(|n| allowed.contains(n)) {
                    return Err(format!(
                        "refused with an allowed SAN {s:?} ({allowed:?}): {verdict:?}"
                    ));
                }
            }
        }
        if let Some(generated) = &case.sans {
            let forms: Option<Vec<Option<String>>> = generated.iter().map(go_form).collect();
            if let (Some(forms), Ok(got)) = (&forms, &sans) {
                let want: Vec<String> = forms.iter().flatten().cloned().collect();
                if *got != want {
                    return Err(format!("SANs not in Go's forms: {got:?}, want {want:?}"));
                }
            }
            if let (None, Ok(got)) = (&forms, &sans) {
                if generated
                    .iter()
                    .all(|(t, _)| [0x81, 0x82, 0x86, 0x87].contains(t))
                {
                    return Err(format!(
                        "a SAN Go refuses was taken: {got:?} from {generated:?}"
                    ));
                }
            }
        }
        Ok(format!(
            "ca={} ok={} sans={}",
            case.with_ca,
            verdict.is_ok(),
            sans.is_ok()
        ))
    }

    fn shrink(&self, case: &CertCase) -> Box<dyn Iterator<Item = CertCase>> {
        let mut smaller = Vec::new();
        if case.chain.len() > 1 {
            let mut c = case.clone();
            c.chain.truncate(1);
            smaller.push(c);
        }
        if let Some(allowed) = &case.allowed {
            for i in 0..allowed.len() {
                let mut c = case.clone();
                c.allowed.as_mut().unwrap().remove(i);
                smaller.push(c);
            }
        }
        if let Some(sans) = &case.sans {
            for i in 0..sans.len() {
                let mut fewer = sans.clone();
                fewer.remove(i);
                let general: Vec<u8> = fewer.iter().flat_map(|(t, b)| encode_tlv(*t, b)).collect();
                if let Some(cert) = with_sans(&self.originals[3], &general) {
                    smaller.push(CertCase {
                        sans: Some(fewer),
                        chain: vec![cert],
                        ..case.clone()
                    });
                }
            }
        }
        Box::new(smaller.into_iter())
    }

    fn save(&self, case: &CertCase) -> Vec<u8> {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let mut out = format!("ca {}\n", case.with_ca);
        if let Some(allowed) = &case.allowed {
            out.push_str(&format!("allowed {}\n", hex(allowed.join("\n").as_bytes())));
        }
        for (tag, bytes) in case.sans.iter().flatten() {
            out.push_str(&format!("san {tag:02x} {}\n", hex(bytes)));
        }
        for cert in &case.chain {
            out.push_str(&format!("cert {}\n", hex(cert)));
        }
        out.into_bytes()
    }

    fn allocation_bound(&self, case: &CertCase) -> usize {
        (4 << 20) + 64 * case.chain.iter().map(Vec::len).sum::<usize>()
    }
}

/// A saved case (see `save`).
fn load(bytes: &[u8]) -> Option<CertCase> {
    let unhex = |s: &str| -> Option<Vec<u8>> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
            .collect()
    };
    let text = std::str::from_utf8(bytes).ok()?;
    let mut case = CertCase {
        with_ca: false,
        allowed: None,
        sans: None,
        chain: Vec::new(),
    };
    for line in text.lines() {
        let (key, value) = line.split_once(' ')?;
        match key {
            "ca" => case.with_ca = value == "true",
            "allowed" => {
                let joined = String::from_utf8(unhex(value)?).ok()?;
                case.allowed = Some(joined.split('\n').map(String::from).collect());
            }
            "san" => {
                let (tag, hex) = value.split_once(' ')?;
                case.sans
                    .get_or_insert_with(Vec::new)
                    .push((u8::from_str_radix(tag, 16).ok()?, unhex(hex)?));
            }
            "cert" => case.chain.push(unhex(value)?),
            _ => return None,
        }
    }
    (!case.chain.is_empty()).then_some(case)
}
