//! `vapi-edge-host tenant`: the tenants of a deployment (README, "Tenants"),
//! in the database `migrate` would choose. Each is a Vapi organisation's
//! server URL, `/webhooks/vapi/{id}`, with its own credential and settings,
//! set as the deployment's variables are named (`NAME=VALUE`). Secrets are
//! kept as `vapi_edge_core::tenant::Stored` says: a Bearer secret hashed, an
//! HMAC or upstream secret sealed with `SPIN_VARIABLE_TENANT_SECRETS_KEY`.
//! A change applies on every replica within `tenant_cache_ms`.

use anyhow::{bail, Context, Result};
use std::io::BufRead;
use std::path::Path;
use vapi_edge_core::tenant::{self, SecretsKeys, Stored};

/// What a `tenant` command changes.
pub enum Change {
    /// Sets each `NAME=VALUE` (empty: unset); `Some` enables or disables.
    Set {
        assignments: Vec<(String, String)>,
        disabled: Option<bool>,
    },
    Remove,
    /// Reseals every sealed secret with the first key.
    Rekey,
}

/// `NAME=VALUE` pairs; `NAME=-` reads the value from one line of stdin, so a
/// secret need not be in the shell's history or the process list.
pub fn assignments(items: &[String]) -> Result<Vec<(String, String)>> {
    let mut stdin_used = false;
    items
        .iter()
        .map(|item| {
            let Some((name, value)) = item.split_once('=') else {
                bail!("`{item}` is not NAME=VALUE");
            };
            let name = name.trim().to_string();
            if tenant::kind_of(&name).is_none() {
                bail!(
                    "`{name}` is not a variable a tenant sets (see README, \"Tenants\", for the list)"
                );
            }
            let value = if value == "-" {
                if stdin_used {
                    bail!("only one NAME=- can read stdin");
                }
                stdin_used = true;
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                line.trim_end_matches(['\r', '\n']).to_string()
            } else {
                value.to_string()
            };
            Ok((name, value))
        })
        .collect()
}

fn keys() -> Result<Option<SecretsKeys>> {
    match std::env::var("SPIN_VARIABLE_TENANT_SECRETS_KEY") {
        Ok(value) if !value.trim().is_empty() => Ok(Some(
            SecretsKeys::from_variable(&value).map_err(anyhow::Error::msg)?,
        )),
        _ => Ok(None),
    }
}

fn nonce() -> Result<[u8; 12]> {
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness for a nonce: {e}"))?;
    Ok(nonce)
}

/// The new configuration of tenant `id`, from the one stored (`None`: new).
fn apply(id: &str, stored: Option<Stored>, change: &Change) -> Result<Option<Stored>> {
    let keys = keys()?;
    match change {
        Change::Remove => Ok(None),
        Change::Rekey => {
            let mut stored = stored.with_context(|| format!("no tenant {id}"))?;
            let keys = keys.context("SPIN_VARIABLE_TENANT_SECRETS_KEY is not set")?;
            let mut failed = None;
            stored
                .reseal(id, &keys, || {
                    nonce().unwrap_or_else(|e| {
                        failed = Some(e);
                        [0; 12]
                    })
                })
                .map_err(|e| anyhow::anyhow!("tenant {id}: {e}"))?;
            if let Some(error) = failed {
                return Err(error);
            }
            Ok(Some(stored))
        }
        Change::Set {
            assignments,
            disabled,
        } => {
            let mut stored = stored.unwrap_or_default();
            for (name, value) in assignments {
                stored
                    .set(id, name, value, keys.as_ref(), nonce()?)
                    .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            }
            if let Some(disabled) = disabled {
                stored.disabled = *disabled;
            }
            // The variables the webhook reads must make sense together: the
            // tenant is opened and its credential and settings read as a
            // webhook would, so a mistake is reported now, not by a 503 later.
            check(id, &stored, keys.as_ref())?;
            Ok(Some(stored))
        }
    }
}

