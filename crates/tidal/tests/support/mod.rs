//! Helpers the end-to-end tests share (each test file includes this module with `mod support;`).

#![allow(dead_code)] // each test binary uses its own subset

use std::process::{Command, Stdio};

/// A free local port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free local port whose successor is free too: the `tidal up` tests put the gateway there.
pub fn free_port_pair() -> u16 {
    loop {
        let p = free_port();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

/// What a `tidal` command printed and how it exited.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the `tidal` CLI against the daemon whose API listens on `port`.
pub fn tidal(port: u16, args: &[&str], stdin: Option<&str>) -> Out {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidal"))
        .args(args)
        .env("TIDAL_SERVER", format!("http://127.0.0.1:{port}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`tidal`]'s standard output.
pub fn tidal_stdout(port: u16, args: &[&str], stdin: Option<&str>) -> String {
    tidal(port, args, stdin).stdout
}
