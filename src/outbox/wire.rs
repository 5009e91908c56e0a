//! A small blocking SMTP client for bulk sending: the newsletter lanes, each on its own
//! thread with its own session.
//!
//! Why not lettre's connection: it writes every command with its own write and flush
//! and waits for each answer, and dot-stuffs the message byte by byte into a fresh
//! buffer; sending 10,000 copies of 15 KB then spent most of its time in small socket
//! writes, task switches and that copy (docs/BENCHMARKS.md, run 8). Here one transaction
//! is three writes and two waits when the server offers PIPELINING: `MAIL`, `RCPT` and
//! `DATA` in one write; the message, dot-stuffed only where a line starts with a dot
//! (found with `memchr`), in one write; the final `.` in one write. The journal records
//! the row between the last two, as with the outbox (see the module doc of
//! [`crate::outbox`]): without its record, the `.` never goes out.
//!
//! TLS is rustls (implicit, or STARTTLS which is then required), AUTH is PLAIN or LOGIN
//! (or XOAUTH2 with a token when `smtp.auth = "oauth2"`);
//! every read and write has the `[smtp] timeout`.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

use lettre::transport::smtp::commands::{Mail, Rcpt};
use lettre::transport::smtp::extension::ServerInfo;

use super::journal::SentJournal;
use super::{Outcome, POOL_IDLE, WireEnvelope};
use crate::config::{AuthMethod, Security, SmtpSettings};
use crate::domain::redact_addresses;
use crate::oauth2::{AuthProblem, Side, Tokens};

/// Longest SMTP answer we read (lettre's limit too).
const MAX_REPLY: usize = 64 * 1024;

/// Where to connect and how: one per sender, shared by its lanes; keeps idle sessions.
pub struct Client {
    host: String,
    port: u16,
    timeout: Duration,
    security: Security,
    tls: Option<Arc<rustls::ClientConfig>>,
    credentials: Option<(String, SecretString)>,
    /// `smtp.auth = "oauth2"`: AUTH XOAUTH2 as this user with a token from `tokens`.
    oauth2: Option<(String, Option<Tokens>)>,
    hello: String,
    pool_size: usize,
    idle: Mutex<Vec<(Session, Instant)>>,
}

