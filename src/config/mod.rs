//! Configuration: the TOML file plus `GATEHOUSE_*` overrides, validated once at load into
//! typed values; every problem is reported at once with its key path.
//! Parts: `raw` (the file as written), `env` (the overlay), `validate` (raw -> `types`, filling in
//! `defaults`), `duration` (the `30s` syntax), `pem` (certificate and key files, read at load
//! and again by what is built from them), `reload` (which keys are fixed at start).

mod defaults;
mod duration;
mod env;
pub mod pem;
mod raw;
mod redirect_host;
mod reload;
mod types;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

pub use duration::parse as parse_duration;
use raw::RawConfig;
pub use redirect_host::RedirectHost;
pub use reload::fixed_changes;
pub use types::*;

/// Every problem found in a config, each with the key it concerns.
#[derive(Debug)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(f, "{n} problem{} in the configuration:", if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            writeln!(f, "  {}: {}", p.key, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn one(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { problems: vec![Problem { key: key.into(), message: message.into() }] }
    }
}

impl Config {
    /// Reads `path`, applies the process's `GATEHOUSE_*` variables and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::from_toml(&Self::read(path)?, std::env::vars())
    }

    /// The config file's text, for [`Config::from_toml`] (a reload digests what it parses).
    pub fn read(path: &Path) -> Result<String, ConfigError> {
        std::fs::read_to_string(path)
            .map_err(|e| ConfigError::one(path.display().to_string(), format!("cannot read: {e}")))
    }

    /// Parses TOML text with the given environment overlay (tests pass their own map).
    pub fn from_toml(text: &str, vars: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let mut table: toml::Table =
            text.parse().map_err(|e: toml::de::Error| ConfigError::one("(file)", toml_message(&e)))?;
        env::overlay(&mut table, vars).map_err(|list| ConfigError {
            problems: list.into_iter().map(|(key, message)| Problem { key, message }).collect(),
        })?;

        let mut unknown = Vec::new();
        let raw: RawConfig = {
            let mut track = |path: serde_ignored::Path<'_>| unknown.push(key_of(&path));
            let de = serde_ignored::Deserializer::new(toml::Value::Table(table), &mut track);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let key = e.path().to_string();
                ConfigError::one(if key == "." { "(file)".into() } else { key }, e.inner().message().trim().to_string())
            })?
        };
        validate::validate(raw, unknown).map_err(|problems| ConfigError { problems })
    }
}

/// An ignored key written the way problems name keys (`upstream.tls.x`, `routes[0].x`):
/// serde_ignored's own form adds a `?` segment for every optional table and none for indexes.
fn key_of(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", key_of(parent)),
        Path::Map { parent, key } => match key_of(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => key_of(parent),
    }
}

fn toml_message(e: &toml::de::Error) -> String {
    e.message().trim().to_string()
}

/// A secret file's bytes without the trailing newline editors add.
pub fn trim_secret(bytes: &[u8]) -> &[u8] {
    let mut end = bytes.len();
    while end > 0 && matches!(bytes[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &bytes[..end]
}

/// Map kept for `check-config` output: section -> number of entries.
pub fn summary(config: &Config) -> BTreeMap<&'static str, usize> {
    BTreeMap::from([
        ("issuers", config.issuers.len() + usize::from(config.tokens.is_some())),
        ("routes", config.routes.len()),
        ("identity headers", config.headers.reserved.len()),
    ])
}
