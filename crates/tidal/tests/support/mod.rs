//! Helpers the end-to-end tests share (each test file includes this module with `mod support;`).

#![allow(dead_code)] // each test binary uses its own subset

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
