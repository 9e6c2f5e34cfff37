//! The SMTP test server (aiosmtpd) receives mail over real SMTP, keeps it across a stop and a
//! restart on the same port, and decodes what tests compare.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use bt_test_support::smtp::SmtpServer;

/// A minimal SMTP client: one connection, one message; panics unless every step succeeds.
fn send(port: u16, from: &str, to: &[&str], data: &str) {
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect to SMTP");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut step = |command: Option<String>, expected: u16| {
        if let Some(command) = &command {
            writer.write_all(command.as_bytes()).unwrap();
        }
        // A reply is lines `NNN-…` ending with `NNN …`.
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("an SMTP reply");
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("not an SMTP reply: {line:?}"));
            assert_eq!(code, expected, "after {command:?}: {line}");
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
    };
    step(None, 220);
    step(Some("EHLO client.test\r\n".to_owned()), 250);
    step(Some(format!("MAIL FROM:<{from}>\r\n")), 250);
    for to in to {
        step(Some(format!("RCPT TO:<{to}>\r\n")), 250);
    }
    step(Some("DATA\r\n".to_owned()), 354);
    let mut content = String::new();
    for line in data.split('\n') {
        // Dot-stuffing (RFC 5321 4.5.2).
        if line.starts_with('.') {
            content.push('.');
        }
        content.push_str(line);
        content.push_str("\r\n");
    }
    content.push_str(".\r\n");
    step(Some(content), 250);
    step(Some("QUIT\r\n".to_owned()), 221);
}

#[tokio::test]
async fn receives_mail_and_keeps_it_across_a_restart() {
    let mut server = SmtpServer::start();
    let port = server.port();
    assert_eq!(server.url(), format!("smtp://127.0.0.1:{port}"));
    assert!(server.messages().is_empty());

    send(
        port,
        "office@buyticket.test",
        &["zoe@example.test", "copy@example.test"],
        "From: BuyTicket <office@buyticket.test>\n\
         To: zoe@example.test\n\
         Subject: Plain one\n\
         \n\
         First line\n\
         .a line starting with a dot",
    );
    send(
        port,
        "office@buyticket.test",
        &["zoe@example.test"],
        "From: BuyTicket <office@buyticket.test>\n\
         To: zoe@example.test\n\
         Subject: =?utf-8?b?Vm9zIGJpbGxldHMg4oCUIEbDqnRlIOKckw==?=\n\
         MIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: quoted-printable\n\
         \n\
         Total : 42 =E2=82=AC =E2=80=94 =C3=A0 bient=C3=B4t, with a soft line bre=\n\
         ak",
    );

    let messages = server.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].mail_from, "office@buyticket.test");
    assert_eq!(
        messages[0].rcpt_tos,
        ["zoe@example.test", "copy@example.test"]
    );
    assert_eq!(messages[0].header("subject").as_deref(), Some("Plain one"));
    assert_eq!(
        messages[0].text_body(),
        "First line\n.a line starting with a dot"
    );
    assert!(messages[0].raw.starts_with("From: BuyTicket"));
    assert!(messages[0].raw.contains("\r\n.a line starting"));
    assert_eq!(messages[1].rcpt_tos, ["zoe@example.test"]);
    assert_eq!(
        messages[1].header("Subject").as_deref(),
        Some("Vos billets — Fête ✓")
    );
    assert_eq!(
        messages[1].text_body(),
        "Total : 42 € — à bientôt, with a soft line break"
    );

    // Down, with a connection open: the port refuses, what arrived stays readable.
    let idle = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    server.stop();
    let refused = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    assert_eq!(server.messages(), messages);
    drop(idle);

    // Back on the same port, numbering on after the first two.
    server.restart();
    assert_eq!(server.port(), port);
    send(
        port,
        "office@buyticket.test",
        &["late@example.test"],
        "Subject: After the restart\n\nStill here",
    );
    let messages = server
        .wait_until(Duration::from_secs(10), |messages| {
            messages.iter().any(|m| m.rcpt_tos == ["late@example.test"])
        })
        .await;
    assert_eq!(messages.len(), 3);
    assert_eq!(
        messages[2].header("Subject").as_deref(),
        Some("After the restart")
    );
    assert_eq!(messages[2].text_body(), "Still here");
}

#[tokio::test]
#[should_panic(expected = "0 received")]
async fn wait_for_panics_after_the_timeout() {
    let server = SmtpServer::start();
    server.wait_for(1, Duration::from_millis(200)).await;
}
