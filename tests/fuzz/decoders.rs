//! Every label decoder, alone and in chains, on arbitrary bytes: a value,
//! a dropped label set or a `DecodeError`, never a panic; decoders that say
//! they are injective give distinct inputs of one size distinct values; a
//! key shorter than the labels read is an error. Misconfigured chains (an
//! unknown name, an empty map, a bad regexp) are config errors, not panics.

use crate::engine::{self, Behaviour, Rng, Target};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use userspace_exporter::config::{DecoderConfig, Label};
use userspace_exporter::metrics::decoders::{
    CgroupDecoder, DecodeError, Decoder, DecoderChain, LabelDecoders, UsymDecoder,
};

const NAMES: &[&str] = &[
    "uint",
    "int",
    "hex",
    "string",
    "static_map",
    "regexp",
    "usym",
    "errno",
    "inet_ip",
    "cgroup",
];

const ODD_NAMES: &[&str] = &["", "UINT", "float", "uint ", "static-map", "\u{0}"];

const MAP_KEYS: &[&str] = &[
    "0",
    "1",
    "2",
    "-1",
    "-2",
    "255",
    "0x1",
    "read",
    "java",
    "",
    "ENOENT",
    "::1",
    "127.0.0.1",
    "unknown:7",
    "\u{fffd}",
];

const REGEXPS: &[&str] = &[
    "^java",
    "go$",
    ".*",
    "",
    "(",
    "[a-z]+",
    "\\d{3}",
    "(?i)PY",
    "^$",
    "\\x00",
    "^[0-9]+$",
    "^unknown:",
    "E[A-Z]+",
    "(a|b)*c",
    "\\p{Greek}",
    "[",
    "^/system\\.slice/",
];

/// A decoder as written in a config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dec {
    name: String,
    static_map: BTreeMap<String, String>,
    allow_unknown: bool,
    regexps: Vec<String>,
}

/// A label: its bytes of the key and its chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lab {
    size: usize,
    padding: usize,
    chain: Vec<Dec>,
}

/// One input: labels, keys to split with them, and loose inputs for each
/// label's chain alone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Case {
    labels: Vec<Lab>,
    keys: Vec<Vec<u8>>,
    inputs: Vec<Vec<u8>>,
    /// Decode for a process: none, or one that does not exist.
    process: Option<i32>,
}

impl Dec {
    fn config(&self) -> DecoderConfig {
        DecoderConfig {
            name: self.name.clone(),
            static_map: self.static_map.clone(),
            allow_unknown: self.allow_unknown,
            regexps: self.regexps.clone(),
        }
    }
}

fn labels(case: &Case) -> Vec<Label> {
    case.labels
        .iter()
        .enumerate()
        .map(|(i, l)| Label {
            name: format!("l{i}"),
            size: l.size,
            padding: l.padding,
            decoders: l.chain.iter().map(Dec::config).collect(),
        })
        .collect()
}

pub struct DecodersTarget {
    /// Long-lived decoders that look at this process (as the exporter keeps
    /// its decoders for a program's life): `usym` with its caches, `cgroup`
    /// with the real cgroup tree.
    usym: UsymDecoder,
    cgroup: CgroupDecoder,
    /// Addresses in this process's executable mappings and of functions in it.
    addresses: Vec<u64>,
}

