//! The deployment files in deploy/, checked offline by the tools that read
//! them: kubernetes-validate (Kubernetes' own OpenAPI schemas, strict mode)
//! for the manifests in deploy/kubernetes/, a JSON schema of the Prometheus
//! Operator fields for its custom resources, promtool for the join rules,
//! systemd-analyze for the unit, and the exporter itself for the configs in
//! the ConfigMaps. Every tool also runs on a deliberately broken copy and must
//! refuse it, so that a check that cannot fail fails the test.
//!
//! A missing tool is a skip, or a failure when CI=true (scripts/setup.sh
//! installs them all).

use crate::common;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The oldest Kubernetes the manifests are validated against, besides the
/// newest that kubernetes-validate knows (its default).
const OLDEST_KUBERNETES: &str = "1.28";

/// Kinds whose schemas are not Kubernetes' own (the Prometheus Operator's
/// CRDs): kubernetes-validate has none and says so; they are checked against
/// [`operator_schemas`] instead.
const CUSTOM_KINDS: [&str; 2] = ["PodMonitor", "PrometheusRule"];

/// An example to copy into a workload: validated and cross-checked, but not a
/// resource of the kustomization.
const EXAMPLE: &str = "sidecar.yaml";

const IMAGE: &str = "ebpf-userspace-exporter:latest";
const CONFIG_ARG: &str = "--config.file=/etc/ebpf-userspace-exporter/config.yaml";
const CONFIG_DIR: &str = "/etc/ebpf-userspace-exporter";
const CACHE_DIR: &str = "/var/cache/ebpf-userspace-exporter";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn kube_dir() -> PathBuf {
    root().join("deploy/kubernetes")
}

fn unit_path() -> PathBuf {
    root().join("deploy/systemd/ebpf-userspace-exporter.service")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs a command: whether it succeeded, and its stdout then stderr.
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Whether a tool is there (`probe` succeeds); a skip outside CI, a failure in it.
fn tool(name: &str, probe: &mut Command) -> bool {
    let found = probe
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    common::require(name, common::found(found, "scripts/setup.sh installs it"))
}

/// kubernetes-validate and the modules the custom-resource check uses (its
/// own dependencies), in the python3 on PATH.
fn have_kubernetes_validate() -> bool {
    tool(
        "kubernetes-validate (pip)",
        Command::new("python3").args(["-c", "import kubernetes_validate, jsonschema, yaml"]),
    )
}

/// The YAML documents of a file, empty ones left out.
fn docs(path: &Path) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(&read(path))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// The one document of this kind in `docs`.
fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}");
    found[0]
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("no metadata.name: {doc}"))
}

/// The manifests in deploy/kubernetes/ (every `*.yaml` but the kustomization).
fn manifests() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(kube_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    out.sort();
    assert!(out.len() >= 5, "{out:?}");
    out
}

/// A copy of `file` in a fresh directory with `good` replaced by `bad` (which
/// must occur in it), under the same name. Other files named in `siblings` are
/// copied beside it as they are.
fn broken_copy(
    file: &Path,
    good: &str,
    bad: &str,
    siblings: &[&Path],
) -> (tempfile::TempDir, PathBuf) {
    let text = read(file);
    assert!(
        text.contains(good),
        "{} no longer contains {good:?}: update this test",
        file.display()
    );
    let dir = tempfile::tempdir().unwrap();
    for sibling in siblings {
        std::fs::copy(sibling, dir.path().join(sibling.file_name().unwrap())).unwrap();
    }
    let path = dir.path().join(file.file_name().unwrap());
    std::fs::write(&path, text.replacen(good, bad, 1)).unwrap();
    (dir, path)
}

fn kubernetes_validate(path: &Path, version: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "kubernetes_validate", "--strict"]);
    if let Some(version) = version {
        cmd.args(["-k", version]);
    }
    run(cmd.arg(path))
}

