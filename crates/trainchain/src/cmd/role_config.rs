//! TOML configuration files for the coordinator and the miner (`--config FILE`).
//!
//! A role's config file spells its command-line flags as keys, with `_` for `-`:
//!
//! ```toml
//! # coordinator.toml
//! data_dir = "chain"
//! node_data_dir = "chain/node"
//! bind = "0.0.0.0:8080"
//! model = "cnn:8,16"
//! log_level = "info"
//! ```
//!
//! A string or number is the flag's value, `true` gives a switch, `false` leaves it out, and an
//! array repeats the flag once per element. A flag given on the command line overrides the same
//! key in the file, as for the node's config. Paths mean what they mean on the command line
//! (relative to the working directory). Each file is expanded into flags placed in front of
//! the user's own before clap parses them, so a config key is checked exactly like the flag it
//! stands for, and a key that is no flag of the role is refused with the list of keys.

use anyhow::{bail, Context, Result};
use clap::CommandFactory;
use std::ffi::OsString;
use std::io::Read;
use std::path::Path;

/// The subcommands that read a role config file this way (the node has its own typed one,
/// `node::config`, with keys that are no flags).
const ROLES: [&str; 3] = ["coordinator", "miner", "verifier"];

/// Largest config file read: a config is a few lines; this refuses to parse something else.
const CONFIG_BYTES_MAX: u64 = 64 * 1024;

/// Keys accepted in every role's file although they are not the role's own flags.
const GLOBAL_KEYS: [&str; 1] = ["log-level"];

/// The command line with the flags of a role's `--config FILE` inserted after the subcommand
/// (the command line unchanged when there is none).
pub fn expand<C: CommandFactory>(args: Vec<OsString>) -> Result<Vec<OsString>> {
    let at = subcommand_index(&args);
    let Some(role) = args.get(at).and_then(|a| a.to_str()) else {
        return Ok(args);
    };
    if !ROLES.contains(&role) {
        return Ok(args);
    }
    let rest = &args[at + 1..];
    let Some(path) = config_path(rest) else {
        return Ok(args);
    };
    let known = role_flags::<C>(role);
    let given: Vec<String> = args[1..]
        .iter()
        .filter_map(|a| a.to_str())
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| a.split('=').next().unwrap_or(a).to_owned())
        .collect();
    let flags = flags_from_file(Path::new(&path), &known, &given)
        .with_context(|| format!("config file {}", Path::new(&path).display()))?;
    let mut expanded = args[..=at].to_vec();
    expanded.extend(flags.into_iter().map(OsString::from));
    expanded.extend(rest.iter().cloned());
    Ok(expanded)
}

/// Where the subcommand is: after the program name and any global `--log-level` before it.
fn subcommand_index(args: &[OsString]) -> usize {
    let mut at = 1;
    while let Some(arg) = args.get(at).and_then(|a| a.to_str()) {
        if arg == "--log-level" {
            at += 2;
        } else if arg.starts_with("--log-level=") {
            at += 1;
        } else {
            break;
        }
    }
    at
}

/// The value of `--config PATH` or `--config=PATH`.
fn config_path(args: &[OsString]) -> Option<OsString> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--config" {
            return iter.next().cloned();
        }
        if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(path.into());
        }
    }
    None
}

/// The long flags of subcommand `role`, without `config` itself.
fn role_flags<C: CommandFactory>(role: &str) -> Vec<String> {
    let command = C::command();
    let Some(sub) = command.find_subcommand(role) else {
        return Vec::new();
    };
    sub.get_arguments()
        .filter_map(|arg| arg.get_long())
        .filter(|long| *long != "config" && *long != "help")
        .map(str::to_owned)
        .chain(GLOBAL_KEYS.iter().map(|k| (*k).to_owned()))
        .collect()
}

