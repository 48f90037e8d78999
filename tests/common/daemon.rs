//! The real `graywatch serve` binary as a child process, for the tests where the process must
//! die (`kill -9`) or run on the real clock: on an ephemeral port, over a SQLite file in the
//! test's directory, with its log kept there for failure messages.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

/// How long the daemon may take to become ready.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// A running `graywatch serve`, killed with SIGKILL when dropped.
pub struct Daemon {
    child: Child,
    base: String,
    log: PathBuf,
    pub client: reqwest::Client,
}

impl Daemon {
    /// Starts the binary with the configuration file `config` and the database
    /// `dir/gw.db` (kept across restarts in the same `dir`), and waits until `/readyz` answers
    /// 200. `tag` names its log file, `dir/<tag>.log`.
    pub async fn start(config: &Path, dir: &Path, tag: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("an ephemeral port")
            .port();
        let log = dir.join(format!("{tag}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_graywatch"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--database")
            .arg(format!("sqlite://{}", dir.join("gw.db").display()))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the log file"))
            .spawn()
            .expect("start graywatch serve");
        let mut d = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        let until = Instant::now() + READY_DEADLINE;
        loop {
            if let Ok(r) = d.client.get(d.url("/readyz")).send().await
                && r.status() == StatusCode::OK
            {
                return d;
            }
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("graywatch exited ({status}):\n{}", d.log_text());
            }
            assert!(
                Instant::now() < until,
                "graywatch is not ready:\n{}",
                d.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Writes `config` to `dir/<tag>.toml`, then [`Daemon::start`]s with it.
    pub async fn start_with(dir: &Path, config: &str, tag: &str) -> Self {
        let path = dir.join(format!("{tag}.toml"));
        std::fs::write(&path, config).expect("write the config");
        Self::start(&path, dir, tag).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET path`, which must answer 200 with JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let resp = self
            .client
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        resp.json().await.expect("a JSON body")
    }

    /// Resident memory of the daemon, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in kB")
    }

    /// SIGTERM, as systemd or Kubernetes stop a service; waits for the process to exit and
    /// returns how it exited and its log.
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let exit = self.child.wait().expect("wait for graywatch");
        (exit, self.log_text())
    }

    /// SIGKILL, as a crash or the OOM killer would: nothing runs after it.
    pub fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL graywatch");
        self.child.wait().expect("reap graywatch");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