#[test]
fn manifests_pass_kubernetes_validate_in_strict_mode() {
    let _machine = common::shared();
    if !have_kubernetes_validate() {
        return;
    }
    let (_, version) =
        run(Command::new("python3").args(["-m", "kubernetes_validate", "--version"]));
    eprintln!("kubernetes-validate {}", version.trim());
    for path in manifests() {
        let docs = docs(&path);
        for version in [None, Some(OLDEST_KUBERNETES)] {
            let (ok, out) = kubernetes_validate(&path, version);
            assert!(ok, "{} ({version:?}):\n{out}", path.display());
            // kubernetes-validate exits 0 on a kind it has no schema for, with a
            // WARN: every resource of Kubernetes' own must have been validated.
            for doc in &docs {
                let kind = doc["kind"].as_str().unwrap();
                let expected = if CUSTOM_KINDS.contains(&kind) {
                    format!("Couldn't find schema for kind {kind} ")
                } else {
                    format!(
                        "passed for resource {}/{} against version",
                        kind.to_lowercase(),
                        name(doc)
                    )
                };
                assert!(
                    out.contains(&expected),
                    "{}: {expected:?} not in:\n{out}",
                    path.display()
                );
            }
            for line in out.lines().filter(|l| l.starts_with("WARN")) {
                assert!(
                    CUSTOM_KINDS
                        .iter()
                        .any(|k| line.contains(&format!("kind {k} "))),
                    "{}: not validated: {line}",
                    path.display()
                );
            }
        }
    }

    // A misspelt field, or a value of the wrong type, is refused.
    let dir = kube_dir();
    for (file, good, bad, field) in [
        (
            "daemonset.yaml",
            "hostPID: true",
            "hostPid: true",
            "hostPid",
        ),
        (
            "daemonset.yaml",
            "readOnlyRootFilesystem: true",
            "readOnlyRootFileSystem: true",
            "readOnlyRootFileSystem",
        ),
        (
            "sidecar.yaml",
            "shareProcessNamespace: true",
            "shareProcessNamespaces: true",
            "shareProcessNamespaces",
        ),
        (
            "service.yaml",
            "port: 8080",
            "port: \"8080\"",
            "ports.0.port",
        ),
    ] {
        let (_tmp, broken) = broken_copy(&dir.join(file), good, bad, &[]);
        let (ok, out) = kubernetes_validate(&broken, None);
        assert!(!ok, "{file} with {bad:?} passed:\n{out}");
        assert!(
            out.contains("did not validate") && out.contains(field),
            "{file} with {bad:?}:\n{out}"
        );
    }
}

