//! `${VAR}` and `${VAR:-default}` substitution in config text, so secrets
//! stay in the environment. `$$` is a literal dollar sign.

/// A variable that is not set and has no default.
#[derive(Debug, thiserror::Error)]
#[error(
    "environment variable `{variable}` is not set (use ${{{variable}:-default}} for a default)"
)]
pub struct MissingVariable {
    /// The variable.
    pub variable: String,
    /// 1-based line where it is used.
    pub line: usize,
}

/// Expands every `${...}` in `text`, except on comment lines.
pub fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, MissingVariable> {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
        } else {
            expand_line(line, i + 1, env, &mut out)?;
        }
    }
    Ok(out)
}

fn expand_line(
    text: &str,
    line: usize,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
) -> Result<(), MissingVariable> {
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        let (before, after) = rest.split_at(pos);
        out.push_str(before);
        if let Some(tail) = after.strip_prefix("$$") {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        let Some(end) = body.find('}') else {
            out.push_str(after);
            rest = "";
            break;
        };
        let inner = &body[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match env(name)
            .filter(|v| !v.is_empty())
            .or(default.map(str::to_owned))
        {
            Some(v) => out.push_str(&v),
            None => {
                return Err(MissingVariable {
                    variable: name.to_owned(),
                    line,
                });
            }
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        (k == "A").then(|| "alpha".to_owned())
    }

    #[test]
    fn expands_defaults_and_escapes() {
        assert_eq!(
            expand("x=${A} y=${B:-beta} z=$$ w=$x", &env).unwrap(),
            "x=alpha y=beta z=$ w=$x"
        );
    }

    #[test]
    fn comments_are_left_alone() {
        assert_eq!(
            expand("# use ${X}\na=${A}", &env).unwrap(),
            "# use ${X}\na=alpha"
        );
    }

    #[test]
    fn missing_variable_names_line() {
        let e = expand("a\nb\nc=${B}", &env).unwrap_err();
        assert_eq!((e.variable.as_str(), e.line), ("B", 3));
    }
}
