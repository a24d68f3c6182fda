//! The request-line check: a thin layer between the socket and hyper for the first request of
//! each connection.
//!
//! curl sends some characters of a URL unencoded (`"`, `<`, `>`, `` ` ``, `{`, `}`, `|`, `\`,
//! `^`), as a pasted IDM example like `_queryFilter=userName+eq+"bob"` does. hyper's URI
//! parser refuses them and answers an empty 400 before any service runs. This layer reads the
//! request line first: such characters in the target are percent-encoded (read leniently, as
//! IDM does), a line hyper could not take at all (control characters, no HTTP version, too
//! long) is answered here with a CREST JSON error and `Connection: close`. Everything read is
//! handed to hyper unchanged apart from those escapes, through [`Prefixed`].
//!
//! Only the first request of a connection passes here; a connection whose line needed escapes
//! is served without keep-alive, so a later request on it cannot reach hyper unchecked. curl
//! opens a connection per command, so its requests are always the first.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::error::ApiError;

/// The longest request line accepted (hyper's URI limit is a little under 64 KiB).
pub const MAX_LINE: usize = 60 * 1024;

/// What to do with a connection after its first line was read.
pub enum Verdict {
    /// Serve it; `rewritten` when the line needed escapes (then without keep-alive).
    Serve { stream: Prefixed, rewritten: bool },
    /// The client went away, or sent nothing before the timeout: drop it.
    Drop,
}

/// Reads the first request line of `stream` and decides; a refused line is answered here.
pub async fn check(mut stream: TcpStream) -> Verdict {
    let mut buf = Vec::with_capacity(1024);
    let line_end = loop {
        if let Some(end) = find_line_end(&buf) {
            break end;
        }
        if buf.len() > MAX_LINE {
            let e = ApiError::new(
                414,
                format!("The request line is longer than {MAX_LINE} bytes"),
            );
            refuse(stream, &e).await;
            return Verdict::Drop;
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                // Nothing complete arrived: let hyper see what did (it answers or closes).
                if buf.is_empty() {
                    return Verdict::Drop;
                }
                return Verdict::Serve {
                    stream: Prefixed::new(buf, stream),
                    rewritten: false,
                };
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    match rewrite_line(&buf[..=line_end]) {
        Ok(None) => Verdict::Serve {
            stream: Prefixed::new(buf, stream),
            rewritten: false,
        },
        Ok(Some(line)) => {
            let mut out = line;
            out.extend_from_slice(&buf[line_end + 1..]);
            Verdict::Serve {
                stream: Prefixed::new(out, stream),
                rewritten: true,
            }
        }
        Err(e) => {
            refuse(stream, &e).await;
            Verdict::Drop
        }
    }
}

/// The index of the `\n` ending the first line (leading empty lines, which RFC 9112 lets a
/// server ignore, are skipped by looking for the first non-empty line).
fn find_line_end(buf: &[u8]) -> Option<usize> {
    let start = buf.iter().position(|b| *b != b'\r' && *b != b'\n')?;
    buf[start..]
        .iter()
        .position(|b| *b == b'\n')
        .map(|i| start + i)
}

/// Bytes curl passes through that hyper's URI parser refuses somewhere in a target.
fn needs_escape(b: u8) -> bool {
    matches!(
        b,
        b'"' | b'<' | b'>' | b'`' | b'{' | b'}' | b'|' | b'\\' | b'^'
    )
}

/// `Ok(None)`: the line is fine as it is; `Ok(Some(line))`: the line with its target escaped;
/// `Err`: a line no one can serve.
fn rewrite_line(line: &[u8]) -> Result<Option<Vec<u8>>, ApiError> {
    let start = line
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(line.len());
    let text = &line[start..];
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    let bad = |m: &str| ApiError::bad_request(format!("Malformed request line: {m}"));
    // METHOD SP target SP HTTP/x.y; the version is after the last space, so a target with a
    // raw space is reported as such rather than misread.
    let first = text
        .iter()
        .position(|b| *b == b' ')
        .ok_or_else(|| bad("no request target"))?;
    let last = text
        .iter()
        .rposition(|b| *b == b' ')
        .ok_or_else(|| bad("no HTTP version"))?;
    if last == first || !text[last + 1..].starts_with(b"HTTP/") {
        return Err(bad("no HTTP version after the request target"));
    }
    let target = &text[first + 1..last];
    if target.contains(&b' ') {
        return Err(bad(
            "a space in the URL; encode it as %20 (or + in a query parameter)",
        ));
    }
    if let Some(b) = target.iter().find(|b| b.is_ascii_control()) {
        return Err(bad(&format!(
            "control character 0x{b:02x} in the URL; percent-encode it"
        )));
    }
    if !target.iter().copied().any(needs_escape) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(line.len() + 16);
    out.extend_from_slice(&line[..start]);
    out.extend_from_slice(&text[..=first]);
    for &b in target {
        if needs_escape(b) {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&text[last..]);
    out.extend_from_slice(b"\r\n");
    Ok(Some(out))
}

/// Writes `e` as a complete CREST JSON response and closes the connection.
async fn refuse(mut stream: TcpStream, e: &ApiError) {
    tracing::debug!(status = e.status, message = %e.message, "request line refused");
    let body = e.body().to_string();
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json; charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        e.status,
        e.reason(),
        body.len()
    );
    // The client may already be gone; there is no one left to tell.
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A stream that yields `prefix` first, then the socket. Writes go to the socket.
pub struct Prefixed {
    prefix: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl Prefixed {
    fn new(prefix: Vec<u8>, inner: TcpStream) -> Prefixed {
        Prefixed {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.pos);
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(line: &str) -> Result<Option<String>, u16> {
        rewrite_line(line.as_bytes())
            .map(|o| o.map(|v| String::from_utf8(v).expect("ascii")))
            .map_err(|e| e.status)
    }

    #[test]
    fn lines_are_escaped_refused_or_left_alone() {
        assert_eq!(rw("GET /openidm/info/ping HTTP/1.1\r\n"), Ok(None));
        assert_eq!(
            rw("GET /openidm/managed/user?_queryFilter=userName+eq+\"bob\" HTTP/1.1\r\n"),
            Ok(Some(
                "GET /openidm/managed/user?_queryFilter=userName+eq+%22bob%22 HTTP/1.1\r\n"
                    .to_string()
            ))
        );
        assert_eq!(
            rw("GET /x?a=<b>|{c}^`\\ HTTP/1.1\n"),
            Ok(Some(
                "GET /x?a=%3Cb%3E%7C%7Bc%7D%5E%60%5C HTTP/1.1\r\n".to_string()
            ))
        );
        assert_eq!(rw("GET /x?a=b c HTTP/1.1\r\n"), Err(400));
        assert_eq!(rw("GET /x?a=\x01 HTTP/1.1\r\n"), Err(400));
        assert_eq!(rw("GET\r\n"), Err(400));
        assert_eq!(rw("GET /x\r\n"), Err(400));
    }
}