/// JSON schemas of the Prometheus Operator's resources (monitoring.coreos.com/v1)
/// that kubernetes-validate cannot check: the fields of its API that these
/// manifests may use, and no others. Each object is closed
/// (`additionalProperties: false`), so a misspelt or invented field is
/// refused; a field that the operator has but that is missing here is refused
/// too: add it when a manifest needs it.
fn operator_schemas() -> Value {
    let string = json!({"type": "string"});
    let strings = json!({"type": "array", "items": {"type": "string"}});
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    let duration = json!({
        "type": "string",
        "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
    });
    let metadata = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["name"],
        "properties": {
            "name": string, "namespace": string, "labels": string_map, "annotations": string_map
        }
    });
    let label_selector = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "matchLabels": string_map,
            "matchExpressions": {"type": "array", "items": {
                "type": "object",
                "additionalProperties": false,
                "required": ["key", "operator"],
                "properties": {
                    "key": string,
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": strings
                }
            }}
        }
    });
    let relabel = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "sourceLabels": {"type": "array", "items": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"}},
            "separator": string,
            "targetLabel": string,
            "regex": string,
            "modulus": {"type": "integer"},
            "replacement": string,
            "action": {"enum": [
                "replace", "Replace", "keep", "Keep", "drop", "Drop", "hashmod", "HashMod",
                "labelmap", "LabelMap", "labeldrop", "LabelDrop", "labelkeep", "LabelKeep",
                "lowercase", "Lowercase", "uppercase", "Uppercase",
                "keepequal", "KeepEqual", "dropequal", "DropEqual"
            ]}
        }
    });
    let endpoint = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "port": string,
            "path": string,
            "scheme": {"enum": ["http", "https"]},
            "interval": duration,
            "scrapeTimeout": duration,
            "honorLabels": {"type": "boolean"},
            "relabelings": {"type": "array", "items": relabel},
            "metricRelabelings": {"type": "array", "items": relabel}
        }
    });
    let rule = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["expr"],
        "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
        "properties": {
            "record": string, "alert": string,
            "expr": {"type": ["string", "integer"]},
            "for": duration, "keep_firing_for": duration,
            "labels": string_map, "annotations": string_map
        }
    });
    json!({
        "PodMonitor": {
            "type": "object",
            "additionalProperties": false,
            "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": {
                "apiVersion": {"const": "monitoring.coreos.com/v1"},
                "kind": {"const": "PodMonitor"},
                "metadata": metadata,
                "spec": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["selector", "podMetricsEndpoints"],
                    "properties": {
                        "jobLabel": string,
                        "podTargetLabels": strings,
                        "selector": label_selector,
                        "namespaceSelector": {
                            "type": "object",
                            "additionalProperties": false,
                            "properties": {"any": {"type": "boolean"}, "matchNames": strings}
                        },
                        "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": endpoint},
                        "sampleLimit": {"type": "integer"},
                        "targetLimit": {"type": "integer"}
                    }
                }
            }
        },
        "PrometheusRule": {
            "type": "object",
            "additionalProperties": false,
            "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": {
                "apiVersion": {"const": "monitoring.coreos.com/v1"},
                "kind": {"const": "PrometheusRule"},
                "metadata": metadata,
                "spec": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["groups"],
                    "properties": {"groups": {"type": "array", "items": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["name", "rules"],
                        "properties": {
                            "name": string,
                            "interval": duration,
                            "limit": {"type": "integer"},
                            "rules": {"type": "array", "minItems": 1, "items": rule}
                        }
                    }}}
                }
            }
        }
    })
}

/// Validates the custom resources of `files` against [`operator_schemas`] with
/// python's jsonschema (which kubernetes-validate uses); prints `checked
/// KIND/NAME` for each.
const CHECK_CUSTOM_RESOURCES: &str = r#"
import json, sys, yaml, jsonschema
schemas = json.loads(sys.argv[1])
bad = 0
for path in sys.argv[2:]:
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if not doc or doc.get("kind") not in schemas:
                continue
            for e in jsonschema.Draft202012Validator(schemas[doc["kind"]]).iter_errors(doc):
                bad += 1
                print("%s: %s/%s: %s: %s" % (path, doc["kind"], doc["metadata"]["name"],
                                             ".".join(map(str, e.path)), e.message))
            print("checked %s/%s" % (doc["kind"], doc["metadata"]["name"]))
sys.exit(1 if bad else 0)
"#;

fn check_custom_resources(files: &[PathBuf]) -> (bool, String) {
    run(Command::new("python3")
        .args(["-c", CHECK_CUSTOM_RESOURCES])
        .arg(operator_schemas().to_string())
        .args(files))
}

