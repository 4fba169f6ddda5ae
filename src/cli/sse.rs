//! Reading a daemon's SSE answer as `(event, data)` pairs, for the
//! commands that show a stream as it arrives (`call`, `drill`).

use futures::StreamExt;
use serde_json::Value;

/// The events of an SSE response, one at a time.
pub struct Events {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl Events {
    /// Events of `response`'s body.
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            body: response.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    /// The next event with JSON data: its name and data; `None` at the end.
    pub async fn next(&mut self) -> Option<anyhow::Result<(String, Value)>> {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                if let (event, Some(data)) = parse_frame(&frame) {
                    return Some(Ok((event, data)));
                }
            }
            match self.body.next().await? {
                Ok(chunk) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                Err(e) => return Some(Err(e.into())),
            }
        }
    }
}

/// Event name and JSON data of one SSE frame.
fn parse_frame(frame: &str) -> (String, Option<Value>) {
    let mut event = String::from("message");
    let mut data = String::new();
    for line in frame.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    (event, serde_json::from_str(&data).ok())
}
