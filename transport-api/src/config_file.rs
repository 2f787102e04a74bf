//! Configuration files (feature `toml`): a [`TransportConfig`] read from TOML, with errors
//! that name the file and the key.
//!
//! The file holds either the structured form
//!
//! ```toml
//! backend = "shm"
//! address = "/run/app.sock"
//!
//! [options]
//! ring = 256
//! ```
//!
//! or one URL: `url = "shm:///run/app.sock?ring=256"`. Options are booleans, integers or
//! strings; which options exist is the backend's business, and it reports unknown ones when the
//! configuration is used ([`TransportError::in_file`] attaches the file to that report).

use crate::config::OptionValue;
use crate::{Result, TransportConfig, TransportError};
use std::collections::BTreeMap;
use std::path::Path;

/// Top-level keys of a configuration file.
const KEYS: &[&str] = &["backend", "address", "options", "url"];

impl TransportConfig {
    /// Reads a configuration from the TOML file at `path`.
    ///
    /// An unreadable file, a TOML syntax error, an unknown key or a value of the wrong type is a
    /// [`TransportError::ConfigFile`] naming the file and the key.
    ///
    /// # Examples
    ///
    /// ```
    /// use transport_api::{TransportConfig, TransportError};
    ///
    /// let path = std::env::temp_dir().join(format!("doc-{}.toml", std::process::id()));
    /// std::fs::write(&path, "backend = \"mem\"\naddress = \"orders\"\n[options]\ncapacity = 64\n")?;
    /// let config = TransportConfig::from_toml_file(&path)?;
    /// assert_eq!(config, "mem://orders?capacity=64".parse()?);
    ///
    /// std::fs::write(&path, "backend = \"mem\"\nadress = \"orders\"\n")?;
    /// match TransportConfig::from_toml_file(&path) {
    ///     Err(TransportError::ConfigFile { key, .. }) => assert_eq!(key.as_deref(), Some("adress")),
    ///     other => panic!("{other:?}"),
    /// }
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<TransportConfig> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|e| file_error(path, None, e.to_string()))?;
        Self::from_toml_str(&text).map_err(|e| e.in_file(path))
    }

    /// Parses a configuration from TOML text (see [`from_toml_file`](Self::from_toml_file)).
    /// Errors are [`TransportError::ConfigFile`] with an empty path.
    pub fn from_toml_str(text: &str) -> Result<TransportConfig> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| file_error(Path::new(""), None, e.to_string()))?;
        if let Some(key) = table.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(file_error(
                Path::new(""),
                Some(key),
                format!("is unknown; expected one of {}", KEYS.join(", ")),
            ));
        }
        let string = |key: &str| -> Result<Option<&str>> {
            match table.get(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(wrong_type(key, "a string", other)),
            }
        };
        if let Some(url) = string("url")? {
            if let Some(key) = ["backend", "address", "options"]
                .into_iter()
                .find(|k| table.contains_key(*k))
            {
                return Err(file_error(
                    Path::new(""),
                    Some(key),
                    "is given with `url`; give either `url` or `backend`/`address`/`options`"
                        .into(),
                ));
            }
            return url.parse().map_err(|e: TransportError| {
                file_error(Path::new(""), Some("url"), format!("is not usable: {e}"))
            });
        }
        let backend = string("backend")?.ok_or_else(|| {
            file_error(
                Path::new(""),
                Some("backend"),
                "is missing (give it, or `url`)".into(),
            )
        })?;
        let mut config = TransportConfig::new(backend, string("address")?.unwrap_or_default());
        match table.get("options") {
            None => {}
            Some(toml::Value::Table(options)) => config.options = options_of(options)?,
            Some(other) => return Err(wrong_type("options", "a table", other)),
        }
        if config.backend.is_empty() {
            return Err(file_error(
                Path::new(""),
                Some("backend"),
                "is empty".into(),
            ));
        }
        Ok(config)
    }
}

fn options_of(table: &toml::Table) -> Result<BTreeMap<String, OptionValue>> {
    table
        .iter()
        .map(|(k, v)| {
            let value = match v {
                toml::Value::Boolean(b) => OptionValue::Bool(*b),
                toml::Value::Integer(i) => OptionValue::Int(*i),
                toml::Value::String(s) => OptionValue::Str(s.clone()),
                other => {
                    return Err(wrong_type(
                        &format!("options.{k}"),
                        "a boolean, an integer or a string",
                        other,
                    ));
                }
            };
            Ok((k.clone(), value))
        })
        .collect()
}

fn wrong_type(key: &str, expected: &str, found: &toml::Value) -> TransportError {
    file_error(
        Path::new(""),
        Some(key),
        format!("must be {expected}, found {} `{found}`", found.type_str()),
    )
}

fn file_error(path: &Path, key: Option<&str>, reason: String) -> TransportError {
    TransportError::ConfigFile {
        path: path.to_path_buf(),
        key: key.map(str::to_string),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_and_reason(text: &str) -> (Option<String>, String) {
        match TransportConfig::from_toml_str(text) {
            Err(TransportError::ConfigFile { key, reason, .. }) => (key, reason),
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn structured_and_url_forms_agree() {
        let a = TransportConfig::from_toml_str(
            "backend = \"shm\"\naddress = \"/run/a.sock\"\n[options]\nring = 256\nfast = true\nclasses = \"256x8\"\n",
        )
        .unwrap();
        let b = TransportConfig::from_toml_str(
            "url = \"shm:///run/a.sock?ring=256&fast=true&classes=256x8\"",
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.get::<u32>("ring").unwrap(), Some(256));
    }

    #[test]
    fn errors_name_the_key() {
        let (key, why) = key_and_reason("backend = \"mem\"\nadress = \"x\"\n");
        assert_eq!(key.as_deref(), Some("adress"));
        assert!(why.contains("is unknown"), "{why}");
        let (key, why) = key_and_reason("backend = 3\n");
        assert_eq!(key.as_deref(), Some("backend"));
        assert!(
            why.contains("must be a string") && why.contains("integer `3`"),
            "{why}"
        );
        let (key, why) = key_and_reason("backend = \"mem\"\n[options]\ncapacity = 2.5\n");
        assert_eq!(key.as_deref(), Some("options.capacity"));
        assert!(why.contains("float `2.5`"), "{why}");
        let (key, _) = key_and_reason("backend = \"mem\"\noptions = 1\n");
        assert_eq!(key.as_deref(), Some("options"));
        let (key, _) = key_and_reason("address = \"x\"\n");
        assert_eq!(key.as_deref(), Some("backend"));
        let (key, _) = key_and_reason("url = \"mem://x\"\nbackend = \"mem\"\n");
        assert_eq!(key.as_deref(), Some("backend"));
        let (key, _) = key_and_reason("url = \"nourl\"\n");
        assert_eq!(key.as_deref(), Some("url"));
        let (key, why) = key_and_reason("backend = \"mem\"\naddress = \n");
        assert_eq!(key, None);
        assert!(why.contains("line 2"), "{why}");
    }
}
