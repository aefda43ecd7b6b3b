//! The database schema version this build of the component expects.
//!
//! `/healthz` compares it with the newest migration recorded by
//! `vapi-edge-host migrate`, so a deploy that forgot to migrate is not ready.
//! Migrations are additive only, so a build also runs on a newer schema: the
//! previous `.wasm` stays ready after a rollback.

/// Numeric prefix of the newest file in `migrations/`.
pub const SCHEMA_VERSION: u32 = 9;

/// The numeric prefix of a migration version such as `0001_init`.
pub fn version_number(version: &str) -> Option<u32> {
    let digits: String = version.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Whether this build can run on a database migrated to `seen`.
pub fn is_compatible(seen: u32) -> bool {
    seen >= SCHEMA_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_schemas_are_not_ready_newer_ones_are() {
        assert!(!is_compatible(SCHEMA_VERSION - 1));
        assert!(is_compatible(SCHEMA_VERSION));
        assert!(is_compatible(SCHEMA_VERSION + 1));
    }

    #[test]
    fn version_number_reads_the_prefix() {
        assert_eq!(version_number("0001_init"), Some(1));
        assert_eq!(version_number("0012_more.sql"), Some(12));
        assert_eq!(version_number("init"), None);
    }

    #[test]
    fn expected_version_is_the_newest_migration_file() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations");
        let newest = std::fs::read_dir(dir)
            .expect("migrations/ exists")
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| name.ends_with(".sql"))
            .filter_map(|name| version_number(&name))
            .max();
        assert_eq!(newest, Some(SCHEMA_VERSION));
    }
}