/// One SMTP session.
pub struct Session {
    stream: Stream,
    rbuf: Vec<u8>,
    rpos: usize,
    wbuf: Vec<u8>,
    pipelining: bool,
    /// The server's EHLO answer, as lettre reads it (for [`WireEnvelope`]).
    server: Option<ServerInfo>,
    /// Logged in with a token: not used past the token's renewal time.
    token_until: Option<Instant>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A server's answer.
#[derive(Debug)]
struct Reply {
    code: u16,
    /// The lines after the code, joined by `\n`.
    text: String,
}

impl Reply {
    fn positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
    /// One line, addresses cut to their domain (servers quote the recipient).
    fn describe(&self) -> String {
        redact_addresses(&format!("{} {}", self.code, self.text.replace(['\r', '\n'], " ")))
    }
    fn outcome(&self) -> Outcome {
        if self.code >= 500 {
            Outcome::Permanent(format!("SMTP refused permanently: {}", self.describe()))
        } else {
            Outcome::Transient(format!("SMTP temporary failure: {}", self.describe()))
        }
    }
}

/// How a transaction failed.
enum Failure {
    /// The connection broke (or timed out); `after_end` when the final `.` was being
    /// written or had been.
    Io { error: io::Error, after_end: bool, before_data: bool },
    /// The server refused the envelope (the session goes on after RSET).
    Envelope(Reply),
    /// The server refused the end of the message.
    End(Reply),
    /// The journal could not record the end: the `.` was not sent.
    Journal(anyhow::Error),
}

impl Client {
    pub fn new(s: &SmtpSettings, pool_size: usize) -> anyhow::Result<Self> {
        let tls = match s.security {
            Security::None => None,
            Security::Starttls | Security::Tls => Some(crate::tls::client_config(s.ca_file.as_deref())?),
        };
        let oauth2 = (s.auth == AuthMethod::Oauth2).then(|| (s.username.clone().unwrap_or_default(), None));
        let credentials = match (&s.username, &s.password) {
            (Some(u), Some(p)) if oauth2.is_none() => Some((u.clone(), p.clone())),
            _ => None,
        };
        Ok(Self {
            host: s.host.clone(),
            port: s.port,
            timeout: Duration::from_secs(s.timeout.max(1)),
            security: s.security,
            tls,
            credentials,
            oauth2,
            hello: lettre::transport::smtp::extension::ClientId::default().to_string(),
            pool_size,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// A new session: TCP (no Nagle), TLS, EHLO, AUTH.
    fn connect(&self) -> Result<Session, String> {
        let addrs = (self.host.as_str(), self.port).to_socket_addrs().map_err(|e| e.to_string())?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let tcp = tcp.ok_or_else(|| last.to_string())?;
        let setup = |t: &TcpStream| -> io::Result<()> {
            t.set_nodelay(true)?;
            t.set_read_timeout(Some(self.timeout))?;
            t.set_write_timeout(Some(self.timeout))
        };
        setup(&tcp).map_err(|e| e.to_string())?;
        let stream = match self.security {
            Security::Tls => self.wrap(tcp)?,
            _ => Stream::Plain(tcp),
        };
        let mut s = Session {
            stream,
            rbuf: Vec::with_capacity(4096),
            rpos: 0,
            wbuf: Vec::with_capacity(32 * 1024),
            pipelining: false,
            server: None,
            token_until: None,
        };
        let io = |e: io::Error| e.to_string();
        let greeting = s.read_reply().map_err(io)?;
        if !greeting.positive() {
            return Err(format!("the server refused the session: {}", greeting.describe()));
        }
        let mut ehlo = s.ehlo(&self.hello)?;
        if self.security == Security::Starttls {
            if !has(&ehlo, "STARTTLS") {
                return Err("the server does not offer STARTTLS".into());
            }
            let r = s.command("STARTTLS\r\n").map_err(io)?;
            if !r.positive() {
                return Err(format!("STARTTLS refused: {}", r.describe()));
            }
            let Stream::Plain(tcp) = s.stream else { unreachable!("STARTTLS on a plain stream") };
            s.stream = self.wrap(tcp)?;
            s.rbuf.clear();
            s.rpos = 0;
            ehlo = s.ehlo(&self.hello)?;
        }
        s.pipelining = has(&ehlo, "PIPELINING");
        s.server = Some(server_info(&ehlo)?);
        if let Some((user, password)) = &self.credentials {
            s.auth(&ehlo, user, password.expose_secret())?;
        }
        if let Some((user, tokens)) = &self.oauth2 {
            let tokens = tokens.as_ref().ok_or("smtp.auth = \"oauth2\" but no token source was set up")?;
            let token = tokens.bearer_blocking(Side::Smtp).map_err(|p| p.to_string())?;
            let initial = token.xoauth2(user);
            let b64 = base64::engine::general_purpose::STANDARD.encode(initial.as_bytes());
            let io = |e: io::Error| e.to_string();
            let mut r = s.command(&format!("AUTH XOAUTH2 {b64}\r\n")).map_err(io)?;
            if r.code == 334 {
                // The server's error as a challenge (a JSON object): answered with an empty
                // line, then comes the final refusal.
                r = s.command("\r\n").map_err(io)?;
            }
            if r.code != 235 {
                let p = AuthProblem::token_refused_by_server(&r.describe());
                tokens.report_blocking(Side::Smtp, Err(&p));
                return Err(p.to_string());
            }
            tokens.report_blocking(Side::Smtp, Ok(()));
            s.token_until = Some(token.renew_at);
        }
        Ok(s)
    }

    /// Logs in with tokens from `tokens` when `smtp.auth` is `oauth2`.
    pub fn with_tokens(mut self, tokens: Option<Tokens>) -> Self {
        if let (Some((_, slot)), Some(t)) = (&mut self.oauth2, tokens) {
            *slot = Some(t);
        }
        self
    }

    fn wrap(&self, tcp: TcpStream) -> Result<Stream, String> {
        let config = self.tls.clone().ok_or("TLS is not set up")?;
        let name = rustls::pki_types::ServerName::try_from(self.host.clone()).map_err(|e| e.to_string())?;
        let conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        // The handshake now, so that a certificate problem is named as such.
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).map_err(|e| format!("TLS: {e}"))?;
        }
        Ok(Stream::Tls(Box::new(tls)))
    }

    /// A pooled session when a fresh one is idle, else a new one; `true` when reused.
    fn checkout(&self) -> Result<(Session, bool), String> {
        loop {
            let pooled = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
            match pooled {
                Some((s, since)) if since.elapsed() < POOL_IDLE && s.token_fresh() => return Ok((s, true)),
                Some(_) => continue,
                None => return Ok((self.connect()?, false)),
            }
        }
    }

    /// Keeps a session for the next pass.
    pub fn checkin(&self, s: Session) {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < self.pool_size {
            idle.push((s, Instant::now()));
        }
    }

    /// One SMTP transaction on the lane's session `slot` (opened when empty, emptied
    /// when it broke), whose end is recorded in `journal` under `id` right before the
    /// final `.` goes out, and a refusal of that end right after it.
    pub fn send_recorded(
        &self,
        slot: &mut Option<(Session, bool)>,
        journal: &SentJournal,
        id: i64,
        envelope_from: &str,
        rcpt: &str,
        raw: &[u8],
    ) -> Outcome {
        let refused = || {
            // Not delivered: said in the journal before anything else, so that a crash
            // before the outcome is committed does not count it as sent.
            if let Err(e) = journal.refused(id) {
                tracing::error!(error = %format!("{e:#}"), "the sent journal could not record a refusal");
            }
        };
        self.send(slot, envelope_from, rcpt, raw, || journal.record(id), refused)
    }

    /// One SMTP transaction: `record_end` runs right before the final `.` is written (an
    /// error keeps the `.` from going out), `refused` when the server then refused the
    /// message. `envelope_from` empty: the null sender.
    pub fn send(
        &self,
        slot: &mut Option<(Session, bool)>,
        envelope_from: &str,
        rcpt: &str,
        raw: &[u8],
        record_end: impl FnOnce() -> anyhow::Result<()>,
        refused: impl FnOnce(),
    ) -> Outcome {
        let (from, rcpt) = match super::envelope_addresses(envelope_from, rcpt) {
            Ok(a) => a,
            Err(outcome) => return outcome,
        };
        let mut record_end = Some(record_end);
        // A pooled session that the server closed meanwhile fails before any of the
        // message was sent: one more try on a new session.
        for last_try in [false, true] {
            let (mut session, reused) = match slot.take() {
                Some(s) if s.0.token_fresh() => s,
                _ => match self.checkout() {
                    Ok(s) => s,
                    Err(e) => return Outcome::Transient(format!("cannot connect to {}:{}: {e}", self.host, self.port)),
                },
            };
            let server = session.server.as_ref().expect("a session has the server's EHLO answer");
            let envelope = match WireEnvelope::new(from.as_ref(), &rcpt, raw, server) {
                Ok(e) => e,
                Err(why) => {
                    *slot = Some((session, true));
                    return Outcome::Permanent(why);
                }
            };
            let mail = Mail::new(envelope.from, envelope.params).to_string();
            let rcpt_to = Rcpt::new(envelope.rcpt, vec![]).to_string();
            let result = session.transaction(&mail, &rcpt_to, raw, &mut record_end);
            return match result {
                Ok(()) => {
                    *slot = Some((session, true));
                    Outcome::Sent
                }
                Err(Failure::Io { before_data: true, .. }) if reused && !last_try => continue,
                Err(Failure::Io { error, after_end: false, .. }) => {
                    Outcome::Transient(format!("connection lost while sending: {error}"))
                }
                // It broke after the end: the server most likely delivered; never send twice.
                Err(Failure::Io { error, after_end: true, .. }) => {
                    tracing::warn!(error = %error, "connection lost after the end of the message; counted as sent");
                    Outcome::Sent
                }
                Err(Failure::Envelope(reply)) => {
                    if session.reset() {
                        *slot = Some((session, true));
                    }
                    reply.outcome()
                }
                Err(Failure::End(reply)) => {
                    refused();
                    *slot = Some((session, true));
                    reply.outcome()
                }
                Err(Failure::Journal(e)) => {
                    // The session is dropped with the message unfinished: the server
                    // discards it.
                    let why = format!("{e:#}");
                    tracing::error!(error = %why, "the sent journal could not record the end of a message; not sent");
                    Outcome::Transient(format!("not sent: the sent journal could not be written ({why})"))
                }
            };
        }
        Outcome::Transient("no usable SMTP connection".into())
    }
}

/// The EHLO answer as lettre's [`ServerInfo`].
fn server_info(ehlo: &Reply) -> Result<ServerInfo, String> {
    let lines: Vec<&str> = ehlo.text.split('\n').collect();
    let mut text = String::new();
    for (i, line) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        text.push_str(&format!("{}{sep}{line}\r\n", ehlo.code));
    }
    let response = text.parse().map_err(|e| format!("EHLO answer not understood: {e}"))?;
    ServerInfo::from_response(&response).map_err(|e| format!("EHLO answer not understood: {e}"))
}

fn has(ehlo: &Reply, keyword: &str) -> bool {
    ehlo.text.lines().skip(1).any(|l| l.split([' ', '=']).next().is_some_and(|k| k.eq_ignore_ascii_case(keyword)))
}

impl Session {
    fn ehlo(&mut self, hello: &str) -> Result<Reply, String> {
        let r = self.command(&format!("EHLO {hello}\r\n")).map_err(|e| e.to_string())?;
        if !r.positive() {
            return Err(format!("EHLO refused: {}", r.describe()));
        }
        Ok(r)
    }

