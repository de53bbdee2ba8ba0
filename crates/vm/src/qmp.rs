//! The QEMU Machine Protocol as Snapdisk speaks it: one JSON object per line in each
//! direction (QMP specification, docs/interop/qmp-spec in qemu). [`command`] and [`parse`] are
//! the sans-IO part; [`Client`] runs them over the VM's unix socket with time limits.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// One message from qemu, as QMP spec §2 defines them.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// `{"QMP": {...}}`, the server's first line.
    Greeting,
    /// `{"return": ...}`: the command succeeded.
    Return(Value),
    /// `{"error": {"class": ..., "desc": ...}}`: the command failed.
    Error { class: String, desc: String },
    /// `{"event": NAME, ...}`, asynchronous (SHUTDOWN, RESET, POWERDOWN, ...).
    Event(String),
}

/// Errors of the QMP channel.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP socket {path}: {source}")]
    Connect { path: String, source: std::io::Error },
    #[error("QMP i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("QMP line is not a QMP message: {0}")]
    Malformed(String),
    #[error("QMP command {command} failed: {class}: {desc}")]
    Command { command: String, class: String, desc: String },
    #[error("QMP connection closed")]
    Closed,
    #[error("no QMP answer within {0:?}")]
    Timeout(Duration),
}

/// The line that runs `name` (with `arguments` when given), newline included.
pub fn command(name: &str, arguments: Option<Value>) -> String {
    let mut v = json!({ "execute": name });
    if let Some(a) = arguments {
        v["arguments"] = a;
    }
    format!("{v}\n")
}

/// Read one line from qemu.
pub fn parse(line: &str) -> Result<Message, QmpError> {
    let bad = || QmpError::Malformed(line.chars().take(200).collect());
    let v: Value = serde_json::from_str(line.trim()).map_err(|_| bad())?;
    let obj = v.as_object().ok_or_else(bad)?;
    if obj.contains_key("QMP") {
        return Ok(Message::Greeting);
    }
    if let Some(r) = obj.get("return") {
        return Ok(Message::Return(r.clone()));
    }
    if let Some(e) = obj.get("error") {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        return Ok(Message::Error { class: s("class"), desc: s("desc") });
    }
    if let Some(ev) = obj.get("event").and_then(Value::as_str) {
        return Ok(Message::Event(ev.to_string()));
    }
    Err(bad())
}

/// A QMP session in command mode (capabilities negotiated).
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    timeout: Duration,
}

impl Client {
    /// Connect to `path`, retrying until it accepts or `timeout` (ms scale) passes, read the
    /// greeting and leave capability negotiation (`qmp_capabilities`).
    pub fn connect(path: &Path, timeout: Duration) -> Result<Client, QmpError> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(source) => return Err(QmpError::Connect { path: path.display().to_string(), source }),
            }
        };
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut c = Client { reader: BufReader::new(stream.try_clone()?), writer: stream, timeout };
        match c.next()? {
            Message::Greeting => {}
            other => return Err(QmpError::Malformed(format!("expected the greeting, got {other:?}"))),
        }
        c.execute("qmp_capabilities", None)?;
        Ok(c)
    }

    fn next(&mut self) -> Result<Message, QmpError> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(QmpError::Closed),
            Ok(_) => parse(&line),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                Err(QmpError::Timeout(self.timeout))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Run `name` and wait for its answer (events in between are skipped).
    pub fn execute(&mut self, name: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        self.writer.write_all(command(name, arguments).as_bytes())?;
        loop {
            match self.next()? {
                Message::Return(v) => return Ok(v),
                Message::Error { class, desc } => return Err(QmpError::Command { command: name.into(), class, desc }),
                Message::Event(_) | Message::Greeting => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn frames_commands_and_reads_every_message_kind() {
        assert_eq!(command("system_reset", None), "{\"execute\":\"system_reset\"}\n");
        assert_eq!(
            command("human-monitor-command", Some(json!({"command-line": "info"}))),
            "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"info\"}}\n"
        );
        assert_eq!(parse(r#"{"QMP": {"version": {}, "capabilities": []}}"#).unwrap(), Message::Greeting);
        assert_eq!(parse("{\"return\": {}}\r\n").unwrap(), Message::Return(json!({})));
        assert_eq!(
            parse(r#"{"error": {"class": "GenericError", "desc": "no"}}"#).unwrap(),
            Message::Error { class: "GenericError".into(), desc: "no".into() }
        );
        assert_eq!(
            parse(r#"{"event": "SHUTDOWN", "data": {"guest": true}, "timestamp": {}}"#).unwrap(),
            Message::Event("SHUTDOWN".into())
        );
        for bad in ["", "[]", "{}", "{\"x\": 1}", "not json", "{\"event\": 3}"] {
            assert!(matches!(parse(bad), Err(QmpError::Malformed(_))), "{bad:?}");
        }
    }

    #[test]
    fn client_negotiates_and_runs_commands_against_a_fake_qemu() {
        use std::os::unix::net::UnixListener;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n").unwrap();
            let mut seen = Vec::new();
            let mut line = String::new();
            while r.read_line(&mut line).unwrap() > 0 {
                let v: Value = serde_json::from_str(&line).unwrap();
                let cmd = v["execute"].as_str().unwrap().to_string();
                line.clear();
                match cmd.as_str() {
                    "qmp_capabilities" => w.write_all(b"{\"return\": {}}\n").unwrap(),
                    "query-status" => {
                        w.write_all(b"{\"event\": \"RESUME\"}\n{\"return\": {\"status\": \"running\"}}\n").unwrap()
                    }
                    _ => w.write_all(b"{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"x\"}}\n").unwrap(),
                }
                seen.push(cmd);
            }
            seen
        });
        let mut c = Client::connect(&path, Duration::from_secs(5)).unwrap();
        assert_eq!(c.execute("query-status", None).unwrap()["status"], "running");
        assert!(matches!(c.execute("nope", None), Err(QmpError::Command { class, .. }) if class == "CommandNotFound"));
        drop(c);
        assert_eq!(server.join().unwrap(), ["qmp_capabilities", "query-status", "nope"]);
    }
}
