//! Config loading for every binary: read the YAML file (if any) -> apply
//! environment overrides -> apply CLI overrides -> deserialize with serde
//! defaults -> validate. Any failure is one [`ConfigError`] that names the
//! field (`storage.gc.high_watermark: ...`).
//!
//! Overrides address fields by dotted path (`storage.data_dir`). Environment
//! variables map onto the same paths: with prefix `DFDAEMON`,
//! `DFDAEMON__STORAGE__DATA_DIR=/x` sets `storage.data_dir`. Values are read
//! as YAML scalars, so `8`, `true` and `64MiB` all mean what they look like.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_yaml_ng::{Mapping, Value};

/// A config value that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Dotted path of the field.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// A config that can check itself after loading.
pub trait Validate {
    /// Checks cross-field rules and ranges; the error names the field.
    fn validate(&self) -> Result<(), FieldError>;
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or a field has the wrong type or name.
    #[error("config {origin}: {field}: {message}")]
    Parse {
        /// Where the config came from.
        origin: String,
        /// Dotted path of the bad field (`.` for the document).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A field failed validation.
    #[error("config: {0}")]
    Invalid(#[from] FieldError),
}

/// Loads a config of type `T`.
///
/// `env` is the process environment (passed in so tests never mutate it);
/// only variables starting with `<env_prefix>__` are read. `overrides` are
/// `(dotted.path, value)` pairs from CLI flags, applied last.
pub fn load<T, E>(path: Option<&Path>, env_prefix: &str, env: E, overrides: &[(&str, String)]) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Validate,
    E: IntoIterator<Item = (String, String)>,
{
    let origin = path.map_or_else(|| "defaults".to_string(), |p| p.display().to_string());
    let mut doc = match path {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.to_path_buf(), source })?;
            if text.trim().is_empty() {
                Value::Mapping(Mapping::new())
            } else {
                serde_yaml_ng::from_str::<Value>(&text).map_err(|e| ConfigError::Parse {
                    origin: origin.clone(),
                    field: ".".into(),
                    message: e.to_string(),
                })?
            }
        }
        None => Value::Mapping(Mapping::new()),
    };
    if doc.is_null() {
        doc = Value::Mapping(Mapping::new());
    }
    let env_marker = format!("{env_prefix}__");
    let mut env_overrides: Vec<(String, String)> = env
        .into_iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(&env_marker)
                .map(|rest| (rest.split("__").map(str::to_ascii_lowercase).collect::<Vec<_>>().join("."), v))
        })
        .collect();
    env_overrides.sort();
    for (field, value) in
        env_overrides.iter().map(|(f, v)| (f.as_str(), v)).chain(overrides.iter().map(|(f, v)| (*f, v)))
    {
        set_path(&mut doc, field, parse_scalar(value)).map_err(|message| ConfigError::Parse {
            origin: origin.clone(),
            field: field.to_string(),
            message,
        })?;
    }
    let config: T = serde_path_to_error::deserialize(doc).map_err(|e| {
        let field = e.path().to_string();
        ConfigError::Parse { origin, field, message: e.into_inner().to_string() }
    })?;
    config.validate()?;
    Ok(config)
}

/// An override value: numbers and booleans as such, `[a, b]` as a list,
/// anything else as a string.
fn parse_scalar(raw: &str) -> Value {
    match serde_yaml_ng::from_str::<Value>(raw) {
        Ok(v @ (Value::Bool(_) | Value::Number(_))) => v,
        Ok(v @ Value::Sequence(_)) if raw.trim_start().starts_with('[') => v,
        _ => Value::String(raw.to_string()),
    }
}

fn set_path(doc: &mut Value, dotted: &str, value: Value) -> Result<(), String> {
    let mut cur = doc;
    let parts: Vec<&str> = dotted.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            return Err("empty path segment".into());
        }
        let map = match cur {
            Value::Mapping(m) => m,
            Value::Null => {
                *cur = Value::Mapping(Mapping::new());
                match cur {
                    Value::Mapping(m) => m,
                    _ => unreachable!("just set to a mapping"),
                }
            }
            _ => return Err(format!("{} is not a section", parts[..i].join("."))),
        };
        let key = Value::String((*part).to_string());
        if i + 1 == parts.len() {
            map.insert(key, value);
            return Ok(());
        }
        cur = map.entry(key).or_insert(Value::Mapping(Mapping::new()));
    }
    Ok(())
}

/// [`load`] for a binary's `main`: on error prints `<binary>: <error>` and
/// exits with status 2 (bad configuration).
pub fn load_or_exit<T>(binary: &str, path: Option<&Path>, env_prefix: &str, overrides: &[(&str, String)]) -> T
where
    T: DeserializeOwned + Validate,
{
    match load(path, env_prefix, std::env::vars(), overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{binary}: {e}");
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        port: u16,
        name: String,
    }
    impl Default for Inner {
        fn default() -> Self {
            Self { port: 4000, name: "x".into() }
        }
    }
    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Cfg {
        inner: Inner,
        size: crate::units::ByteSize,
        list: Vec<String>,
    }
    impl Validate for Cfg {
        fn validate(&self) -> Result<(), FieldError> {
            if self.inner.port == 1 {
                return Err(FieldError::new("inner.port", "must not be 1"));
            }
            Ok(())
        }
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn defaults_file_env_and_flags_layer_in_order() {
        let f = write("inner:\n  port: 5000\nsize: 2MiB\n");
        let c: Cfg = load(Some(f.path()), "T", vec![], &[]).unwrap();
        assert_eq!((c.inner.port, c.inner.name.as_str(), c.size.0), (5000, "x", 2 << 20));
        let env = vec![("T__INNER__PORT".to_string(), "6000".to_string()), ("OTHER".into(), "1".into())];
        let c: Cfg = load(Some(f.path()), "T", env.clone(), &[]).unwrap();
        assert_eq!(c.inner.port, 6000);
        let c: Cfg = load(Some(f.path()), "T", env, &[("inner.port", "7000".into())]).unwrap();
        assert_eq!(c.inner.port, 7000);
        let c: Cfg = load(None, "T", vec![], &[]).unwrap();
        assert_eq!(c.inner.port, 4000);
        let env = vec![("T__LIST".to_string(), "[a:1, b:2]".to_string())];
        let c: Cfg = load(None, "T", env, &[]).unwrap();
        assert_eq!(c.list, vec!["a:1", "b:2"]);
    }

    #[test]
    fn errors_name_the_field() {
        let f = write("inner:\n  port: lots\n");
        let e = load::<Cfg, _>(Some(f.path()), "T", vec![], &[]).unwrap_err().to_string();
        assert!(e.contains("inner.port"), "{e}");
        let f = write("inner:\n  prot: 1\n");
        let e = load::<Cfg, _>(Some(f.path()), "T", vec![], &[]).unwrap_err().to_string();
        assert!(e.contains("prot"), "{e}");
        let e = load::<Cfg, _>(None, "T", vec![], &[("inner.port", "1".into())]).unwrap_err().to_string();
        assert_eq!(e, "config: inner.port: must not be 1");
        let e = load::<Cfg, _>(None, "T", vec![], &[("size", "huge".into())]).unwrap_err().to_string();
        assert!(e.contains("size") && e.contains("invalid size"), "{e}");
        let e = load::<Cfg, _>(Some(Path::new("/nonexistent/x.yaml")), "T", vec![], &[]).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/x.yaml"), "{e}");
        let f = write("inner: [1, 2\n");
        assert!(load::<Cfg, _>(Some(f.path()), "T", vec![], &[]).is_err());
    }
}