    /// Whether the token this session logged in with (if any) is still before renewal.
    fn token_fresh(&self) -> bool {
        self.token_until.is_none_or(|t| Instant::now() < t)
    }

    fn auth(&mut self, ehlo: &Reply, user: &str, password: &str) -> Result<(), String> {
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        let mechanisms: Vec<String> = ehlo
            .text
            .lines()
            .skip(1)
            .filter_map(|l| {
                let l = l.to_ascii_uppercase();
                l.strip_prefix("AUTH").map(|m| m.trim_start_matches(['=', ' ']).to_string())
            })
            .flat_map(|m| m.split(' ').map(str::to_string).collect::<Vec<_>>())
            .collect();
        let io = |e: io::Error| e.to_string();
        let r = if mechanisms.iter().any(|m| m == "PLAIN") {
            self.command(&format!("AUTH PLAIN {}\r\n", b64(format!("\0{user}\0{password}").as_bytes()))).map_err(io)?
        } else if mechanisms.iter().any(|m| m == "LOGIN") {
            let r = self.command("AUTH LOGIN\r\n").map_err(io)?;
            if r.code != 334 {
                return Err(format!("authentication refused: {}", r.describe()));
            }
            let r = self.command(&format!("{}\r\n", b64(user.as_bytes()))).map_err(io)?;
            if r.code != 334 {
                return Err(format!("authentication refused: {}", r.describe()));
            }
            self.command(&format!("{}\r\n", b64(password.as_bytes()))).map_err(io)?
        } else {
            return Err("the server offers neither AUTH PLAIN nor AUTH LOGIN".into());
        };
        if r.code != 235 {
            return Err(format!("authentication failed: {}", r.describe()));
        }
        Ok(())
    }

    fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    fn command(&mut self, line: &str) -> io::Result<Reply> {
        self.send_bytes(line.as_bytes())?;
        self.read_reply()
    }

    /// RSET after a refused envelope; false when the session is no longer usable.
    fn reset(&mut self) -> bool {
        self.command("RSET\r\n").is_ok_and(|r| r.positive())
    }

    fn read_reply(&mut self) -> io::Result<Reply> {
        let mut text = String::new();
        let mut code = 0;
        loop {
            if let Some(nl) = memchr::memchr(b'\n', &self.rbuf[self.rpos..]) {
                let line = &self.rbuf[self.rpos..self.rpos + nl];
                self.rpos += nl + 1;
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed SMTP answer");
                if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
                    return Err(bad());
                }
                code = u16::from(line[0] - b'0') * 100 + u16::from(line[1] - b'0') * 10 + u16::from(line[2] - b'0');
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&String::from_utf8_lossy(line.get(4..).unwrap_or_default()));
                if line.get(3) != Some(&b'-') {
                    return Ok(Reply { code, text });
                }
                continue;
            }
            if self.rbuf.len() - self.rpos > MAX_REPLY || text.len() > MAX_REPLY {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("SMTP answer {code} too long")));
            }
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection"));
            }
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }

    /// MAIL, RCPT, DATA (one write with PIPELINING), the message, the record, the `.`.
    /// `mail` and `rcpt` are the command lines (lettre's, from a [`WireEnvelope`]).
    fn transaction(
        &mut self,
        mail: &str,
        rcpt: &str,
        raw: &[u8],
        record_end: &mut Option<impl FnOnce() -> anyhow::Result<()>>,
    ) -> Result<(), Failure> {
        let io = |error, before_data| Failure::Io { error, after_end: false, before_data };
        let (mail_r, rcpt_r, data_r) = if self.pipelining {
            self.wbuf.clear();
            self.wbuf.extend_from_slice(mail.as_bytes());
            self.wbuf.extend_from_slice(rcpt.as_bytes());
            self.wbuf.extend_from_slice(b"DATA\r\n");
            let w = std::mem::take(&mut self.wbuf);
            let sent = self.send_bytes(&w);
            self.wbuf = w;
            sent.map_err(|e| io(e, true))?;
            let m = self.read_reply().map_err(|e| io(e, true))?;
            let r = self.read_reply().map_err(|e| io(e, false))?;
            let d = self.read_reply().map_err(|e| io(e, false))?;
            (m, Some(r), Some(d))
        } else {
            let m = self.command(mail).map_err(|e| io(e, true))?;
            if !m.positive() {
                (m, None, None)
            } else {
                let r = self.command(rcpt).map_err(|e| io(e, false))?;
                if !r.positive() {
                    (m, Some(r), None)
                } else {
                    let d = self.command("DATA\r\n").map_err(|e| io(e, false))?;
                    (m, Some(r), Some(d))
                }
            }
        };
        let data_ok = data_r.as_ref().is_some_and(|d| d.code == 354);
        let refused = [Some(&mail_r), rcpt_r.as_ref()].into_iter().flatten().find(|r| !r.positive());
        if let Some(refused) = refused {
            if data_ok {
                // A server that accepted DATA without a recipient: end the empty message.
                self.send_bytes(b".\r\n").map_err(|e| io(e, false))?;
                self.read_reply().map_err(|e| io(e, false))?;
            }
            return Err(Failure::Envelope(Reply { code: refused.code, text: refused.text.clone() }));
        }
        let data_r = data_r.expect("DATA answered when the envelope was accepted");
        if !data_ok {
            return Err(Failure::Envelope(data_r));
        }
        self.write_stuffed(raw).map_err(|e| io(e, false))?;
        let record_end = record_end.take().expect("one message end per transaction");
        record_end().map_err(Failure::Journal)?;
        let end: &[u8] = if raw.ends_with(b"\r\n") || raw.is_empty() { b".\r\n" } else { b"\r\n.\r\n" };
        self.send_bytes(end).map_err(|error| Failure::Io { error, after_end: true, before_data: false })?;
        let r = self.read_reply().map_err(|error| Failure::Io { error, after_end: true, before_data: false })?;
        if !r.positive() {
            return Err(Failure::End(r));
        }
        Ok(())
    }

    /// Writes the message dot-stuffed (RFC 5321 4.5.2): a line that starts with `.` gets
    /// another. Without such a line (the usual case) the message is written as it is.
    fn write_stuffed(&mut self, raw: &[u8]) -> io::Result<()> {
        let needs = raw.first() == Some(&b'.') || memchr::memmem::find(raw, b"\n.").is_some();
        if !needs {
            return self.send_bytes(raw);
        }
        let mut w = std::mem::take(&mut self.wbuf);
        w.clear();
        stuff(raw, &mut w);
        let sent = self.send_bytes(&w);
        self.wbuf = w;
        sent
    }
}

