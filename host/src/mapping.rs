//! `vapi-edge-host map-org` and `map-line`: which organisation owns which
//! calls, in the database `migrate` would choose (PostgreSQL or the SQLite
//! store).
//!
//! `map-org` maps Vapi's organisation id (`call.orgId`) to an organisation and,
//! in the same transaction, attributes the calls recorded without one
//! ("unassigned") of that Vapi organisation: `call_logs`, `call_tracking` and
//! their deliveries in `webhook_events` get the organisation, and each call
//! its lead when the organisation has one for the customer's number. While it
//! runs it holds call_logs in SHARE ROW EXCLUSIVE mode (PostgreSQL) or the
//! write lock (SQLite), which the recording statement of an unowned call waits
//! for, so no call slips between the mapping and the attribution.
//!
//! `map-line` says which organisation owns a phone line (by its number and,
//! optionally, Vapi's phone-number id), which agent role answers its
//! `assistant-request`s, and what answers them when neither that agent nor
//! the upstream does (a saved assistant, or a transfer to a number).

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::Path;
use vapi_edge_core::access::looks_like_uuid;
use vapi_edge_core::phone::{self, Country};

/// `map-org`'s arguments, checked.
pub struct OrgMapping {
    pub vapi_org_id: String,
    pub org_id: String,
    /// The tenant whose calls the mapping applies to ('' for the
    /// single-tenant route); only its unassigned calls are attributed.
    pub tenant: String,
}

impl OrgMapping {
    pub fn new(vapi_org_id: &str, org_id: &str, tenant: &str) -> Result<OrgMapping> {
        let vapi_org_id = vapi_org_id.trim();
        if vapi_org_id.is_empty() {
            bail!("--vapi-org-id is empty");
        }
        Ok(OrgMapping {
            vapi_org_id: vapi_org_id.to_string(),
            org_id: org_id_of(org_id)?,
            tenant: tenant_of(tenant)?,
        })
    }
}

/// `--tenant`: '' (the single-tenant route) or a tenant id.
pub fn tenant_of(text: &str) -> Result<String> {
    let text = text.trim();
    if !text.is_empty() && !vapi_edge_core::tenant::valid_id(text) {
        bail!("--tenant `{text}` is not a tenant id (1-63 of a-z, 0-9 and -)");
    }
    Ok(text.to_string())
}

/// What `map-org` attributed: calls, inbound calls tracked, and deliveries.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Attributed {
    pub calls: i64,
    pub tracked_calls: i64,
    pub deliveries: i64,
}

fn org_id_of(text: &str) -> Result<String> {
    let text = text.trim();
    if !looks_like_uuid(text) {
        bail!("--org-id `{text}` is not an organisation id (a UUID)");
    }
    Ok(text.to_ascii_lowercase())
}

/// An E.164 number, as the component normalises a line (`default_country`
/// for a number without a country code).
fn e164_of(flag: &str, text: &str, country: &Country) -> Result<String> {
    let normalized = phone::normalize(text, country);
    if !normalized.is_e164() {
        bail!(
            "{flag} `{}` is not a phone number in E.164 form ({})",
            phone::mask(text),
            normalized.reason().unwrap_or("invalid")
        );
    }
    Ok(normalized.value().to_string())
}

/// The customer's number of a call, by direction: the key to its lead.
const CUSTOMER_NUMBER_PG: &str =
    "CASE l.direction WHEN 'inbound' THEN l.from_number WHEN 'outbound' THEN l.to_number END";

