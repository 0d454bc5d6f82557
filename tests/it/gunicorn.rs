//! The original README's example, verbatim, on Debian's real gunicorn: the
//! master and every worker get an instance, and each worker's exported
//! collections per generation equal what that worker's gc.get_stats() says.

use crate::common::{self, free_port, require_bpf, wait_for, Exporter};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const GUNICORN: &str = "/usr/bin/gunicorn";
const WORKERS: usize = 3;

struct Gunicorn {
    child: Child,
}

impl Drop for Gunicorn {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = wait_for(Duration::from_secs(10), || {
            self.child.try_wait().ok().flatten()
        });
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // Field 4, after the parenthesised comm.
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split(' ').nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out.sort();
    out
}

fn get(port: u16, path: &str) -> (u32, [f64; 3]) {
    let body = ureq::get(&format!("http://127.0.0.1:{port}{path}"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    let pid: u32 = body
        .split("\"pid\": ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let list = body.split('[').nth(1).unwrap().split(']').next().unwrap();
    let v: Vec<f64> = list.split(',').map(|x| x.trim().parse().unwrap()).collect();
    (pid, [v[0], v[1], v[2]])
}

/// Asks `/stats` until every worker has answered; each worker's first answer.
fn stats_of_all(port: u16, workers: &[u32]) -> BTreeMap<u32, [f64; 3]> {
    let mut seen = BTreeMap::new();
    for _ in 0..2000 {
        let (pid, stats) = get(port, "/stats");
        seen.entry(pid).or_insert(stats);
        if workers.iter().all(|w| seen.contains_key(w)) {
            return seen;
        }
    }
    panic!("not every worker answered: {seen:?} of {workers:?}");
}

#[test]
fn every_gunicorn_worker_is_attached_and_counts_its_own_collections() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    if !common::require_path(GUNICORN, "scripts/setup.sh installs Debian's gunicorn") {
        return;
    }
    let port = free_port();
    let child = Command::new(GUNICORN)
        .args([
            "--workers",
            &WORKERS.to_string(),
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--chdir",
        ])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
        .arg("gunicorn_app:app")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let gunicorn = Gunicorn { child };
    let master = gunicorn.child.id();
    let workers = wait_for(Duration::from_secs(20), || {
        let w = children(master);
        (w.len() == WORKERS
            && ureq::get(&format!("http://127.0.0.1:{port}/stats"))
                .call()
                .is_ok())
        .then_some(w)
    })
    .expect("gunicorn workers did not start");

    let config = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/gunicorn_gc_count.yaml"
    ))
    .unwrap();
    let exporter = Exporter::start(&config);
    let s = exporter.samples();
    for pid in std::iter::once(master).chain(workers.iter().copied()) {
        assert_eq!(
            s.value(
                "userspace_exporter_enabled_programs",
                &[("name", "gc_total"), ("pid", &pid.to_string())]
            ),
            1.0,
            "pid {pid}"
        );
    }

    let exported = |e: &Exporter| -> BTreeMap<u32, [f64; 3]> {
        let s = e.samples();
        workers
            .iter()
            .map(|&w| {
                (
                    w,
                    [0, 1, 2].map(|g| {
                        s.get(
                            "userspace_exporter_gc_total",
                            &[("gen", &g.to_string()), ("pid", &w.to_string())],
                        )
                        .unwrap_or(0.0)
                    }),
                )
            })
            .collect()
    };
    let before = stats_of_all(port, &workers);
    let e0 = exported(&exporter);
    for i in 0..90 {
        get(port, &format!("/collect?gen={}", i % 3));
    }
    let after = stats_of_all(port, &workers);
    let e1 = exported(&exporter);
    let mut total = 0.0;
    for w in &workers {
        let reported: Vec<f64> = (0..3).map(|g| after[w][g] - before[w][g]).collect();
        let counted: Vec<f64> = (0..3).map(|g| e1[w][g] - e0[w][g]).collect();
        assert_eq!(counted, reported, "worker {w}");
        total += reported.iter().sum::<f64>();
    }
    assert_eq!(
        total, 90.0,
        "every /collect request ran one collection in some worker"
    );
}
