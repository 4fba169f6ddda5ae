//! Typed access to a tool's JSON arguments, `opt_fields`, and Asana-style offset pagination.
//!
//! Arguments arrive from language models as often as from programs, so the readers are strict about
//! shape but lenient where the real server is: `null` means "not given", booleans and integers may come
//! as strings (`"true"`, `"50"`), and gid lists may be an array or a comma-separated string. Anything
//! else of the wrong type is an `InvalidArgument` naming the field.

use serde_json::{Map, Value, json};

use super::model::parse_gid;
use super::{Gid, Result, invalid};

/// The largest page Asana serves, and the default page size.
pub(super) const MAX_PAGE: usize = 100;

pub(super) struct Args<'a> {
    map: &'a Map<String, Value>,
    /// Prepended to field names in errors, e.g. `data.` for `set_parent_for_task`'s nested object.
    prefix: &'static str,
}

impl<'a> Args<'a> {
    pub fn new(map: &'a Map<String, Value>) -> Self {
        Args { map, prefix: "" }
    }

    pub fn nested(map: &'a Map<String, Value>, prefix: &'static str) -> Self {
        Args { map, prefix }
    }

    pub fn field(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// Whether the key is present at all, even as `null` (which can mean "clear this").
    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// A required, non-empty string.
    pub fn str(&self, key: &str) -> Result<&'a str> {
        match self.opt_str(key)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            Some(_) => Err(invalid(self.field(key), "must not be empty")),
            None => Err(invalid(self.field(key), "is required")),
        }
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(invalid(self.field(key), "must be a string")),
        }
    }

    /// An optional reference (a gid or similar): blank strings count as absent.
    pub fn opt_ref(&self, key: &str) -> Result<Option<&'a str>> {
        Ok(self.opt_str(key)?.filter(|s| !s.trim().is_empty()))
    }

    /// An optional string that must be one of `allowed`.
    pub fn opt_enum(&self, key: &str, allowed: &[&str]) -> Result<Option<&'a str>> {
        match self.opt_str(key)? {
            Some(value) if !allowed.contains(&value) => Err(invalid(
                self.field(key),
                format!("must be one of {}", allowed.join(", ")),
            )),
            other => Ok(other),
        }
    }

    /// `None` when absent, `Some(None)` when explicitly `null` or `""` (clear), `Some(Some(s))` otherwise.
    pub fn nullable_str(&self, key: &str) -> Result<Option<Option<&'a str>>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) if s.trim().is_empty() || s == "null" => Ok(Some(None)),
            Some(Value::String(s)) => Ok(Some(Some(s))),
            Some(_) => Err(invalid(self.field(key), "must be a string or null")),
        }
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" => Ok(Some(true)),
            Some(Value::String(s)) if s == "false" => Ok(Some(false)),
            Some(_) => Err(invalid(self.field(key), "must be a boolean")),
        }
    }

    pub fn opt_int(&self, key: &str) -> Result<Option<i64>> {
        let bad = || invalid(self.field(key), "must be an integer");
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Ok(Some(i)),
                (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => Ok(Some(f as i64)),
                _ => Err(bad()),
            },
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    /// A list of strings: a JSON array of strings, or one comma-separated string. Blank items are dropped.
    pub fn opt_list(&self, key: &str) -> Result<Option<Vec<String>>> {
        let items = match self.get(key) {
            None => return Ok(None),
            Some(Value::String(s)) => s.split(',').map(str::to_string).collect::<Vec<_>>(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid(self.field(key), "must be an array of strings"))?,
            Some(_) => {
                return Err(invalid(
                    self.field(key),
                    "must be an array of strings or a comma-separated string",
                ));
            }
        };
        Ok(Some(
            items
                .iter()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        ))
    }

    /// A required list with at least one item.
    pub fn list(&self, key: &str) -> Result<Vec<String>> {
        match self.opt_list(key)? {
            Some(items) if !items.is_empty() => Ok(items),
            Some(_) => Err(invalid(self.field(key), "must not be empty")),
            None => Err(invalid(self.field(key), "is required")),
        }
    }

    /// A JSON object, or a string holding one (the real server `JSON.parse`s such strings).
    pub fn opt_object(&self, key: &str) -> Result<Option<Map<String, Value>>> {
        let parsed;
        let value = match self.get(key) {
            None => return Ok(None),
            Some(Value::String(s)) => {
                parsed = serde_json::from_str::<Value>(s)
                    .map_err(|e| invalid(self.field(key), format!("is not valid JSON: {e}")))?;
                &parsed
            }
            Some(v) => v,
        };
        match value {
            Value::Object(map) => Ok(Some(map.clone())),
            _ => Err(invalid(self.field(key), "must be an object")),
        }
    }

    /// Optional gid list (array or comma-separated); `me` stands for `me_gid`.
    pub fn opt_gids(&self, key: &str, me_gid: Gid) -> Result<Option<Vec<Gid>>> {
        let Some(items) = self.opt_list(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|item| match item.as_str() {
                "me" => Ok(me_gid),
                raw => parse_gid(raw)
                    .ok_or_else(|| invalid(self.field(key), format!("`{raw}` is not a gid"))),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    pub fn opt_fields(&self) -> Result<OptFields> {
        Ok(OptFields(self.opt_list("opt_fields")?))
    }

    /// `limit` (1..=100, default 100) and `offset` (a token from a previous page of the same list).
    pub fn page(&self, scope: Gid) -> Result<Page> {
        let limit = match self.opt_int("limit")? {
            None => MAX_PAGE,
            Some(n) if (1..=MAX_PAGE as i64).contains(&n) => n as usize,
            Some(_) => {
                return Err(invalid(
                    self.field("limit"),
                    format!("must be between 1 and {MAX_PAGE}"),
                ));
            }
        };
        let start = match self.opt_str("offset")? {
            None => 0,
            Some(token) => decode_offset(scope, token).ok_or_else(|| {
                invalid(
                    self.field("offset"),
                    "is not an offset token issued for this list",
                )
            })?,
        };
        Ok(Page {
            scope,
            start,
            limit,
        })
    }
}

/// The requested `opt_fields`, reduced to top-level names (`assignee.name` -> `assignee`).
pub(super) struct OptFields(Option<Vec<String>>);

impl OptFields {
    /// List items are compact; requested fields are copied in from the full record, which is only
    /// built when something was asked for. Full records (get/create/update) ignore `opt_fields`.
    pub fn shape(&self, compact: Value, full: impl FnOnce() -> Value) -> Value {
        let Some(fields) = &self.0 else {
            return compact;
        };
        let mut out = match compact {
            Value::Object(out) => out,
            other => return other,
        };
        let Value::Object(full) = full() else {
            return Value::Object(out);
        };
        for field in fields {
            let top = field.split('.').next().unwrap_or(field);
            if let Some(value) = full.get(top) {
                out.insert(top.to_string(), value.clone());
            }
        }
        Value::Object(out)
    }
}

/// One page of a list, Asana style.
pub(super) struct Page {
    scope: Gid,
    start: usize,
    limit: usize,
}

impl Page {
    /// Renders `items[start..start+limit]` as `{data, next_page}`; `path` is the REST path for `next_page`.
    pub fn render<T>(&self, items: &[T], path: &str, mut item: impl FnMut(&T) -> Value) -> Value {
        let start = self.start.min(items.len());
        let end = start.saturating_add(self.limit).min(items.len());
        let data: Vec<Value> = items[start..end].iter().map(&mut item).collect();
        let next_page = if end < items.len() {
            let offset = encode_offset(self.scope, end);
            json!({
                "offset": offset,
                "path": format!("{path}?limit={}&offset={offset}", self.limit),
                "uri": format!("https://app.asana.com/api/1.0{path}?limit={}&offset={offset}", self.limit),
            })
        } else {
            Value::Null
        };
        json!({ "data": data, "next_page": next_page })
    }
}

/// A check word binding a position to the list it was issued for, so a token cannot be replayed elsewhere.
fn offset_check(scope: Gid, index: usize) -> u32 {
    let mut z = scope ^ (index as u64).rotate_left(29) ^ 0x5eed_0ff5_e7c0_ffee;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) >> 32) as u32
}

fn encode_offset(scope: Gid, index: usize) -> String {
    format!("{:08x}{index:x}", offset_check(scope, index))
}

fn decode_offset(scope: Gid, token: &str) -> Option<usize> {
    let token = token.trim();
    if token.len() <= 8 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (check, index) = token.split_at(8);
    let check = u32::from_str_radix(check, 16).ok()?;
    let index = usize::from_str_radix(index, 16).ok()?;
    (offset_check(scope, index) == check).then_some(index)
}
