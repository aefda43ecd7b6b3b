//! `vapi-edge-host migrate`: applies pending migrations in file-name order and
//! records each in `schema_migrations`, so a second run is harmless: to
//! PostgreSQL (`migrations/*.sql`) or to Spin's built-in SQLite database
//! (`migrations/sqlite/*.sql`).
//!
//! For PostgreSQL this is the only way a schema changes: the component never
//! migrates it from the request path. Spin's built-in SQLite database is the
//! exception: there is no migration step under `spin build --up`, so the
//! component applies the migrations it embeds (`vapi_edge_core::sqlite_sql`)
//! when it opens a database that lacks one, with the same `schema_migrations`
//! record as this command, so either may run first. Each migration runs in a
//! transaction with its `schema_migrations` row, so a file must not hold its
//! own BEGIN/COMMIT.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// One migration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    /// File name without `.sql`, e.g. `0001_init`.
    pub version: String,
    pub sql: String,
    pub checksum: String,
}

/// Checksums that earlier releases recorded for a migration whose comments
/// were corrected since (never its statements): a database migrated then is
/// not told the migration changed. `0001_init`: its header named the shared
/// design page that became docs/contract.md.
const CORRECTED_COMMENTS: &[(&str, &str)] = &[(
    "0001_init",
    "b1aeac9841801b1fa22249d245ae4b54abd73283216bd4a199ef6d4785ad79ce",
)];

impl Migration {
    /// Whether `recorded` is this migration's checksum, now or before a
    /// comment was corrected.
    fn was_applied_as(&self, recorded: &str) -> bool {
        recorded == self.checksum
            || CORRECTED_COMMENTS
                .iter()
                .any(|(version, old)| *version == self.version && *old == recorded)
    }
}

pub fn read_dir(dir: &Path) -> Result<Vec<Migration>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read migrations folder {}", dir.display()))?;
    let mut migrations = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("sql") {
            continue;
        }
        let version = path
            .file_stem()
            .and_then(|s| s.to_str())
            .context("migration file name is not UTF-8")?
            .to_string();
        let sql = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let checksum = vapi_edge_core::sqlite_sql::checksum(&sql);
        migrations.push(Migration {
            version,
            sql,
            checksum,
        });
    }
    migrations.sort_by(|a, b| a.version.cmp(&b.version));
    if migrations.is_empty() {
        bail!("no .sql files in {}", dir.display());
    }
    Ok(migrations)
}

/// Applies what is pending; returns the versions applied by this run.
pub async fn run(pg_url: &str, dir: &Path) -> Result<Vec<String>> {
    let migrations = read_dir(dir)?;
    let mut client = vapi_edge_backends::pg_tls::connect(pg_url).await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    text PRIMARY KEY,
                 checksum   text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );
             SELECT pg_advisory_lock(hashtext('vapi-edge migrate'));",
        )
        .await
        .context("cannot prepare schema_migrations")?;
    let result = apply(&mut client, &migrations).await;
    let _ = client
        .batch_execute("SELECT pg_advisory_unlock(hashtext('vapi-edge migrate'))")
        .await;
    result
}

async fn apply(
    client: &mut tokio_postgres::Client,
    migrations: &[Migration],
) -> Result<Vec<String>> {
    let applied: Vec<(String, String)> = client
        .query("SELECT version, checksum FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let mut done = Vec::new();
    for migration in migrations {
        if let Some((_, checksum)) = applied.iter().find(|(v, _)| *v == migration.version) {
            if !migration.was_applied_as(checksum) {
                bail!(
                    "migration {} was changed after it was applied; add a new migration instead",
                    migration.version
                );
            }
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(&migration.sql)
            .await
            .with_context(|| format!("migration {} failed", migration.version))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
            &[&migration.version, &migration.checksum],
        )
        .await?;
        tx.commit().await?;
        done.push(migration.version.clone());
    }
    Ok(done)
}

/// Applies what is pending to the SQLite database file at `path` (created if
/// missing); returns the versions applied by this run. Each migration takes
/// the write lock (`BEGIN IMMEDIATE`) and checks `schema_migrations` again
/// under it, so two runs at once apply each migration once.
pub fn run_sqlite(path: &Path, dir: &Path) -> Result<Vec<String>> {
    let migrations = read_dir(dir)?;
    let mut connection = vapi_edge_backends::sqlite::open_file(path)?;
    connection
        .execute_batch(vapi_edge_core::sqlite_sql::CREATE_SCHEMA_MIGRATIONS)
        .context("cannot prepare schema_migrations")?;
    let mut done = Vec::new();
    for migration in &migrations {
        let tx = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .with_context(|| format!("cannot lock {}", path.display()))?;
        let applied: Option<String> = rusqlite::OptionalExtension::optional(tx.query_row(
            "SELECT checksum FROM schema_migrations WHERE version = ?1",
            [&migration.version],
            |row| row.get(0),
        ))?;
        if let Some(checksum) = applied {
            if !migration.was_applied_as(&checksum) {
                bail!(
                    "migration {} was changed after it was applied; add a new migration instead",
                    migration.version
                );
            }
            continue;
        }
        tx.execute_batch(&migration.sql)
            .with_context(|| format!("migration {} failed", migration.version))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, checksum) VALUES (?1, ?2)",
            [&migration.version, &migration.checksum],
        )?;
        tx.commit()?;
        done.push(migration.version.clone());
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrected_comment_is_not_a_changed_migration() {
        let sql = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../migrations/0001_init.sql"
        ))
        .unwrap();
        let migration = Migration {
            version: "0001_init".into(),
            checksum: vapi_edge_core::sqlite_sql::checksum(&sql),
            sql,
        };
        assert!(migration.was_applied_as(&migration.checksum));
        assert!(migration.was_applied_as(CORRECTED_COMMENTS[0].1));
        assert!(!migration.was_applied_as("0000"));
        let other = Migration {
            version: "0002_operations".into(),
            ..migration
        };
        assert!(!other.was_applied_as(CORRECTED_COMMENTS[0].1));
    }
}
