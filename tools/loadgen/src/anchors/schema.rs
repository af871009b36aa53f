//! For the tests: the tables and columns the project's migrations create,
//! read from `migrations/<backend>/*.sql`, and the columns an anchor's SQL
//! names, so that a script that drifts from the schema fails a test rather
//! than a benchmark.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

/// Lower-case words the anchors' SQL uses that are neither tables nor
/// columns: functions, type names, aliases and `\gset` targets. Keywords
/// are written in capitals and are not looked at.
const NOT_COLUMNS: &[&str] = &[
    "bigint",
    "clock_timestamp",
    "count",
    "epoch",
    "extract",
    "g",
    "gen_random_uuid",
    "generate_series",
    "gset",
    "integer",
    "lpad",
    "md5",
    "ms",
    "now",
    "gdpr_lock_and_find_open",
    "pg_current_xact_id",
    "random",
    "repeat",
    "replace",
    "request",
    "row_number",
    "statement_timestamp",
    "substr",
    "t",
    "task",
    "text",
    "to_hex",
    "us",
    "uuid",
];

/// Tables loadgen makes for an anchor and drops after it.
const LOADGEN_TABLES: &[(&str, &[&str])] = &[
    ("loadgen_anchor_ids", &["k", "id"]),
    ("loadgen_pgbench_requests", &[]),
];

/// Table name to its columns, in the order the migrations add them.
pub struct Schema {
    tables: BTreeMap<String, Vec<String>>,
}

impl Schema {
    /// Every migration of `backend` (`postgres`, `sqlite`), in order.
    pub fn of_migrations(backend: &str) -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../migrations")
            .join(backend);
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "sql"))
            .collect();
        files.sort();
        let mut schema = Self {
            tables: BTreeMap::new(),
        };
        for file in files {
            let text =
                fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            schema.read(&text);
        }
        assert!(!schema.tables.is_empty(), "no table in {}", dir.display());
        schema
    }

    /// Takes in the `CREATE TABLE` bodies, `ALTER TABLE … ADD COLUMN`s,
    /// `ALTER TABLE … RENAME TO`s and `DROP TABLE`s of one migration (a
    /// table rebuilt under a new name and renamed back has the new body). A column is a line of a table's body that starts
    /// with a lower-case name followed by a type in capitals; constraints
    /// and their continuation lines start with a keyword or a literal.
    fn read(&mut self, migration: &str) {
        let mut current: Option<String> = None;
        // The table of an `ALTER TABLE` whose clauses go on over the next
        // lines, until the one that ends the statement.
        let mut altering: Option<String> = None;
        for line in migration.lines().map(str::trim) {
            if let Some(table) = altering.take() {
                if let Some(rest) = line.strip_prefix("ADD COLUMN ") {
                    let column = rest.split_whitespace().next().unwrap_or_default();
                    self.tables
                        .entry(table.clone())
                        .or_default()
                        .push(column.to_owned());
                }
                if !line.ends_with(';') {
                    altering = Some(table);
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("CREATE TABLE ") {
                let name = rest.split([' ', '(']).next().unwrap_or_default();
                self.tables.entry(name.to_owned()).or_default();
                current = Some(name.to_owned());
            } else if line.starts_with(");") {
                current = None;
            } else if let Some(rest) = line.strip_prefix("DROP TABLE ") {
                self.tables.remove(rest.trim_end_matches(';'));
            } else if let Some(rest) = line.strip_prefix("ALTER TABLE ") {
                let mut words = rest.split_whitespace();
                let table = words.next().unwrap_or_default().to_owned();
                if !line.ends_with(';') {
                    altering = Some(table.clone());
                }
                match (words.next(), words.next(), words.next()) {
                    (Some("ADD"), Some("COLUMN"), Some(column)) => {
                        self.tables
                            .entry(table)
                            .or_default()
                            .push(column.to_owned());
                    }
                    (Some("RENAME"), Some("TO"), Some(new_name)) => {
                        let columns = self.tables.remove(&table).unwrap_or_default();
                        self.tables
                            .insert(new_name.trim_end_matches(';').to_owned(), columns);
                    }
                    _ => {}
                }
            } else if let Some(table) = &current {
                let mut words = line.split_whitespace();
                if let (Some(name), Some(kind)) = (words.next(), words.next())
                    && is_name(name)
                    && kind.starts_with(|c: char| c.is_ascii_uppercase())
                {
                    self.tables
                        .entry(table.clone())
                        .or_default()
                        .push(name.to_owned());
                }
            }
        }
    }

    pub fn columns(&self, table: &str) -> &[String] {
        self.tables
            .get(table)
            .map(Vec::as_slice)
            .unwrap_or_else(|| panic!("no table {table} in the migrations"))
    }

    pub fn sorted<'a>(&self, columns: &'a [String]) -> Vec<&'a str> {
        let mut sorted: Vec<&str> = columns.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        sorted
    }

    /// Each `INSERT INTO table (columns)` of `sql`, in order.
    pub fn inserts(&self, sql: &str) -> Vec<(String, Vec<String>)> {
        let sql = one_line(sql);
        let mut found = Vec::new();
        let mut rest = sql.as_str();
        while let Some(at) = rest.find("INSERT INTO ") {
            rest = &rest[at + "INSERT INTO ".len()..];
            let table = rest.split([' ', '(']).next().unwrap_or_default().to_owned();
            let open = rest.find('(').unwrap_or(0);
            let close = rest.find(')').unwrap_or(open);
            found.push((table, names(&rest[open + 1..close])));
        }
        found
    }

    /// The table and the column list of the first `SELECT … FROM table`.
    pub fn select(&self, sql: &str) -> (String, Vec<String>) {
        let sql = one_line(sql);
        let start = sql.find("SELECT ").expect("a SELECT") + "SELECT ".len();
        let from = sql[start..].find(" FROM ").expect("a FROM") + start;
        let table = sql[from + " FROM ".len()..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        (table, names(&sql[start..from]))
    }

    /// The lower-case words of `sql` (outside comments, string literals and
    /// pgbench variables) that are no table, no column of any table and
    /// not in [`NOT_COLUMNS`].
    pub fn unknown_columns(&self, sql: &str) -> Vec<String> {
        let mut known: Vec<&str> = NOT_COLUMNS.to_vec();
        for (table, columns) in &self.tables {
            known.push(table);
            known.extend(columns.iter().map(String::as_str));
        }
        for (table, columns) in LOADGEN_TABLES {
            known.push(table);
            known.extend(columns.iter());
        }
        words(&strip_comments(sql))
            .into_iter()
            .filter(|w| !known.contains(&w.as_str()))
            .collect()
    }
}

