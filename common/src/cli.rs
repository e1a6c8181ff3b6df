//! The flags every service binary shares, and the one path from flags to a
//! loaded config.
//!
//! Each binary flattens [`ServiceArgs`] into its own `clap` parser and lists
//! only its own flags as `(dotted.path, value)` pairs; [`ServiceArgs::load`]
//! adds the shared ones, loads the config ([`crate::config::load`]: file, then
//! `<PREFIX>__*` env, then flags), and with `--print-config` prints it as YAML
//! and exits.

use std::fmt::Display;
use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use crate::config::{Validate, load_or_exit};

/// Flags of every service binary (manager, scheduler, dfdaemon).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServiceArgs {
    /// Config file (YAML). Every field has a default; environment variables
    /// `<BINARY>__SECTION__FIELD` override it, flags override both.
    #[arg(short, long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log level or filter (log.level).
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Log format, text or json (log.format).
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Print the effective config as YAML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Once every listener is bound, write their addresses here as JSON
    /// (`{"pid": N, "addresses": {"grpc": "127.0.0.1:40123", ...}}`): bind port 0
    /// and read what the kernel picked.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

impl ServiceArgs {
    /// The overrides of a binary's own `flags` followed by the shared ones.
    pub fn overrides(
        &self,
        flags: impl IntoIterator<Item = (&'static str, Option<String>)>,
    ) -> Vec<(&'static str, String)> {
        overrides(
            flags.into_iter().chain([("log.level", self.log_level.clone()), ("log.format", self.log_format.clone())]),
        )
    }

    /// Loads the config with `flags` (the binary's own) and the shared flags
    /// applied; on a bad config prints `<binary>: <error>` and exits 2. With
    /// `--print-config`, prints it ([`print_config`]) and exits.
    pub fn load<T>(
        &self,
        binary: &str,
        env_prefix: &str,
        flags: impl IntoIterator<Item = (&'static str, Option<String>)>,
    ) -> T
    where
        T: DeserializeOwned + Serialize + Validate,
    {
        let config = load_or_exit(binary, self.config.as_deref(), env_prefix, &self.overrides(flags));
        if self.print_config {
            std::process::exit(print_config(binary, &config));
        }
        config
    }
}

/// `(dotted.path, value)` overrides from `(path, flag value)` pairs, in order;
/// flags not given (`None`) are left out.
pub fn overrides(flags: impl IntoIterator<Item = (&'static str, Option<String>)>) -> Vec<(&'static str, String)> {
    flags.into_iter().filter_map(|(path, value)| Some((path, value?))).collect()
}

/// A flag's value as an override value.
pub fn value<T: Display>(flag: Option<&T>) -> Option<String> {
    flag.map(ToString::to_string)
}

/// A repeatable flag as an override value: a YAML list of quoted strings (so
/// `[::1]:65003` stays one string), or `None` when the flag was not given.
pub fn list<T: Display>(items: &[T]) -> Option<String> {
    let quoted: Vec<String> = items.iter().map(|i| format!("{:?}", i.to_string())).collect();
    (!quoted.is_empty()).then(|| format!("[{}]", quoted.join(", ")))
}

/// Prints `config` as YAML on stdout, its secrets ([`Validate::SECRETS`]) as
/// `null` with a note on stderr naming those that are set. Returns the exit code.
pub fn print_config<T: Serialize + Validate>(binary: &str, config: &T) -> i32 {
    let (yaml, hidden) = match to_printable_yaml(config) {
        Ok(printed) => printed,
        Err(e) => {
            eprintln!("{binary}: cannot print config: {e}");
            return 1;
        }
    };
    print!("{yaml}");
    if !hidden.is_empty() {
        eprintln!("{binary}: {} set but not printed", hidden.join(", "));
    }
    0
}

/// `config` as YAML with its set secrets replaced by `null`, and the paths of those.
pub fn to_printable_yaml<T: Serialize + Validate>(config: &T) -> Result<(String, Vec<&'static str>), String> {
    let mut doc = serde_yaml_ng::to_value(config).map_err(|e| e.to_string())?;
    let mut hidden = Vec::new();
    for path in T::SECRETS {
        let mut cur = Some(&mut doc);
        for part in path.split('.') {
            cur = cur.and_then(|v| v.as_mapping_mut()).and_then(|m| m.get_mut(part));
        }
        if let Some(v) = cur
            && !v.is_null()
        {
            *v = Value::Null;
            hidden.push(*path);
        }
    }
    Ok((serde_yaml_ng::to_string(&doc).map_err(|e| e.to_string())?, hidden))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::FieldError;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        service: ServiceArgs,
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
        #[arg(long = "peer")]
        peers: Vec<String>,
    }

    #[test]
    fn shared_flags_parse_and_join_the_binarys_own_overrides() {
        let cli = Cli::parse_from([
            "x",
            "-c",
            "/etc/x.yaml",
            "--log-level",
            "debug",
            "--log-format",
            "json",
            "--print-config",
            "--ready-file",
            "/run/x.json",
            "--addr",
            "127.0.0.1:1",
            "--peer",
            "[::1]:2",
            "--peer",
            "a:3",
        ]);
        assert_eq!(cli.service.config.as_deref(), Some(std::path::Path::new("/etc/x.yaml")));
        assert!(cli.service.print_config);
        assert_eq!(cli.service.ready_file.as_deref(), Some(std::path::Path::new("/run/x.json")));
        let o =
            cli.service.overrides([("addr", value(cli.addr.as_ref())), ("unset", None), ("peers", list(&cli.peers))]);
        let want = [
            ("addr", "127.0.0.1:1"),
            ("peers", r#"["[::1]:2", "a:3"]"#),
            ("log.level", "debug"),
            ("log.format", "json"),
        ];
        assert_eq!(o.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(), want);
        let bare = Cli::parse_from(["x", "--config=/x.yaml"]);
        assert!(!bare.service.print_config);
        assert!(bare.service.overrides([("peers", list(&bare.peers))]).is_empty());
    }

    #[derive(Serialize)]
    struct WithSecret {
        name: &'static str,
        auth: Auth,
    }
    #[derive(Serialize)]
    struct Auth {
        password: Option<&'static str>,
        key: Option<&'static str>,
    }
    impl Validate for WithSecret {
        const SECRETS: &'static [&'static str] = &["auth.password", "auth.key"];
        fn validate(&self) -> Result<(), FieldError> {
            Ok(())
        }
    }

    #[test]
    fn secrets_are_printed_as_null_and_named() {
        let c = WithSecret { name: "n", auth: Auth { password: Some("hunter2hunter2"), key: None } };
        let (yaml, hidden) = to_printable_yaml(&c).unwrap();
        assert_eq!(yaml, "name: n\nauth:\n  password: null\n  key: null\n");
        assert_eq!(hidden, ["auth.password"]);
    }
}