pub async fn map_org_postgres(url: &str, mapping: &OrgMapping) -> Result<Attributed> {
    let mut client = vapi_edge_backends::pg_tls::connect(url).await?;
    let tx = client.transaction().await?;
    tx.batch_execute("LOCK TABLE call_logs IN SHARE ROW EXCLUSIVE MODE")
        .await
        .context("cannot lock call_logs (is the schema migrated?)")?;
    tx.execute(
        "INSERT INTO vapi_organizations (vapi_org_id, org_id, tenant)
         VALUES ($1::text, $2::text::uuid, $3::text)
         ON CONFLICT (vapi_org_id) DO UPDATE SET org_id = EXCLUDED.org_id,
             tenant = EXCLUDED.tenant, updated_at = now()",
        &[&mapping.vapi_org_id, &mapping.org_id, &mapping.tenant],
    )
    .await
    .context("cannot write the mapping (is the schema at version 0007? run migrate)")?;
    let attribute = format!(
        "WITH calls AS (
             UPDATE call_logs l SET org_id = $2::text::uuid,
                 lead_id = coalesce(l.lead_id, (SELECT id FROM leads
                     WHERE leads.org_id = $2::text::uuid AND leads.phone_e164 = {CUSTOMER_NUMBER_PG})),
                 updated_at = now()
             WHERE l.org_id IS NULL AND l.vapi_org_id = $1::text AND l.tenant = $3::text
             RETURNING l.vapi_call_id
         ), tracked AS (
             UPDATE call_tracking t SET org_id = $2::text::uuid, updated_at = now()
             WHERE t.org_id IS NULL AND t.vapi_call_id IN (SELECT vapi_call_id FROM calls)
             RETURNING 1
         ), deliveries AS (
             UPDATE webhook_events e SET org_id = $2::text::uuid
             WHERE e.org_id IS NULL AND e.vapi_call_id IN (SELECT vapi_call_id FROM calls)
             RETURNING 1
         )
         SELECT (SELECT count(*) FROM calls), (SELECT count(*) FROM tracked),
                (SELECT count(*) FROM deliveries)"
    );
    let row = tx
        .query_one(
            &attribute,
            &[&mapping.vapi_org_id, &mapping.org_id, &mapping.tenant],
        )
        .await
        .context("cannot attribute the unassigned calls")?;
    tx.commit().await?;
    Ok(Attributed {
        calls: row.get(0),
        tracked_calls: row.get(1),
        deliveries: row.get(2),
    })
}

pub fn map_org_sqlite(path: &Path, mapping: &OrgMapping) -> Result<Attributed> {
    let mut connection = vapi_edge_backends::sqlite::open_file(path)?;
    let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO vapi_organizations (vapi_org_id, org_id, tenant) VALUES (?1, ?2, ?3)
         ON CONFLICT (vapi_org_id) DO UPDATE SET org_id = excluded.org_id,
             tenant = excluded.tenant, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
        [&mapping.vapi_org_id, &mapping.org_id, &mapping.tenant],
    )
    .context("cannot write the mapping (is the schema at version 0007? run migrate)")?;
    // The calls' own rows last: the others find them by their NULL org_id.
    let unassigned = "SELECT vapi_call_id FROM call_logs
        WHERE org_id IS NULL AND vapi_org_id = ?1 AND tenant = ?3";
    let tracked_calls = tx.execute(
        &format!(
            "UPDATE call_tracking SET org_id = ?2, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
             WHERE org_id IS NULL AND vapi_call_id IN ({unassigned})"
        ),
        [&mapping.vapi_org_id, &mapping.org_id, &mapping.tenant],
    )?;
    let deliveries = tx.execute(
        &format!(
            "UPDATE webhook_events SET org_id = ?2
             WHERE org_id IS NULL AND vapi_call_id IN ({unassigned})"
        ),
        [&mapping.vapi_org_id, &mapping.org_id, &mapping.tenant],
    )?;
    let calls = tx.execute(
        "UPDATE call_logs SET org_id = ?2,
             lead_id = coalesce(lead_id, (SELECT id FROM leads WHERE leads.org_id = ?2
                 AND leads.phone_e164 = CASE call_logs.direction WHEN 'inbound' THEN call_logs.from_number
                                        WHEN 'outbound' THEN call_logs.to_number END)),
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
         WHERE org_id IS NULL AND vapi_org_id = ?1 AND tenant = ?3",
        [&mapping.vapi_org_id, &mapping.org_id, &mapping.tenant],
    )?;
    tx.commit()?;
    Ok(Attributed {
        calls: calls as i64,
        tracked_calls: tracked_calls as i64,
        deliveries: deliveries as i64,
    })
}

