//! `fermyon:spin/variables@2.0.0`: the component's variables, resolved at start
//! from spin.toml and `SPIN_VARIABLE_*`.

use crate::bindings::fermyon::spin::variables;
use crate::state::RequestState;

/// Spin's rule for a variable name: lower-case ASCII letters, digits and `_`.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl variables::Host for RequestState {
    fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        if !is_valid_name(&name) {
            return Ok(Err(variables::Error::InvalidName(name)));
        }
        Ok(self
            .services
            .variables
            .get(&name)
            .cloned()
            .ok_or(variables::Error::Undefined(name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_spins_rule() {
        assert!(is_valid_name("pg_url"));
        assert!(is_valid_name("relay2"));
        for bad in ["", "PG_URL", "pg-url", "pg url", "é"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }
}
