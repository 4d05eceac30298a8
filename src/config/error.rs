//! [`ConfigError`]: every configuration problem, naming the file and the key path.

use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration problem, always naming where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read config: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {key}: {message}")]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
}

impl ConfigError {
    pub fn invalid(file: &Path, key: impl Into<String>, message: impl fmt::Display) -> Self {
        Self::Invalid {
            file: file.to_path_buf(),
            key: key.into(),
            message: message.to_string(),
        }
    }
}
