//! Config loading for every binary: read the YAML file (if any) -> apply
//! environment overrides -> apply CLI overrides -> deserialize with serde
//! defaults -> validate. Any failure is one [`ConfigError`] that names the
//! field (`storage.gc.high_watermark: ...`).
//!
//! Overrides address fields by dotted path (`storage.data_dir`). Environment
//! variables map onto the same paths under the binary's own prefix (`MANAGER`,
//! `SCHEDULER`, `DFDAEMON`): `DFDAEMON__STORAGE__DATA_DIR=/x` sets
//! `storage.data_dir`. Values are read as YAML scalars, so `8`, `true` and
//! `64MiB` all mean what they look like.
//!
//! A field that was renamed keeps its old spelling readable
//! ([`Validate::RENAMED`]): in a file, an env var or a flag, the old dotted path
//! sets the new one. [`dotted_keys`] and [`documented_keys`] let each binary's
//! tests check that its docs list exactly the keys `--print-config` prints.

use std::collections::BTreeSet;
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

/// A config that can check itself after loading, and says which of its
/// fields were renamed or hold secrets.
pub trait Validate {
    /// Old spellings still read, `(old dotted path, new dotted path)`: a file,
    /// env var or flag naming the old path sets the new one (a section the old
    /// key leaves empty goes with it). A file with both is an error naming both.
    const RENAMED: &'static [(&'static str, &'static str)] = &[];

    /// Dotted paths of secrets: `--print-config` prints them as `null`.
    const SECRETS: &'static [&'static str] = &[];

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
    match path {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.to_path_buf(), source })?;
            load_text(&text, &p.display().to_string(), env_prefix, env, overrides)
        }
        None => load_text("", "defaults", env_prefix, env, overrides),
    }
}

