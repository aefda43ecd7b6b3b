//! `spin:postgres/postgres@4.0.0`: connections from the backends' pools, and
//! the interface's values converted one to one to `vapi_edge_backends::pg`'s
//! (ranges and intervals, which this host does not bind, become `Unsupported`).

use crate::bindings::spin::postgres::postgres as wit;
use crate::state::RequestState;
use vapi_edge_backends::pg::{self, PgConnection};
use wasmtime::component::Resource;

impl wit::Host for RequestState {}

impl wit::HostConnection for RequestState {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<PgConnection>, wit::Error>> {
        let services = self.services.clone();
        match services.pg.open(&address, &services.allowed_hosts).await {
            Ok(connection) => {
                self.pg_in_flight.extend(connection.in_flight());
                Ok(Ok(self.table.push(connection)?))
            }
            Err(e) => Ok(Err(error(e))),
        }
    }

    async fn query(
        &mut self,
        this: Resource<PgConnection>,
        statement: String,
        params: Vec<wit::ParameterValue>,
    ) -> wasmtime::Result<Result<wit::RowSet, wit::Error>> {
        let params = params.into_iter().map(parameter).collect();
        let connection = self.table.get_mut(&this)?;
        Ok(connection
            .query(&statement, params)
            .await
            .map(row_set)
            .map_err(error))
    }

