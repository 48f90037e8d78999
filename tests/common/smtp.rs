//! A real SMTP server for the fault tests: Debian's `aiosmtpd` (package python3-aiosmtpd)
//! storing messages in a maildir, on a port fixed for its whole life so that it can be stopped
//! and started again where the daemon expects it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A port nothing listens on (a listener got it from the kernel and was dropped).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

pub struct Smtp {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl Smtp {
    /// A server on `port`, not yet started (so the port refuses connections).
    pub fn stopped_on(port: u16) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir(dir.path().join(sub)).expect("create the maildir");
        }
        Self {
            port,
            dir,
            child: None,
        }
    }

    /// Starts the server and waits until it takes connections.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "aiosmtpd already runs");
        let port = self.port;
        let mut child = Command::new("aiosmtpd")
            .args(["-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd (Debian package python3-aiosmtpd)");
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                self.child = Some(child);
                return;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("aiosmtpd exited before listening on {port}: {status}");
            }
            assert!(Instant::now() < until, "aiosmtpd does not listen on {port}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server (its maildir stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The raw messages delivered so far.
    pub fn messages(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.path().join("new"))
            .expect("read the maildir")
            .map(|e| {
                std::fs::read_to_string(e.expect("a maildir entry").path()).expect("a message")
            })
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The value of header `name` in a raw message (unfolded), if present.
pub fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw.replace("\r\n", "\n");
    let head = head.split("\n\n").next().unwrap_or_default().to_string();
    let mut value: Option<String> = None;
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(v) = value.as_mut() {
                v.push_str(line.trim());
            }
        } else if value.is_some() {
            break;
        } else if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case(name)
        {
            value = Some(v.trim().to_string());
        }
    }
    value
}