fn flags_from_file(path: &Path, known: &[String], given: &[String]) -> Result<Vec<String>> {
    let mut text = String::new();
    std::fs::File::open(path)
        .context("cannot open it")?
        .take(CONFIG_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .context("cannot read it as UTF-8 text")?;
    if text.len() as u64 > CONFIG_BYTES_MAX {
        bail!("it is over the {CONFIG_BYTES_MAX}-byte limit");
    }
    let table: toml::Table = text.parse().context("it is not TOML")?;
    let mut flags = Vec::new();
    for (key, value) in table {
        let flag = key.replace('_', "-");
        if !known.contains(&flag) {
            bail!(
                "unknown key {key:?}; the keys are this role's flags: {}",
                known
                    .iter()
                    .map(|k| k.replace('-', "_"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if given.contains(&flag) {
            continue; // The command line wins.
        }
        let values = match value {
            toml::Value::Array(items) => items,
            single => vec![single],
        };
        for value in values {
            match value {
                toml::Value::Boolean(true) => flags.push(format!("--{flag}")),
                toml::Value::Boolean(false) => {}
                toml::Value::String(text) => flags.push(format!("--{flag}={text}")),
                toml::Value::Integer(n) => flags.push(format!("--{flag}={n}")),
                toml::Value::Float(x) => flags.push(format!("--{flag}={x}")),
                other => bail!(
                    "key {key:?}: a {} is not a flag value (use a string, number, boolean or array)",
                    other.type_str()
                ),
            }
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<String> {
        ["data-dir", "bind", "hidden", "verbose", "log-level"]
            .map(String::from)
            .to_vec()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn keys_become_flags_and_the_command_line_wins() {
        let f = file(
            "data_dir = \"chain\"\nbind = \"0.0.0.0:8080\"\nhidden = [32, 16]\nverbose = true\n",
        );
        let flags = flags_from_file(f.path(), &known(), &["bind".into()]).unwrap();
        assert_eq!(
            flags,
            [
                "--data-dir=chain",
                "--hidden=32",
                "--hidden=16",
                "--verbose"
            ]
        );
    }

    #[test]
    fn an_unknown_key_or_a_table_is_refused_with_the_keys() {
        let f = file("data_dri = \"chain\"\n");
        let error = flags_from_file(f.path(), &known(), &[]).unwrap_err();
        let text = format!("{error:#}");
        assert!(text.contains("unknown key \"data_dri\""), "{text}");
        assert!(text.contains("data_dir, bind"), "{text}");
        let f = file("[bind]\nx = 1\n");
        let text = format!(
            "{:#}",
            flags_from_file(f.path(), &known(), &[]).unwrap_err()
        );
        assert!(text.contains("is not a flag value"), "{text}");
    }

    #[test]
    fn garbage_and_oversized_files_are_refused() {
        let f = file("this is = = not toml");
        let text = format!(
            "{:#}",
            flags_from_file(f.path(), &known(), &[]).unwrap_err()
        );
        assert!(text.contains("not TOML"), "{text}");
        let big = format!("data_dir = \"{}\"\n", "x".repeat(CONFIG_BYTES_MAX as usize));
        let f = file(&big);
        let text = format!(
            "{:#}",
            flags_from_file(f.path(), &known(), &[]).unwrap_err()
        );
        assert!(text.contains("byte limit"), "{text}");
    }

    #[test]
    fn the_subcommand_is_found_after_a_global_log_level() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            subcommand_index(&args(&["tc", "miner", "--config", "c"])),
            1
        );
        assert_eq!(
            subcommand_index(&args(&["tc", "--log-level", "debug", "miner"])),
            3
        );
        assert_eq!(
            subcommand_index(&args(&["tc", "--log-level=warn", "miner"])),
            2
        );
    }

    #[test]
    fn the_config_path_is_found_in_both_spellings() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            config_path(&args(&["--key", "k", "--config", "c.toml"])),
            Some("c.toml".into())
        );
        assert_eq!(
            config_path(&args(&["--config=c.toml"])),
            Some("c.toml".into())
        );
        assert_eq!(config_path(&args(&["--key", "k"])), None);
    }
}
