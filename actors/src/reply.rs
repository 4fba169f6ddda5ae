//! A tool call's answer as it travels back to the caller.
//!
//! A result stays the JSON text the upstream wrote: it is read once, for
//! the few things the engine decides by (is it an error, does it ask for
//! the caller's input), and otherwise passed on as it came — to the
//! client, into the cache — with no typed model built and torn down on
//! the way. The typed view is there for the APIs that render a result's
//! parts.

use std::time::Duration;

use bytes::Bytes;
use rmcp::model::{CallToolResult, InputRequiredResult};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::{CallError, ErrorCategory};

/// A tool call's answer: its result, or the caller's input the upstream
/// needs first (2026-07-28, SEP-2322).
#[derive(Debug, Clone)]
pub enum CallReply {
    Complete(ToolResult),
    InputRequired(InputRequiredResult),
}

impl CallReply {
    /// Whether the tool reported an error (`isError`).
    pub fn is_error(&self) -> bool {
        matches!(self, Self::Complete(r) if r.is_error())
    }

    /// Reads an upstream's `tools/call` result text.
    pub fn from_upstream(json: Bytes) -> Result<Self, CallError> {
        // (A derived reading would take an array for an object.)
        if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(unexpected("not an object"));
        }
        let shape: Shape = serde_json::from_slice(&json).map_err(|e| unreadable(&e))?;
        if shape.result_type == Some("input_required") {
            return serde_json::from_slice(&json)
                .map(Self::InputRequired)
                .map_err(|e| unreadable(&e));
        }
        if shape.result_type.is_some_and(|t| t != "complete") {
            return Err(unexpected(&format!(
                "resultType {}",
                shape.result_type.unwrap_or_default()
            )));
        }
        if shape.content.is_some() {
            let is_error = shape.is_error == Some(true);
            let has_result_type = shape.result_type.is_some();
            return Ok(Self::Complete(ToolResult {
                json,
                is_error,
                has_result_type,
            }));
        }
        // Without `content`, the typed reading decides what it is (and
        // writes it out again with an empty `content`); a bare `{}` is a
        // tool with no output.
        match serde_json::from_slice::<CallToolResult>(&json) {
            Ok(r) => Ok(Self::Complete(ToolResult::from_typed(&r))),
            Err(_) if is_bare(&json) => Ok(Self::Complete(ToolResult::from_typed(
                &CallToolResult::success(Vec::new()),
            ))),
            Err(e) => Err(unexpected(&e.to_string())),
        }
    }
}

/// A completed call.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    /// The upstream's answer (a result, which may itself be a tool error,
    /// or a request for the caller's input).
    pub result: CallReply,
    /// The service that produced it.
    pub service: String,
    /// Attempts it took (1 = no failover).
    pub attempts: u32,
    /// Wall time from routing to result.
    pub elapsed: Duration,
    /// Whether a second replica was asked because the first lingered.
    pub hedged: bool,
    /// Served from the result cache (no upstream call).
    pub cached: bool,
    /// Shared with an identical call that was already in flight.
    pub coalesced: bool,
}

/// The top-level members of a result the engine decides by.
#[derive(Deserialize)]
struct Shape<'a> {
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(rename = "isError", default)]
    is_error: Option<bool>,
    #[serde(rename = "resultType", borrow, default)]
    result_type: Option<&'a str>,
}

/// An object with nothing in it but `_meta`.
fn is_bare(json: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Map<String, Value>>(json)
        .is_ok_and(|m| m.keys().all(|k| k == "_meta"))
}

fn unreadable(e: &serde_json::Error) -> CallError {
    CallError::new(
        ErrorCategory::Protocol,
        format!("unreadable reply to tools/call: {e}"),
    )
    .maybe_sent()
}

fn unexpected(what: &str) -> CallError {
    CallError::new(
        ErrorCategory::Protocol,
        format!("unexpected reply to tools/call: {what}"),
    )
    .maybe_sent()
}

/// A tool's result as JSON text, with what the engine needs of it read
/// once. Cheap to clone (the text is shared).
#[derive(Debug, Clone)]
pub struct ToolResult {
    json: Bytes,
    is_error: bool,
    /// It carries a `resultType` (2026-07-28), which older clients must
    /// not see.
    has_result_type: bool,
}

impl ToolResult {
    /// The text of a typed result.
    pub fn from_typed(result: &CallToolResult) -> Self {
        let json = serde_json::to_vec(result).unwrap_or_else(|_| b"{\"content\":[]}".to_vec());
        Self {
            json: Bytes::from(json),
            is_error: result.is_error == Some(true),
            has_result_type: result.result_type.is_some(),
        }
    }

    /// Whether the tool reported an error (`isError`).
    pub fn is_error(&self) -> bool {
        self.is_error
    }

    /// Whether it carries a `resultType`.
    pub fn has_result_type(&self) -> bool {
        self.has_result_type
    }

    /// The result as JSON text.
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.json.len()
    }

    /// Whether the text is empty (never, for a result read from an upstream).
    pub fn is_empty(&self) -> bool {
        self.json.is_empty()
    }

    /// The typed reading, for APIs that render a result's parts.
    pub fn typed(&self) -> CallToolResult {
        serde_json::from_slice(&self.json).unwrap_or_default()
    }

    /// The result as a JSON value.
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or_else(|_| Value::Object(Default::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<CallReply, CallError> {
        CallReply::from_upstream(Bytes::copy_from_slice(text.as_bytes()))
    }

    #[test]
    fn a_result_is_kept_as_written() {
        let text = r#"{"content":[{"type":"text","text":"hi"}],"isError":true,"extra":{"a":1}}"#;
        let Ok(CallReply::Complete(r)) = read(text) else {
            panic!("not complete");
        };
        assert!(r.is_error());
        assert!(!r.has_result_type());
        assert_eq!(r.json(), text.as_bytes());
        assert_eq!(r.typed().content.len(), 1);
    }

    #[test]
    fn results_without_content_are_made_whole() {
        let Ok(CallReply::Complete(r)) = read(r#"{"structuredContent":{"n":1}}"#) else {
            panic!("not complete");
        };
        assert_eq!(r.value()["content"], serde_json::json!([]));
        assert_eq!(r.value()["structuredContent"]["n"], 1);
        let Ok(CallReply::Complete(r)) = read("{}") else {
            panic!("not complete");
        };
        assert!(!r.is_error());
        assert_eq!(r.value()["content"], serde_json::json!([]));
    }

    #[test]
    fn input_required_and_strangers_are_told_apart() {
        let asked = read(r#"{"resultType":"input_required","requestState":"s"}"#);
        assert!(matches!(asked, Ok(CallReply::InputRequired(_))));
        let complete = read(r#"{"resultType":"complete","content":[]}"#);
        assert!(matches!(complete, Ok(CallReply::Complete(r)) if r.has_result_type()));
        for bad in [r#"{"tools":[]}"#, r#"{"resultType":"later"}"#, "[1]", "3"] {
            let e = read(bad).err().unwrap_or_else(|| panic!("{bad} accepted"));
            assert_eq!(e.category, ErrorCategory::Protocol, "{bad}");
        }
    }
}
