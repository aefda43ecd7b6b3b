//! Vapi's OAuth2 credential (client credentials, RFC 6749 §4.4) for a
//! tenant: Vapi asks the tenant's token URL, `POST /webhooks/vapi/{id}/token`,
//! for an access token with the client id and secret it was given, then
//! sends `Authorization: Bearer <access_token>` on each server message until
//! the token expires, and asks again.
//!
//! A token is short-lived (`oauth_token_ttl_s`, default 3600 s) and
//! self-contained: `vet1.<key id>.<expiry, Unix ms>.<secret generation>.<MAC>`, the
//! MAC (HMAC-SHA256, a key derived from `tenant_secrets_key`) binding the
//! tenant too. A webhook's token is checked with no database round trip:
//! the key comes from the variables, the tenant (and the generation of its
//! client secret) from the cached tenant. A new client secret ends every
//! token issued under the old one, within `tenant_cache_ms`.

use crate::http::{Query, Request, Response};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};

/// The variables of the credential.
pub const CLIENT_ID: &str = "oauth_client_id";
pub const CLIENT_SECRET: &str = "oauth_client_secret";
pub const CLIENT_SECRET_SHA256: &str = "oauth_client_secret_sha256";
pub const TOKEN_TTL_S: &str = "oauth_token_ttl_s";

/// `oauth_token_ttl_s` when unset.
pub const DEFAULT_TTL_S: i64 = 3600;

const FORMAT: &str = "vet1";

/// The token keys: one per item of `tenant_secrets_key`, the first signs.
#[derive(Clone)]
pub struct TokenKeys(Vec<(String, [u8; 32])>);

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.0.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("TokenKeys").field("ids", &ids).finish()
    }
}

/// A tenant's OAuth2 credential with the keys its tokens are checked with:
/// what the verifier needs to accept a token.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub client: Client,
    pub keys: TokenKeys,
}

impl TokenKeys {
    /// Derived from the items of `tenant_secrets_key` (as sealing keys are,
    /// with another label, so neither key says anything of the other).
    pub fn from_variable(value: &str) -> Option<TokenKeys> {
        let keys: Vec<(String, [u8; 32])> = value
            .split(',')
            .map(str::trim)
            .filter(|item| item.len() >= super::seal::MIN_KEY_LEN)
            .filter_map(|item| {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(item.as_bytes()).ok()?;
                mac.update(b"vapi-edge oauth tokens v1");
                let key: [u8; 32] = mac.finalize().into_bytes().into();
                let id = hex::encode(&Sha256::digest(key)[..4]);
                Some((id, key))
            })
            .collect();
        (!keys.is_empty()).then_some(TokenKeys(keys))
    }
}

/// What a tenant's OAuth2 credential checks: its client, the generations of
/// its client secrets, and how long a token lives.
#[derive(Debug, Clone)]
pub struct Client {
    pub tenant: String,
    pub client_id: String,
    /// SHA-256 hashes of the accepted client secrets (several while rotating).
    pub secret_hashes: Vec<[u8; 32]>,
    pub ttl_s: i64,
}