/// [`load`] with the file's text given (`origin` names it in errors): the
/// same layers and checks, without the file system. Config text is parsed
/// here only, so the config fuzz target calls this.
pub fn load_text<T, E>(
    text: &str,
    origin: &str,
    env_prefix: &str,
    env: E,
    overrides: &[(&str, String)],
) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Validate,
    E: IntoIterator<Item = (String, String)>,
{
    let origin = origin.to_string();
    let mut doc = if text.trim().is_empty() {
        Value::Mapping(Mapping::new())
    } else {
        serde_yaml_ng::from_str::<Value>(text).map_err(|e| ConfigError::Parse {
            origin: origin.clone(),
            field: ".".into(),
            message: e.to_string(),
        })?
    };
    if doc.is_null() {
        doc = Value::Mapping(Mapping::new());
    }
    for (old, new) in T::RENAMED {
        let Some(value) = take_path(&mut doc, old) else { continue };
        if get_path(&doc, new).is_some() {
            return Err(ConfigError::Parse {
                origin,
                field: (*old).to_string(),
                message: format!("is the old name of {new}; set only {new}"),
            });
        }
        set_path(&mut doc, new, value).map_err(|message| ConfigError::Parse {
            origin: origin.clone(),
            field: (*new).to_string(),
            message,
        })?;
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
        let field = T::RENAMED.iter().find(|(old, _)| *old == field).map_or(field, |(_, new)| *new);
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

fn get_path<'a>(doc: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(doc, |cur, part| cur.as_mapping()?.get(part))
}

/// Removes the value at `dotted`, and the sections its removal leaves empty.
fn take_path(doc: &mut Value, dotted: &str) -> Option<Value> {
    let (parent, last) = match dotted.rsplit_once('.') {
        Some((parent, last)) => (Some(parent), last),
        None => (None, dotted),
    };
    let mut section = &mut *doc;
    for part in parent.into_iter().flat_map(|p| p.split('.')) {
        section = section.as_mapping_mut()?.get_mut(part)?;
    }
    let map = section.as_mapping_mut()?;
    let value = map.remove(last)?;
    if let Some(parent) = parent
        && map.is_empty()
    {
        take_path(doc, parent);
    }
    Some(value)
}

/// Deserializes a list of strings written either as a list or, as an old
/// single-valued key was, as one string (`addr: host:port`).
pub fn one_or_many<'de, D>(deserializer: D) -> Result<Vec<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(serde::Deserialize)]
    #[serde(untagged, expecting = "a string or a list of strings")]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match serde::Deserialize::deserialize(deserializer)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// The dotted paths of a YAML document's leaves (`log.level`); a list, an
/// empty section and `null` are leaves.
pub fn dotted_keys(doc: &Value) -> BTreeSet<String> {
    fn walk(prefix: &str, value: &Value, out: &mut BTreeSet<String>) {
        match value {
            Value::Mapping(m) if !m.is_empty() => {
                for (k, v) in m {
                    let key = match k {
                        Value::String(s) => s.clone(),
                        other => serde_yaml_ng::to_string(other).unwrap_or_default().trim().to_string(),
                    };
                    walk(&if prefix.is_empty() { key } else { format!("{prefix}.{key}") }, v, out);
                }
            }
            _ if !prefix.is_empty() => {
                out.insert(prefix.to_string());
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk("", doc, &mut out);
    out
}

/// Heading of the section of a binary's doc that lists every config key.
pub const REFERENCE_HEADING: &str = "## Config reference";

/// The keys a Markdown document lists in its config reference: the first
/// fenced `yaml` block after the [`REFERENCE_HEADING`] line, flattened with
/// [`dotted_keys`].
pub fn documented_keys(markdown: &str) -> Result<BTreeSet<String>, String> {
    let mut lines = markdown.lines().skip_while(|l| l.trim_end() != REFERENCE_HEADING);
    if lines.next().is_none() {
        return Err(format!("no {REFERENCE_HEADING:?} heading"));
    }
    let mut lines = lines.skip_while(|l| l.trim_end() != "```yaml");
    if lines.next().is_none() {
        return Err(format!("no ```yaml block after {REFERENCE_HEADING:?}"));
    }
    let block: Vec<&str> = lines.take_while(|l| l.trim_end() != "```").collect();
    let doc: Value =
        serde_yaml_ng::from_str(&block.join("\n")).map_err(|e| format!("the config reference is not YAML: {e}"))?;
    Ok(dotted_keys(&doc))
}

/// Compares the keys a binary printed (`--print-config` output) with those its
/// doc lists; the error names the keys missing from the doc and those the doc
/// has in excess.
pub fn check_documented(printed_yaml: &str, markdown: &str) -> Result<(), String> {
    let printed: Value = serde_yaml_ng::from_str(printed_yaml).map_err(|e| format!("printed config: {e}"))?;
    let printed = dotted_keys(&printed);
    let documented = documented_keys(markdown)?;
    let missing: Vec<&String> = printed.difference(&documented).collect();
    let extra: Vec<&String> = documented.difference(&printed).collect();
    if missing.is_empty() && extra.is_empty() {
        return Ok(());
    }
    Err(format!(
        "config reference differs from --print-config: missing from the doc {missing:?}; in the doc but not in the config {extra:?}"
    ))
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
        // The same from text, as the config fuzz target loads it.
        let e = load_text::<Cfg, _>("inner:\n  port: lots\n", "fuzz.yaml", "T", vec![], &[]).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Parse { origin, field, .. } if origin == "fuzz.yaml" && field == "inner.port"),
            "{e}"
        );
        let c: Cfg = load_text("size: 2MiB\n", "fuzz.yaml", "T", vec![], &[("inner.port", "7".into())]).unwrap();
        assert_eq!((c.size.0, c.inner.port), (2 << 20, 7));
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Section {
        #[serde(deserialize_with = "one_or_many")]
        addrs: Vec<String>,
        interval: u32,
    }
    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Renamed {
        m: Section,
        metrics_addr: String,
    }
    impl Validate for Renamed {
        const RENAMED: &'static [(&'static str, &'static str)] =
            &[("m.addr", "m.addrs"), ("m.old_interval", "m.interval"), ("metrics.addr", "metrics_addr")];
        fn validate(&self) -> Result<(), FieldError> {
            Ok(())
        }
    }

    #[test]
    fn old_spellings_set_the_new_fields_in_every_layer() {
        let f = write("m:\n  addr: a:1\n  old_interval: 3\nmetrics:\n  addr: x:2\n");
        let c: Renamed = load(Some(f.path()), "T", vec![], &[]).unwrap();
        assert_eq!((c.m.addrs, c.m.interval, c.metrics_addr.as_str()), (vec!["a:1".to_string()], 3, "x:2"));
        // A later layer's old spelling overrides an earlier layer's new one.
        let f = write("m:\n  addrs: [a:1, b:1]\n");
        let env = vec![("T__M__ADDR".to_string(), "c:1".to_string()), ("T__METRICS__ADDR".into(), "y:2".into())];
        let c: Renamed = load(Some(f.path()), "T", env, &[]).unwrap();
        assert_eq!((c.m.addrs, c.metrics_addr.as_str()), (vec!["c:1".to_string()], "y:2"));
        let c: Renamed = load(Some(f.path()), "T", vec![], &[("m.old_interval", "9".into())]).unwrap();
        assert_eq!((c.m.addrs.len(), c.m.interval), (2, 9));
        // Both spellings in one file: ambiguous.
        let f = write("m:\n  addr: a:1\n  addrs: [b:1]\n");
        let e = load::<Renamed, _>(Some(f.path()), "T", vec![], &[]).unwrap_err().to_string();
        assert!(e.contains("m.addr: is the old name of m.addrs"), "{e}");
        // An unrenamed unknown key in the old section is still refused.
        let f = write("metrics:\n  addr: x:2\n  port: 3\n");
        let e = load::<Renamed, _>(Some(f.path()), "T", vec![], &[]).unwrap_err().to_string();
        assert!(e.contains("metrics"), "{e}");
        let f = write("m:\n  addrs: 7\n");
        let e = load::<Renamed, _>(Some(f.path()), "T", vec![], &[]).unwrap_err().to_string();
        assert!(e.contains("m.addrs") && e.contains("a string or a list of strings"), "{e}");
    }

    #[test]
    fn documented_keys_match_printed_ones_or_name_the_difference() {
        let printed = "a: 1\nlog:\n  level: info\n  format: text\nlist: []\nempty: {}\nnone: null\n";
        let keys = dotted_keys(&serde_yaml_ng::from_str(printed).unwrap());
        let want = ["a", "empty", "list", "log.format", "log.level", "none"];
        assert_eq!(keys.iter().map(String::as_str).collect::<Vec<_>>(), want);
        let doc = |yaml: &str| {
            format!("# x\n\n```yaml\nnot: this\n```\n\n{REFERENCE_HEADING}\n\ntext\n\n```yaml\n{yaml}```\nafter: 1\n")
        };
        check_documented(
            printed,
            &doc("a: 1   # one\nlog: {level: info, format: text}\nlist: []\nempty: {}\nnone: null\n"),
        )
        .unwrap();
        let e =
            check_documented(printed, &doc("a: 1\nlog: {level: info, fmt: text}\nlist: []\nempty: {}\n")).unwrap_err();
        assert!(
            e.contains(r#"missing from the doc ["log.format", "none"]"#)
                && e.contains(r#"not in the config ["log.fmt"]"#),
            "{e}"
        );
        assert!(documented_keys("```yaml\na: 1\n```\n").unwrap_err().contains("heading"));
    }
}
