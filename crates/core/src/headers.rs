//! Request headers as the pure modules see them: lower-cased names, raw values.
//!
//! Verification must not guess when a header is repeated (an attacker can add a
//! second signature header), so lookups distinguish "absent", "one value" and
//! "several values".

use thiserror::Error;

/// Why a single header value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeaderError {
    #[error("header `{0}` is repeated")]
    Repeated(String),
    #[error("header `{0}` is not valid UTF-8")]
    NotUtf8(String),
}

/// The headers of one request, in arrival order.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    entries: Vec<(String, Vec<u8>)>,
}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one header; the name is lower-cased so lookups ignore case.
    pub fn push(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.entries.push((name.to_ascii_lowercase(), value.into()));
    }

    /// Every value of `name` (case-insensitive), in arrival order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The one value of `name`: `Ok(None)` when absent, an error when it is
    /// repeated or not UTF-8. Surrounding whitespace is trimmed.
    pub fn one(&self, name: &str) -> Result<Option<&str>, HeaderError> {
        let mut values = self
            .entries
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice());
        let Some(first) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(HeaderError::Repeated(name.to_ascii_lowercase()));
        }
        std::str::from_utf8(first)
            .map(|s| Some(s.trim()))
            .map_err(|_| HeaderError::NotUtf8(name.to_ascii_lowercase()))
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut headers = Headers::new();
        for (name, value) in iter {
            headers.push(name.as_ref(), value.as_ref());
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_ignores_case_and_trims() {
        let h: Headers = [("X-Signature", " abc ")].into_iter().collect();
        assert_eq!(h.one("x-signature"), Ok(Some("abc")));
        assert_eq!(h.one("x-timestamp"), Ok(None));
    }

    #[test]
    fn repeated_header_is_an_error_not_a_choice() {
        let h: Headers = [("x-signature", "a"), ("X-SIGNATURE", "b")]
            .into_iter()
            .collect();
        assert_eq!(
            h.one("x-signature"),
            Err(HeaderError::Repeated("x-signature".into()))
        );
        assert_eq!(h.all("x-signature").count(), 2);
    }

    #[test]
    fn non_utf8_value_is_reported() {
        let mut h = Headers::new();
        h.push("x-signature", vec![0xff, 0xfe]);
        assert_eq!(
            h.one("x-signature"),
            Err(HeaderError::NotUtf8("x-signature".into()))
        );
    }
}