impl Client {
    /// The tenant's credential from its variables; `None` when it has none.
    pub fn from_variables(tenant: &str, get: impl Fn(&str) -> Option<String>) -> Option<Client> {
        let client_id = get(CLIENT_ID)?;
        let secret_hashes = get(CLIENT_SECRET_SHA256)
            .unwrap_or_default()
            .split(',')
            .filter_map(|item| {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(item.trim(), &mut hash).ok()?;
                Some(hash)
            })
            .collect();
        let ttl_s = get(TOKEN_TTL_S)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|s| (1..=86_400).contains(s))
            .unwrap_or(DEFAULT_TTL_S);
        Some(Client {
            tenant: tenant.to_string(),
            client_id,
            secret_hashes,
            ttl_s,
        })
    }

    /// What a token names of the client secret: a new secret, a new
    /// generation, and the old tokens no longer match.
    fn generation(hash: &[u8; 32]) -> String {
        hex::encode(&Sha256::digest(hash)[..6])
    }

    fn mac(&self, key: &[u8; 32], key_id: &str, expiry: i64, generation: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
        mac.update(format!("{FORMAT}.{}.{key_id}.{expiry}.{generation}", self.tenant).as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// A token for the secret `hash`, valid until `now_ms` + the TTL.
    fn issue(&self, keys: &TokenKeys, hash: &[u8; 32], now_ms: i64) -> (String, i64) {
        let (key_id, key) = &keys.0[0];
        let expiry = now_ms + self.ttl_s * 1000;
        let generation = Self::generation(hash);
        let mac = self.mac(key, key_id, expiry, &generation);
        (
            format!("{FORMAT}.{key_id}.{expiry}.{generation}.{mac}"),
            self.ttl_s,
        )
    }

    /// Whether `token` is one this client was issued, not expired, under a
    /// client secret it still accepts. Constant time in the MAC.
    pub fn accepts(&self, keys: &TokenKeys, token: &str, now_ms: i64) -> bool {
        let parts: Vec<&str> = token.split('.').collect();
        let [FORMAT, key_id, expiry, generation, mac] = parts[..] else {
            return false;
        };
        let Ok(expiry) = expiry.parse::<i64>() else {
            return false;
        };
        if expiry <= now_ms {
            return false;
        }
        if !self
            .secret_hashes
            .iter()
            .any(|hash| Self::generation(hash) == generation)
        {
            return false;
        }
        let Some((_, key)) = keys.0.iter().find(|(id, _)| id == key_id) else {
            return false;
        };
        let expected = self.mac(key, key_id, expiry, generation);
        crate::verify::secret_matches(expected.as_bytes(), mac.as_bytes())
    }
}

/// Answers a token request (RFC 6749 §4.4, §5): client authentication by
/// HTTP Basic or in the body, the body a form or JSON.
pub fn token_response(
    client: Option<&Client>,
    keys: Option<&TokenKeys>,
    request: &Request,
    now_ms: i64,
) -> Response {
    let refuse = |status: u16, error: &str, description: &str| {
        Response::json(
            status,
            &json!({ "error": error, "error_description": description }),
        )
        .with_header("cache-control", "no-store")
    };
    let (Some(client), Some(keys)) = (client, keys) else {
        return refuse(
            400,
            "unauthorized_client",
            "this tenant has no OAuth2 credential",
        );
    };
    let params = match body_params(request) {
        Some(params) => params,
        None => {
            return refuse(
                400,
                "invalid_request",
                "expected a form or JSON body with grant_type",
            )
        }
    };
    let param = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let basic = request
        .headers
        .one("authorization")
        .ok()
        .flatten()
        .and_then(basic_credentials);
    let (id, secret) = match (&basic, param("client_id"), param("client_secret")) {
        (Some((id, secret)), _, _) => (id.as_str(), secret.as_str()),
        (None, Some(id), Some(secret)) => (id, secret),
        _ => {
            return refuse(401, "invalid_client", "client authentication is required")
                .with_header("www-authenticate", "Basic")
        }
    };
    if param("grant_type") != Some("client_credentials") {
        return refuse(
            400,
            "unsupported_grant_type",
            "only client_credentials is supported",
        );
    }
    let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    let id_matches = crate::verify::secret_matches(client.client_id.as_bytes(), id.as_bytes());
    let hash = client
        .secret_hashes
        .iter()
        .find(|hash| crate::verify::secret_matches(*hash, &presented));
    let Some(hash) = hash.filter(|_| id_matches) else {
        let refused = refuse(401, "invalid_client", "invalid client credentials");
        return match basic {
            Some(_) => refused.with_header("www-authenticate", "Basic"),
            None => refused,
        };
    };
    let (token, expires_in) = client.issue(keys, hash, now_ms);
    Response::json(
        200,
        &json!({ "access_token": token, "token_type": "Bearer", "expires_in": expires_in }),
    )
    .with_header("cache-control", "no-store")
    .with_header("pragma", "no-cache")
}

/// The parameters of a form (`application/x-www-form-urlencoded`) or JSON
/// object body; `None` when it is neither.
fn body_params(request: &Request) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(&request.body).ok()?;
    if let Ok(serde_json::Value::Object(object)) = serde_json::from_str(text) {
        return Some(
            object
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.as_str()?.to_string())))
                .collect(),
        );
    }
    let query = Query::parse(text.trim());
    Some(query.0).filter(|pairs| !pairs.is_empty())
}

