//! The exporter's image under a real container runtime (podman, runc), the way
//! its users deploy it:
//! - as a sidecar in a pod sharing the PID namespace (Kubernetes'
//!   `shareProcessNamespace`), with exactly the capabilities and seccomp profile
//!   deploy/kubernetes/sidecar.yaml grants, its config mounted read-only, the
//!   application under another uid, scraped from the host through the pod's
//!   published port;
//! - node-wide in the host PID namespace (a `hostPID` DaemonSet), attached to
//!   processes in two containers and one outside any, each series carrying the
//!   runtime's own container id.
//!
//! Needs the images scripts/build-image.sh --test-app builds (scripts/test.sh
//! runs it first). Each test has the machine to itself
//! (`common::exclusive()`): one container test at a time on two cores, and the
//! node-wide exporter selects every `python3.11` on the host.

use crate::common::{self, free_port, wait_for, Samples, Target};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const EXPORTER_IMAGE: &str = "localhost/ebpf-userspace-exporter:latest";
const APP_IMAGE: &str = "localhost/ebpf-userspace-exporter-testapp:latest";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `podman` with the project's settings (scripts/containers.conf: runc, cgroupfs).
fn podman_command() -> Command {
    let mut command = Command::new("podman");
    if std::env::var_os("CONTAINERS_CONF").is_none() {
        command.env("CONTAINERS_CONF", repo().join("scripts/containers.conf"));
    }
    command
}

