//! A real runtime: Debian's PostgreSQL 15, with the shipped example
//! (examples/postgresql.yaml, `instances: per_binary`) on a private cluster.
//! Commits and rollbacks equal `pg_stat_database` deltas over exactly the same
//! statements, requested checkpoints equal `pg_stat_bgwriter.checkpoints_req`,
//! and the query histogram counts every simple-query message that completed.
//!
//! per_binary counts every process of an executable, so the cluster runs a
//! private copy of the server binary (and the test's config attaches that
//! path): another cluster on this host, or another test's, is never counted.

use crate::common::{self, fixtures, require_bpf, wait_for, Exporter, Samples};
use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// uid and gid of the `postgres` OS user.
fn postgres_user() -> (u32, u32) {
    let name = CString::new("postgres").unwrap();
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "no postgres user");
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

fn chown(path: &Path, (uid, gid): (u32, u32)) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

/// A private cluster: initdb'ed in a temp dir, served by a copy of the server
/// binary on a loopback port and a unix socket in the temp dir. Dropping it
/// stops it with `pg_ctl stop -m immediate`.
struct Cluster {
    postmaster: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Cluster {
    fn start() -> Option<Cluster> {
        if !common::require_path(
            Path::new(BIN).join("postgres"),
            "scripts/setup.sh installs postgresql",
        ) {
            return None;
        }
        let user = postgres_user();
        let dir = tempfile::Builder::new()
            .prefix("uexp-pg")
            .tempdir()
            .unwrap();
        chown(dir.path(), user);
        // The copy finds its libraries through `../lib` (PostgreSQL resolves
        // pkglibdir relative to its own location) and its share dir by the
        // compiled-in absolute path.
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::copy(Path::new(BIN).join("postgres"), bin.join("postgres")).unwrap();
        std::os::unix::fs::symlink("/usr/lib/postgresql/15/lib", dir.path().join("lib")).unwrap();
        let data = dir.path().join("data");
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(Path::new(BIN).join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = common::free_port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).unwrap();
        chown(&dir.path().join("postgres.log"), user);
        let postmaster = common::spawn(
            Command::new(bin.join("postgres"))
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-k"])
                .arg(dir.path())
                .args([
                    "-c",
                    "listen_addresses=127.0.0.1",
                    // Nothing but the test's session runs transactions: no
                    // autovacuum, no logical replication launcher.
                    "-c",
                    "autovacuum=off",
                    "-c",
                    "max_logical_replication_workers=0",
                    // No timed checkpoint during the test.
                    "-c",
                    "checkpoint_timeout=1h",
                ])
                .current_dir(dir.path())
                .uid(user.0)
                .gid(user.1)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        );
        let cluster = Cluster {
            postmaster,
            dir,
            port,
        };
        // pg_ctl's own test: the postmaster writes "ready" into postmaster.pid.
        // (No probing connection: its backend would run transactions.)
        let pid_file = data.join("postmaster.pid");
        wait_for(Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&pid_file).ok()?;
            (text.lines().nth(7).map(str::trim) == Some("ready")).then_some(())
        })
        .unwrap_or_else(|| panic!("postgres did not start:\n{}", cluster.log()));
        Some(cluster)
    }

    fn binary(&self) -> PathBuf {
        self.dir.path().join("bin/postgres")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// `psql` connected to database `postgres`.
    fn psql(&self) -> Command {
        let mut cmd = Command::new(Path::new(BIN).join("psql"));
        cmd.arg("-h")
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-X", "-q", "-A", "-t"])
            .env_remove("PGOPTIONS")
            .env_remove("PGDATABASE");
        cmd
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(Path::new(BIN).join("pg_ctl"))
            .args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(self.dir.path().join("data"))
            .stdout(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.postmaster.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.postmaster.kill();
        let _ = self.postmaster.wait();
    }
}

/// One long-lived psql session driven through stdin: one backend, whose every
/// statement the test counts.
struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    marks: u32,
    /// psql's stderr (the expected `division by zero` errors, and any other).
    errors: PathBuf,
}

