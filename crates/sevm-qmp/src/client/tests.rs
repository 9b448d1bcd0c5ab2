use super::*;
use std::io::BufRead;

const T: Duration = Duration::from_secs(30);

/// A scripted server: greeting, then answers each request with the next
/// canned reply (an event first for the second request).
#[test]
fn negotiates_skips_events_and_maps_errors() {
    let (client, server) = UnixStream::pair().unwrap();
    let t = std::thread::spawn(move || {
        let mut w = server.try_clone().unwrap();
        let mut r = BufReader::new(server);
        writeln!(w, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
        let mut line = String::new();
        let mut seen = Vec::new();
        for reply in [
            r#"{"return": {}, "id": 1}"#,
            "{\"event\": \"RESUME\"}\r\n{\"return\": {\"x\": 1}, \"id\": 2}",
            r#"{"error": {"class": "GenericError", "desc": "nope"}, "id": 3}"#,
        ] {
            line.clear();
            r.read_line(&mut line).unwrap();
            seen.push(line.clone());
            writeln!(w, "{reply}").unwrap();
        }
        seen
    });
    let mut q = QmpClient::from_stream(client, T).unwrap();
    assert_eq!(q.execute("query-status", None).unwrap(), json!({"x": 1}));
    assert_eq!(q.events().len(), 1);
    let e = q.execute("cont", Some(json!({"a": 1}))).unwrap_err();
    assert_eq!(e.to_string(), "QMP cont failed: GenericError: nope");
    let seen = t.join().unwrap();
    assert!(seen[0].contains("qmp_capabilities"));
    assert!(seen[2].contains(r#""arguments":{"a":1}"#), "{}", seen[2]);
}

#[test]
fn closed_and_garbage_servers_are_errors() {
    let (client, server) = UnixStream::pair().unwrap();
    drop(server);
    assert!(matches!(
        QmpClient::from_stream(client, T),
        Err(ClientError::Closed)
    ));
    let (client, mut server) = UnixStream::pair().unwrap();
    writeln!(server, "not json").unwrap();
    assert!(matches!(
        QmpClient::from_stream(client, T),
        Err(ClientError::Protocol(_))
    ));
    let (client, mut server) = UnixStream::pair().unwrap();
    writeln!(server, r#"{{"return": {{}}}}"#).unwrap();
    let e = QmpClient::from_stream(client, T).unwrap_err();
    assert!(e.to_string().contains("expected the QMP greeting"), "{e}");
}

/// A server that says nothing is a timeout, not a hang; so is one that
/// sends events forever without the reply.
#[test]
fn silent_and_chatty_servers_time_out() {
    let short = Duration::from_millis(200);
    let (client, _server) = UnixStream::pair().unwrap();
    let start = Instant::now();
    let e = QmpClient::from_stream(client, short).unwrap_err();
    assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
    assert!(e.to_string().contains("200 ms"), "{e}");
    assert!(start.elapsed() < T);

    let (client, server) = UnixStream::pair().unwrap();
    let mut w = server.try_clone().unwrap();
    writeln!(w, r#"{{"QMP": {{}}}}"#).unwrap();
    let mut q = QmpClient::from_stream_without_negotiation(client, short).unwrap();
    let chatter = std::thread::spawn(move || {
        // Until the client hangs up.
        while writeln!(w, r#"{{"event": "X"}}"#).is_ok() {
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let e = q.execute("query-status", None).unwrap_err();
    assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
    assert!(!q.events().is_empty());
    let e = q.wait_event("NEVER").unwrap_err();
    assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
    drop(q);
    drop(server);
    chatter.join().unwrap();
}

#[test]
fn overlong_lines_are_refused() {
    let (client, server) = UnixStream::pair().unwrap();
    let t = std::thread::spawn(move || {
        let mut w = server;
        let mut line = b"{\"QMP\": \"".to_vec();
        line.extend(std::iter::repeat_n(b'a', MAX_LINE));
        // The client stops reading after MAX_LINE bytes.
        let _ = w.write_all(&line);
    });
    let e = QmpClient::from_stream(client, T).unwrap_err();
    assert!(e.to_string().contains("line longer than"), "{e}");
    t.join().unwrap();
}

#[test]
fn connect_errors_name_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no.sock");
    let e = QmpClient::connect(&path, T).unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }), "{e}");
    assert!(e.to_string().contains("no.sock"), "{e}");
}

#[test]
fn raw_requests_replies_and_events() {
    let (client, server) = UnixStream::pair().unwrap();
    let t = std::thread::spawn(move || {
        let mut w = server.try_clone().unwrap();
        let mut r = BufReader::new(server);
        writeln!(w, r#"{{"QMP": {{"capabilities": []}}}}"#).unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        writeln!(w, r#"{{"event": "STOP"}}"#).unwrap();
        writeln!(
            w,
            r#"{{"error": {{"class": "GenericError", "desc": "bad"}}}}"#
        )
        .unwrap();
        writeln!(w, r#"{{"event": "RESUME"}}"#).unwrap();
        line
    });
    let mut q = QmpClient::from_stream_without_negotiation(client, T).unwrap();
    assert_eq!(q.greeting()["QMP"]["capabilities"], json!([]));
    let r = q.request("stop", Some(json!({"x": 1}))).unwrap();
    assert_eq!(r["error"]["desc"], "bad");
    assert_eq!(q.wait_event("RESUME").unwrap()["event"], "RESUME");
    assert_eq!(q.wait_event("STOP").unwrap()["event"], "STOP");
    assert!(q.events().is_empty());
    let sent = t.join().unwrap();
    assert!(sent.ends_with('\n'), "{sent:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&sent).unwrap(),
        json!({"execute": "stop", "arguments": {"x": 1}})
    );
    assert!(matches!(q.read_message(), Err(ClientError::Closed)));
}

#[test]
fn against_the_server() {
    use crate::{QmpCommand, QmpError, QmpHandler, QmpServer};
    use std::sync::Arc;
    struct H;
    impl QmpHandler for H {
        fn handle(&self, command: QmpCommand) -> Result<Value, QmpError> {
            match command {
                QmpCommand::QueryName => Ok(json!({"name": "vm"})),
                _ => Err(QmpError::generic("no")),
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sock");
    let _server = QmpServer::bind(&path, Arc::new(H)).unwrap();
    let mut q = QmpClient::connect(&path, T).unwrap();
    assert_eq!(q.greeting()["QMP"]["capabilities"], json!(["oob"]));
    assert_eq!(
        q.execute("query-name", None).unwrap(),
        json!({"name": "vm"})
    );
    let e = q.execute("stop", None).unwrap_err();
    assert_eq!(e.to_string(), "QMP stop failed: GenericError: no");
    assert_eq!(str_member(&json!({"a": "b"}), "a").unwrap(), "b");
    assert_eq!(u64_member(&json!({"n": 3}), "n").unwrap(), 3);
    assert!(u64_member(&json!({"n": "3"}), "n").is_err());
}
