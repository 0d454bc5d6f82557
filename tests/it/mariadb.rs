//! A real server: Debian's MariaDB 10.11, with examples/mariadb.yaml
//! (uprobes on the exported, C++-mangled dispatch_command and
//! mysql_execute_command). A private server (a copy of mariadbd named
//! `uexp-mariadbd`, a datadir from mariadb-install-db, a unix socket, no TCP)
//! runs a known workload through one `mariadb` client session; the exported
//! command counts equal `Questions` (which counts each statement of a
//! multi-statement packet) and `Com_change_db` deltas exactly, the statement
//! histogram counts exactly the statements the `Com_*` variables count, and
//! the two `SLEEP(0.2)`s are where they belong.

use crate::common::{self, fixtures, require_bpf, wait_for, Exporter, Samples};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const MARIADBD: &str = "/usr/sbin/mariadbd";

/// A private server in a temp dir, in its own process group.
struct Server {
    child: Child,
    dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Option<Server> {
        if !common::require_path(MARIADBD, "scripts/setup.sh installs mariadb-server")
            || !common::require_path(
                "/usr/bin/mariadb-install-db",
                "scripts/setup.sh installs mariadb-server",
            )
            || !common::require_command(
                "mariadb",
                &["--version"],
                "scripts/setup.sh installs mariadb-client",
            )
        {
            return None;
        }
        let binary = common::named_copy(Path::new(MARIADBD), "uexp-mariadbd");
        let dir = tempfile::Builder::new()
            .prefix("uexp-mariadb")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let out = Command::new("/usr/bin/mariadb-install-db")
            .args(["--no-defaults", "--user=root", "--skip-test-db"])
            .arg(format!("--datadir={}", data.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mariadb-install-db failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let d = dir.path().display();
        let child = common::spawn(
            Command::new(&binary)
                .args(["--no-defaults", "--user=root", "--basedir=/usr"])
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--socket={d}/mysqld.sock"))
                .arg(format!("--pid-file={d}/mysqld.pid"))
                .arg(format!("--log-error={d}/error.log"))
                .args([
                    "--skip-networking",
                    "--skip-log-bin",
                    "--innodb-buffer-pool-size=16M",
                ])
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let server = Server { child, dir };
        wait_for(Duration::from_secs(30), || {
            let ok = Command::new("mariadb")
                .args(["--no-defaults", "-u", "root", "-S"])
                .arg(server.socket())
                .args(["-e", "DO 1"])
                .output()
                .ok()?
                .status
                .success();
            ok.then_some(())
        })
        .unwrap_or_else(|| panic!("mariadbd did not start:\n{}", server.log()));
        Some(server)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("mysqld.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let group = self.child.id() as i32;
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// One `mariadb` client session: statements in on stdin, tab-separated rows
/// out, flushed after each statement (`-n`).
struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    marks: u32,
}

impl Session {
    fn open(server: &Server) -> Session {
        let mut child = Command::new("mariadb")
            .args([
                "--no-defaults",
                "-u",
                "root",
                "-n",
                "--batch",
                "--skip-column-names",
            ])
            .arg("-S")
            .arg(server.socket())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Session {
            child,
            stdin,
            stdout,
            marks: 0,
        }
    }

    fn send(&mut self, statements: &str) {
        self.stdin.write_all(statements.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    /// Sends the global status query, after everything sent before, and
    /// reads every row until it: one statement (counted by Questions and
    /// Com_select as it runs), whose last row is a mark.
    fn status(&mut self) -> BTreeMap<String, f64> {
        self.marks += 1;
        let mark = self.marks;
        self.send(&format!(
            "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
             UNION ALL SELECT 'END-OF-STATUS', {mark};\n"
        ));
        let mut status = BTreeMap::new();
        loop {
            let mut line = String::new();
            assert!(
                self.stdout.read_line(&mut line).unwrap() > 0,
                "client ended"
            );
            let mut fields = line.trim_end().split('\t');
            let (name, value) = (fields.next().unwrap(), fields.next().unwrap_or(""));
            if name == "END-OF-STATUS" && value == mark.to_string() {
                return status;
            }
            if let Ok(v) = value.parse() {
                status.insert(name.to_ascii_lowercase(), v);
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn mariadb_example_counts_what_show_global_status_counts() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let Some(server) = Server::start() else {
        return;
    };
    let exporter =
        Exporter::start(&fixtures().example_config("mariadb", "mariadbd", "uexp-mariadbd"));
    let pid = server.child.id().to_string();
    let mut session = Session::open(&server);
    let command = |s: &Samples, name: &str| {
        s.get(
            "userspace_exporter_mariadb_commands_total",
            &[("command", name), ("pid", &pid)],
        )
        .unwrap_or(0.0)
    };
    let hist = "userspace_exporter_mariadb_statement_duration_seconds";
    let observed = |s: &Samples, suffix: &str, labels: &[(&str, &str)]| {
        let mut l = labels.to_vec();
        l.push(("pid", &pid));
        s.get(&format!("{hist}{suffix}"), &l).unwrap_or(0.0)
    };

    // The first status query counts itself and runs before the first scrape;
    // the second counts itself and runs before the last one.
    let before = session.status();
    let s0 = exporter.samples();
    let t0 = Instant::now();
    let (inserts, selects, uses) = (25, 15, 3);
    let mut workload = String::from(
        "CREATE DATABASE uexp;\nuse uexp\nCREATE TABLE t (id INT PRIMARY KEY, v INT);\n",
    );
    for i in 0..inserts {
        workload.push_str(&format!("INSERT INTO t VALUES ({i}, {});\n", i * 7));
    }
    for i in 0..selects {
        workload.push_str(&format!("SELECT v FROM t WHERE id = {i};\n"));
    }
    workload.push_str("UPDATE t SET v = v + 1 WHERE id < 10;\nDELETE FROM t WHERE id >= 20;\n");
    for _ in 1..uses {
        workload.push_str("use mysql\nuse uexp\n");
    }
    workload.push_str("SELECT SLEEP(0.2);\nSELECT SLEEP(0.2);\n");
    // Three statements in one COM_QUERY packet (the client sends what lies
    // between delimiters as one query).
    workload.push_str("DELIMITER //\nSELECT 1; SELECT 2; SELECT 3//\nDELIMITER ;\n");
    session.send(&workload);
    let after = session.status();
    let waited = t0.elapsed().as_secs_f64();
    let s1 = exporter.samples();

    let status = |name: &str| after[name] - before[name];
    let exported = |name: &str| command(&s1, name) - command(&s0, name);
    let init_db = 1 + 2 * (uses - 1);
    // The client follows each `use` (COM_INIT_DB) with a `SELECT DATABASE()`
    // of its own; the last one is the status query.
    let packets = 1 + 1 + inserts + selects + 2 + 2 + init_db + 1 + 1;
    let statements = packets + 2;
    eprintln!(
        "mariadb: Questions delta {}, exported COM_QUERY {} + COM_INIT_DB {}; statements timed {}, client waited {waited:.3} s, observed {:.3} s",
        status("questions"),
        exported("COM_QUERY"),
        exported("COM_INIT_DB"),
        observed(&s1, "_count", &[]) - observed(&s0, "_count", &[]),
        observed(&s1, "_sum", &[]) - observed(&s0, "_sum", &[]),
    );
    assert_eq!(exported("COM_QUERY"), packets as f64);
    assert_eq!(exported("COM_INIT_DB"), init_db as f64);
    // Questions counts each statement of the multi-statement packet.
    assert_eq!(
        exported("COM_QUERY") + 2.0 + exported("COM_INIT_DB"),
        status("questions"),
        "exported commands vs Questions"
    );
    assert_eq!(exported("COM_INIT_DB"), status("com_change_db"));
    // Nothing else was sent (the readiness checks' COM_QUITs were handled
    // before the exporter had even started).
    for (series, value) in s1.series("userspace_exporter_mariadb_commands_total") {
        if !series.contains("COM_QUERY") && !series.contains("COM_INIT_DB") {
            let earlier = s0.0.get(&series).copied().unwrap_or(0.0);
            assert_eq!(value, earlier, "{series} changed");
        }
    }

    // One observation per statement, as the Com_ variables of the statement
    // kinds sent count them (the SLEEPs, the client's SELECT DATABASE()s, the
    // multi-statement packet's three and the status query are selects).
    let counted: f64 = [
        "com_create_db",
        "com_create_table",
        "com_insert",
        "com_select",
        "com_update",
        "com_delete",
    ]
    .iter()
    .map(|name| status(name))
    .sum();
    assert_eq!(status("com_select"), (selects + 2 + init_db + 3 + 1) as f64);
    assert_eq!(status("com_insert"), inserts as f64);
    let timed = observed(&s1, "_count", &[]) - observed(&s0, "_count", &[]);
    assert_eq!(timed, counted, "statements timed vs Com_* deltas");
    assert_eq!(timed, statements as f64);
    let sum = observed(&s1, "_sum", &[]) - observed(&s0, "_sum", &[]);
    assert!(sum >= 0.4, "two SLEEP(0.2) statements: observed {sum} s");
    assert!(sum <= waited, "observed {sum} s > client waited {waited} s");
    // The sleeps are over 2^27 ns (134 ms); at most the rest are under.
    let quick = observed(&s1, "_bucket", &[("le", "0.134217728")])
        - observed(&s0, "_bucket", &[("le", "0.134217728")]);
    assert!(quick <= timed - 2.0, "{quick} of {timed} under 134 ms");
}