#[test]
fn prometheus_operator_resources_use_only_fields_of_its_api() {
    let _machine = common::shared();
    if !have_kubernetes_validate() {
        return;
    }
    let files = manifests();
    let (ok, out) = check_custom_resources(&files);
    assert!(ok, "{out}");
    let mut custom = 0;
    for path in &files {
        for doc in docs(path) {
            if CUSTOM_KINDS.contains(&doc["kind"].as_str().unwrap()) {
                custom += 1;
                let checked = format!("checked {}/{}", doc["kind"].as_str().unwrap(), name(&doc));
                assert!(out.contains(&checked), "{checked} missing:\n{out}");
            }
        }
    }
    assert!(custom >= 3, "{out}");

    // Prometheus' own spelling (source_labels) and a misspelt field are refused.
    let dir = kube_dir();
    for (file, good, bad) in [
        ("podmonitor.yaml", "sourceLabels:", "source_labels:"),
        (
            "podmonitor.yaml",
            "podMetricsEndpoints:",
            "podMetricEndpoints:",
        ),
        ("prometheusrule.yaml", "- record:", "- recrd:"),
    ] {
        let (_tmp, broken) = broken_copy(&dir.join(file), good, bad, &[]);
        let (ok, out) = check_custom_resources(&[broken]);
        assert!(!ok, "{file} with {bad:?} passed:\n{out}");
    }
}

#[test]
fn the_prometheus_rule_resource_holds_the_join_rules_file() {
    let _machine = common::shared();
    let rules = docs(&root().join("deploy/kubernetes-join-rules.yml"));
    let resource = docs(&kube_dir().join("prometheusrule.yaml"));
    assert_eq!(
        one(&resource, "PrometheusRule")["spec"]["groups"],
        rules[0]["groups"],
        "deploy/kubernetes/prometheusrule.yaml differs from deploy/kubernetes-join-rules.yml"
    );
}

#[test]
fn kustomization_lists_every_manifest_but_the_example() {
    let _machine = common::shared();
    let kustomization = docs(&kube_dir().join("kustomization.yaml"));
    let kustomization = one(&kustomization, "Kustomization");
    let resources: Vec<&str> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let listed: BTreeSet<&str> = resources.iter().copied().collect();
    assert_eq!(listed.len(), resources.len(), "duplicates: {resources:?}");
    for r in &resources {
        assert!(kube_dir().join(r).is_file(), "{r} listed but missing");
    }
    let present: BTreeSet<String> = manifests()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| n != EXAMPLE)
        .collect();
    assert_eq!(
        listed,
        present.iter().map(String::as_str).collect(),
        "kustomization.yaml resources vs deploy/kubernetes/*.yaml (less {EXAMPLE})"
    );
    assert!(!listed.contains(EXAMPLE));

    // One `images:` entry, naming the image every exporter container uses.
    let images = kustomization["images"].as_array().expect("images");
    assert_eq!(images.len(), 1, "{images:?}");
    let image_name = images[0]["name"].as_str().unwrap();
    assert_eq!(format!("{image_name}:latest"), IMAGE);
    let mut exporters = 0;
    for path in manifests() {
        for doc in docs(&path) {
            let Some(containers) = doc
                .pointer("/spec/template/spec/containers")
                .and_then(Value::as_array)
            else {
                continue;
            };
            for c in containers {
                let image = c["image"].as_str().unwrap();
                if c["name"] == "ebpf-userspace-exporter" {
                    exporters += 1;
                    assert_eq!(image.split(':').next(), Some(image_name), "{path:?}");
                }
            }
        }
    }
    assert_eq!(exporters, 2, "the DaemonSet's and the sidecar's");
}

/// The capabilities of the systemd unit, as Kubernetes names them (no `CAP_`).
/// Its bounding and ambient sets must be equal.
fn unit_capabilities() -> Vec<String> {
    let unit = read(&unit_path());
    let list = |key: &str| -> Vec<String> {
        let lines: Vec<&str> = unit
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .collect();
        assert_eq!(lines.len(), 1, "one {key}= in the unit");
        lines[0]
            .split_whitespace()
            .map(|c| {
                c.strip_prefix("CAP_")
                    .unwrap_or_else(|| panic!("{key}: {c} lacks CAP_"))
                    .to_string()
            })
            .collect()
    };
    let bounding = list("CapabilityBoundingSet");
    assert_eq!(bounding, list("AmbientCapabilities"));
    bounding
}

