//! The README and the pages in `docs/` show commands and config files; every
//! one of them runs here, so none goes stale.
//!
//! - A `toml` block is a config file (or part of one): `check-config` must
//!   accept it (variables it names are set to placeholders).
//! - A `sh` block runs in bash, `set -e`, in a scratch directory that sees
//!   the project's `config/`, `manifests/` and `scripts/`. `cargo run
//!   --release -- ARGS` runs the built binary; a line that starts the daemon
//!   (`cargo run --release`, `... -- serve ...`, `... -- --log-format ...`)
//!   starts one on an ephemeral loopback port and waits until it is ready;
//!   `localhost:3000` / `127.0.0.1:3000` is that daemon, or the one every
//!   block shares (the default config, with an admin token in
//!   `MCPVISOR_ADMIN_TOKEN`). The MCP Inspector is the pinned one of
//!   `tests/peers`. `cargo test` is this run; benchmarks and the scripts that
//!   take minutes (`cargo bench`, `scripts/*.sh`) are checked — the bench
//!   exists, the script parses — not run. An HTTP error status fails a
//!   `curl`.
//! - `text`, `json` and `rust` blocks are shown, not run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// One fenced block of a page.
struct Block {
    page: PathBuf,
    line: usize,
    lang: String,
    text: String,
}

