//! Config: the project config file, `graph-vcr.toml` in the working directory (or `--config
//! FILE`, or `GRAPH_VCR_CONFIG`).
//!
//! It holds the project's sanitizer rules (`[[sanitize]]` tables, see `sanitize::rules`) and
//! any flag, by its long name: at the top level for every command that has that flag, in a
//! `[record]`, `[replay]`, `[auto]`, `[audit]`, `[verify]`, `[cassette]` … table for one
//! command. A flag given on the command line or in its environment variable wins over the
//! file; the file wins over the default. Flags become command-line arguments inserted after
//! the command's name, so clap validates them exactly as if they had been typed, and an error
//! names the setting.
//!
//! ```toml
//! cassettes = "tests/cassettes"
//! [replay]
//! on-exhausted = "miss"
//! [[sanitize]]
//! field = "displayName"
//! pseudonymize = true
//! ```

use crate::sanitize::{RuleSpec, Rules};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// The file looked for in the working directory.
pub const FILE_NAME: &str = "graph-vcr.toml";
/// The environment variable naming another file.
pub const ENV: &str = "GRAPH_VCR_CONFIG";
/// The flag naming another file.
const FLAG: &str = "--config";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The project config file, read.
#[derive(Debug, Default)]
pub struct ProjectConfig {
    /// Where it was read from (`None`: there is none).
    pub path: Option<PathBuf>,
    settings: toml::Table,
    pub rules: Arc<Rules>,
}

impl ProjectConfig {
    /// The file `argv` names with `--config` (else `GRAPH_VCR_CONFIG`, else `graph-vcr.toml`
    /// if the working directory has one), read and checked.
    pub fn discover(argv: &[OsString]) -> Result<Self, ConfigError> {
        let named = flag_value(argv).or_else(|| std::env::var_os(ENV).filter(|v| !v.is_empty()));
        let path = match named {
            Some(p) => PathBuf::from(p),
            None if Path::new(FILE_NAME).is_file() => PathBuf::from(FILE_NAME),
            None => return Ok(Self::default()),
        };
        Self::read(&path)
    }

    /// Reads and checks one file.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let mut settings: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| invalid(e.to_string()))?;
        let rules = match settings.remove("sanitize") {
            None => Rules::default(),
            Some(v) => {
                let specs: Vec<RuleSpec> = v
                    .try_into()
                    .map_err(|e: toml::de::Error| invalid(format!("[[sanitize]]: {e}")))?;
                Rules::compile(&specs).map_err(invalid)?
            }
        };
        Ok(Self {
            path: Some(path.to_path_buf()),
            settings,
            rules: Arc::new(rules),
        })
    }

    /// `argv` with the file's flags for the command it runs inserted after the command's name
    /// (those not already given on the command line or in their environment variable).
    pub fn merge_args(
        &self,
        root: &clap::Command,
        argv: Vec<OsString>,
    ) -> Result<Vec<OsString>, ConfigError> {
        let Some(path) = &self.path else {
            return Ok(argv);
        };
        let invalid = |message: String| ConfigError::Invalid {
            path: path.clone(),
            message,
        };
        let (chain, insert_at) = command_chain(root, &argv);
        let Some(cmd) = chain.last() else {
            return Ok(argv);
        };
        let section = chain
            .get(1)
            .map(|c| c.get_name().to_string())
            .unwrap_or_default();
        let mut inserted = Vec::new();
        for (key, value) in &self.settings {
            if let toml::Value::Table(table) = value {
                if root.find_subcommand(key).is_none() {
                    return Err(invalid(format!("[{key}] is not a graph-vcr command")));
                }
                if *key == section {
                    // `[cassette]` serves every cassette tool: a flag only some of them have
                    // is left to those.
                    let table_cmd = chain.get(1).copied().unwrap_or(cmd);
                    for (k, v) in table {
                        match find_arg(cmd, k) {
                            Some(arg) => {
                                push_flag(&mut inserted, arg, k, v, &argv).map_err(&invalid)?
                            }
                            None if any_command_has(table_cmd, k) => {}
                            None => {
                                let why = unknown(table_cmd, k);
                                return Err(invalid(format!("[{key}] {k}: {why}")));
                            }
                        }
                    }
                }
                continue;
            }
            match find_arg(cmd, key) {
                // A table of the command sets it for that command: that wins.
                Some(arg) if !section_sets(&self.settings, &section, key) => {
                    push_flag(&mut inserted, arg, key, value, &argv).map_err(&invalid)?;
                }
                Some(_) => {}
                None if any_command_has(root, key) => {}
                None => return Err(invalid(format!("{key}: {}", unknown(root, key)))),
            }
        }
        let mut out = argv;
        out.splice(insert_at..insert_at, inserted);
        Ok(out)
    }
}