fn port_named<'a>(container: &'a Value, port: &str) -> &'a Value {
    container["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["name"] == port))
        .unwrap_or_else(|| panic!("no port {port} in {}", container["name"]))
}

/// Whether a label selector (matchLabels only) selects these labels.
fn selects(selector: &Value, labels: &Value) -> bool {
    assert!(
        selector.get("matchExpressions").is_none(),
        "matchExpressions: not handled by this test"
    );
    let wanted = selector["matchLabels"].as_object().expect("matchLabels");
    !wanted.is_empty() && wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Checks an exporter container against the facts every deployment shares and
/// returns the config text of its ConfigMap (found in `docs`).
fn check_exporter(docs: &[Value], pod: &Value, container: &Value, port: &str) -> String {
    let what = format!("container {}", container["name"]);
    assert_eq!(container["image"], IMAGE, "{what}");
    assert_eq!(container["args"], json!([CONFIG_ARG]), "{what}");
    assert_eq!(port_named(container, port)["containerPort"], 8080);
    for (probe, path) in [
        ("livenessProbe", "/-/healthy"),
        ("readinessProbe", "/-/ready"),
        ("startupProbe", "/-/healthy"),
    ] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["port"], port, "{probe}");
    }
    for (kind, resource) in [
        ("requests", "cpu"),
        ("requests", "memory"),
        ("limits", "cpu"),
        ("limits", "memory"),
    ] {
        assert!(
            container["resources"][kind][resource].is_string(),
            "resources.{kind}.{resource}"
        );
    }
    let security = &container["securityContext"];
    assert_eq!(security["privileged"], false);
    assert_eq!(security["allowPrivilegeEscalation"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    let added: BTreeSet<String> = security["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    // NET_ADMIN turns process events on, which the kernel serves only in the
    // host's network and PID namespaces: granted where the pod shares both.
    let events = pod["hostNetwork"] == true && pod["hostPID"] == true;
    let expected: BTreeSet<String> = unit_capabilities()
        .into_iter()
        .filter(|c| events || c != "NET_ADMIN")
        .collect();
    assert_eq!(
        added, expected,
        "capabilities of the manifest vs deploy/systemd/ebpf-userspace-exporter.service"
    );
    // Set on the container or else on the pod.
    let either = |key: &str| {
        let c = &security[key];
        if c.is_null() {
            pod["securityContext"][key].clone()
        } else {
            c.clone()
        }
    };
    assert_eq!(either("runAsUser"), 65532);
    assert_eq!(either("runAsNonRoot"), true);
    assert_eq!(either("seccompProfile"), json!({"type": "RuntimeDefault"}));

    let mounts = container["volumeMounts"].as_array().expect("volumeMounts");
    let volume_at = |path: &str| -> (&Value, &Value) {
        let mount = mounts
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"));
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap_or_else(|| panic!("no volume {}", mount["name"]));
        (mount, volume)
    };
    // Writable emptyDirs where the read-only root filesystem needs them: the
    // compile cache, and clang's work directory.
    for path in [CACHE_DIR, "/tmp"] {
        let (mount, volume) = volume_at(path);
        assert!(volume["emptyDir"].is_object(), "{path}: {volume}");
        assert_ne!(mount["readOnly"], true, "{path}");
    }
    let (mount, volume) = volume_at(CONFIG_DIR);
    assert_eq!(mount["readOnly"], true);
    let config_map = &volume["configMap"]["name"];
    let config_map = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == *config_map)
        .unwrap_or_else(|| panic!("ConfigMap {config_map} not in the same file"));
    config_map["data"]["config.yaml"]
        .as_str()
        .expect("config.yaml in the ConfigMap")
        .to_string()
}

/// Parses and validates a config as the exporter does.
fn check_config(text: &str, origin: &str) -> Value {
    if let Err(e) =
        userspace_exporter::config::Config::parse(Path::new(&format!("{origin}/config.yaml")), text)
    {
        panic!("the config of {origin} is refused:\n{e}");
    }
    serde_saphyr::from_str(text).unwrap()
}

#[test]
fn manifests_fit_together() {
    let _machine = common::shared();
    let dir = kube_dir();
    let namespace = docs(&dir.join("namespace.yaml"));
    let namespace = name(one(&namespace, "Namespace")).to_string();

    // The DaemonSet: host PID namespace, every node, no API token.
    let ds_docs = docs(&dir.join("daemonset.yaml"));
    let ds = one(&ds_docs, "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    let pod_labels = &ds["spec"]["template"]["metadata"]["labels"];
    assert!(selects(&ds["spec"]["selector"], pod_labels));
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["tolerations"], json!([{"operator": "Exists"}]));
    assert_eq!(pod["automountServiceAccountToken"], false);
    let account = one(&ds_docs, "ServiceAccount");
    assert_eq!(pod["serviceAccountName"], name(account));
    assert_eq!(account["automountServiceAccountToken"], false);
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let config = check_exporter(&ds_docs, pod, &containers[0], "metrics");
    let config = check_config(&config, "daemonset.yaml");
    // Its series carry what the join rules join on, and it exports every
    // family they name.
    let mut exported = BTreeSet::new();
    for program in config["programs"].as_array().unwrap() {
        let labels = &program["process_labels"];
        for label in ["container_id", "pod_uid"] {
            assert!(
                labels.as_array().is_some_and(|l| l.contains(&json!(label))),
                "program {}: process_labels {labels} lacks {label}",
                program["name"]
            );
        }
        for kind in ["counters", "histograms"] {
            for metric in program["metrics"][kind].as_array().into_iter().flatten() {
                exported.insert(format!(
                    "userspace_exporter_{}",
                    metric["name"].as_str().unwrap()
                ));
            }
        }
    }
    let rules = docs(&root().join("deploy/kubernetes-join-rules.yml"));
    let names = regex::Regex::new(r"[a-zA-Z_:][a-zA-Z0-9_:]*").unwrap();
    let mut used = BTreeSet::new();
    for group in rules[0]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let expr = rule["expr"].as_str().unwrap();
            // Recording rules' names have colons; the exporter's have none.
            used.extend(
                names
                    .find_iter(expr)
                    .map(|m| m.as_str().to_string())
                    .filter(|m| m.starts_with("userspace_exporter_") && !m.contains(':')),
            );
        }
    }
    assert!(!used.is_empty());
    for metric in used {
        assert!(
            exported.contains(&metric),
            "the join rules use {metric}, which daemonset.yaml's config does not export ({exported:?})"
        );
    }

    // The sidecar: the pod's PID namespace, beside the application.
    let sc_docs = docs(&dir.join(EXAMPLE));
    let deployment = one(&sc_docs, "Deployment");
    let sc_pod = &deployment["spec"]["template"]["spec"];
    let sc_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert!(selects(&deployment["spec"]["selector"], sc_labels));
    assert_eq!(sc_pod["shareProcessNamespace"], true);
    let sc_containers = sc_pod["containers"].as_array().unwrap();
    assert_eq!(sc_containers.len(), 2);
    let sidecar = sc_containers
        .iter()
        .find(|c| c["name"] == "ebpf-userspace-exporter")
        .expect("the exporter container");
    check_config(
        &check_exporter(&sc_docs, sc_pod, sidecar, "ebpf-metrics"),
        EXAMPLE,
    );

    // The Service selects the DaemonSet's pods, on the port named `metrics`.
    let service = docs(&dir.join("service.yaml"));
    let service = one(&service, "Service");
    // A Service's selector is matchLabels alone.
    assert!(selects(
        &json!({"matchLabels": service["spec"]["selector"]}),
        pod_labels
    ));
    let service_port = &service["spec"]["ports"][0];
    assert_eq!(service_port["name"], "metrics");
    port_named(&containers[0], service_port["targetPort"].as_str().unwrap());

    // One PodMonitor for the DaemonSet in its namespace, one for the sidecars
    // in any namespace; the ports they scrape exist.
    let monitors = docs(&dir.join("podmonitor.yaml"));
    assert_eq!(monitors.len(), 2);
    let (mut for_daemonset, mut for_sidecars) = (0, 0);
    for monitor in &monitors {
        assert_eq!(monitor["kind"], "PodMonitor");
        let spec = &monitor["spec"];
        let (target, labels) = if selects(&spec["selector"], pod_labels) {
            assert!(spec.get("namespaceSelector").is_none());
            for_daemonset += 1;
            (&containers[0], pod_labels)
        } else {
            assert_eq!(spec["namespaceSelector"], json!({"any": true}));
            for_sidecars += 1;
            (sidecar, sc_labels)
        };
        assert!(selects(&spec["selector"], labels));
        for endpoint in spec["podMetricsEndpoints"].as_array().unwrap() {
            port_named(target, endpoint["port"].as_str().unwrap());
            assert_eq!(endpoint["path"], "/metrics");
        }
    }
    assert_eq!((for_daemonset, for_sidecars), (1, 1));

    // Every namespaced resource of the kustomization is in its namespace.
    for path in manifests() {
        if path.ends_with(EXAMPLE) {
            continue;
        }
        for doc in docs(&path) {
            if doc["kind"] != "Namespace" {
                assert_eq!(
                    doc["metadata"]["namespace"],
                    namespace.as_str(),
                    "{} in {path:?}",
                    name(&doc)
                );
            }
        }
    }
}

