//! Child processes of the devnet: spawned with their output in a log file, killed on drop.

use crate::error::{io, DevnetError};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a child may take to become ready: a node opens its store and binds; the
/// coordinator also loads and splits its dataset. Generous for a loaded 2-core machine.
pub const READY_WAIT: Duration = Duration::from_secs(60);
/// Poll interval while waiting for a ready file.
const READY_POLL: Duration = Duration::from_millis(25);

/// A running child, killed (SIGKILL) and reaped when dropped.
pub struct Child {
    pub role: String,
    pub log: PathBuf,
    exe: PathBuf,
    args: Vec<OsString>,
    process: std::process::Child,
}

fn spawn_process(
    role: &str,
    exe: &Path,
    args: &[OsString],
    log: &Path,
) -> Result<std::process::Child, DevnetError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io(log))?;
    let stderr = file.try_clone().map_err(io(log))?;
    Command::new(exe)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info,libp2p=warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(stderr)
        .spawn()
        .map_err(|error| DevnetError::Spawn {
            role: role.to_owned(),
            error,
        })
}

impl Child {
    /// Starts `exe args...` with stdout and stderr appended to `log`.
    pub fn spawn(
        role: &str,
        exe: &Path,
        args: Vec<OsString>,
        log: PathBuf,
    ) -> Result<Child, DevnetError> {
        let process = spawn_process(role, exe, &args, &log)?;
        Ok(Child {
            role: role.to_owned(),
            log,
            exe: exe.to_owned(),
            args,
            process,
        })
    }

    /// Kills the process (SIGKILL, as a crash would) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }

    /// Kills and starts the same command again.
    pub fn restart(&mut self) -> Result<(), DevnetError> {
        self.kill();
        self.process = spawn_process(&self.role, &self.exe, &self.args, &self.log)?;
        Ok(())
    }

    /// An error if the process has exited.
    pub fn check_alive(&mut self) -> Result<(), DevnetError> {
        match self.process.try_wait() {
            Ok(Some(status)) => Err(DevnetError::ChildExited {
                role: self.role.clone(),
                status,
                log: self.log.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Waits until `path` exists and `parse` accepts its contents; fails early if the child
    /// exits.
    pub async fn wait_ready<T>(
        &mut self,
        path: &Path,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T, DevnetError> {
        let deadline = Instant::now() + READY_WAIT;
        loop {
            if let Some(value) = std::fs::read_to_string(path).ok().and_then(|t| parse(&t)) {
                return Ok(value);
            }
            self.check_alive()?;
            if Instant::now() >= deadline {
                return Err(DevnetError::NotReady {
                    role: self.role.clone(),
                    secs: READY_WAIT.as_secs(),
                    log: self.log.clone(),
                });
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free loopback port, chosen by the OS. The coordinator gets a fixed port so that miners
/// reach it again at the same URL after a restart.
pub fn free_loopback_port() -> Result<u16, DevnetError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("127.0.0.1:0"))?;
    Ok(listener.local_addr().map_err(io("127.0.0.1:0"))?.port())
}