impl DecodersTarget {
    pub fn new() -> DecodersTarget {
        let mut addresses = vec![
            engine::fuzz::<DecodersTarget> as *const () as u64,
            DecodersTarget::new as *const () as u64,
            libc::malloc as *const () as u64,
            libc::getpid as *const () as u64,
        ];
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        for line in maps.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() >= 2 && fields[1].contains('x') {
                if let Some((a, b)) = fields[0].split_once('-') {
                    addresses.push(u64::from_str_radix(a, 16).unwrap());
                    addresses.push(u64::from_str_radix(b, 16).unwrap() - 1);
                }
            }
        }
        DecodersTarget {
            usym: UsymDecoder::default(),
            cgroup: CgroupDecoder::default(),
            addresses,
        }
    }

    fn dec(&self, rng: &mut Rng) -> Dec {
        let name = if rng.one_in(30) {
            rng.pick(ODD_NAMES).to_string()
        } else {
            rng.pick(NAMES).to_string()
        };
        let mut static_map = BTreeMap::new();
        let mut regexps = Vec::new();
        if name == "static_map" || rng.one_in(20) {
            for _ in 0..rng.below(6) {
                let key = if rng.one_in(3) {
                    rng.below(300).to_string()
                } else {
                    rng.pick(MAP_KEYS).to_string()
                };
                static_map.insert(key, format!("v{}", rng.below(4)));
            }
        }
        if name == "regexp" || rng.one_in(20) {
            for _ in 0..rng.below(4) {
                regexps.push(if rng.one_in(4) {
                    (0..rng.small(8))
                        .map(|_| engine::random_char(rng))
                        .collect()
                } else {
                    rng.pick(REGEXPS).to_string()
                });
            }
        }
        Dec {
            name,
            static_map,
            allow_unknown: rng.one_in(2),
            regexps,
        }
    }

    /// Bytes a decoder might get: integers, text, addresses, random.
    fn input(&self, rng: &mut Rng, len: usize) -> Vec<u8> {
        let mut bytes = match rng.below(6) {
            0 => {
                let v = *rng.pick(&[
                    0u64,
                    1,
                    2,
                    u64::MAX,
                    u64::MAX - 1,
                    (-2i64) as u64,
                    (-11i64) as u64,
                    (-4095i64) as u64,
                    i64::MIN as u64,
                    255,
                    256,
                ]);
                v.to_ne_bytes().to_vec()
            }
            1 => {
                let text: String = (0..len)
                    .map(|_| *rng.pick(&["1", "2", "-", "0", "java", "\0", "é", "a", "x"]))
                    .collect();
                text.into_bytes()
            }
            2 => rng.pick(&self.addresses).to_ne_bytes().to_vec(),
            _ => rng.bytes(len),
        };
        bytes.resize(len, 0);
        bytes
    }

    fn size(rng: &mut Rng) -> usize {
        *rng.pick(&[1, 2, 4, 8, 8, 8, 16, 0, 3, 5, 7, 12, 32, 64, 100])
    }
}

fn check_injective(
    chain: &DecoderChain,
    inputs: &[Vec<u8>],
    process: Option<i32>,
) -> Result<(), String> {
    if !chain.is_injective() {
        return Ok(());
    }
    let mut seen: HashMap<(usize, String), &[u8]> = HashMap::new();
    for input in inputs {
        if let Ok(Some(value)) = chain.decode_in(input, process) {
            if let Some(other) = seen.insert((input.len(), value.clone()), input) {
                if other != input.as_slice() {
                    return Err(format!(
                        "a chain says it is injective but is not: {chain:?} decodes {other:02x?} and {input:02x?} to {value:?}"
                    ));
                }
            }
        }
    }
    Ok(())
}

fn shown(e: &DecodeError) -> Result<(), String> {
    if e.to_string().is_empty() {
        return Err(format!("an empty message: {e:?}"));
    }
    Ok(())
}

impl Target for DecodersTarget {
    type Input = Case;