/// What answers a line's `assistant-request`s when its agent and the
/// upstream do not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineFallback {
    /// Leave the line's fallback as it is.
    Keep,
    Clear,
    Assistant(String),
    Transfer(String),
}

/// `map-line`'s arguments, checked.
pub struct LineMapping {
    /// The tenant whose calls the line's are ('' for the single-tenant route).
    pub tenant: String,
    pub number: String,
    pub org_id: String,
    pub vapi_phone_number_id: Option<String>,
    pub role: Option<String>,
    pub fallback: LineFallback,
}

pub struct LineArgs<'a> {
    pub tenant: &'a str,
    pub number: &'a str,
    pub org_id: &'a str,
    pub vapi_phone_number_id: Option<&'a str>,
    pub role: Option<&'a str>,
    pub fallback_assistant_id: Option<&'a str>,
    pub fallback_number: Option<&'a str>,
    pub no_fallback: bool,
    pub country: &'a str,
}

impl LineMapping {
    pub fn new(args: LineArgs<'_>) -> Result<LineMapping> {
        let country = Country::from_iso(args.country).with_context(|| {
            format!(
                "default country `{}` is not one this version knows",
                args.country
            )
        })?;
        let present =
            |v: Option<&str>| v.map(str::trim).filter(|v| !v.is_empty()).map(String::from);
        let fallback = match (
            present(args.fallback_assistant_id),
            present(args.fallback_number),
            args.no_fallback,
        ) {
            (None, None, false) => LineFallback::Keep,
            (None, None, true) => LineFallback::Clear,
            (Some(id), None, false) => LineFallback::Assistant(id),
            (None, Some(number), false) => {
                LineFallback::Transfer(e164_of("--fallback-number", &number, &country)?)
            }
            _ => bail!(
                "give at most one of --fallback-assistant-id, --fallback-number and --no-fallback"
            ),
        };
        Ok(LineMapping {
            tenant: tenant_of(args.tenant)?,
            number: e164_of("--number", args.number, &country)?,
            org_id: org_id_of(args.org_id)?,
            vapi_phone_number_id: present(args.vapi_phone_number_id),
            role: present(args.role),
            fallback,
        })
    }

    /// The fallback columns to write: (whether to write them, assistant id, number).
    fn fallback_columns(&self) -> (bool, Option<&str>, Option<&str>) {
        match &self.fallback {
            LineFallback::Keep => (false, None, None),
            LineFallback::Clear => (true, None, None),
            LineFallback::Assistant(id) => (true, Some(id), None),
            LineFallback::Transfer(number) => (true, None, Some(number)),
        }
    }
}

/// Both engines: `?1` number, `?2` org, `?3` Vapi phone-number id (NULL
/// keeps the line's), `?4` role (NULL keeps it, `receptionist` for a new
/// line), `?5` whether to write the fallback, `?6` assistant, `?7` number,
/// `?8` tenant.
const UPSERT_LINE_SQLITE: &str = "
INSERT INTO phone_numbers (phone_e164, org_id, vapi_phone_number_id, inbound_role,
                           fallback_assistant_id, fallback_number, tenant)
VALUES (?1, ?2, ?3, coalesce(?4, 'receptionist'), ?6, ?7, ?8)
ON CONFLICT (phone_e164) DO UPDATE SET
    org_id = excluded.org_id,
    tenant = excluded.tenant,
    vapi_phone_number_id = coalesce(?3, phone_numbers.vapi_phone_number_id),
    inbound_role = coalesce(?4, phone_numbers.inbound_role),
    fallback_assistant_id = CASE WHEN ?5 THEN ?6 ELSE phone_numbers.fallback_assistant_id END,
    fallback_number = CASE WHEN ?5 THEN ?7 ELSE phone_numbers.fallback_number END";

const UPSERT_LINE_PG: &str = "
INSERT INTO phone_numbers (phone_e164, org_id, vapi_phone_number_id, inbound_role,
                           fallback_assistant_id, fallback_number, tenant)