/// Appends `raw` dot-stuffed to `out`.
fn stuff(raw: &[u8], out: &mut Vec<u8>) {
    out.reserve(raw.len() + 64);
    if raw.first() == Some(&b'.') {
        out.push(b'.');
    }
    let mut start = 0;
    for pos in memchr::memmem::find_iter(raw, b"\n.") {
        out.extend_from_slice(&raw[start..=pos]);
        out.push(b'.');
        start = pos + 1;
    }
    out.extend_from_slice(&raw[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_doubles_each_leading_dot_and_nothing_else() {
        let mut out = Vec::new();
        stuff(b".a\r\nb.c\r\n.\r\n..d\r\n.", &mut out);
        assert_eq!(out, b"..a\r\nb.c\r\n..\r\n...d\r\n..");
        let mut out = Vec::new();
        stuff(b"no dots at line starts\r\n", &mut out);
        assert_eq!(out, b"no dots at line starts\r\n");
    }

    /// A server that takes one session: it refuses the end of the first message (451)
    /// and accepts the second; returns the messages as it received them.
    fn one_session_server() -> (u16, std::thread::JoinHandle<Vec<String>>) {
        use std::io::BufRead;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut out = stream.try_clone().unwrap();
            let mut lines = io::BufReader::new(stream);
            out.write_all(b"220 test ESMTP\r\n").unwrap();
            let mut messages = Vec::new();
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap() > 0 {
                let reply: &[u8] = match line.trim_end() {
                    l if l.starts_with("EHLO") => b"250-test\r\n250 PIPELINING\r\n",
                    "DATA" => {
                        out.write_all(b"354 go on\r\n").unwrap();
                        let mut message = String::new();
                        loop {
                            let mut l = String::new();
                            lines.read_line(&mut l).unwrap();
                            if l == ".\r\n" {
                                break;
                            }
                            message.push_str(&l);
                        }
                        messages.push(message);
                        if messages.len() == 1 { b"451 4.3.0 not now\r\n" } else { b"250 2.0.0 queued\r\n" }
                    }
                    "QUIT" => break,
                    _ => b"250 2.1.0 ok\r\n",
                };
                out.write_all(reply).unwrap();
                line.clear();
                if messages.len() == 2 {
                    break;
                }
            }
            messages
        });
        (port, server)
    }

    #[test]
    fn a_refused_end_is_journalled_as_not_delivered_and_the_session_goes_on() {
        let (port, server) = one_session_server();
        let settings = crate::config::Settings::from_toml(crate::config::tests::MINIMAL, Vec::new()).unwrap();
        let mut smtp = settings.smtp.clone();
        smtp.host = "127.0.0.1".into();
        smtp.port = port;
        let client = Client::new(&smtp, 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let journal = SentJournal::open(&dir.path().join("x.db")).unwrap();
        let mut session = None;
        let raw = b"Subject: x\r\n\r\n.punt\r\nregel\r\n";
        let first = client.send_recorded(&mut session, &journal, 7, "a@example.org", "b@example.org", raw);
        assert!(matches!(&first, Outcome::Transient(e) if e.contains("451")), "{first:?}");
        assert!(journal.ids().unwrap().is_empty(), "recorded, then refused: not delivered");
        let second = client.send_recorded(&mut session, &journal, 8, "a@example.org", "b@example.org", raw);
        assert!(matches!(second, Outcome::Sent), "{second:?}");
        assert_eq!(journal.ids().unwrap(), std::collections::HashSet::from([8]));
        let received = server.join().unwrap();
        assert_eq!(received, ["Subject: x\r\n\r\n..punt\r\nregel\r\n"; 2], "dot-stuffed, once each");
    }

    #[test]
    fn extensions_are_read_from_the_ehlo_lines() {
        let r = Reply { code: 250, text: "mail.example\nPIPELINING\nAUTH=LOGIN\n8BITMIME".into() };
        assert!(has(&r, "pipelining") && has(&r, "AUTH") && has(&r, "8BITMIME") && !has(&r, "STARTTLS"));
        assert!(!has(&Reply { code: 250, text: "PIPELINING".into() }, "PIPELINING"), "the first line is the name");
    }
}