/// The value of `--config FILE` / `--config=FILE` on the command line (before any `--`).
fn flag_value(argv: &[OsString]) -> Option<OsString> {
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--" {
            return None;
        }
        if s == FLAG {
            return it.next().cloned();
        }
        if let Some(v) = s.strip_prefix("--config=") {
            return Some(OsString::from(v));
        }
    }
    None
}

/// The commands `argv` runs (root first) and where its own arguments begin.
fn command_chain<'c>(
    root: &'c clap::Command,
    argv: &[OsString],
) -> (Vec<&'c clap::Command>, usize) {
    let mut chain = vec![root];
    let mut at = 1;
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].to_string_lossy();
        if a == "--" {
            break;
        }
        if a.starts_with('-') {
            // A global option before the command: skip its value too.
            let takes_value = root.get_arguments().any(|g| {
                g.get_long().is_some_and(|l| a == format!("--{l}")) && g.get_action().takes_values()
            });
            i += if takes_value { 2 } else { 1 };
            continue;
        }
        let Some(cmd) = chain.last().and_then(|c| c.find_subcommand(a.as_ref())) else {
            break;
        };
        chain.push(cmd);
        i += 1;
        at = i;
        if !cmd.has_subcommands() {
            break;
        }
    }
    if chain.len() == 1 {
        chain.clear();
    }
    (chain, at)
}

/// The flag `key` (its long name; `_` may stand for `-`) of `cmd`.
fn find_arg<'c>(cmd: &'c clap::Command, key: &str) -> Option<&'c clap::Arg> {
    let long = key.replace('_', "-");
    cmd.get_arguments()
        .find(|a| a.get_long() == Some(long.as_str()) && !a.is_positional())
}

fn any_command_has(cmd: &clap::Command, key: &str) -> bool {
    find_arg(cmd, key).is_some() || cmd.get_subcommands().any(|c| any_command_has(c, key))
}

fn section_sets(settings: &toml::Table, section: &str, key: &str) -> bool {
    settings
        .get(section)
        .and_then(toml::Value::as_table)
        .is_some_and(|t| t.contains_key(key) || t.contains_key(&key.replace('_', "-")))
}

/// Why `key` is not a setting, with the closest flag.
fn unknown(cmd: &clap::Command, key: &str) -> String {
    let mut longs = Vec::new();
    collect_longs(cmd, &mut longs);
    if key.len() > 100 {
        return "not a graph-vcr flag".to_string();
    }
    let closest = longs
        .iter()
        .map(|l| (crate::cassette::edit_distance(key, l), l))
        .min();
    match closest {
        Some((d, l)) if d <= 3 => format!("not a graph-vcr flag (did you mean {l}?)"),
        _ => "not a graph-vcr flag".to_string(),
    }
}

fn collect_longs(cmd: &clap::Command, out: &mut Vec<String>) {
    out.extend(
        cmd.get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string)),
    );
    for c in cmd.get_subcommands() {
        collect_longs(c, out);
    }
}