    async fn execute(
        &mut self,
        this: Resource<PgConnection>,
        statement: String,
        params: Vec<wit::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, wit::Error>> {
        let params = params.into_iter().map(parameter).collect();
        let connection = self.table.get_mut(&this)?;
        Ok(connection.execute(&statement, params).await.map_err(error))
    }

    fn drop(&mut self, this: Resource<PgConnection>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

fn parameter(value: wit::ParameterValue) -> pg::ParameterValue {
    use pg::ParameterValue as P;
    use wit::ParameterValue as W;
    match value {
        W::Boolean(v) => P::Boolean(v),
        W::Int8(v) => P::Int8(v),
        W::Int16(v) => P::Int16(v),
        W::Int32(v) => P::Int32(v),
        W::Int64(v) => P::Int64(v),
        W::Floating32(v) => P::Floating32(v),
        W::Floating64(v) => P::Floating64(v),
        W::Str(v) => P::Str(v),
        W::Binary(v) => P::Binary(v),
        W::Date(v) => P::Date(v),
        W::Time(v) => P::Time(v),
        W::Datetime(v) => P::Datetime(v),
        W::Timestamp(v) => P::Timestamp(v),
        W::Uuid(v) => P::Uuid(v),
        W::Jsonb(v) => P::Jsonb(v),
        W::Decimal(v) => P::Decimal(v),
        W::ArrayInt32(v) => P::ArrayInt32(v),
        W::ArrayInt64(v) => P::ArrayInt64(v),
        W::ArrayDecimal(v) => P::ArrayDecimal(v),
        W::ArrayStr(v) => P::ArrayStr(v),
        W::RangeInt32(_) => P::Unsupported("range-int32"),
        W::RangeInt64(_) => P::Unsupported("range-int64"),
        W::RangeDecimal(_) => P::Unsupported("range-decimal"),
        W::Interval(_) => P::Unsupported("interval"),
        W::DbNull => P::DbNull,
    }
}

fn value(value: pg::DbValue) -> wit::DbValue {
    use pg::DbValue as P;
    use wit::DbValue as W;
    match value {
        P::Boolean(v) => W::Boolean(v),
        P::Int8(v) => W::Int8(v),
        P::Int16(v) => W::Int16(v),
        P::Int32(v) => W::Int32(v),
        P::Int64(v) => W::Int64(v),
        P::Floating32(v) => W::Floating32(v),
        P::Floating64(v) => W::Floating64(v),
        P::Str(v) => W::Str(v),
        P::Binary(v) => W::Binary(v),
        P::Date(v) => W::Date(v),
        P::Time(v) => W::Time(v),
        P::Datetime(v) => W::Datetime(v),
        P::Uuid(v) => W::Uuid(v),
        P::Jsonb(v) => W::Jsonb(v),
        P::Decimal(v) => W::Decimal(v),
        P::ArrayInt32(v) => W::ArrayInt32(v),
        P::ArrayInt64(v) => W::ArrayInt64(v),
        P::ArrayDecimal(v) => W::ArrayDecimal(v),
        P::ArrayStr(v) => W::ArrayStr(v),
        P::DbNull => W::DbNull,
        P::Unsupported(v) => W::Unsupported(v),
    }
}

fn data_type(data_type: pg::DbDataType) -> wit::DbDataType {
    use pg::DbDataType as P;
    use wit::DbDataType as W;
    match data_type {
        P::Boolean => W::Boolean,
        P::Int8 => W::Int8,
        P::Int16 => W::Int16,
        P::Int32 => W::Int32,
        P::Int64 => W::Int64,
        P::Floating32 => W::Floating32,
        P::Floating64 => W::Floating64,
        P::Str => W::Str,
        P::Binary => W::Binary,
        P::Date => W::Date,
        P::Time => W::Time,
        P::Datetime => W::Datetime,
        P::Timestamp => W::Timestamp,
        P::Uuid => W::Uuid,
        P::Jsonb => W::Jsonb,
        P::Decimal => W::Decimal,
        P::ArrayInt32 => W::ArrayInt32,
        P::ArrayInt64 => W::ArrayInt64,
        P::ArrayDecimal => W::ArrayDecimal,
        P::ArrayStr => W::ArrayStr,
        P::Other(name) => W::Other(name),
    }
}

fn row_set(rows: pg::RowSet) -> wit::RowSet {
    wit::RowSet {
        columns: rows
            .columns
            .into_iter()
            .map(|c| wit::Column {
                name: c.name,
                data_type: data_type(c.data_type),
            })
            .collect(),
        rows: rows
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(value).collect())
            .collect(),
    }
}

fn error(error: pg::PgError) -> wit::Error {
    use pg::PgError as P;
    use wit::Error as W;
    match error {
        P::ConnectionFailed(why) => W::ConnectionFailed(why),
        P::BadParameter(why) => W::BadParameter(why),
        P::QueryFailed(pg::QueryError::Text(text)) => W::QueryFailed(wit::QueryError::Text(text)),
        P::QueryFailed(pg::QueryError::DbError(db)) => {
            W::QueryFailed(wit::QueryError::DbError(wit::DbError {
                as_text: db.as_text,
                severity: db.severity,
                code: db.code,
                message: db.message,
                detail: db.detail,
                extras: db.extras,
            }))
        }
        P::ValueConversionFailed(why) => W::ValueConversionFailed(why),
        P::Other(why) => W::Other(why),
    }
}

#[cfg(test)]
mod tests {
    //! The two sides name every variant alike, so a value converts correctly
    //! exactly when both print the same.
    use super::*;
    use crate::interfaces::test_support::same;

    #[test]
    fn every_parameter_kind_converts_and_nulls_stay_null() {
        use wit::ParameterValue as W;
        let all = vec![
            W::Boolean(true),
            W::Int8(-8),
            W::Int16(-16),
            W::Int32(-32),
            W::Int64(i64::MIN),
            W::Floating32(1.5),
            W::Floating64(-0.25),
            W::Str("héllo".into()),
            W::Binary(vec![0, 255]),
            W::Date((2026, 12, 2)),
            W::Time((23, 59, 58, 999_999_999)),
            W::Datetime((2026, 12, 2, 10, 30, 0, 1)),
            W::Timestamp(1_796_000_000),
            W::Uuid("6f1c2a4e-8b3d-4f7a-9c2e-1d5b7e9a3c40".into()),
            W::Jsonb(br#"{"a":1}"#.to_vec()),
            W::Decimal("12.50".into()),
            W::ArrayInt32(vec![Some(1), None]),
            W::ArrayInt64(vec![None, Some(2)]),
            W::ArrayDecimal(vec![Some("1.5".into()), None]),
            W::ArrayStr(vec![Some("a".into()), None]),
            W::DbNull,
        ];
        for wit_value in all {
            same(&wit_value, parameter(wit_value.clone()));
        }
    }

    #[test]
    fn ranges_and_intervals_are_named_as_unsupported() {
        let range = wit::ParameterValue::RangeInt32((None, None));
        assert_eq!(
            parameter(range),
            pg::ParameterValue::Unsupported("range-int32")
        );
        let interval = wit::ParameterValue::Interval(wit::Interval {
            micros: 1,
            days: 0,
            months: 0,
        });
        assert_eq!(
            parameter(interval),
            pg::ParameterValue::Unsupported("interval")
        );
    }

    #[test]
    fn every_value_kind_converts_back() {
        use pg::DbValue as P;
        let all = vec![
            P::Boolean(false),
            P::Int8(8),
            P::Int16(16),
            P::Int32(32),
            P::Int64(64),
            P::Floating32(0.5),
            P::Floating64(2.5),
            P::Str("x".into()),
            P::Binary(vec![1]),
            P::Date((1970, 1, 1)),
            P::Time((0, 0, 0, 0)),
            P::Datetime((2000, 2, 29, 23, 59, 59, 0)),
            P::Uuid("u".into()),
            P::Jsonb(b"[]".to_vec()),
            P::Decimal("0.1".into()),
            P::ArrayInt32(vec![None]),
            P::ArrayInt64(vec![Some(-1)]),
            P::ArrayDecimal(vec![None]),
            P::ArrayStr(vec![Some(String::new())]),
            P::DbNull,
            P::Unsupported(vec![9, 9]),
        ];
        for plain in all {
            same(&plain, value(plain.clone()));
        }
        let rows = pg::RowSet {
            columns: vec![pg::Column {
                name: "n".into(),
                data_type: pg::DbDataType::Other("point".into()),
            }],
            rows: vec![vec![P::DbNull]],
        };
        same(&rows, row_set(rows.clone()));
    }

    #[test]
    fn errors_keep_the_sqlstate_and_message() {
        let db = pg::PgError::QueryFailed(pg::QueryError::DbError(pg::DbError {
            as_text: "ERROR: duplicate".into(),
            severity: "ERROR".into(),
            code: "23505".into(),
            message: "duplicate key".into(),
            detail: None,
            extras: vec![],
        }));
        same(&db, error(db.clone()));
        for plain in [
            pg::PgError::ConnectionFailed("refused".into()),
            pg::PgError::BadParameter("$1".into()),
            pg::PgError::QueryFailed(pg::QueryError::Text("closed".into())),
            pg::PgError::ValueConversionFailed("column 0".into()),
            pg::PgError::Other("other".into()),
        ] {
            same(&plain, error(plain.clone()));
        }
    }
}