    fn name(&self) -> &'static str {
        "decoders"
    }

    fn ci_executions(&self) -> u64 {
        1000
    }

    fn seeds(&self) -> Vec<Case> {
        let mut seeds: Vec<Case> = NAMES
            .iter()
            .map(|name| Case {
                labels: vec![Lab {
                    size: 8,
                    padding: 0,
                    chain: vec![Dec {
                        name: name.to_string(),
                        static_map: [("1".to_string(), "one".to_string())].into(),
                        allow_unknown: false,
                        regexps: vec!["^1".into()],
                    }],
                }],
                keys: vec![1u64.to_ne_bytes().to_vec(), vec![0; 8], vec![1, 2, 3]],
                inputs: vec![vec![], vec![1], vec![0xff; 4], vec![0; 16]],
                process: None,
            })
            .collect();
        for (path, bytes) in engine::regression_files("decoders") {
            seeds.push(
                serde_json::from_slice(&bytes)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            );
        }
        seeds
    }

    fn generate(&self, rng: &mut Rng, _corpus: &[Case]) -> Case {
        let labels: Vec<Lab> = (0..rng.small(4) - 1 + usize::from(rng.one_in(2)))
            .map(|_| Lab {
                size: Self::size(rng),
                padding: *rng.pick(&[0, 0, 0, 4, 1, 8]),
                chain: (0..rng.small(4)).map(|_| self.dec(rng)).collect(),
            })
            .collect();
        let key_size: usize = labels.iter().map(|l| l.size + l.padding).sum();
        let keys = (0..rng.small(8))
            .map(|_| {
                let len = (key_size + rng.below(6)).saturating_sub(2);
                self.input(rng, len)
            })
            .collect();
        // Same-size inputs, so that injectivity is put to the test.
        let len = Self::size(rng);
        let inputs = (0..rng.small(16))
            .map(|_| {
                let len = if rng.one_in(4) { Self::size(rng) } else { len };
                self.input(rng, len)
            })
            .collect();
        // Fresh chains look at processes that are not there (a fresh `usym`
        // parses every file an address of a live process falls in, which
        // takes long in a debug build); the long-lived `usym` looks at this
        // process.
        let process = match rng.below(4) {
            0 => Some(*rng.pick(&[0, -1, i32::MAX, 4_194_304])),
            _ => None,
        };
        Case {
            labels,
            keys,
            inputs,
            process,
        }
    }

    fn run(&self, case: &Case) -> Result<Behaviour, String> {
        let mut behaviour = String::new();
        // Each chain alone, on the loose inputs.
        for label in &case.labels {
            let configs: Vec<DecoderConfig> = label.chain.iter().map(Dec::config).collect();
            let chain = match DecoderChain::new(&configs) {
                Ok(chain) => chain,
                Err(e) => {
                    let _ = e.to_string();
                    behaviour.push_str("config-error ");
                    continue;
                }
            };
            for input in &case.inputs {
                match chain.decode_in(input, case.process) {
                    Ok(Some(_)) => behaviour.push('v'),
                    Ok(None) => behaviour.push('d'),
                    Err(e) => {
                        shown(&e)?;
                        behaviour.push('e');
                    }
                }
            }
            check_injective(&chain, &case.inputs, case.process)?;
        }
        // The labels together, on whole keys.
        if let Ok(decoders) = LabelDecoders::new(&labels(case)) {
            let mut out = Vec::new();
            let mut seen: HashMap<Vec<String>, &[u8]> = HashMap::new();
            for key in &case.keys {
                match decoders.decode_key_in(key, case.process, &mut out) {
                    Ok(true) => {
                        if out.len() != decoders.len() {
                            return Err(format!(
                                "not one value per label: {} values for {} labels",
                                out.len(),
                                decoders.len()
                            ));
                        }
                        if decoders.is_injective(key.len()) {
                            if let Some(other) = seen.insert(out.clone(), key) {
                                if other != key.as_slice() {
                                    return Err(format!(
                                        "labels say they are injective but are not: keys {other:02x?} and {key:02x?} both decode to {out:?}"
                                    ));
                                }
                            }
                        }
                    }
                    Ok(false) => {}
                    Err(e) => {
                        shown(&e)?;
                        if key.len() < decoders.key_size()
                            && !matches!(e, DecodeError::KeyTooShort { .. })
                        {
                            return Err(format!("a short key gives another error: {e:?}"));
                        }
                    }
                }
                if key.len() < decoders.key_size()
                    && decoders.decode_key_in(key, case.process, &mut out).is_ok()
                {
                    return Err(format!(
                        "a short key decodes: {} bytes with labels of {}",
                        key.len(),
                        decoders.key_size()
                    ));
                }
            }
        }
        // The long-lived decoders that look at this process.
        let me = Some(std::process::id() as i32);
        for input in &case.inputs {
            for result in [
                self.usym.decode_in(input, me),
                self.usym.decode_in(input, case.process),
                self.cgroup.decode(input),
            ] {
                if let Err(e) = result {
                    shown(&e)?;
                }
            }
        }
        Ok(behaviour)
    }

    fn shrink(&self, case: &Case) -> Box<dyn Iterator<Item = Case>> {
        let case = case.clone();
        let mut out = Vec::new();
        for i in 0..case.labels.len() {
            let mut c = case.clone();
            c.labels.remove(i);
            out.push(c);
            for j in 0..case.labels[i].chain.len() {
                let mut c = case.clone();
                c.labels[i].chain.remove(j);
                out.push(c);
            }
        }
        for i in 0..case.keys.len() {
            let mut c = case.clone();
            c.keys.remove(i);
            out.push(c);
        }
        for i in 0..case.inputs.len() {
            let mut c = case.clone();
            c.inputs.remove(i);
            out.push(c);
        }
        if case.process.is_some() {
            out.push(Case {
                process: None,
                ..case.clone()
            });
        }
        Box::new(out.into_iter())
    }

    fn save(&self, case: &Case) -> Vec<u8> {
        serde_json::to_vec_pretty(case).unwrap()
    }

    fn extension(&self) -> &'static str {
        "json"
    }

    fn allocation_bound(&self, _: &Case) -> usize {
        // A regexp may compile to a few MiB; the usym decoder keeps parsed ELF files.
        256 << 20
    }
}