/// `--key=value` (for each value of an array), or `--key` for a flag set `true`; nothing when
/// the command line or the environment already sets it.
fn push_flag(
    out: &mut Vec<OsString>,
    arg: &clap::Arg,
    key: &str,
    value: &toml::Value,
    argv: &[OsString],
) -> Result<(), String> {
    let Some(long) = arg.get_long() else {
        return Ok(());
    };
    let given = argv.iter().take_while(|a| *a != "--").any(|a| {
        let a = a.to_string_lossy();
        a == format!("--{long}") || a.starts_with(&format!("--{long}="))
    });
    let in_env = arg
        .get_env()
        .is_some_and(|e| std::env::var_os(e).is_some_and(|v| !v.is_empty()));
    if given || in_env {
        return Ok(());
    }
    if !arg.get_action().takes_values() {
        return match value {
            toml::Value::Boolean(true) => {
                out.push(format!("--{long}").into());
                Ok(())
            }
            toml::Value::Boolean(false) => Ok(()),
            _ => Err(format!("{key}: a switch; write {key} = true")),
        };
    }
    let values = match value {
        toml::Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    for v in values {
        let text = match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Datetime(d) => d.to_string(),
            _ => return Err(format!("{key}: a table is not a value")),
        };
        out.push(format!("--{long}={text}").into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> clap::Command {
        clap::Command::new("graph-vcr")
            .arg(clap::Arg::new("log").long("log").global(true))
            .subcommand(
                clap::Command::new("replay")
                    .arg(clap::Arg::new("cassettes").long("cassettes"))
                    .arg(clap::Arg::new("cassette").long("cassette"))
                    .arg(
                        clap::Arg::new("ignore-field")
                            .long("ignore-field")
                            .action(clap::ArgAction::Append),
                    )
                    .arg(
                        clap::Arg::new("no-memo")
                            .long("no-memo")
                            .action(clap::ArgAction::SetTrue),
                    ),
            )
            .subcommand(
                clap::Command::new("record").arg(clap::Arg::new("upstream").long("upstream")),
            )
            .subcommand(
                clap::Command::new("cassette")
                    .subcommand(
                        clap::Command::new("list")
                            .arg(clap::Arg::new("cassettes").long("cassettes")),
                    )
                    .subcommand(
                        clap::Command::new("import")
                            .arg(clap::Arg::new("cassettes").long("cassettes"))
                            .arg(
                                clap::Arg::new("replace")
                                    .long("replace")
                                    .action(clap::ArgAction::SetTrue),
                            ),
                    ),
            )
    }

    fn merged(toml_text: &str, argv: &[&str]) -> Result<Vec<String>, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, toml_text).map_err(|e| e.to_string())?;
        let config = ProjectConfig::read(&path).map_err(|e| e.to_string())?;
        let argv = argv.iter().map(OsString::from).collect();
        config
            .merge_args(&cli(), argv)
            .map(|v| v.iter().map(|a| a.to_string_lossy().into_owned()).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn flags_are_inserted_after_the_command_and_the_command_line_wins() {
        let text = "cassettes = \"c\"\nupstream = \"https://u\"\n[replay]\ncassette = \"x\"\nno_memo = true\nignore-field = [\"/a\", \"/b\"]\n";
        assert_eq!(
            merged(text, &["gv", "--log", "warn", "replay", "--cassette", "y"]),
            Ok([
                "gv",
                "--log",
                "warn",
                "replay",
                "--cassettes=c",
                "--ignore-field=/a",
                "--ignore-field=/b",
                "--no-memo",
                "--cassette",
                "y"
            ]
            .map(String::from)
            .to_vec())
        );
    }

    #[test]
    fn a_command_table_serves_its_subcommands() {
        let owned = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let text = "[cassette]\ncassettes = \"c\"\nreplace = true\n";
        // `list` takes the directory and leaves `replace` to `import`.
        assert_eq!(
            merged(text, &["gv", "cassette", "list"]),
            Ok(owned(&["gv", "cassette", "list", "--cassettes=c"]))
        );
        assert_eq!(
            merged(text, &["gv", "cassette", "import"]),
            Ok(owned(&[
                "gv",
                "cassette",
                "import",
                "--cassettes=c",
                "--replace"
            ]))
        );
        let e = merged("[cassette]\nrplace = 1\n", &["gv", "cassette", "list"])
            .err()
            .unwrap_or_default();
        assert!(e.contains("[cassette] rplace"), "{e}");
    }

    #[test]
    fn unknown_settings_are_named() {
        let e = merged("casettes = \"c\"\n", &["gv", "replay"])
            .err()
            .unwrap_or_default();
        assert!(
            e.contains("casettes: not a graph-vcr flag (did you mean cassettes?)"),
            "{e}"
        );
        let e = merged("[replay]\nupstream = \"u\"\n", &["gv", "replay"])
            .err()
            .unwrap_or_default();
        assert!(e.contains("[replay] upstream"), "{e}");
        let e = merged("[replya]\n", &["gv", "replay"])
            .err()
            .unwrap_or_default();
        assert!(e.contains("[replya] is not a graph-vcr command"), "{e}");
        let e = merged("[replay]\nno-memo = 1\n", &["gv", "replay"])
            .err()
            .unwrap_or_default();
        assert!(e.contains("no-memo: a switch"), "{e}");
    }
}
