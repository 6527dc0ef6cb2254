//! [`JsonError`]: the JSON library's error behind a type of this crate, so
//! the public API names no third-party type and the library can change.

use std::fmt;

/// A record or a hook input could not be encoded or decoded as JSON.
///
/// Its message is the JSON library's (what was wrong and where);
/// [`line`](Self::line) and [`column`](Self::column) locate a decoding
/// error in its input.
pub struct JsonError(serde_json::Error);

impl JsonError {
    /// Wraps the JSON library's error (crate-private: the library is not
    /// part of the API).
    pub(crate) fn new(error: serde_json::Error) -> Self {
        Self(error)
    }

    /// The 1-based line of the input where decoding failed; 0 when the
    /// error is not about a position in the input (an encoding error).
    pub fn line(&self) -> usize {
        self.0.line()
    }

    /// The 1-based column (in bytes) of the input where decoding failed; 0
    /// when the error is not about a position in the input.
    pub fn column(&self) -> usize {
        self.0.column()
    }

    /// Whether the input ended before a complete value (a cut line).
    pub fn is_eof(&self) -> bool {
        self.0.is_eof()
    }
}

impl fmt::Debug for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for JsonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_message_and_the_position() {
        let inner = serde_json::from_slice::<serde_json::Value>(b"{\n  \"a\": tru }").unwrap_err();
        let message = inner.to_string();
        let e = JsonError::new(inner);
        assert_eq!(e.to_string(), message);
        assert_eq!((e.line(), e.column()), (2, 11));
        assert!(!e.is_eof());
        let cut =
            JsonError::new(serde_json::from_slice::<serde_json::Value>(b"{\"a\":").unwrap_err());
        assert!(cut.is_eof());
    }
}