fn is_name(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The names of a comma-separated list.
fn names(list: &str) -> Vec<String> {
    list.split(',')
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect()
}

/// `sql` without its `--` comments and pgbench's `\set` lines.
fn strip_comments(sql: &str) -> String {
    sql.lines()
        .map(|line| line.split("--").next().unwrap_or_default())
        .filter(|line| !line.trim_start().starts_with("\\set"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `sql` without comments, on one line, each run of white space one space.
fn one_line(sql: &str) -> String {
    strip_comments(sql)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The lower-case identifiers of `sql`, skipping string literals, pgbench's
/// `:variables` and a `::type` cast's type name.
fn words(sql: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut chars = sql.chars().peekable();
    let mut previous = ' ';
    while let Some(c) = chars.next() {
        if c == '\'' {
            for d in chars.by_ref() {
                if d == '\'' {
                    break;
                }
            }
            previous = '\'';
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut word = String::from(c);
            while let Some(&d) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' {
                    word.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            // A variable (`:name`) is pgbench's, a cast's type is a type.
            if previous != ':' && is_name(&word) {
                found.push(word);
            }
            previous = 'a';
        } else {
            previous = c;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_read_from_table_bodies_and_alterations() {
        let mut schema = Schema {
            tables: BTreeMap::new(),
        };
        schema.read(
            "CREATE TABLE jobs (\n    id UUID NOT NULL PRIMARY KEY,\n    -- a comment\n    \
             state TEXT NOT NULL CHECK (state IN (\n        'a', 'b')),\n    \
             UNIQUE (id, state),\n    CHECK ((state IS NULL)\n        AND (id IS NULL))\n);\n\
             CREATE INDEX jobs_state ON jobs (state);\n\
             ALTER TABLE jobs ADD COLUMN note TEXT;\n\
             CREATE TABLE jobs_new (\n    seq INTEGER PRIMARY KEY,\n    id TEXT NOT NULL\n);\n\
             DROP TABLE jobs;\n\
             ALTER TABLE jobs_new RENAME TO jobs;\n",
        );
        assert_eq!(schema.columns("jobs"), ["seq", "id"]);
        assert!(!schema.tables.contains_key("jobs_new"));
        // Clauses of one ALTER TABLE over several lines.
        schema.read(
            "ALTER TABLE jobs\n    ADD COLUMN due BIGINT,\n    ADD COLUMN tags TEXT NOT NULL DEFAULT '[]',\n    \
             ADD CONSTRAINT jobs_due CHECK (due > 0);\n\
             ALTER TABLE jobs\n    ALTER COLUMN due SET NOT NULL;\n\
             CREATE INDEX jobs_due ON jobs (due);\n",
        );
        assert_eq!(schema.columns("jobs"), ["seq", "id", "due", "tags"]);
    }

    #[test]
    fn words_skip_literals_variables_and_keywords() {
        assert_eq!(
            words("SELECT md5(:n::text), 'a b' FROM jobs WHERE id = :id"),
            ["md5", "jobs", "id"]
        );
        let schema = Schema::of_migrations("postgres");
        assert_eq!(
            schema.unknown_columns("UPDATE tasks SET stat = 1 WHERE id = :id -- nope"),
            ["stat"]
        );
        assert_eq!(
            schema.inserts("INSERT INTO jobs (a, b) VALUES (1, 2);\nINSERT INTO x (c)\n"),
            [
                ("jobs".to_owned(), vec!["a".to_owned(), "b".to_owned()]),
                ("x".to_owned(), vec!["c".to_owned()]),
            ]
        );
    }
}