impl Block {
    fn at(&self) -> String {
        format!("{}:{}", self.page.display(), self.line)
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The README and every page of `docs/`.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

fn blocks(page: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(page).expect("page");
    let mut out = Vec::new();
    let mut open: Option<(usize, String, String)> = None;
    for (n, line) in text.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(lang)) => open = Some((n + 1, lang.trim().to_owned(), String::new())),
            (Some(_), Some(_)) => {
                let (line, lang, text) = open.take().expect("open block");
                out.push(Block {
                    page: page.strip_prefix(root()).unwrap_or(page).to_owned(),
                    line,
                    lang,
                    text,
                });
            }
            (Some((_, _, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(
        open.is_none(),
        "{}: a block is never closed",
        page.display()
    );
    out
}

fn all_blocks() -> Vec<Block> {
    pages().iter().flat_map(|p| blocks(p)).collect()
}

#[test]
fn every_block_has_a_known_kind() {
    for b in all_blocks() {
        assert!(
            ["sh", "toml", "text", "json", "rust"].contains(&b.lang.as_str()),
            "{}: a block of kind `{}` (sh, toml, text, json or rust)",
            b.at(),
            b.lang
        );
    }
}

/// `${VAR}` and `${VAR:-default}` names in `text`.
fn variables(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after.find('}').unwrap_or(after.len());
        let name = after[..end].split(":-").next().unwrap_or_default();
        if !name.is_empty() {
            names.push(name.to_owned());
        }
        rest = &after[end..];
    }
    names
}

#[test]
fn config_blocks_check() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (i, b) in all_blocks()
        .into_iter()
        .filter(|b| b.lang == "toml")
        .enumerate()
    {
        let path = dir.path().join(format!("block{i}.toml"));
        std::fs::write(&path, &b.text).unwrap();
        let mut cmd = Command::new(common::BIN);
        cmd.arg("check-config").arg(&path);
        for var in variables(&b.text) {
            cmd.env(var, "placeholder-secret-0123456789");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}: check-config refuses it:\n{}{}",
            b.at(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} config blocks");
}

/// What the script runs before a block: the daemon starter and the
/// checks for what is not run.
const PRELUDE: &str = r#"
set -euo pipefail
daemons=()
finish() { for p in "${daemons[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done; true; }
trap finish EXIT
start_daemon() {
  local out; out=$(mktemp)
  MCPVISOR_LISTEN=127.0.0.1:0 mcpvisor "$@" > "$out" 2>>"$LOGS/daemon.log" &
  daemons+=($!)
  local pid=$!
  for _ in $(seq 1 1200); do
    grep -q "listening on http://" "$out" && break
    kill -0 "$pid" 2>/dev/null || { echo "the daemon exited:" >&2; tail -20 "$LOGS/daemon.log" >&2; return 1; }
    sleep 0.05
  done
  ADDR=$(sed -n 's|.*listening on http://||p' "$out" | head -1)
  export ADDR MCPVISOR_URL="http://$ADDR"
  for _ in $(seq 1 1200); do
    command curl -sf "http://$ADDR/readyz" > /dev/null && return 0
    sleep 0.05
  done
  echo "the daemon at $ADDR never got ready" >&2; return 1
}
# An HTTP error fails the block.
curl() { command curl --fail-with-body "$@"; }
check_bench() { grep -q "name = \"$1\"" "$ROOT/Cargo.toml" || { echo "no bench $1" >&2; return 1; }; }
check_script() { bash -n "$ROOT/$1"; }
"#;

/// A `sh` block as a script for the harness.
fn script(block: &Block, inspector: Option<&str>) -> Option<String> {
    let mut lines = Vec::new();
    for line in block.text.lines() {
        let trimmed = line.trim_start();
        // Leading `VAR=value` assignments stay with their command.
        let mut words = trimmed.split_whitespace().peekable();
        let mut env = String::new();
        while let Some(w) = words.peek() {
            if w.contains('=')
                && !w.starts_with('-')
                && w.split('=').next().is_some_and(|n| {
                    !n.is_empty()
                        && n.chars()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                })
            {
                env.push_str(w);
                env.push(' ');
                words.next();
            } else {
                break;
            }
        }
        let command: Vec<&str> = words.collect();
        let joined = command.join(" ");
        // A trailing `# comment` (outside quotes, which these lines have
        // none of when it matters) and a trailing `&` say nothing here.
        let uncommented = match joined.find(" #") {
            Some(i) if !joined[..i].contains(['\'', '"']) => &joined[..i],
            _ => joined.as_str(),
        };
        let bare = uncommented.trim_end().trim_end_matches('&').trim_end();
        let rewritten = if bare == "cargo run --release" {
            format!("{env}start_daemon")
        } else if let Some(args) = bare.strip_prefix("cargo run --release -- ") {
            let first = args.split_whitespace().next().unwrap_or_default();
            if first == "serve" || first.starts_with('-') {
                format!("{env}start_daemon {args}")
            } else {
                format!("{env}mcpvisor {args}")
            }
        } else if bare == "cargo test" || bare.starts_with("cargo test ") {
            ": cargo test: this run".to_owned()
        } else if let Some(rest) = bare.strip_prefix("cargo bench --bench ") {
            let name = rest.split_whitespace().next().unwrap_or_default();
            format!("check_bench {name}")
        } else if bare.starts_with("scripts/") {
            let script = bare.split_whitespace().next().unwrap_or_default();
            format!("check_script {script}")
        } else if let Some(args) = bare.strip_prefix("npx @modelcontextprotocol/inspector") {
            let inspector = inspector?;
            format!("{env}{inspector}{args}")
        } else {
            line.to_owned()
        };
        let rewritten = rewritten
            .replace("localhost:3000", "$ADDR")
            .replace("127.0.0.1:3000", "$ADDR");
        // A line that continues onto the next keeps its backslash.
        lines.push(rewritten);
    }
    Some(format!("{PRELUDE}\n{}\n", lines.join("\n")))
}

/// The pinned MCP Inspector's command line, if the peers are installed.
fn inspector() -> Option<String> {
    let peers = root().join("tests/peers");
    let node = peers.join("node_modules/.bin/node");
    let launcher =
        peers.join("node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js");
    if node.exists() && launcher.exists() {
        return Some(format!(
            "HOME=$(mktemp -d) {} {}",
            node.display(),
            launcher.display()
        ));
    }
    assert!(
        std::env::var_os("MCPVISOR_REQUIRE_PEERS").is_none(),
        "the MCP Inspector (tests/peers) is needed: scripts/peers.sh"
    );
    None
}

/// Runs every `sh` block of `pages` against a shared default daemon.
fn run_blocks(pages: &[PathBuf]) {
    let admin = "docs-admin-token-0123456789";
    let shared = common::Daemon::start_default_with(&[("MCPVISOR_ADMIN_TOKEN", admin)]);
    let bin_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(common::BIN, bin_dir.path().join("mcpvisor")).unwrap();
    let inspector = inspector();
    let mut ran = 0;
    for b in pages
        .iter()
        .flat_map(|p| blocks(p))
        .filter(|b| b.lang == "sh")
    {
        let Some(script) = script(&b, inspector.as_deref()) else {
            eprintln!("{}: skipped (the MCP Inspector is not installed)", b.at());
            continue;
        };
        let work = tempfile::tempdir().unwrap();
        for dir in ["config", "manifests", "scripts"] {
            std::os::unix::fs::symlink(root().join(dir), work.path().join(dir)).unwrap();
        }
        let path = format!(
            "{}:{}",
            bin_dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(work.path())
            .env("PATH", path)
            .env("ROOT", root())
            .env("LOGS", work.path())
            .env("ADDR", shared.base.trim_start_matches("http://"))
            .env("MCPVISOR_URL", &shared.base)
            .env("MCPVISOR_ADMIN_TOKEN", admin)
            .env("MCPVISOR_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} failed ({}):\n--- script\n{}\n--- stdout\n{}\n--- stderr\n{}\n--- daemon log\n{}",
            b.at(),
            out.status,
            b.text,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(work.path().join("daemon.log")).unwrap_or_default()
        );
        ran += 1;
    }
    eprintln!("{ran} command blocks ran");
}

#[test]
fn the_readme_commands_run() {
    run_blocks(&[root().join("README.md")]);
}

#[test]
fn the_docs_commands_run() {
    let pages: Vec<PathBuf> = pages()
        .into_iter()
        .filter(|p| !p.ends_with("README.md"))
        .collect();
    run_blocks(&pages);
}
