//! The read-only gate in front of DataFusion: only queries over the registered tables run.
//!
//! DataFusion's SQL front end also plans `COPY ... TO`, `CREATE EXTERNAL TABLE`, `INSERT`,
//! `SET` and more, which write files or read any path the process can. The query API is
//! reachable from the network, so a statement is parsed first and refused unless it is a
//! query (`SELECT`, `WITH`, `VALUES`), `EXPLAIN` of one, `SHOW TABLES`, `SHOW COLUMNS` or
//! `DESCRIBE`. The plan is checked a second time with DataFusion's own `SQLOptions`
//! (no DDL, DML or statements), so a statement kind this list did not foresee is still
//! refused. URL tables (`SELECT * FROM '/etc/passwd'`) are off in the sessions we build.

use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;

use crate::error::{Error, Result};

/// Checks that `sql` is one statement that only reads; the error names what was refused.
pub(crate) fn check(sql: &str) -> Result<()> {
    let mut statements = DFParser::parse_sql(sql)?;
    let statement = match (statements.pop_front(), statements.len()) {
        (None, _) => return Err(Error::Refused("the query is empty".into())),
        (Some(s), 0) => s,
        (Some(_), more) => {
            return Err(Error::Refused(format!("one statement per query, found {}", more + 1)));
        }
    };
    match reads_only(&statement) {
        Ok(()) => Ok(()),
        Err(kind) => Err(Error::Refused(format!(
            "{kind} statements are not allowed: only queries (SELECT, WITH, VALUES, EXPLAIN, SHOW, DESCRIBE) run here"
        ))),
    }
}

/// `Err(kind)` names the statement kind when it is not a read.
fn reads_only(statement: &Statement) -> Result<(), String> {
    match statement {
        Statement::Statement(s) => match s.as_ref() {
            SqlStatement::Query(_) | SqlStatement::ShowTables { .. } | SqlStatement::ShowColumns { .. } => Ok(()),
            SqlStatement::ExplainTable { .. } => Ok(()),
            SqlStatement::Explain { statement, .. } => match statement.as_ref() {
                SqlStatement::Query(_) => Ok(()),
                other => Err(format!("EXPLAIN {}", sql_kind(other))),
            },
            other => Err(sql_kind(other)),
        },
        Statement::Explain(e) => reads_only(&e.statement).map_err(|kind| format!("EXPLAIN {kind}")),
        Statement::CreateExternalTable(_) => Err("CREATE EXTERNAL TABLE".into()),
        Statement::CopyTo(_) => Err("COPY".into()),
        Statement::Reset(_) => Err("RESET".into()),
    }
}

/// The statement kind in SQL words, from the parser's variant name (`CreateTable` ->
/// `CREATE TABLE`, `SetVariable` -> `SET VARIABLE`).
fn sql_kind(statement: &SqlStatement) -> String {
    let debug = format!("{statement:?}");
    let variant: String = debug.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    let mut words = String::new();
    for (i, c) in variant.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            words.push(' ');
        }
        words.push(c.to_ascii_uppercase());
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(sql: &str) -> String {
        match check(sql) {
            Err(Error::Refused(m)) => m,
            other => panic!("{sql:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn queries_pass() {
        for sql in [
            "SELECT 1",
            "select count(*) from requests where model = 'a'",
            "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
            "VALUES (1), (2)",
            "EXPLAIN SELECT * FROM spans",
            "EXPLAIN ANALYZE SELECT * FROM spans",
            "SHOW TABLES",
            "SHOW COLUMNS FROM requests",
            "DESCRIBE requests",
            "SELECT 1;",
        ] {
            check(sql).unwrap_or_else(|e| panic!("{sql:?}: {e}"));
        }
    }

    #[test]
    fn writes_and_file_access_are_refused_by_kind() {
        let copy = "COPY (SELECT 'x' AS line) TO '/tmp/cron.csv' STORED AS CSV";
        assert!(refused(copy).starts_with("COPY statements are not allowed"), "{}", refused(copy));
        let ext = "CREATE EXTERNAL TABLE p (a TEXT) STORED AS CSV LOCATION '/etc/passwd'";
        assert!(refused(ext).starts_with("CREATE EXTERNAL TABLE"), "{}", refused(ext));
        assert!(refused("CREATE TABLE t AS SELECT 1").starts_with("CREATE TABLE"));
        assert!(refused("CREATE VIEW v AS SELECT 1").starts_with("CREATE VIEW"));
        assert!(refused("INSERT INTO requests SELECT * FROM requests").starts_with("INSERT"));
        assert!(refused("DELETE FROM requests").starts_with("DELETE"));
        assert!(refused("DROP TABLE requests").starts_with("DROP"));
        assert!(refused("SET datafusion.execution.batch_size = 1").starts_with("SET"), "{}", refused("SET x = 1"));
        assert!(refused("RESET datafusion.execution.batch_size").starts_with("RESET"));
        assert!(refused("EXPLAIN COPY (SELECT 1) TO '/tmp/x.csv'").starts_with("EXPLAIN COPY"));
        assert!(refused("EXPLAIN ANALYZE INSERT INTO requests VALUES (1)").starts_with("EXPLAIN INSERT"));
        assert!(refused("SELECT 1; COPY (SELECT 1) TO '/tmp/x.csv'").starts_with("one statement per query, found 2"));
        assert_eq!(refused("  "), "the query is empty");
    }

    #[test]
    fn a_parse_error_is_the_parsers() {
        let err = check("SELEC 1").unwrap_err();
        assert!(err.is_user_error(), "{err}");
    }
}