impl Session {
    fn open(cluster: &Cluster) -> Session {
        let errors = cluster.dir.path().join("psql.stderr");
        let mut child = cluster
            .psql()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&errors).unwrap())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Session {
            child,
            stdin,
            stdout,
            marks: 0,
            errors,
        }
    }

    /// Sends `sql` (statements, one per line) and returns the output lines once
    /// psql has run all of them: a `\echo` marker after them comes back last.
    fn run(&mut self, sql: &str) -> Vec<String> {
        self.marks += 1;
        let mark = format!("__uexp_done_{}__", self.marks);
        writeln!(self.stdin, "{sql}\n\\echo {mark}").unwrap();
        self.stdin.flush().unwrap();
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(
                n > 0,
                "psql exited; output so far: {lines:?}; stderr: {}",
                std::fs::read_to_string(&self.errors).unwrap_or_default()
            );
            let line = line.trim_end().to_string();
            if line == mark {
                return lines;
            }
            lines.push(line);
        }
    }

    /// One row of numbers separated by `|`.
    fn numbers(&mut self, sql: &str) -> Vec<f64> {
        let lines = self.run(sql);
        assert_eq!(
            lines.len(),
            1,
            "{sql}: {lines:?}; stderr: {}",
            std::fs::read_to_string(&self.errors).unwrap_or_default()
        );
        lines[0]
            .split('|')
            .map(|v| v.parse().unwrap_or_else(|_| panic!("{sql}: {lines:?}")))
            .collect()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// examples/postgresql.yaml pointed at the built object and at `binary`.
fn config(binary: &Path) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/postgresql.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let object = "object: postgresql.bpf.o";
    let attachment = format!("exe_path: {BIN}/postgres");
    assert!(text.contains(object) && text.contains(&attachment));
    text.replace(
        object,
        &format!(
            "object: {}",
            fixtures().object("example:postgresql").display()
        ),
    )
    .replace(&attachment, &format!("exe_path: {}", binary.display()))
}

const STATS: &str = "SELECT (SELECT sum(xact_commit) FROM pg_stat_database), \
     (SELECT sum(xact_rollback) FROM pg_stat_database), \
     (SELECT checkpoints_req FROM pg_stat_bgwriter);";

