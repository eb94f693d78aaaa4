//! The head of an HTTP/1.1 request: request line and headers, parsed from bytes a client
//! sent, with limits on what it may send. Plain Rust with no dependencies, so the fuzz target
//! `http_request` compiles this file as it is.

/// Largest request head accepted, in bytes.
pub(crate) const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// Most headers accepted.
const HEADERS_MAX: usize = 64;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestHead {
    pub(crate) method: String,
    /// The path without its query string.
    pub(crate) path: String,
    /// Header names in lower case, with their values trimmed.
    pub(crate) headers: Vec<(String, String)>,
}

impl RequestHead {
    /// The first value of header `name` (lower case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Why a head was refused, as the status to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// 400: not an HTTP/1.x request head.
    Malformed,
    /// 431: too large, or too many headers.
    TooLarge,
}

/// Where the head in `bytes` ends (after its blank line), if it has arrived.
pub(crate) fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Parses a complete head (up to and including its blank line).
pub(crate) fn parse_head(head: &[u8]) -> Result<RequestHead, HeadError> {
    if head.len() > REQUEST_HEAD_BYTES_MAX {
        return Err(HeadError::TooLarge);
    }
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed)?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().ok_or(HeadError::Malformed)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(HeadError::Malformed);
    };
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token(method) || !target.starts_with('/') || !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Err(HeadError::Malformed);
    }
    let path = target.split('?').next().unwrap_or(target).to_owned();
    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        if headers.len() == HEADERS_MAX {
            return Err(HeadError::TooLarge);
        }
        let (name, value) = line.split_once(':').ok_or(HeadError::Malformed)?;
        if !token(name) {
            return Err(HeadError::Malformed);
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(RequestHead { method: method.to_owned(), path, headers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_parses_into_method_path_and_headers() {
        let head = b"GET /health?verbose=1 HTTP/1.1\r\nHost: x\r\nAuthorization:  Basic YTpi \r\n\r\n";
        assert_eq!(head_end(head), Some(head.len()));
        let parsed = parse_head(head).expect("valid");
        assert_eq!((parsed.method.as_str(), parsed.path.as_str()), ("GET", "/health"));
        assert_eq!(parsed.header("authorization"), Some("Basic YTpi"));
    }

    #[test]
    fn bad_heads_are_refused_with_their_status() {
        for head in [
            &b"GET /health\r\n\r\n"[..],
            b"GET health HTTP/1.1\r\n\r\n",
            b"G\xffT / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
        ] {
            assert_eq!(parse_head(head), Err(HeadError::Malformed), "{}", String::from_utf8_lossy(head));
        }
        let many: String = (0..100).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(parse_head(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()), Err(HeadError::TooLarge));
    }
}
