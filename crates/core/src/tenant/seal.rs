//! Tenants' secrets at rest: the HMAC and upstream secrets a webhook needs
//! in clear are kept sealed (ChaCha20-Poly1305) with a key derived from the
//! secret variable `tenant_secrets_key`, bound to the tenant and variable they
//! belong to. The variable holds one key or several, comma-separated: the
//! first seals, every one opens, so a key is rotated by putting the new one
//! first, running `vapi-edge-host tenant rekey`, then dropping the old one.

use super::TenantError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The variable that holds the keys.
pub const KEYS_VARIABLE: &str = "tenant_secrets_key";

/// A key shorter than this is refused: it is meant to be random, e.g.
/// `openssl rand -hex 32`.
pub const MIN_KEY_LEN: usize = 32;

const FORMAT: &str = "v1";

/// The keys of `tenant_secrets_key`, the sealing one first.
pub struct SecretsKeys {
    keys: Vec<([u8; 8], ChaCha20Poly1305)>,
}

impl std::fmt::Debug for SecretsKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self.keys.iter().map(|(id, _)| hex::encode(id)).collect();
        f.debug_struct("SecretsKeys").field("ids", &ids).finish()
    }
}

impl SecretsKeys {
    /// The keys of the variable's value; each item is the text of one key.
    pub fn from_variable(value: &str) -> Result<SecretsKeys, TenantError> {
        let items: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .collect();
        if items.is_empty() {
            return Err(TenantError::NoSecretsKey);
        }
        let mut keys = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            if item.len() < MIN_KEY_LEN {
                return Err(TenantError::ShortSecretsKey { item: index + 1 });
            }
            // Derived, so the text of the variable is never the cipher's key,
            // and its id says nothing of it.
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(item.as_bytes())
                .map_err(|_| TenantError::ShortSecretsKey { item: index + 1 })?;
            mac.update(b"vapi-edge tenant secrets v1");
            let derived = mac.finalize().into_bytes();
            let digest = Sha256::digest(derived);
            let mut id = [0u8; 8];
            id.copy_from_slice(&digest[..8]);
            keys.push((id, ChaCha20Poly1305::new(Key::from_slice(&derived))));
        }
        Ok(SecretsKeys { keys })
    }

    /// `plaintext` sealed with the first key, for the slot `aad` (the tenant
    /// and variable it belongs to): `v1.<key id>.<nonce and ciphertext>`.
    /// `nonce` must never repeat under one key: 12 random bytes.
    pub fn seal(&self, aad: &str, plaintext: &str, nonce: [u8; 12]) -> String {
        let (id, cipher) = &self.keys[0];
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: aad.as_bytes(),
        };
        // Encryption in memory fails only for a message over 256 GiB.
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!(
            "{FORMAT}.{}.{}",
            hex::encode(id),
            URL_SAFE_NO_PAD.encode(bytes)
        )
    }

    /// The plaintext of `sealed`, when one of the keys sealed it for `aad`.
    pub fn open(&self, aad: &str, sealed: &str) -> Result<String, TenantError> {
        let mut parts = sealed.split('.');
        let (Some(FORMAT), Some(id), Some(data), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TenantError::Unsealable);
        };
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(key_id, _)| hex::encode(key_id) == id)
            .ok_or(TenantError::UnknownSecretsKey)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(data)
            .map_err(|_| TenantError::Unsealable)?;
        if bytes.len() < 12 {
            return Err(TenantError::Unsealable);
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let payload = Payload {
            msg: ciphertext,
            aad: aad.as_bytes(),
        };
        let plain = cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| TenantError::Unsealable)?;
        String::from_utf8(plain).map_err(|_| TenantError::Unsealable)
    }

    /// Whether `sealed` is sealed with the first key (else `rekey` reseals it).
    pub fn is_current(&self, sealed: &str) -> bool {
        sealed
            .split('.')
            .nth(1)
            .is_some_and(|id| id == hex::encode(self.keys[0].0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "an-old-key-of-at-least-thirty-two-characters";
    const NEW: &str = "a-new-key-of-at-least-thirty-two-characters!";

    #[test]
    fn a_sealed_secret_opens_only_for_its_slot_and_keys() {
        let keys = SecretsKeys::from_variable(OLD).unwrap();
        let sealed = keys.seal("acme/vapi_hmac_secret", "whsec-1", [7; 12]);
        assert!(!sealed.contains("whsec"));
        assert_eq!(
            keys.open("acme/vapi_hmac_secret", &sealed).unwrap(),
            "whsec-1"
        );
        // Moved to another tenant's slot, or altered, it does not open.
        assert_eq!(
            keys.open("globex/vapi_hmac_secret", &sealed),
            Err(TenantError::Unsealable)
        );
        let mut altered = sealed.clone();
        let last = altered.pop().unwrap();
        altered.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(
            keys.open("acme/vapi_hmac_secret", &altered),
            Err(TenantError::Unsealable)
        );
        let other = SecretsKeys::from_variable(NEW).unwrap();
        assert_eq!(
            other.open("acme/vapi_hmac_secret", &sealed),
            Err(TenantError::UnknownSecretsKey)
        );
    }

    #[test]
    fn a_rotated_key_list_opens_the_old_seals_and_seals_with_the_new() {
        let old = SecretsKeys::from_variable(OLD).unwrap();
        let sealed = old.seal("acme/x", "s", [1; 12]);
        let both = SecretsKeys::from_variable(&format!("{NEW}, {OLD}")).unwrap();
        assert_eq!(both.open("acme/x", &sealed).unwrap(), "s");
        assert!(!both.is_current(&sealed));
        let resealed = both.seal("acme/x", "s", [2; 12]);
        assert!(both.is_current(&resealed));
        let new = SecretsKeys::from_variable(NEW).unwrap();
        assert_eq!(new.open("acme/x", &resealed).unwrap(), "s");
    }

    #[test]
    fn short_or_missing_keys_are_refused_by_position() {
        assert_eq!(
            SecretsKeys::from_variable(" , ").unwrap_err(),
            TenantError::NoSecretsKey
        );
        assert_eq!(
            SecretsKeys::from_variable(&format!("{OLD},short")).unwrap_err(),
            TenantError::ShortSecretsKey { item: 2 }
        );
    }
}
