//! The two migration sets describe one schema: `migrations/*.sql` for
//! PostgreSQL and `migrations/sqlite/*.sql` for the built-in SQLite store.
//! Both are applied with the real `vapi-edge-host migrate`, then read back
//! from each engine's catalogue and compared: the same migration versions,
//! tables, columns (with NOT NULL and defaults), index names and trigger
//! names. A column added to one set and not the other fails here.

use crate::common::*;
use std::collections::BTreeMap;

/// A column as both catalogues can tell it: (not null, has a default).
type Columns = BTreeMap<String, (bool, bool)>;

#[derive(Debug, PartialEq)]
struct Schema {
    migrations: Vec<String>,
    tables: BTreeMap<String, Columns>,
    indexes: Vec<String>,
    triggers: Vec<String>,
}

async fn postgres_schema(db: &TestDb) -> Schema {
    let mut tables: BTreeMap<String, Columns> = BTreeMap::new();
    for row in db
        .rows(
            "SELECT table_name, column_name, is_nullable, column_default
             FROM information_schema.columns WHERE table_schema = 'public'",
            &[],
        )
        .await
    {
        let not_null = row.text(2) == "NO";
        // A primary key is NOT NULL in both; SQLite's rowid alias
        // (`INTEGER PRIMARY KEY`) is Postgres' bigserial: both have a default.
        let has_default = row.opt(3).is_some();
        tables
            .entry(row.text(0))
            .or_default()
            .insert(row.text(1), (not_null, has_default));
    }
    let mut indexes: Vec<String> = db
        .rows(
            // Indexes the migrations create, not those behind a PRIMARY KEY
            // or UNIQUE constraint (SQLite's are `sqlite_autoindex_*`).
            "SELECT indexname FROM pg_indexes i WHERE schemaname = 'public'
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
            &[],
        )
        .await
        .iter()
        .map(|row| row.text(0))
        .collect();
    indexes.sort();
    let triggers = db
        .rows(
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY tgname",
            &[],
        )
        .await
        .iter()
        .map(|row| row.text(0))
        .collect();
    let migrations = db
        .rows(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .iter()
        .map(|row| row.text(0))
        .collect();
    Schema {
        migrations,
        tables,
        indexes,
        triggers,
    }
}

fn sqlite_schema(path: &std::path::Path) -> Schema {
    let db = rusqlite::Connection::open(path).unwrap();
    let names: Vec<String> = db
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut tables = BTreeMap::new();
    for table in names {
        let mut columns = Columns::new();
        let mut statement = db
            .prepare(&format!(
                "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info('{table}')"
            ))
            .unwrap();
        let rows = statement
            .query_map([], |row| {
                let name: String = row.get(0)?;
                let kind: String = row.get(1)?;
                let not_null: bool = row.get(2)?;
                let default: Option<String> = row.get(3)?;
                let pk: i64 = row.get(4)?;
                let rowid_alias = pk == 1 && kind.eq_ignore_ascii_case("INTEGER");
                Ok((
                    name,
                    (not_null || rowid_alias, default.is_some() || rowid_alias),
                ))
            })
            .unwrap();
        for row in rows {
            let (name, shape) = row.unwrap();
            columns.insert(name, shape);
        }
        tables.insert(table, columns);
    }
    // Indexes the migrations create (constraint indexes have no SQL).
    let mut indexes: Vec<String> = db
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    indexes.sort();
    let triggers = db
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'trigger' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let migrations = db
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    Schema {
        migrations,
        tables,
        indexes,
        triggers,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_and_sqlite_migrations_make_the_same_schema() {
    let postgres = TestDb::migrated_on(StoreKind::Postgres).await;
    let sqlite = TestDb::migrated_on(StoreKind::Sqlite).await;
    let expected = postgres_schema(&postgres).await;
    let actual = sqlite_schema(&sqlite.sqlite_path());

    assert_eq!(actual.migrations, expected.migrations, "migration versions");
    assert!(
        expected.tables.contains_key("call_tracking"),
        "{expected:?}"
    );
    let names = |schema: &Schema| schema.tables.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&actual), names(&expected), "tables");
    for (table, columns) in &expected.tables {
        assert_eq!(
            &actual.tables[table], columns,
            "columns of {table}: (not null, has default)"
        );
    }
    assert_eq!(actual.indexes, expected.indexes, "indexes");
    assert!(!expected.triggers.is_empty(), "{expected:?}");
    assert_eq!(actual.triggers, expected.triggers, "triggers");
}