fn check(id: &str, stored: &Stored, keys: Option<&SecretsKeys>) -> Result<()> {
    let deployment = |name: &str| {
        std::env::var(format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()))
            .ok()
            .filter(|v| !v.trim().is_empty())
    };
    tenant::check(id, stored, keys, deployment).map_err(|e| anyhow::anyhow!("tenant {id}: {e}"))
}

fn parse(id: &str, text: &str) -> Result<Stored> {
    let value = serde_json::from_str(text)
        .with_context(|| format!("tenant {id}: the stored configuration"))?;
    Stored::from_json(&value).map_err(|e| anyhow::anyhow!("tenant {id}: {e}"))
}

fn check_id(id: &str) -> Result<()> {
    if !tenant::valid_id(id) {
        bail!("`{id}` is not a tenant id (1-63 of a-z, 0-9 and -, not starting with -)");
    }
    Ok(())
}

/// Applies `change` to tenant `id` in PostgreSQL; the tenant as now stored.
pub async fn change_postgres(url: &str, id: &str, change: &Change) -> Result<Option<Stored>> {
    check_id(id)?;
    let mut client = vapi_edge_backends::pg_tls::connect(url).await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT config::text FROM tenants WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .context("cannot read the tenant (is the schema at version 0008? run migrate)")?;
    let stored = row.map(|row| parse(id, row.get(0))).transpose()?;
    let changed = apply(id, stored, change)?;
    match &changed {
        None => {
            tx.execute("DELETE FROM tenants WHERE id = $1", &[&id])
                .await?;
        }
        Some(stored) => {
            let config = stored.to_json().to_string();
            tx.execute(
                "INSERT INTO tenants (id, config) VALUES ($1, $2::text::jsonb)
                 ON CONFLICT (id) DO UPDATE SET config = EXCLUDED.config, updated_at = now()",
                &[&id, &config],
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(changed)
}

/// Applies `change` to tenant `id` in the SQLite store.
pub fn change_sqlite(path: &Path, id: &str, change: &Change) -> Result<Option<Stored>> {
    check_id(id)?;
    let mut connection = vapi_edge_backends::sqlite::open_file(path)?;
    let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let text: Option<String> =
        match tx.query_row("SELECT config FROM tenants WHERE id = ?1", [id], |row| {
            row.get(0)
        }) {
            Ok(text) => Some(text),
            Err(rusqlite::Error::QueryReturnedNoRows) => None,
            Err(e) => {
                return Err(e)
                    .context("cannot read the tenant (is the schema at version 0008? run migrate)")
            }
        };
    let stored = text.map(|text| parse(id, &text)).transpose()?;
    let changed = apply(id, stored, change)?;
    match &changed {
        None => {
            tx.execute("DELETE FROM tenants WHERE id = ?1", [id])?;
        }
        Some(stored) => {
            let config = stored.to_json().to_string();
            tx.execute(
                "INSERT INTO tenants (id, config) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET config = excluded.config,
                     updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                [id, &config],
            )?;
        }
    }
    tx.commit()?;
    Ok(changed)
}

/// Every tenant, by id.
pub async fn list_postgres(url: &str) -> Result<Vec<(String, Stored)>> {
    let client = vapi_edge_backends::pg_tls::connect(url).await?;
    let rows = client
        .query("SELECT id, config::text FROM tenants ORDER BY id", &[])
        .await
        .context("cannot read the tenants (is the schema at version 0008? run migrate)")?;
    rows.iter()
        .map(|row| {
            let id: String = row.get(0);
            let stored = parse(&id, row.get(1))?;
            Ok((id, stored))
        })
        .collect()
}

/// Every tenant, by id.
pub fn list_sqlite(path: &Path) -> Result<Vec<(String, Stored)>> {
    let connection = vapi_edge_backends::sqlite::open_file(path)?;
    let mut statement = connection
        .prepare("SELECT id, config FROM tenants ORDER BY id")
        .context("cannot read the tenants (is the schema at version 0008? run migrate)")?;
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    rows.map(|row| {
        let (id, text) = row?;
        let stored = parse(&id, &text)?;
        Ok((id, stored))
    })
    .collect()
}
