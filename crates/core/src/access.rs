//! Who may see which calls: the `dashboard_token` variable, read the same way
//! by the component (`/dashboard`, `/api/...`) and by the relay
//! (`vapi-edge-host relay`), so a token opens the same organisations in both.
//!
//! The value is a comma-separated list of entries:
//! - `<org_id>:<token>`: the token shows that organisation's calls only;
//! - `<token>` (no organisation in front): the token shows every organisation's
//!   calls, for the operator of a single-tenant deployment.
//!
//! Several entries may name one organisation (rotation), and one token may be
//! listed for several organisations. A token shorter than [`MIN_TOKEN_LEN`]
//! characters, or an organisation that is not a UUID, is a misconfiguration:
//! the routes answer 503 naming the entry's position, never the token.
//! Tokens live in a variable rather than a table so that the relay, which has
//! no database, applies exactly the same rules, and a variables provider
//! (Vault, Azure Key Vault) can hold them.

use crate::verify::{bearer_token, secret_matches};
use thiserror::Error;

/// Shortest token accepted: guessing one must be out of reach.
pub const MIN_TOKEN_LEN: usize = 16;

/// The organisations a presented token opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every organisation (an entry without one).
    All,
    /// These organisations only (never empty).
    Orgs(Vec<String>),
}

impl Scope {
    pub fn allows(&self, org_id: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Orgs(orgs) => orgs.iter().any(|o| o.eq_ignore_ascii_case(org_id)),
        }
    }

    /// The organisations to filter by; `None` for all.
    pub fn orgs(&self) -> Option<&[String]> {
        match self {
            Scope::All => None,
            Scope::Orgs(orgs) => Some(orgs),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AccessError {
    #[error("dashboard_token entry {0}: the token is shorter than {MIN_TOKEN_LEN} characters")]
    TokenTooShort(usize),
    #[error("dashboard_token entry {0}: the organisation before ':' is not a UUID")]
    NotAnOrg(usize),
    #[error("dashboard_token has no entry")]
    Empty,
}

/// The parsed `dashboard_token` variable.
#[derive(Debug, Clone)]
pub struct Tokens {
    entries: Vec<(Option<String>, String)>,
}

impl Tokens {
    pub fn parse(value: &str) -> Result<Tokens, AccessError> {
        let mut entries = Vec::new();
        for (index, entry) in value
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let position = index + 1;
            let (org, token) = match entry.split_once(':') {
                Some((org, token)) if looks_like_uuid(org.trim()) => {
                    (Some(org.trim().to_ascii_lowercase()), token.trim())
                }
                // Meant as an organisation (UUID-shaped), but mistyped.
                Some((org, _)) if org.trim().len() == 36 && org.matches('-').count() == 4 => {
                    return Err(AccessError::NotAnOrg(position))
                }
                _ => (None, entry),
            };
            if token.chars().count() < MIN_TOKEN_LEN {
                return Err(AccessError::TokenTooShort(position));
            }
            entries.push((org, token.to_string()));
        }
        if entries.is_empty() {
            return Err(AccessError::Empty);
        }
        Ok(Tokens { entries })
    }

    /// The scope of `presented`, or `None` when it matches no entry. Every
    /// entry is compared (constant time each), so the time taken does not
    /// say which entry matched.
    pub fn scope_of(&self, presented: &str) -> Option<Scope> {
        let mut all = false;
        let mut orgs: Vec<String> = Vec::new();
        for (org, token) in &self.entries {
            if secret_matches(token.as_bytes(), presented.as_bytes()) {
                match org {
                    None => all = true,
                    Some(org) if !orgs.contains(org) => orgs.push(org.clone()),
                    Some(_) => {}
                }
            }
        }
        if all {
            Some(Scope::All)
        } else if orgs.is_empty() {
            None
        } else {
            Some(Scope::Orgs(orgs))
        }
    }

    /// The scope of an `Authorization: Bearer <token>` header value.
    pub fn scope_of_bearer(&self, authorization: Option<&str>) -> Option<Scope> {
        self.scope_of(authorization.and_then(bearer_token)?)
    }
}

/// 8-4-4-4-12 hexadecimal digits.
pub fn looks_like_uuid(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORG_A: &str = "6f1c2a4e-8b3d-4f7a-9c2e-1d5b7e9a3c40";
    const ORG_B: &str = "0b5e3c1d-2a4f-4e6b-8c7d-9e1f2a3b4c5d";

    #[test]
    fn an_entry_with_an_organisation_opens_that_organisation_only() {
        let tokens = Tokens::parse(&format!(
            "{ORG_A}:token-of-org-a-0001, {ORG_B}:token-of-org-b-0002"
        ))
        .unwrap();
        let a = tokens.scope_of("token-of-org-a-0001").unwrap();
        assert!(a.allows(ORG_A));
        assert!(!a.allows(ORG_B));
        assert_eq!(a.orgs(), Some(&[ORG_A.to_string()][..]));
        assert_eq!(tokens.scope_of("token-of-org-a-0002"), None);
        assert_eq!(tokens.scope_of(""), None);
    }

    #[test]
    fn a_bare_token_opens_every_organisation() {
        let tokens =
            Tokens::parse(&format!("operator-token-0001,{ORG_A}:token-of-org-a-0001")).unwrap();
        assert_eq!(tokens.scope_of("operator-token-0001"), Some(Scope::All));
        assert!(Scope::All.allows(ORG_B));
        assert_eq!(Scope::All.orgs(), None);
    }

    #[test]
    fn one_token_listed_for_two_organisations_opens_both() {
        let tokens = Tokens::parse(&format!(
            "{ORG_A}:shared-token-000001,{ORG_B}:shared-token-000001"
        ))
        .unwrap();
        let scope = tokens.scope_of("shared-token-000001").unwrap();
        assert!(scope.allows(ORG_A) && scope.allows(ORG_B));
    }

    #[test]
    fn organisations_compare_without_case() {
        let upper = ORG_A.to_ascii_uppercase();
        let tokens = Tokens::parse(&format!("{upper}:token-of-org-a-0001")).unwrap();
        assert!(tokens
            .scope_of("token-of-org-a-0001")
            .unwrap()
            .allows(ORG_A));
    }

    #[test]
    fn the_bearer_header_is_read() {
        let tokens = Tokens::parse("operator-token-0001").unwrap();
        assert_eq!(
            tokens.scope_of_bearer(Some("Bearer operator-token-0001")),
            Some(Scope::All)
        );
        assert_eq!(tokens.scope_of_bearer(Some("operator-token-0001")), None);
        assert_eq!(tokens.scope_of_bearer(None), None);
    }

    #[test]
    fn misconfigurations_name_the_entry_not_the_token() {
        let short = Tokens::parse("operator-token-0001, short").unwrap_err();
        assert_eq!(short, AccessError::TokenTooShort(2));
        assert!(!short.to_string().contains("short,"));
        assert_eq!(
            Tokens::parse("6f1c2a4e-8b3d-4f7a-9c2e-1d5b7e9a3cXX:token-of-org-a-0001").unwrap_err(),
            AccessError::NotAnOrg(1)
        );
        assert_eq!(Tokens::parse(" , ").unwrap_err(), AccessError::Empty);
    }

    #[test]
    fn a_token_may_contain_a_colon() {
        let tokens = Tokens::parse("ab-c:defghijklmnopqrs").unwrap();
        assert_eq!(tokens.scope_of("ab-c:defghijklmnopqrs"), Some(Scope::All));
    }
}
