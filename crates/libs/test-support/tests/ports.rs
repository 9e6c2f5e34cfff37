//! [`bt_test_support::free_port`]: the ports test servers listen on.

use std::collections::HashSet;

use bt_test_support::{ephemeral_port_range, free_port, free_port_block};

/// A server that a test stops and starts again on the same port (SMTP, NATS, PostgreSQL of its
/// own) must get that port back. A port in the kernel's ephemeral range can meanwhile become
/// the local end of any outgoing connection, including one of the test's own clients retrying
/// the stopped server (Linux then connects the socket to itself), and the restart fails with
/// "address already in use" (CI, stop 25: `alert_then_sale_through_up`). So no free port is
/// ever in that range.
#[test]
fn free_ports_are_never_in_the_ephemeral_range() {
    let ephemeral = ephemeral_port_range();
    let ports: Vec<u16> = (0..300).map(|_| free_port()).collect();
    for port in &ports {
        assert!(
            !ephemeral.contains(port),
            "port {port} is in the ephemeral range {ephemeral:?}"
        );
        assert!(*port >= 1024, "port {port} is privileged");
        std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, *port))
            .unwrap_or_else(|e| panic!("port {port} was given as free but cannot be bound: {e}"));
    }
    // Spread out, so that parallel tests rarely pick the same one.
    let distinct: HashSet<u16> = ports.iter().copied().collect();
    assert!(
        distinct.len() > 250,
        "only {} distinct ports of 300",
        distinct.len()
    );
}

/// The local cluster's nginx and replicas take their ports from one base: every port of the
/// block is outside the ephemeral range and free.
#[test]
fn a_block_of_free_ports_is_outside_the_ephemeral_range_and_free() {
    let ephemeral = ephemeral_port_range();
    for _ in 0..20 {
        let base = free_port_block(15);
        for port in base..base + 15 {
            assert!(
                !ephemeral.contains(&port),
                "port {port} of the block from {base} is in the ephemeral range {ephemeral:?}"
            );
            std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).unwrap_or_else(
                |e| panic!("port {port} of the block from {base} cannot be bound: {e}"),
            );
        }
    }
}