/// Runs podman; its trimmed stdout, or a panic with its stderr.
fn podman(args: &[&str]) -> String {
    let out = podman_command()
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run podman: {e}"));
    assert!(
        out.status.success(),
        "podman {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// True when podman and the images are here; in CI their absence is a failure.
fn require_podman() -> bool {
    let missing = match podman_command().arg("--version").output() {
        Err(e) => Some(format!("podman: {e}")),
        Ok(_) => [EXPORTER_IMAGE, APP_IMAGE].iter().find_map(|image| {
            let exists = podman_command()
                .args(["image", "exists", image])
                .status()
                .is_ok_and(|s| s.success());
            (!exists).then(|| format!("image {image} (run scripts/build-image.sh --test-app)"))
        }),
    };
    common::require("podman", missing.map_or(Ok(()), Err))
}

/// Pods and containers removed when the test ends, passed or not.
struct Cleanup {
    pods: Vec<String>,
    containers: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for container in &self.containers {
            let _ = podman_command()
                .args(["rm", "--force", "--time", "0", container])
                .output();
        }
        for pod in &self.pods {
            let _ = podman_command()
                .args(["pod", "rm", "--force", "--time", "0", pod])
                .output();
        }
    }
}

/// A name unique to this test run.
fn unique(name: &str) -> String {
    format!("uexp-{name}-{}", std::process::id())
}

/// The capabilities the exporter container of deploy/kubernetes/`file` adds
/// (after dropping all), as podman's `--cap-add` list; asserts the rest of its
/// security context is what the tests run with.
fn manifest_capabilities(file: &str, kind: &str) -> String {
    let text = std::fs::read_to_string(repo().join("deploy/kubernetes").join(file)).unwrap();
    let workload = manifest_docs(&text)
        .into_iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("{file} has no {kind}"));
    let exporter = workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ebpf-userspace-exporter")
        .unwrap()
        .clone();
    let context = &exporter["securityContext"];
    let pod_context = &workload["spec"]["template"]["spec"]["securityContext"];
    // A container's setting, or else the pod's.
    let setting = |key: &str| match &context[key] {
        Value::Null => pod_context[key].clone(),
        value => value.clone(),
    };
    assert_eq!(setting("seccompProfile")["type"], "RuntimeDefault");
    assert_eq!(setting("runAsUser"), 65532);
    assert_eq!(context["privileged"], false);
    assert_eq!(context["readOnlyRootFilesystem"], true);
    assert_eq!(context["capabilities"]["drop"], serde_json::json!(["ALL"]));
    context["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn manifest_docs(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text).unwrap()
}

/// The exporter config of deploy/kubernetes/sidecar.yaml's ConfigMap.
fn sidecar_config() -> String {
    let text = std::fs::read_to_string(repo().join("deploy/kubernetes/sidecar.yaml")).unwrap();
    manifest_docs(&text)
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap")
        .and_then(|d| d["data"]["config.yaml"].as_str().map(str::to_string))
        .expect("sidecar.yaml has a ConfigMap with config.yaml")
}

/// The original project's gunicorn example (inline code), verbatim but for the
/// process it selects, as more programs for a config.
fn gunicorn_example_programs(comm: &str) -> String {
    let text = std::fs::read_to_string(repo().join("examples/gunicorn_gc_count.yaml")).unwrap();
    let programs = text
        .split_once("programs:\n")
        .map(|(_, programs)| programs.to_string())
        .unwrap();
    programs.replace(
        "binary_name: \"gunicorn\"",
        &format!("binary_name: \"{comm}\""),
    )
}

/// A directory holding `config.yaml`, readable by the exporter's user: what a
/// ConfigMap volume is.
fn config_dir(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.yaml"), config).unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    dir
}

/// tests/fixtures/python_gc.py run by the app image's python3.11 as uid 1000,
/// attached to this test through `podman run -i`.
fn python_app(args: &[&str]) -> Target {
    let script = repo().join("tests/fixtures/python_gc.py");
    let mount = format!("{}:/app/python_gc.py:ro", script.display());
    Target::spawn(
        podman_command()
            .args(["run", "--rm", "-i", "--user", "1000:1000", "-v", &mount])
            .args(args)
            .args([APP_IMAGE, "python3.11", "/app/python_gc.py"])
            .stderr(Stdio::inherit()),
    )
}

/// gc.get_stats() collections per generation, as the app reports them.
fn gc_collections(app: &mut Target) -> [f64; 3] {
    let line = app.cmd("stats");
    let v: Vec<f64> = serde_json::from_str(&line).unwrap();
    [v[0], v[1], v[2]]
}

/// The exporter container's arguments: not privileged, only `caps` after
/// dropping all, podman's default seccomp profile, a read-only root with /tmp
/// as tmpfs, the config read-only and the compile cache in `cache` (what the
/// manifests' ConfigMap and emptyDir volumes are).
fn exporter_run_args(name: &str, caps: &str, config: &Path, cache: &Path) -> Vec<String> {
    vec![
        "run".into(),
        "--detach".into(),
        "--name".into(),
        name.into(),
        "--cap-drop=all".into(),
        format!("--cap-add={caps}"),
        "--read-only".into(),
        "--tmpfs".into(),
        "/tmp".into(),
        "-v".into(),
        format!("{}:/var/cache/ebpf-userspace-exporter", cache.display()),
        "-v".into(),
        format!("{}:/etc/ebpf-userspace-exporter:ro", config.display()),
    ]
}

/// An empty directory anyone may write, as a Kubernetes emptyDir is.
fn empty_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    dir
}