#[test]
fn postgresql_example_matches_pg_stat_database_and_pg_stat_bgwriter() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let exporter = Exporter::start(&config(&cluster.binary()));
    let exe = cluster.binary().display().to_string();
    wait_for(Duration::from_secs(10), || {
        let s = exporter.samples();
        (s.get(
            "userspace_exporter_attached_binaries",
            &[("name", "postgresql")],
        ) == Some(1.0))
        .then_some(())
    })
    .unwrap_or_else(|| panic!("postgres binary not attached:\n{}", exporter.logs()));

    let transactions = |s: &Samples, outcome: &str| {
        s.get(
            "userspace_exporter_postgresql_transactions_total",
            &[("exe", &exe), ("outcome", outcome)],
        )
        .unwrap_or(0.0)
    };
    let checkpoints = |s: &Samples, cause: &str| {
        s.get(
            "userspace_exporter_postgresql_checkpoints_total",
            &[("cause", cause), ("exe", &exe)],
        )
        .unwrap_or(0.0)
    };
    let all_checkpoints = |s: &Samples| {
        s.series("userspace_exporter_postgresql_checkpoints_total")
            .iter()
            .map(|(_, v)| v)
            .sum::<f64>()
    };
    let queries = |s: &Samples| {
        s.get(
            "userspace_exporter_postgresql_query_duration_seconds_count",
            &[("exe", &exe)],
        )
        .unwrap_or(0.0)
    };

    let mut db = Session::open(&cluster);
    db.run("CREATE TABLE uexp (i int);");

    // Both sides count exactly the statements from `stats0` to `flush1`:
    //   flush0  pg_stat_force_next_flush(): the session's pending counts, this
    //           statement's commit included, are flushed before psql sees the
    //           reply; the exporter's e0 then counts the same transactions.
    //   stats0  reads pg_stat_* (its own commit is pending, not in s0)
    //   work
    //   flush1  flushes stats0's commit, the work and its own commit
    //   e1      exporter
    //   stats1  reads pg_stat_* (its own commit is after e1: in neither delta)
    let (n, m, e, k, c) = (40, 15, 3, 25, 3);
    let flush = "SELECT pg_stat_force_next_flush();";
    db.run(flush);
    let e0 = exporter.samples();
    let st0 = db.numbers(STATS);
    let mut work = String::new();
    // Checkpoints first: the checkpointer reports checkpoints_req just after
    // waking the waiting backend, so leave it time before the read.
    for _ in 0..c {
        work += "CHECKPOINT;\n";
    }
    for i in 0..n {
        work += &format!("BEGIN;\nINSERT INTO uexp VALUES ({i});\nCOMMIT;\n");
    }
    for i in 0..m {
        work += &format!("BEGIN;\nINSERT INTO uexp VALUES ({i});\nROLLBACK;\n");
    }
    for i in 0..k {
        work += &format!("SELECT count(*) + {i} FROM uexp;\n");
    }
    // Errors abort their transaction; the error skips query__done.
    for _ in 0..e {
        work += "SELECT 1/0;\n";
    }
    db.run(&work);
    db.run(flush);
    let stderr = std::fs::read_to_string(&db.errors).unwrap();
    assert_eq!(
        stderr.matches("ERROR:").count(),
        stderr.matches("ERROR:  division by zero").count(),
        "unexpected errors: {stderr}"
    );
    assert_eq!(
        stderr.matches("ERROR:  division by zero").count(),
        e as usize
    );
    let e1 = exporter.samples();
    let st1 = db.numbers(STATS);

    let commits = transactions(&e1, "commit") - transactions(&e0, "commit");
    let aborts = transactions(&e1, "abort") - transactions(&e0, "abort");
    let (xact_commit, xact_rollback) = (st1[0] - st0[0], st1[1] - st0[1]);
    let exported_queries = queries(&e1) - queries(&e0);
    eprintln!(
        "commits: exported {commits}, pg_stat_database {xact_commit}; \
         aborts: exported {aborts}, pg_stat_database {xact_rollback}; queries {exported_queries}"
    );
    assert_eq!(commits, xact_commit, "transaction__commit vs xact_commit");
    assert_eq!(aborts, xact_rollback, "transaction__abort vs xact_rollback");
    // stats0 + CHECKPOINTs + N explicit + K autocommit SELECTs + flush1.
    assert_eq!(commits, f64::from(1 + c + n + k + 1));
    // M ROLLBACKs + E failed statements.
    assert_eq!(aborts, f64::from(m + e));
    // query__start/done bracket exec_simple_query: one per statement psql
    // sends (psql splits a script at `;`), BEGIN/COMMIT/ROLLBACK included; a
    // statement that fails never reaches query__done, so it is not observed.
    assert_eq!(
        exported_queries,
        f64::from(1 + c + 3 * n + 3 * m + k + 1),
        "query histogram count"
    );
    let inf = e1.value(
        "userspace_exporter_postgresql_query_duration_seconds_bucket",
        &[("exe", &exe), ("le", "+Inf")],
    );
    assert_eq!(inf, queries(&e1));
    let sum = e1.value(
        "userspace_exporter_postgresql_query_duration_seconds_sum",
        &[("exe", &exe)],
    );
    assert!(sum > 0.0 && sum < 60.0, "query duration sum {sum} s");

    // Checkpoints: CHECKPOINT fires checkpoint__start once (flags IMMEDIATE |
    // FORCE | WAIT | REQUESTED: cause "requested").
    let requested = checkpoints(&e1, "requested") - checkpoints(&e0, "requested");
    assert_eq!(requested, f64::from(c));
    assert_eq!(all_checkpoints(&e1) - all_checkpoints(&e0), f64::from(c));
    let checkpoints_req = wait_for(Duration::from_secs(5), || {
        let v = db.numbers("SELECT checkpoints_req FROM pg_stat_bgwriter;")[0] - st0[2];
        (v >= f64::from(c)).then_some(v)
    })
    .unwrap_or(st1[2] - st0[2]);
    assert_eq!(
        requested, checkpoints_req,
        "checkpoint__start vs checkpoints_req"
    );

    // LWLock waits have no counter in PostgreSQL to compare with (wait events
    // in pg_stat_activity are samples of the current state). A contended
    // pgbench run (8 clients updating the same branch row) must make some,
    // and every series must be a tranche name and a known mode.
    let lwlock = "userspace_exporter_postgresql_lwlock_waits_total";
    let total = |s: &Samples| s.series(lwlock).iter().map(|(_, v)| v).sum::<f64>();
    let pgbench = |args: &[&str]| {
        let out = Command::new(Path::new(BIN).join("pgbench"))
            .arg("-h")
            .arg(cluster.dir.path())
            .args(["-p", &cluster.port.to_string(), "-U", "postgres"])
            .args(args)
            .arg("postgres")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pgbench {args:?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    pgbench(&["-i", "-s", "1", "-q"]);
    let before = exporter.samples();
    let report = pgbench(&["-c", "8", "-j", "2", "-T", "2"]);
    let after = exporter.samples();
    let processed: f64 = report
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("pgbench report: {report}"));
    let waits = total(&after) - total(&before);
    eprintln!(
        "pgbench: {processed} transactions, {waits} LWLock waits: {:?}",
        after.series(lwlock)
    );
    assert!(processed > 0.0);
    // Each pgbench transaction commits once; its connections' startups commit too.
    let bench_commits = transactions(&after, "commit") - transactions(&before, "commit");
    assert!(
        bench_commits >= processed,
        "{bench_commits} commits < {processed} pgbench transactions"
    );
    assert!(waits > 0.0, "no LWLock wait under 8 contending clients");
    let name = regex::Regex::new(r#"tranche="[A-Za-z][A-Za-z0-9_]*""#).unwrap();
    let mode = regex::Regex::new(r#"mode="(exclusive|shared|wait_until_free)""#).unwrap();
    for (series, _) in after.series(lwlock) {
        assert!(name.is_match(&series) && mode.is_match(&series), "{series}");
    }
    assert_eq!(
        after
            .get(
                "userspace_exporter_decoder_errors_total",
                &[
                    ("metric", "postgresql_lwlock_waits_total"),
                    ("name", "postgresql")
                ]
            )
            .unwrap_or(0.0),
        0.0
    );
    drop(db);
    drop(exporter);
}