VALUES ($1::text, $2::text::uuid, $3::text, coalesce($4::text, 'receptionist'), $6::text, $7::text,
        $8::text)
ON CONFLICT (phone_e164) DO UPDATE SET
    org_id = EXCLUDED.org_id,
    tenant = EXCLUDED.tenant,
    vapi_phone_number_id = coalesce($3::text, phone_numbers.vapi_phone_number_id),
    inbound_role = coalesce($4::text, phone_numbers.inbound_role),
    fallback_assistant_id = CASE WHEN $5::bool THEN $6::text ELSE phone_numbers.fallback_assistant_id END,
    fallback_number = CASE WHEN $5::bool THEN $7::text ELSE phone_numbers.fallback_number END";

pub async fn map_line_postgres(url: &str, line: &LineMapping) -> Result<()> {
    let client = vapi_edge_backends::pg_tls::connect(url).await?;
    let (write, assistant, number) = line.fallback_columns();
    client
        .execute(
            UPSERT_LINE_PG,
            &[
                &line.number,
                &line.org_id,
                &line.vapi_phone_number_id,
                &line.role,
                &write,
                &assistant,
                &number,
                &line.tenant,
            ],
        )
        .await
        .context("cannot write the line (is the schema at version 0007? run migrate)")?;
    Ok(())
}

pub fn map_line_sqlite(path: &Path, line: &LineMapping) -> Result<()> {
    let connection = vapi_edge_backends::sqlite::open_file(path)?;
    let (write, assistant, number) = line.fallback_columns();
    connection
        .execute(
            UPSERT_LINE_SQLITE,
            rusqlite::params![
                line.number,
                line.org_id,
                line.vapi_phone_number_id,
                line.role,
                write,
                assistant,
                number,
                line.tenant
            ],
        )
        .context("cannot write the line (is the schema at version 0007? run migrate)")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORG: &str = "6f1c2a4e-8b3d-4f7a-9c2e-1d5b7e9a3c40";

    fn line(
        number: &str,
        assistant: Option<&str>,
        transfer: Option<&str>,
        clear: bool,
    ) -> Result<LineMapping> {
        LineMapping::new(LineArgs {
            tenant: "",
            number,
            org_id: ORG,
            vapi_phone_number_id: None,
            role: None,
            fallback_assistant_id: assistant,
            fallback_number: transfer,
            no_fallback: clear,
            country: "US",
        })
    }

    #[test]
    fn a_line_is_normalised_and_its_fallback_is_one_thing() {
        let mapped = line("(415) 555-0142", None, None, false).unwrap();
        assert_eq!(mapped.number, "+14155550142");
        assert_eq!(mapped.fallback, LineFallback::Keep);
        let transfer = line("+14155550142", None, Some("415 555 0100"), false).unwrap();
        assert_eq!(
            transfer.fallback,
            LineFallback::Transfer("+14155550100".into())
        );
        assert_eq!(
            line("+14155550142", Some("asst-1"), None, false)
                .unwrap()
                .fallback,
            LineFallback::Assistant("asst-1".into())
        );
        assert_eq!(
            line("+14155550142", None, None, true).unwrap().fallback,
            LineFallback::Clear
        );
        assert!(line("+14155550142", Some("a"), Some("+14155550100"), false).is_err());
        assert!(line("+14155550142", Some("a"), None, true).is_err());
        let bad = line("12", None, None, false).err().unwrap().to_string();
        assert!(bad.contains("--number"), "{bad}");
    }

    #[test]
    fn an_org_mapping_needs_both_ids() {
        assert!(OrgMapping::new("vapi-org", "acme", "").is_err());
        assert!(OrgMapping::new(" ", ORG, "").is_err());
        let mapping = OrgMapping::new(" vapi-org ", &ORG.to_ascii_uppercase(), "").unwrap();
        assert_eq!(mapping.vapi_org_id, "vapi-org");
        assert_eq!(mapping.org_id, ORG);
    }
}
