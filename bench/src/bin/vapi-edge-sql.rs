//! `vapi-edge-sql`: prints a statement the component sends to PostgreSQL,
//! with SQL literals in place of its parameters, so that a benchmark script
//! runs the component's own statement and cannot drift from it.
//!
//! ```text
//! vapi-edge-sql metrics_snapshot            # no parameters
//! vapi-edge-sql dashboard_summary NULL      # $1 = NULL (every organisation)
//! vapi-edge-sql --list
//! ```
//!
//! A parameter not given keeps the statement's "finds nothing" literal
//! (`vapi_edge_core::pg_sql::ROW_QUERIES`), or for a statement that returns
//! no rows, a typical value ([`EXECUTED`]).

use clap::Parser;
use vapi_edge_core::pg_sql::{self, RowQuery, ROW_QUERIES};

/// The statements the component sends with `execute` (no rows back) that the
/// benchmarks run, with literals of a typical call.
const EXECUTED: &[RowQuery] = &[RowQuery {
    name: "insert_event_row",
    sql: pg_sql::INSERT_EVENT_ROW,
    not_found: &[
        "'status-update'",
        "'call-0'",
        "'6f1c2a4e-8b3d-4f7a-9c2e-1d5b7e9a3c40'",
        "'inbound'",
        "'recorded'",
        "200",
        "3.5",
        "NULL",
        // The tenant ('' for the single-tenant route; migration 0008).
        "''",
    ],
}];

#[derive(Parser, Debug)]
#[command(name = "vapi-edge-sql", version)]
struct Cli {
    /// Lists the statements' names and parameter counts.
    #[arg(long)]
    list: bool,
    /// The statement's name, as in `ROW_QUERIES` (e.g. metrics_snapshot).
    name: Option<String>,
    /// SQL literals for $1, $2, ... (e.g. NULL, 'text', 42).
    literals: Vec<String>,
}

fn main() {
    let cli = Cli::parse();
    if cli.list {
        for query in ROW_QUERIES.iter().chain(EXECUTED) {
            println!("{} ({} parameters)", query.name, query.not_found.len());
        }
        return;
    }
    let Some(name) = cli.name else {
        eprintln!("error: name a statement (--list shows them)");
        std::process::exit(2);
    };
    let Some(query) = ROW_QUERIES.iter().chain(EXECUTED).find(|q| q.name == name) else {
        eprintln!("error: no statement named {name:?} (--list shows them)");
        std::process::exit(2);
    };
    if cli.literals.len() > query.not_found.len() {
        eprintln!(
            "error: {name} takes {} parameters, {} given",
            query.not_found.len(),
            cli.literals.len()
        );
        std::process::exit(2);
    }
    let literals: Vec<&str> = query
        .not_found
        .iter()
        .enumerate()
        .map(|(i, default)| cli.literals.get(i).map_or(*default, String::as_str))
        .collect();
    println!("{};", query.with_literals(&literals));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parameter without a literal would reach pgbench as `$n` and fail
    /// there (bench/pg_floor.sh), far from the statement that gained it.
    #[test]
    fn every_statement_prints_with_a_literal_for_each_parameter() {
        for query in ROW_QUERIES.iter().chain(EXECUTED) {
            let printed = query.with_not_found_literals();
            assert!(!printed.contains('$'), "{}: {printed}", query.name);
        }
    }
}
