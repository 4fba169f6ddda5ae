//! Keeping credentials out of what mcpvisor shows: URLs lose their
//! userinfo and query values (`***`) wherever one is displayed — the
//! service table, `check-config`, logs and error messages.

/// `url` with its userinfo and query values replaced by `***`. Works on
/// the text, so templates such as `http://u:p@127.0.0.1:{port}/mcp` are
/// redacted too; text without `://` is returned unchanged.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let (head, rest) = url.split_at(scheme_end + 3);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut out = String::with_capacity(url.len());
    out.push_str(head);
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            out.push_str(if userinfo.contains(':') {
                "***:***"
            } else {
                "***"
            });
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let (path, fragment) = match tail.find('#') {
        Some(h) => tail.split_at(h),
        None => (tail, ""),
    };
    match path.split_once('?') {
        Some((before, query)) => {
            out.push_str(before);
            out.push('?');
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) => format!("{k}=***"),
                    None => pair.to_owned(),
                })
                .collect();
            out.push_str(&pairs.join("&"));
        }
        None => out.push_str(path),
    }
    out.push_str(fragment);
    out
}

/// `text` with every `http://` or `https://` URL in it redacted.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = find_url(rest) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '`' | '>' | ','))
            .unwrap_or(tail.len());
        out.push_str(&redact_url(&tail[..end]));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn find_url(text: &str) -> Option<usize> {
    match (text.find("http://"), text.find("https://")) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_and_query_values() {
        assert_eq!(
            redact_url("http://svc:hunter2@127.0.0.1:4251/mcp?key=abc&x=1"),
            "http://***:***@127.0.0.1:4251/mcp?key=***&x=***"
        );
        assert_eq!(
            redact_url("https://mcp.example.com/mcp"),
            "https://mcp.example.com/mcp"
        );
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(
            redact_url("http://u:p@127.0.0.1:{port}/mcp"),
            "http://***:***@127.0.0.1:{port}/mcp"
        );
    }

    #[test]
    fn text_is_scrubbed_of_every_url() {
        let msg = "error sending request for url (http://u:pw@h:1/mcp?token=t0ps3cret): refused";
        let s = scrub(msg);
        assert!(!s.contains("pw") && !s.contains("t0ps3cret"), "{s}");
        assert!(s.contains("http://***:***@h:1/mcp?token=***"), "{s}");
        assert_eq!(scrub("no urls here"), "no urls here");
    }
}