/// The container's output (podman logs writes its stderr to stderr).
fn logs(container: &str) -> String {
    let out = podman_command().args(["logs", container]).output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn scrape(port: u16) -> Samples {
    let text = ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    Samples::parse(&text)
}

/// Waits for `/-/ready` on the host port; panics with the container's log
/// when it does not come, or the container stops.
fn wait_ready(port: u16, container: &str) {
    let ready = wait_for(Duration::from_secs(90), || {
        if ureq::get(&format!("http://127.0.0.1:{port}/-/ready"))
            .call()
            .is_ok()
        {
            return Some(true);
        }
        let running = podman(&["inspect", "--format", "{{.State.Running}}", container]);
        (running != "true").then_some(false)
    });
    if ready != Some(true) {
        panic!("exporter not ready:\n{}", logs(container));
    }
}

/// Starts the exporter container in the host's PID and network namespaces (as
/// deploy/kubernetes/daemonset.yaml runs it), serving on 127.0.0.1:`port`,
/// with `extra` podman options; waits until it is ready.
fn start_node_wide(name: &str, caps: &str, config: &Path, cache: &Path, extra: &[&str], port: u16) {
    let mut args = exporter_run_args(name, caps, config, cache);
    args.extend(extra.iter().map(|a| a.to_string()));
    args.extend([
        "--pid".into(),
        "host".into(),
        "--network".into(),
        "host".into(),
        EXPORTER_IMAGE.into(),
        "--config.file=/etc/ebpf-userspace-exporter/config.yaml".into(),
        format!("--listen-address=127.0.0.1:{port}"),
    ]);
    podman(&args.iter().map(String::as_str).collect::<Vec<_>>());
    wait_ready(port, name);
}

#[test]
fn sidecar_in_a_pod_sharing_the_pid_namespace_counts_what_gc_get_stats_reports() {
    let _machine = common::exclusive();
    if !require_podman() {
        return;
    }
    let pod = unique("sidecar");
    let exporter = format!("{pod}-exporter");
    let mut cleanup = Cleanup {
        pods: vec![pod.clone()],
        containers: vec![],
    };
    let port = free_port();
    podman(&[
        "pod",
        "create",
        "--name",
        &pod,
        "--share",
        "pid,net,ipc,uts",
        "--publish",
        &format!("127.0.0.1:{port}:8080"),
    ]);
    let mut app = python_app(&["--pod", &pod]);
    let app_pid = app.cmd("pid");
    // The ConfigMap's program plus the original's gunicorn example, both inline
    // code: clang in the image compiles them at startup.
    let config = format!(
        "{}{}",
        sidecar_config(),
        gunicorn_example_programs("python3.11")
    );
    let dir = config_dir(&config);
    let cache = empty_dir();
    let mut args = exporter_run_args(
        &exporter,
        &manifest_capabilities("sidecar.yaml", "Deployment"),
        dir.path(),
        cache.path(),
    );
    args.extend([
        "--pod".into(),
        pod.clone(),
        EXPORTER_IMAGE.into(),
        "--config.file=/etc/ebpf-userspace-exporter/config.yaml".into(),
    ]);
    cleanup.containers.push(exporter.clone());
    podman(&args.iter().map(String::as_str).collect::<Vec<_>>());
    wait_ready(port, &exporter);
    // Both programs attached to the app, as a user other than the exporter's.
    let attached = wait_for(Duration::from_secs(10), || {
        let s = scrape(port);
        (s.value(
            "userspace_exporter_attached_processes",
            &[("name", "python")],
        ) == 1.0
            && s.value(
                "userspace_exporter_attached_processes",
                &[("name", "gc_total")],
            ) == 1.0)
            .then_some(())
    });
    let startup = logs(&exporter);
    assert!(attached.is_some(), "{startup}");
    assert_eq!(podman(&["exec", &exporter, "id", "-u"]), "65532");
    // A pod's own network namespace gets no process events: said, with why,
    // and the rescan attached the app.
    assert_eq!(
        scrape(port).value("userspace_exporter_process_events_live", &[]),
        0.0,
        "{startup}"
    );
    assert!(
        startup.contains("process events unavailable: ")
            && startup
                .contains("the kernel ignores subscriptions from outside the host's PID namespace"),
        "{startup}"
    );

    let before = scrape(port);
    let g0 = gc_collections(&mut app);
    assert_eq!(app.cmd("work 15"), "ok");
    let g1 = gc_collections(&mut app);
    let after = scrape(port);
    for generation in 0..3 {
        let g = generation.to_string();
        let reported = g1[generation] - g0[generation];
        assert!(reported >= 5.0, "generation {g}: {reported}");
        for (metric, label) in [
            (
                "userspace_exporter_python_gc_collections_total",
                "generation",
            ),
            ("userspace_exporter_gc_total", "gen"),
        ] {
            let get = |s: &Samples| {
                s.get(metric, &[(label, g.as_str()), ("pid", app_pid.as_str())])
                    .unwrap_or(0.0)
            };
            assert_eq!(
                get(&after) - get(&before),
                reported,
                "{metric}{{{label}=\"{g}\"}}: {}",
                logs(&exporter)
            );
        }
    }
    assert!(
        startup.contains("compiled inline code program=python cached=false")
            && startup.contains("compiled inline code program=gc_total cached=false"),
        "{startup}"
    );
    drop(app);
}

#[test]
fn node_wide_in_the_host_pid_namespace_labels_each_series_with_its_container_id() {
    let _machine = common::exclusive();
    if !require_podman() {
        return;
    }
    let exporter = unique("node");
    let apps = [unique("node-app1"), unique("node-app2")];
    let _cleanup = Cleanup {
        pods: vec![],
        containers: vec![apps[0].clone(), apps[1].clone(), exporter.clone()],
    };
    // Two app containers, one started before the exporter and one after, and
    // one python3.11 outside any container.
    let start_app = |name: &String| {
        let app = python_app(&["--name", name]);
        let id = podman(&["inspect", "--format", "{{.Id}}", name]);
        (app, id)
    };
    let mut containers = vec![start_app(&apps[0])];
    let Some(mut host_python) = common::Python::start("python3.11") else {
        return;
    };
    let host_pid = host_python.pid().to_string();

    let config = common::python_config_with_object("python3.11", "python.bpf.o").replace(
        "  - name: python\n",
        "  - name: python\n    process_labels: [container_id, pod_uid]\n",
    );
    let dir = config_dir(&config);
    std::fs::copy(
        common::fixtures().object("example:python"),
        dir.path().join("python.bpf.o"),
    )
    .unwrap();
    let port = free_port();
    let cache = empty_dir();
    start_node_wide(
        &exporter,
        &manifest_capabilities("daemonset.yaml", "DaemonSet"),
        dir.path(),
        cache.path(),
        &[],
        port,
    );
    containers.push(start_app(&apps[1]));
    let attached = wait_for(Duration::from_secs(10), || {
        let s = scrape(port);
        (s.value(
            "userspace_exporter_attached_processes",
            &[("name", "python")],
        ) >= 3.0)
            .then_some(())
    });
    assert!(attached.is_some(), "{}", logs(&exporter));
    // With what the DaemonSet grants (NET_ADMIN among it) and the host's
    // network and PID namespaces, the kernel's process events are live (in a
    // pod network they are not: the rescan finds new processes).
    assert_eq!(
        scrape(port).value("userspace_exporter_process_events_live", &[]),
        1.0,
        "{}",
        logs(&exporter)
    );
    assert!(
        !logs(&exporter).contains("process events unavailable"),
        "{}",
        logs(&exporter)
    );

    let before = scrape(port);
    let mut reported = Vec::new();
    for (app, _) in containers.iter_mut() {
        let g0 = gc_collections(app);
        assert_eq!(app.cmd("work 9"), "ok");
        reported.push((g0, gc_collections(app)));
    }
    let h0 = host_python.gc_collections();
    assert_eq!(host_python.ask("work 6"), "ok");
    let h1 = host_python.gc_collections();
    let after = scrape(port);
    let logs = logs(&exporter);

    let name = "userspace_exporter_python_gc_collections_total";
    for ((_, id), (g0, g1)) in containers.iter().zip(&reported) {
        assert_eq!(id.len(), 64, "{id}");
        for generation in 0..3 {
            let g = generation.to_string();
            assert!(g1[generation] - g0[generation] >= 3.0, "{g0:?} {g1:?}");
            let labels = [("container_id", id.as_str()), ("generation", g.as_str())];
            let counted = after.sum(name, &labels) - before.sum(name, &labels);
            assert_eq!(
                counted,
                g1[generation] - g0[generation],
                "container {id} generation {g}: {logs}"
            );
        }
    }
    // The process outside containers: an empty container_id and pod_uid.
    for generation in 0..3 {
        let g = generation.to_string();
        assert!(h1[generation] - h0[generation] >= 2.0, "{h0:?} {h1:?}");
        let get = |s: &Samples| {
            s.get(
                name,
                &[
                    ("container_id", ""),
                    ("generation", g.as_str()),
                    ("pid", host_pid.as_str()),
                    ("pod_uid", ""),
                ],
            )
            .unwrap_or(0.0)
        };
        assert_eq!(
            get(&after) - get(&before),
            h1[generation] - h0[generation],
            "host process, generation {g}: {logs}"
        );
    }
    // Every series of the two containers names one of their ids, nothing else.
    let ids: Vec<&str> = containers.iter().map(|(_, id)| id.as_str()).collect();
    for (labels, _) in after.series(name) {
        let id = labels
            .split("container_id=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default();
        assert!(
            id.is_empty() || ids.contains(&id) || !labels.contains("pid="),
            "{labels}"
        );
    }
    drop(containers);
}

#[test]
fn the_default_seccomp_profile_lets_bpf_through_only_with_cap_sys_admin() {
    let _machine = common::exclusive();
    if !require_podman() {
        return;
    }
    let Some(mut python) = common::Python::start("uexp-seccomp") else {
        return;
    };
    let pid = python.pid().to_string();
    let config = common::python_config_with_object("uexp-seccomp", "python.bpf.o");
    let dir = config_dir(&config);
    std::fs::copy(
        common::fixtures().object("example:python"),
        dir.path().join("python.bpf.o"),
    )
    .unwrap();
    // Whether this kernel lets these capabilities load the program and attach
    // USDT probes (asked outside any container, as uid 65532 with exactly
    // them); then, whether bpf() gets through is the seccomp profile's call.
    let caps = ["bpf", "perfmon", "sys_ptrace", "dac_read_search"];
    let set = format!("-all,+{}", caps.join(",+"));
    let kernel = common::kernel_allows(&[
        "setpriv",
        "--reuid=65532",
        "--regid=65532",
        "--clear-groups",
        &format!("--inh-caps={set}"),
        &format!("--ambient-caps={set}"),
        &format!("--bounding-set={set}"),
        "--",
    ]);
    let usdt_allowed = kernel["prog-load"].is_ok()
        && (kernel["uprobe-multi"].is_ok() || kernel["perf-uprobe"].is_ok());
    for (seccomp, loads) in [
        (&[][..], false),
        (&["--security-opt=seccomp=unconfined"][..], usdt_allowed),
    ] {
        let exporter = unique(if seccomp.is_empty() {
            "seccomp"
        } else {
            "seccomp-off"
        });
        let _cleanup = Cleanup {
            pods: vec![],
            containers: vec![exporter.clone()],
        };
        let cache = empty_dir();
        let port = free_port();
        start_node_wide(
            &exporter,
            "BPF,PERFMON,SYS_PTRACE,DAC_READ_SEARCH",
            dir.path(),
            cache.path(),
            seccomp,
            port,
        );
        let before = scrape(port).python_collections(&pid);
        let g0 = python.gc_collections();
        assert_eq!(python.ask("work 6"), "ok");
        let g1 = python.gc_collections();
        let after = scrape(port).python_collections(&pid);
        let log = logs(&exporter);
        let counted: Vec<f64> = (0..3).map(|g| after[g] - before[g]).collect();
        if loads {
            let reported: Vec<f64> = (0..3).map(|g| g1[g] - g0[g]).collect();
            assert!(reported.iter().all(|&n| n >= 2.0), "{reported:?}");
            assert_eq!(counted, reported, "{log}");
        } else {
            assert_eq!(counted, [0.0; 3], "{log}");
            assert!(
                log.contains("the kernel refused to load the BPF program (EPERM)"),
                "{log}"
            );
        }
    }
}
