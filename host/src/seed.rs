//! `vapi-edge-host seed-agent`: puts an organisation's agent into the
//! database (PostgreSQL or the SQLite store), with only the contract's
//! columns, as outside tools do; one agent per organisation and role.

use anyhow::{Context, Result};
use std::path::Path;

pub struct Agent {
    pub org_id: String,
    pub assistant_id: String,
    pub name: String,
    pub role: String,
    /// A phone line (E.164) whose inbound calls this agent answers.
    pub line: Option<String>,
    /// The tenant whose webhooks the agent (and its line) answer; '' for the
    /// single-tenant route.
    pub tenant: String,
}

/// Both engines accept this statement (`$n` parameters, ON CONFLICT ... DO UPDATE).
const UPSERT_AGENT: &str = "
INSERT INTO agents (org_id, role, name, vapi_assistant_id, tenant) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (org_id, role) DO UPDATE SET name = excluded.name,
    vapi_assistant_id = excluded.vapi_assistant_id, tenant = excluded.tenant
RETURNING id";

const UPSERT_LINE: &str = "
INSERT INTO phone_numbers (org_id, phone_e164, inbound_role, tenant) VALUES ($1, $2, $3, $4)
ON CONFLICT (phone_e164) DO UPDATE SET org_id = excluded.org_id,
    inbound_role = excluded.inbound_role, tenant = excluded.tenant";

/// Returns the agent's id.
pub async fn postgres(url: &str, agent: &Agent) -> Result<String> {
    let mut client = vapi_edge_backends::pg_tls::connect(url).await?;
    let tx = client.transaction().await?;
    let org = agent.org_id.as_str();
    let row = tx
        .query_one(
            &UPSERT_AGENT
                .replace("$1", "$1::text::uuid")
                .replace("RETURNING id", "RETURNING id::text"),
            &[
                &org,
                &agent.role,
                &agent.name,
                &agent.assistant_id,
                &agent.tenant,
            ],
        )
        .await
        .context("cannot write the agent (is the schema migrated?)")?;
    if let Some(line) = &agent.line {
        tx.execute(
            &UPSERT_LINE.replace("$1", "$1::text::uuid"),
            &[&org, line, &agent.role, &agent.tenant],
        )
        .await
        .context("cannot write the line")?;
    }
    tx.commit().await?;
    Ok(row.get(0))
}

/// Returns the agent's id.
pub fn sqlite(path: &Path, agent: &Agent) -> Result<String> {
    let mut connection = vapi_edge_backends::sqlite::open_file(path)?;
    let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let id: String = tx
        .query_row(
            UPSERT_AGENT,
            [
                &agent.org_id,
                &agent.role,
                &agent.name,
                &agent.assistant_id,
                &agent.tenant,
            ],
            |row| row.get(0),
        )
        .context("cannot write the agent (is the schema migrated? run vapi-edge-host migrate)")?;
    if let Some(line) = &agent.line {
        tx.execute(
            UPSERT_LINE,
            [&agent.org_id, line, &agent.role, &agent.tenant],
        )
        .context("cannot write the line")?;
    }
    tx.commit()?;
    Ok(id)
}
