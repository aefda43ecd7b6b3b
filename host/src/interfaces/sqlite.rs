//! `spin:sqlite/sqlite@3.0.0`: connections to the granted databases, and the
//! interface's values converted one to one to `vapi_edge_backends::sqlite`'s.

use crate::bindings::spin::sqlite::sqlite as wit;
use crate::state::RequestState;
use vapi_edge_backends::sqlite::{self, SqliteConnection};
use wasmtime::component::Resource;

impl wit::Host for RequestState {}

impl wit::HostConnection for RequestState {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<SqliteConnection>, wit::Error>> {
        let Some(configured) = self.services.sqlite.get(&database) else {
            return Ok(Err(wit::Error::AccessDenied));
        };
        let Some(configured) = configured.clone() else {
            return Ok(Err(wit::Error::NoSuchDatabase));
        };
        if self.sqlite_open >= sqlite::MAX_CONNECTIONS_PER_REQUEST {
            return Ok(Err(wit::Error::Io("too many connections opened".into())));
        }
        match configured.open().await {
            Ok(connection) => {
                self.sqlite_in_flight.retain(sqlite::InFlight::is_open);
                self.sqlite_in_flight.push(connection.in_flight());
                self.sqlite_open += 1;
                Ok(Ok(self.table.push(connection)?))
            }
            Err(e) => Ok(Err(error(e))),
        }
    }

    async fn execute(
        &mut self,
        this: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<wit::Value>,
    ) -> wasmtime::Result<Result<wit::QueryResult, wit::Error>> {
        let parameters = parameters.into_iter().map(to_backend).collect();
        let connection = self.table.get(&this)?;
        Ok(connection
            .execute(statement, parameters)
            .await
            .map(query_result)
            .map_err(error))
    }

    fn last_insert_rowid(&mut self, this: Resource<SqliteConnection>) -> wasmtime::Result<i64> {
        Ok(self.table.get(&this)?.last_insert_rowid())
    }

    fn changes(&mut self, this: Resource<SqliteConnection>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&this)?.changes())
    }

    fn drop(&mut self, this: Resource<SqliteConnection>) -> wasmtime::Result<()> {
        // Closing the connection rolls back a transaction the guest left open.
        self.table.delete(this)?;
        self.sqlite_open = self.sqlite_open.saturating_sub(1);
        Ok(())
    }
}

fn to_backend(value: wit::Value) -> sqlite::Value {
    match value {
        wit::Value::Integer(v) => sqlite::Value::Integer(v),
        wit::Value::Real(v) => sqlite::Value::Real(v),
        wit::Value::Text(v) => sqlite::Value::Text(v),
        wit::Value::Blob(v) => sqlite::Value::Blob(v),
        wit::Value::Null => sqlite::Value::Null,
    }
}

fn to_wit(value: sqlite::Value) -> wit::Value {
    match value {
        sqlite::Value::Integer(v) => wit::Value::Integer(v),
        sqlite::Value::Real(v) => wit::Value::Real(v),
        sqlite::Value::Text(v) => wit::Value::Text(v),
        sqlite::Value::Blob(v) => wit::Value::Blob(v),
        sqlite::Value::Null => wit::Value::Null,
    }
}

fn query_result(result: sqlite::QueryResult) -> wit::QueryResult {
    wit::QueryResult {
        columns: result.columns,
        rows: result
            .rows
            .into_iter()
            .map(|row| wit::RowResult {
                values: row.values.into_iter().map(to_wit).collect(),
            })
            .collect(),
    }
}

fn error(error: sqlite::SqliteError) -> wit::Error {
    match error {
        sqlite::SqliteError::NoSuchDatabase => wit::Error::NoSuchDatabase,
        sqlite::SqliteError::AccessDenied => wit::Error::AccessDenied,
        sqlite::SqliteError::InvalidConnection => wit::Error::InvalidConnection,
        sqlite::SqliteError::DatabaseFull => wit::Error::DatabaseFull,
        sqlite::SqliteError::Io(message) => wit::Error::Io(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interfaces::test_support::same;

    #[test]
    fn every_value_kind_converts_both_ways() {
        for value in [
            wit::Value::Integer(i64::MIN),
            wit::Value::Real(-0.5),
            wit::Value::Text("héllo ✓".into()),
            wit::Value::Blob(vec![0, 1, 255]),
            wit::Value::Null,
        ] {
            let backend = to_backend(value.clone());
            same(&value, &backend);
            same(&value, to_wit(backend));
        }
    }

    #[test]
    fn results_and_errors_convert() {
        let result = sqlite::QueryResult {
            columns: vec!["a".into(), "b".into()],
            rows: vec![sqlite::RowResult {
                values: vec![sqlite::Value::Null, sqlite::Value::Integer(1)],
            }],
        };
        same(&result, query_result(result.clone()));
        for e in [
            sqlite::SqliteError::NoSuchDatabase,
            sqlite::SqliteError::AccessDenied,
            sqlite::SqliteError::InvalidConnection,
            sqlite::SqliteError::DatabaseFull,
            sqlite::SqliteError::Io("database is locked".into()),
        ] {
            same(&e, error(e.clone()));
        }
    }
}