/// `Basic base64(id:secret)`, each part percent-decoded (RFC 6749 §2.3.1).
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((
        crate::http::percent_decode(id),
        crate::http::percent_decode(secret),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "the-deployment-key-of-at-least-32-characters";

    fn client(secrets: &[&str]) -> Client {
        Client {
            tenant: "acme".into(),
            client_id: "vapi-acme".into(),
            secret_hashes: secrets
                .iter()
                .map(|s| Sha256::digest(s.as_bytes()).into())
                .collect(),
            ttl_s: 600,
        }
    }

    fn token_request(body: &str, content_type: &str, authorization: Option<&str>) -> Request {
        let mut headers = vec![("content-type", content_type)];
        if let Some(value) = authorization {
            headers.push(("authorization", value));
        }
        Request {
            method: "POST".into(),
            path: "/webhooks/vapi/acme/token".into(),
            headers: headers.into_iter().collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn issued(response: &Response) -> String {
        assert_eq!(response.status, 200, "{:?}", response.body_json());
        let body = response.body_json().unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 600);
        body["access_token"].as_str().unwrap().to_string()
    }

    #[test]
    fn a_token_is_issued_for_the_clients_credentials_in_every_form_and_expires() {
        let keys = TokenKeys::from_variable(KEY).unwrap();
        let client = client(&["s3cret"]);
        let now = 1_796_000_000_000;
        let basic = format!("Basic {}", STANDARD.encode("vapi-acme:s3cret"));
        for request in [
            token_request(
                "grant_type=client_credentials&client_id=vapi-acme&client_secret=s3cret",
                "application/x-www-form-urlencoded",
                None,
            ),
            token_request(
                "grant_type=client_credentials",
                "application/x-www-form-urlencoded",
                Some(&basic),
            ),
            token_request(
                r#"{"grant_type":"client_credentials","client_id":"vapi-acme","client_secret":"s3cret"}"#,
                "application/json",
                None,
            ),
        ] {
            let token = issued(&token_response(Some(&client), Some(&keys), &request, now));
            assert!(client.accepts(&keys, &token, now + 599_000));
            assert!(!client.accepts(&keys, &token, now + 600_000), "expired");
            // Another tenant's client with the same id and secret: not its token.
            let mut other = client.clone();
            other.tenant = "globex".into();
            assert!(!other.accepts(&keys, &token, now));
            // A new client secret ends it.
            assert!(!self::client(&["n3w"]).accepts(&keys, &token, now));
            // Altered, it is refused.
            let altered = token.replacen(
                &(now + 600_000).to_string(),
                &(now + 9_999_000).to_string(),
                1,
            );
            assert!(!client.accepts(&keys, &altered, now));
        }
    }

    #[test]
    fn wrong_credentials_and_grants_get_rfc_6749_errors() {
        let keys = TokenKeys::from_variable(KEY).unwrap();
        let client = client(&["s3cret"]);
        let error = |request: Request| {
            let response = token_response(Some(&client), Some(&keys), &request, 0);
            let body = response.body_json().unwrap();
            (response.status, body["error"].as_str().unwrap().to_string())
        };
        let form = "application/x-www-form-urlencoded";
        assert_eq!(
            error(token_request(
                "grant_type=client_credentials&client_id=vapi-acme&client_secret=nope",
                form,
                None
            )),
            (401, "invalid_client".into())
        );
        assert_eq!(
            error(token_request(
                "grant_type=client_credentials&client_id=other&client_secret=s3cret",
                form,
                None
            )),
            (401, "invalid_client".into())
        );
        assert_eq!(
            error(token_request(
                "grant_type=password&client_id=vapi-acme&client_secret=s3cret",
                form,
                None
            )),
            (400, "unsupported_grant_type".into())
        );
        assert_eq!(
            error(token_request("grant_type=client_credentials", form, None)),
            (401, "invalid_client".into())
        );
        assert_eq!(
            error(token_request("", form, None)),
            (400, "invalid_request".into())
        );
        let response = token_response(None, Some(&keys), &token_request("", form, None), 0);
        assert_eq!(response.status, 400);
    }

    #[test]
    fn tokens_survive_a_rotation_of_the_deployment_key() {
        let old = TokenKeys::from_variable(KEY).unwrap();
        let client = client(&["s3cret"]);
        let hash = client.secret_hashes[0];
        let (token, _) = client.issue(&old, &hash, 0);
        let both =
            TokenKeys::from_variable(&format!("a-new-key-of-at-least-32-characters-long,{KEY}"))
                .unwrap();
        assert!(client.accepts(&both, &token, 0));
        let new_only =
            TokenKeys::from_variable("a-new-key-of-at-least-32-characters-long").unwrap();
        assert!(!client.accepts(&new_only, &token, 0));
    }
}