#[test]
fn the_configmaps_programs_compile() {
    let _machine = common::shared();
    // The exporter's `compile` runs clang on the inline code against the
    // running kernel's BTF: it loads nothing into the kernel.
    if !tool("clang", Command::new("clang").arg("--version")) {
        return;
    }
    if !common::require_path(
        "/sys/kernel/btf/vmlinux",
        "the kernel must be built with CONFIG_DEBUG_INFO_BTF",
    ) {
        return;
    }
    for file in ["daemonset.yaml", EXAMPLE] {
        let docs = docs(&kube_dir().join(file));
        let config = one(&docs, "ConfigMap")["data"]["config.yaml"]
            .as_str()
            .unwrap()
            .to_string();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, config).unwrap();
        let (ok, out) = run(Command::new(common::EXPORTER)
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .args(["compile", "-c"])
            .arg(&path)
            .arg("-o")
            .arg(dir.path().join("out")));
        assert!(ok, "{file}:\n{out}");
        assert!(
            dir.path().join("out/python.bpf.o").is_file(),
            "{file}:\n{out}"
        );
    }
}

fn promtool(args: &[&str], file: &Path) -> (bool, String) {
    run(Command::new("promtool").args(args).arg(file))
}

#[test]
fn join_rules_pass_promtool_and_their_unit_tests() {
    let _machine = common::shared();
    if !tool("promtool", Command::new("promtool").arg("--version")) {
        return;
    }
    let rules = root().join("deploy/kubernetes-join-rules.yml");
    let tests = root().join("deploy/kubernetes-join-rules.test.yml");
    let (ok, out) = promtool(&["check", "rules"], &rules);
    assert!(ok, "{out}");
    let (ok, out) = promtool(&["test", "rules"], &tests);
    assert!(ok && out.contains("SUCCESS"), "{out}");

    // A wrong expected value, and rules that keep the runtime's scheme in
    // container_id, fail the unit tests.
    let (_tmp, broken) = broken_copy(&tests, "value: 4.75", "value: 4.5", &[&rules]);
    let (ok, out) = promtool(&["test", "rules"], &broken);
    assert!(!ok, "a wrong expected value passed:\n{out}");
    let (tmp, _) = broken_copy(&rules, r#""[^:]+://(.+)""#, r#""(.+)""#, &[&tests]);
    let (ok, out) = promtool(
        &["test", "rules"],
        &tmp.path().join("kubernetes-join-rules.test.yml"),
    );
    assert!(!ok, "rules keeping containerd:// passed:\n{out}");
    // And an invalid expression fails the check.
    let (_tmp, broken) = broken_copy(
        &rules,
        "sum by (namespace, pod, generation) (",
        "sum by (namespace, pod, generation) ((",
        &[],
    );
    let (ok, out) = promtool(&["check", "rules"], &broken);
    assert!(!ok, "a broken expression passed:\n{out}");
}

/// A copy of the unit, under its name, whose ExecStart is the exporter just
/// built: systemd-analyze requires an executable there.
fn unit_with_built_binary(unit: &Path) -> (tempfile::TempDir, PathBuf) {
    let text = read(unit);
    let installed = "ExecStart=/usr/local/bin/ebpf-userspace-exporter ";
    assert_eq!(
        text.matches(installed).count(),
        1,
        "ExecStart changed: update this test"
    );
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("ebpf-userspace-exporter.service");
    std::fs::write(
        &copy,
        text.replace(installed, &format!("ExecStart={} ", common::EXPORTER)),
    )
    .unwrap();
    (dir, copy)
}

/// `systemd-analyze verify` on [`unit_with_built_binary`]. verify exits 0 on
/// an unknown key or a value it cannot parse: it only logs `FILE:LINE: ...
/// ignoring`, so any line naming the file is a failure.
fn verify_unit(unit: &Path) -> (bool, String) {
    let (_dir, copy) = unit_with_built_binary(unit);
    let (ok, out) = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .env("SYSTEMD_LOG_COLOR", "0"));
    let clean = !out.contains("ebpf-userspace-exporter.service");
    (ok && clean, out)
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let _machine = common::shared();
    if !tool(
        "systemd-analyze",
        Command::new("systemd-analyze").arg("--version"),
    ) {
        return;
    }
    let unit = unit_path();
    let (ok, out) = verify_unit(&unit);
    assert!(ok, "{out}");

    // A value it cannot parse, an unknown key, an unknown syscall: each refused.
    for (good, bad) in [
        ("ProtectSystem=strict", "ProtectSystem=strikt"),
        ("ProtectHome=read-only", "ProtectHme=read-only"),
        ("bpf perf_event_open", "bpff perf_event_open"),
    ] {
        let (_tmp, broken) = broken_copy(&unit, good, bad, &[]);
        let (ok, out) = verify_unit(&broken);
        assert!(!ok, "{bad:?} passed:\n{out}");
    }

    // What the exporter needs, and what must not be set.
    let text = read(&unit);
    let settings: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .collect();
    for needed in [
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        "PrivateTmp=yes",
        "ProtectKernelTunables=yes",
        "ProtectControlGroups=yes",
        "CacheDirectory=ebpf-userspace-exporter",
        "Environment=XDG_CACHE_HOME=/var/cache",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
        "SystemCallFilter=@system-service bpf perf_event_open",
        "Restart=on-failure",
    ] {
        assert!(settings.contains(needed), "{needed} missing");
    }
    for key in [
        "ProtectProc=",
        "ProcSubset=",
        "PrivateUsers=",
        "PrivateNetwork=",
        "ExecReload=",
    ] {
        assert!(
            !settings.iter().any(|s| s.starts_with(key)),
            "{key} must not be set"
        );
    }
    assert!(unit_capabilities().len() >= 5);

    // systemd's own exposure score of the hardening (3.1 with systemd 252, out
    // of 10): a regression past 4.0 fails. --offline reads the file alone.
    let (_dir, copy) = unit_with_built_binary(&unit);
    let (ok, out) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=40", "--no-pager"])
        .arg(&copy));
    assert!(ok, "exposure above 4.0:\n{out}");
}
