//! A small SMTP client (RFC 5321): one message per connection, plain TCP,
//! no authentication or TLS, which is what a local relay or a development
//! mail catcher speaks.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A reply line longer than this ends the conversation: RFC 5321 allows
/// 512 bytes per reply line; a peer sending more is not an SMTP server.
const REPLY_LINE_BYTES_MAX: usize = 512;
/// Lines of one multi-line reply (EHLO lists extensions, about a dozen).
const REPLY_LINES_MAX: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("cannot connect to {address}: {source}")]
    Connect { address: String, source: std::io::Error },
    #[error("SMTP connection failed during {stage}: {source}")]
    Io { stage: &'static str, source: std::io::Error },
    #[error("SMTP server answered {code} to {stage}: {text}")]
    Reply { stage: &'static str, code: u16, text: String },
    #[error("SMTP server sent an unreadable reply during {stage}")]
    Malformed { stage: &'static str },
}

impl SmtpError {
    /// Whether trying again later may succeed: network trouble, a closed
    /// connection, or a 4xx reply ("transient negative completion").
    /// A 5xx reply is the server refusing this message for good.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Io { .. } | Self::Malformed { .. } => true,
            Self::Reply { code, .. } => *code < 500,
        }
    }
}

/// One message to send. Header values must not contain CR or LF (the
/// callers build them from validated fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub from: String,
    pub to: String,
    pub subject: String,
    /// A stable id, so the receiving side can recognise a repeat.
    pub message_id: String,
    pub body: String,
}

/// Sends messages to one SMTP server.
#[derive(Debug, Clone)]
pub struct SmtpClient {
    address: String,
    helo_domain: String,
    timeout: Duration,
}

impl SmtpClient {
    /// `timeout` bounds the connect and each read and write, so a hung
    /// server is a transient failure instead of a stuck mail component.
    pub fn new(address: impl Into<String>, helo_domain: impl Into<String>, timeout: Duration) -> Self {
        Self { address: address.into(), helo_domain: helo_domain.into(), timeout }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sends `email`: greeting, EHLO (HELO if refused), MAIL FROM, RCPT TO,
    /// DATA, QUIT. Succeeds once the server accepted the data; a failing
    /// QUIT after that does not matter.
    pub fn send(&self, email: &Email) -> Result<(), SmtpError> {
        let mut session = self.connect()?;
        session.expect("greeting", None, &[220])?;
        let ehlo = format!("EHLO {}", self.helo_domain);
        if let Err(error) = session.expect("EHLO", Some(&ehlo), &[250]) {
            // An old server without ESMTP answers 5xx to EHLO.
            if !matches!(error, SmtpError::Reply { code: 500..=504, .. }) {
                return Err(error);
            }
            session.expect("HELO", Some(&format!("HELO {}", self.helo_domain)), &[250])?;
        }
        session.expect("MAIL FROM", Some(&format!("MAIL FROM:<{}>", email.from)), &[250])?;
        session.expect("RCPT TO", Some(&format!("RCPT TO:<{}>", email.to)), &[250, 251])?;
        session.expect("DATA", Some("DATA"), &[354])?;
        session.expect("message", Some(&message_text(email)), &[250])?;
        let _ = session.expect("QUIT", Some("QUIT"), &[221]);
        Ok(())
    }

    fn connect(&self) -> Result<Session, SmtpError> {
        let connect_error = |source| SmtpError::Connect { address: self.address.clone(), source };
        let addresses = self.address.to_socket_addrs().map_err(connect_error)?;
        let mut last_error = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        for address in addresses {
            match TcpStream::connect_timeout(&address, self.timeout) {
                Ok(stream) => {
                    let io = |source| SmtpError::Io { stage: "connect", source };
                    stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
                    stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
                    // Each command waits for its reply: nothing to coalesce.
                    stream.set_nodelay(true).map_err(io)?;
                    let reader = BufReader::new(stream.try_clone().map_err(io)?);
                    return Ok(Session { writer: stream, reader });
                }
                Err(error) => last_error = error,
            }
        }
        Err(connect_error(last_error))
    }
}

/// The message as sent after DATA: headers, body with CRLF line ends and
/// dot-stuffing (RFC 5321 4.5.2), and the terminating `.` line.
fn message_text(email: &Email) -> String {
    let mut text = format!(
        "From: <{}>\r\nTo: <{}>\r\nSubject: {}\r\nMessage-ID: <{}>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
        email.from, email.to, email.subject, email.message_id
    );
    for line in email.body.lines() {
        if line.starts_with('.') {
            text.push('.');
        }
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push('.');
    text
}

struct Session {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Session {
    /// Sends `line` (if any) and reads the reply, which must have one of `codes`.
    fn expect(&mut self, stage: &'static str, line: Option<&str>, codes: &[u16]) -> Result<(), SmtpError> {
        if let Some(line) = line {
            let io = |source| SmtpError::Io { stage, source };
            // One write per command: split writes meet Nagle and delayed ACKs.
            self.writer.write_all(format!("{line}\r\n").as_bytes()).map_err(io)?;
        }
        let (code, text) = self.read_reply(stage)?;
        if codes.contains(&code) {
            Ok(())
        } else {
            Err(SmtpError::Reply { stage, code, text })
        }
    }

    /// Reads one reply: lines `NNN-text` continue it, `NNN text` ends it.
    fn read_reply(&mut self, stage: &'static str) -> Result<(u16, String), SmtpError> {
        let mut text = String::new();
        for _ in 0..REPLY_LINES_MAX {
            let mut line = String::new();
            let read = (&mut self.reader)
                .take(REPLY_LINE_BYTES_MAX as u64 + 2)
                .read_line(&mut line)
                .map_err(|source| SmtpError::Io { stage, source })?;
            if read == 0 {
                let closed = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed");
                return Err(SmtpError::Io { stage, source: closed });
            }
            if !line.ends_with('\n') {
                return Err(SmtpError::Malformed { stage });
            }
            let line = line.trim_end_matches(['\r', '\n']);
            let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).ok_or(SmtpError::Malformed { stage })?;
            if !(200..600).contains(&code) {
                return Err(SmtpError::Malformed { stage });
            }
            text.push_str(line.get(4..).unwrap_or(""));
            match line.as_bytes().get(3) {
                Some(b'-') => text.push('\n'),
                None | Some(b' ') => return Ok((code, text)),
                Some(_) => return Err(SmtpError::Malformed { stage }),
            }
        }
        Err(SmtpError::Malformed { stage })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_dot_stuffed_with_crlf_line_ends() {
        let email = Email {
            from: "a@b.io".into(),
            to: "c@d.io".into(),
            subject: "Hi".into(),
            message_id: "1@b.io".into(),
            body: "line one\n.starts with a dot\n".into(),
        };
        let text = message_text(&email);
        assert!(text.ends_with("\r\n\r\nline one\r\n..starts with a dot\r\n."), "{text:?}");
        assert!(text.contains("Message-ID: <1@b.io>\r\n"));
    }

    #[test]
    fn only_4xx_and_network_failures_are_transient() {
        let reply = |code| SmtpError::Reply { stage: "RCPT TO", code, text: String::new() };
        assert!(reply(421).is_transient());
        assert!(reply(451).is_transient());
        assert!(!reply(550).is_transient());
        let closed = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed");
        assert!(SmtpError::Io { stage: "greeting", source: closed }.is_transient());
    }
}
