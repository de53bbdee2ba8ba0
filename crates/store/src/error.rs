use std::fmt;

/// What went wrong, for callers that map it to a protocol (NBD errno, ECS code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    OutOfBounds,
    Invalid,
    /// Metadata failed its checksum or does not parse: the store refuses I/O.
    Corrupt,
    Io,
}

/// An error with a kind, a sentence of context, and the I/O error behind it if any.
#[derive(Debug, thiserror::Error)]
pub struct StoreError {
    pub kind: ErrorKind,
    pub context: String,
    #[source]
    pub source: Option<std::io::Error>,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)
    }
}

impl StoreError {
    pub fn new(kind: ErrorKind, context: impl Into<String>) -> Self {
        StoreError { kind, context: context.into(), source: None }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError { kind: ErrorKind::Io, context: context.into(), source: Some(source) }
    }

    pub fn not_found(what: &str, name: &str) -> Self {
        Self::new(ErrorKind::NotFound, format!("{what} {name} does not exist"))
    }

    pub fn corrupt(context: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, context)
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;
