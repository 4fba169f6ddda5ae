//! What one JSON-RPC message from an upstream is, read with a borrowed
//! peek at its top-level members: an answer to one of mcpvisor's own
//! requests (ids from [`ID_BASE`] up), a call's progress, a request of the
//! server's own, a notification, or something else. Both lines (stdio and
//! HTTP) decide by it.

use std::ops::Range;

use rmcp::model::ProgressToken;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::line::ID_BASE;

/// The parts of a JSON-RPC message the reader decides by.
#[derive(Deserialize)]
pub(super) struct Peek<'a> {
    #[serde(borrow, default)]
    pub(super) id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(super) method: Option<&'a str>,
    #[serde(borrow, default)]
    pub(super) params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(super) result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(super) error: Option<&'a RawValue>,
}

/// `notifications/progress` params.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Progress {
    pub(super) progress_token: ProgressToken,
    pub(super) progress: f64,
    #[serde(default)]
    pub(super) total: Option<f64>,
    #[serde(default)]
    pub(super) message: Option<String>,
}

/// What one message from the upstream is.
pub(super) enum Heard {
    /// The answer to one of the line's requests.
    Answer(u64, Range<usize>, bool),
    /// Progress of a call.
    Progress(Progress),
    /// Anything else: the server's own requests and notifications, and
    /// answers to rmcp's requests.
    Other,
}

/// Where `part` lies inside `whole` (it is a sub-slice of it).
fn range_in(whole: &[u8], part: &str) -> Range<usize> {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    start..start + part.len()
}

/// Classifies one message (a stdio line, or an SSE event's data).
pub(super) fn classify(line: &[u8]) -> Heard {
    let Ok(peek) = serde_json::from_slice::<Peek>(line) else {
        return Heard::Other;
    };
    match peek.method {
        None => {
            let id = peek.id.and_then(|id| id.get().parse::<u64>().ok());
            let Some(id) = id.filter(|id| *id >= ID_BASE) else {
                return Heard::Other;
            };
            match (peek.result, peek.error) {
                (Some(r), _) => Heard::Answer(id, range_in(line, r.get()), true),
                (None, Some(e)) => Heard::Answer(id, range_in(line, e.get()), false),
                (None, None) => Heard::Other,
            }
        }
        Some("notifications/progress") if peek.id.is_none() => peek
            .params
            .and_then(|p| serde_json::from_str::<Progress>(p.get()).ok())
            .map_or(Heard::Other, Heard::Progress),
        Some(_) => Heard::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_to_the_lines_ids_are_told_from_everything_else() {
        let ours = format!(r#"{{"jsonrpc":"2.0","id":{ID_BASE},"result":{{"content":[]}}}}"#);
        match classify(ours.as_bytes()) {
            Heard::Answer(id, body, true) => {
                assert_eq!(id, ID_BASE);
                assert_eq!(&ours[body], r#"{"content":[]}"#);
            }
            _ => panic!("not an answer"),
        }
        let error = format!(
            r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":-32602,"message":"no"}}}}"#,
            ID_BASE + 7
        );
        assert!(matches!(
            classify(error.as_bytes()),
            Heard::Answer(_, _, false)
        ));
        // rmcp's own ids, requests and notifications go to rmcp.
        for other in [
            r#"{"jsonrpc":"2.0","id":3,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":"x","result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#,
            "Starting server...",
            "[]",
        ] {
            assert!(
                matches!(classify(other.as_bytes()), Heard::Other),
                "{other}"
            );
        }
    }

    #[test]
    fn progress_is_read_with_its_token() {
        let line = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1099511627776,"progress":2,"total":5,"message":"two"}}"#;
        let Heard::Progress(p) = classify(line.as_bytes()) else {
            panic!("not progress");
        };
        assert_eq!(
            p.progress_token,
            ProgressToken(rmcp::model::NumberOrString::Number(ID_BASE as i64))
        );
        assert_eq!((p.progress, p.total), (2.0, Some(5.0)));
        assert_eq!(p.message.as_deref(), Some("two"));
    }
}
