//! `FLOAT` columns, read exactly beside the dump.
//!
//! The server prints a `FLOAT` with six significant digits (`FLT_DIG`) wherever it
//! prints one as text, and text is all `mariadb-dump` and `mysqldump` read: `0.333333`
//! for 0.3333333432674408, `123457` for 123456.7890625. Read back, 4,286 of 5,003
//! random values came back as other numbers. No option of the dump tools and no
//! setting of the server prints more digits. A `FLOAT` times `1e0` is a `DOUBLE`, and a
//! `DOUBLE` is printed with the fewest digits that read back as the same value, so
//! `f * 1e0` is the float exactly.
//!
//! So, for every table with a `FLOAT` column (without a fixed number of decimals:
//! those print all their digits), a session of envsnap's reads the table's rows beside
//! the dump, with each such column also as a `DOUBLE`, and the value the dump wrote is
//! replaced, as the dump passes, by the exact one wherever the dump's would read back
//! as another float. Both must see the same rows:
//!
//! - A third session takes `LOCK TABLES … READ` on those tables (writers wait; readers
//!   do not), then the reading session starts its consistent snapshot, then the dump
//!   starts its own; once the dump has begun its first table (its snapshot is taken by
//!   then) the lock is released. No write to those tables could fall between the two
//!   snapshots. The lock waits at most `ENVSNAP_LOCK_TIMEOUT`, and is held for the
//!   start of one `mariadb-dump`: milliseconds. A table that is not InnoDB has no
//!   snapshot, so when one is among them the lock is held until the dump ends.
//! - The reading session selects what the dump's `SELECT` does (the same columns,
//!   in the same order, so the server plans both alike) and the rows are matched one
//!   for one, in order. Each `FLOAT` the dump wrote must be the text the session read
//!   for the same row and column: a row out of step fails the snapshot rather than
//!   write one row's value into another.
//!
//! The cost: the rows of those tables are read twice, once by each session.

use std::io::{self, BufRead, BufReader, Read};
use std::process::{ChildStdin, ChildStdout};

use super::{BATCH_LIMIT, CLIENTS, MysqlService, Pipe, identifier};
use crate::element::service::process::Tool;
use crate::element::service::sql::{Pieces, Produce};
use crate::error::{Error, Result};

/// A table with at least one `FLOAT` column whose values the dump cannot print exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloatTable {
    pub name: String,
    /// The columns that `SELECT *` returns, in order: what an `INSERT` of the dump
    /// without a column list fills.
    visible: Vec<String>,
    /// The `FLOAT` columns.
    floats: Vec<String>,
    /// InnoDB, whose reads see a snapshot.
    transactional: bool,
}

/// The query whose rows [`FloatTable::parse`] reads: every column of the tables of
/// `database` that have a `FLOAT` column without decimals. Names come as hex, which no
/// name can break.
pub fn columns_query(database: &str) -> String {
    let database = super::literal(database);
    format!(
        "SELECT HEX(c.TABLE_NAME), HEX(c.COLUMN_NAME), \
         c.DATA_TYPE = 'float' AND c.NUMERIC_SCALE IS NULL AND c.EXTRA NOT LIKE '%GENERATED%', \
         c.EXTRA LIKE '%INVISIBLE%', IFNULL(t.ENGINE, '') = 'InnoDB' \
         FROM information_schema.COLUMNS c JOIN information_schema.TABLES t \
         ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
         WHERE c.TABLE_SCHEMA = {database} AND t.TABLE_TYPE <> 'VIEW' AND c.TABLE_NAME IN \
         (SELECT TABLE_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {database} \
         AND DATA_TYPE = 'float' AND NUMERIC_SCALE IS NULL AND EXTRA NOT LIKE '%GENERATED%') \
         ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION"
    )
}

impl FloatTable {
    /// The tables in the client's answer to [`columns_query`].
    pub fn parse(rows: &str) -> Vec<FloatTable> {
        let text =
            |hex_text: &str| hex::decode(hex_text).ok().map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        let mut tables: Vec<FloatTable> = Vec::new();
        for line in rows.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            let [table, column, float, invisible, transactional] = fields[..] else { continue };
            let (Some(table), Some(column)) = (text(table), text(column)) else { continue };
            if tables.last().is_none_or(|last| last.name != table) {
                tables.push(FloatTable {
                    name: table,
                    visible: Vec::new(),
                    floats: Vec::new(),
                    transactional: transactional == "1",
                });
            }
            let last = tables.last_mut().expect("a table was just pushed");
            if invisible != "1" {
                last.visible.push(column.clone());
            }
            if float == "1" {
                last.floats.push(column);
            }
        }
        tables
    }
}

/// A client session that envsnap writes statements to and reads rows from.
struct Client {
    tool: Option<Tool>,
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
}

impl Client {
    fn open(service: &MysqlService, quick: bool) -> Result<Client> {
        let mut arguments = vec![
            "--batch".to_owned(),
            "--skip-column-names".to_owned(),
            "--connect-timeout=10".to_owned(),
            // Each answer as soon as it is there: envsnap waits for it before it goes on.
            "--unbuffered".to_owned(),
            format!("--database={}", service.url.database),
        ];
        if quick {
            // Rows as they come, not the whole result first.
            arguments.push("--quick".to_owned());
        }
        let mut tool = service.start(CLIENTS, &arguments, Pipe::Both)?;
        let input = tool.stdin();
        let output = BufReader::with_capacity(256 << 10, tool.stdout().expect("stdout is piped"));
        Ok(Client { tool: Some(tool), input, output })
    }

    /// Sends `statements`; an error of theirs shows when their answer is read.
    fn send(&mut self, statements: &str) -> io::Result<()> {
        use std::io::Write;
        let input = self.input.as_mut().ok_or_else(|| io::Error::from(io::ErrorKind::BrokenPipe))?;
        input.write_all(statements.as_bytes())?;
        input.write_all(b"\n")?;
        input.flush()
    }

    /// Sends `statements` followed by a `SELECT` of a word, and waits for the word: the
    /// statements are then done.
    fn run(&mut self, service: &MysqlService, statements: &str) -> Result<()> {
        let sent = self.send(&format!("{statements}\nSELECT 'envsnap:done';"));
        let mut line = String::new();
        match (sent, self.output.read_line(&mut line)) {
            (Ok(()), Ok(_)) if line.trim_end() == "envsnap:done" => Ok(()),
            _ => Err(self.failure(service)),
        }
    }

    /// Why the session stopped: the client's own error, once it has exited.
    fn failure(&mut self, service: &MysqlService) -> Error {
        drop(self.input.take());
        match self.tool.take().map(Tool::finish) {
            Some(Err(error)) => service.tool_failed(error, CLIENTS),
            _ => service.failed("the client ended its session unexpectedly".to_owned()),
        }
    }

    /// Ends the session (its transaction and locks with it).
    fn close(mut self, service: &MysqlService) -> Result<()> {
        drop(self.input.take());
        match self.tool.take() {
            Some(tool) => tool.finish().map_err(|error| service.tool_failed(error, CLIENTS)),
            None => Ok(()),
        }
    }
}

/// The sessions that read the `FLOAT` tables beside one dump (see the module
/// documentation).
pub struct ExactFloats {
    tables: Vec<FloatTable>,
    /// Holds `LOCK TABLES … READ` until the dump's snapshot is taken.
    lock: Option<Client>,
    reader: Client,
}

/// Ends the rows of one table in the reading session's output.
const END_OF_ROWS: &str = "envsnap:end";

impl ExactFloats {
    /// Locks `tables` against writes and starts the reading session's snapshot; the
    /// dump starts next. `seconds` bounds the wait for the lock.
    pub fn open(service: &MysqlService, tables: Vec<FloatTable>, seconds: u128) -> Result<ExactFloats> {
        let mut lock = Client::open(service, false)?;
        let names: Vec<String> = tables.iter().map(|table| format!("{} READ", identifier(&table.name))).collect();
        lock.run(service, &format!("SET SESSION lock_wait_timeout = {seconds};\nLOCK TABLES {};", names.join(", ")))?;
        let mut reader = Client::open(service, true)?;
        reader.run(
            service,
            "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ;\n\
             START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY;",
        )?;
        Ok(ExactFloats { tables, lock: Some(lock), reader })
    }

    /// The dump has taken its snapshot: writers may go on, unless a table without
    /// snapshots is still to be read.
    pub fn dump_started(&mut self, service: &MysqlService) -> Result<()> {
        if self.tables.iter().all(|table| table.transactional)
            && let Some(lock) = self.lock.take()
        {
            lock.close(service)?;
        }
        Ok(())
    }

    /// Whether `table` has values to put right.
    pub fn has(&self, table: &str) -> bool {
        self.tables.iter().any(|known| known.name == table)
    }

    /// The dump's part for `table`, with its `FLOAT` values made exact.
    pub fn patch<'a, R: Read>(
        &'a mut self,
        service: &'a MysqlService,
        table: &str,
        part: R,
    ) -> Pieces<FloatPatch<'a, R>> {
        let index = self.tables.iter().position(|known| known.name == table).expect("`has` was asked first");
        let patch = FloatPatch {
            service,
            table: &self.tables[index],
            reader: &mut self.reader,
            inner: BufReader::with_capacity(256 << 10, part),
            row: None,
            queried: false,
            inside_line: false,
            rows: 0,
            failure: None,
        };
        Pieces::new(patch, Vec::new())
    }

    /// Ends both sessions once the dump is whole.
    pub fn close(mut self, service: &MysqlService) -> Result<()> {
        if let Some(lock) = self.lock.take() {
            lock.close(service)?;
        }
        self.reader.send("COMMIT;").map_err(|error| service.failed(format!("ending the reading session: {error}")))?;
        self.reader.close(service)
    }
}

/// Where a [`FloatPatch`] is in the values of one `INSERT` row.
#[derive(Debug)]
struct Row {
    /// For each value of the row: its position among the table's `FLOAT` columns.
    floats: Vec<Option<usize>>,
    /// The exact values the reading session gave for this row, by `FLOAT` column, and
    /// the text it read for each (which must be the dump's).
    exact: Vec<(String, String)>,
    value: usize,
    quoted: bool,
    escaped: bool,
    /// The value being read, when it is a `FLOAT`.
    token: Vec<u8>,
    ended: bool,
}

/// The longest `FLOAT` value text: anything longer is not one, and out of step.
const TOKEN_LIMIT: usize = 64;

/// Rewrites the `INSERT`s of one table's part of a dump (one row a line), putting the
/// exact value of each `FLOAT` where the dump's text would read back as another
/// float. See the module documentation.
pub struct FloatPatch<'a, R> {
    service: &'a MysqlService,
    table: &'a FloatTable,
    reader: &'a mut Client,
    inner: BufReader<R>,
    row: Option<Row>,
    /// The reading session was asked for the table's rows.
    queried: bool,
    inside_line: bool,
    rows: u64,
    /// Why the part could not be read, for [`FloatPatch::failure`].
    failure: Option<Error>,
}

impl<R> FloatPatch<'_, R> {
    /// The error that stopped the part, with the service named.
    pub fn take_failure(&mut self) -> Option<Error> {
        self.failure.take()
    }

    fn fail(&mut self, detail: String) -> io::Error {
        let error = self.service.failed(format!(
            "{detail}; the FLOAT values of table `{}` (row {}) read beside the dump are not the dump's: take the \
             snapshot again",
            self.table.name,
            self.rows + 1
        ));
        let text = error.to_string();
        self.failure = Some(error);
        io::Error::other(text)
    }

    /// The columns of an `INSERT` line's prefix; `None` when the line is not an
    /// `INSERT` of the table.
    fn columns(&self, line: &[u8]) -> Option<(Vec<String>, usize)> {
        let start = format!("INSERT INTO {} ", identifier(&self.table.name));
        let rest = line.strip_prefix(start.as_bytes())?;
        if let Some(values) = rest.strip_prefix(b"VALUES (") {
            return Some((self.table.visible.clone(), line.len() - values.len()));
        }
        // `(`a`, `b`) VALUES (`
        let mut columns = Vec::new();
        let mut index = 1;
        if rest.first() != Some(&b'(') {
            return None;
        }
        loop {
            if rest.get(index) != Some(&b'`') {
                return None;
            }
            let mut name = Vec::new();
            index += 1;
            loop {
                match (rest.get(index), rest.get(index + 1)) {
                    (Some(b'`'), Some(b'`')) => {
                        name.push(b'`');
                        index += 2;
                    }
                    (Some(b'`'), _) => break,
                    (Some(&byte), _) => {
                        name.push(byte);
                        index += 1;
                    }
                    (None, _) => return None,
                }
            }
            columns.push(String::from_utf8_lossy(&name).into_owned());
            index += 1;
            if rest[index..].starts_with(b", ") {
                index += 2;
            } else if rest[index..].starts_with(b") VALUES (") {
                let consumed = start.len() + index + b") VALUES (".len();
                return Some((columns, consumed));
            } else {
                return None;
            }
        }
    }

    /// Asks the reading session for the table's rows, selecting what the dump selects
    /// and then each `FLOAT` as a `DOUBLE`.
    fn query(&mut self, columns: &[String]) -> io::Result<()> {
        let selected: Vec<String> = columns
            .iter()
            .map(|column| identifier(column))
            .chain(self.table.floats.iter().map(|column| format!("{} * 1e0", identifier(column))))
            .collect();
        let statement = format!(
            "SELECT /*!40001 SQL_NO_CACHE */ {} FROM {};\nSELECT '{END_OF_ROWS}';",
            selected.join(", "),
            identifier(&self.table.name)
        );
        self.queried = true;
        self.reader.send(&statement).map_err(|error| self.fail(format!("the reading session stopped: {error}")))
    }

    /// Reads the reading session's next row: the fields at `keep` (a `FLOAT` read as
    /// text, then as a `DOUBLE`), the rest skipped as they pass. `None` at the end of the
    /// table's rows.
    fn next_exact(&mut self, keep: &[(usize, usize)], total: usize) -> io::Result<Option<Vec<(String, String)>>> {
        let mut kept: Vec<(String, String)> = vec![(String::new(), String::new()); keep.len()];
        let mut field = 0;
        let mut text = Vec::new();
        loop {
            let buffer = match self.reader.output.fill_buf() {
                Ok(buffer) => buffer,
                Err(error) => return Err(self.fail(format!("the reading session stopped: {error}"))),
            };
            if buffer.is_empty() {
                let error = self.reader.failure(self.service);
                return Err(self.fail(format!("the reading session ended: {error}")));
            }
            let mut used = 0;
            let mut ended = false;
            for &byte in buffer {
                used += 1;
                if byte == b'\t' || byte == b'\n' {
                    let wanted = keep.iter().position(|&(text_at, exact_at)| text_at == field || exact_at == field);
                    if let Some(slot) = wanted {
                        let value = String::from_utf8_lossy(&text).into_owned();
                        if keep[slot].0 == field {
                            kept[slot].0 = value;
                        } else {
                            kept[slot].1 = value;
                        }
                    }
                    if field == 0 && byte == b'\n' && text == END_OF_ROWS.as_bytes() {
                        field = usize::MAX;
                    } else {
                        field += 1;
                    }
                    text.clear();
                    if byte == b'\n' {
                        ended = true;
                        break;
                    }
                } else if text.len() <= TOKEN_LIMIT {
                    text.push(byte);
                }
            }
            self.reader.output.consume(used);
            if ended {
                return match field {
                    usize::MAX => Ok(None),
                    count if count == total => Ok(Some(kept)),
                    count => Err(self.fail(format!("the reading session gave {count} columns, not {total}"))),
                };
            }
        }
    }

    /// Starts a row of an `INSERT` line whose values begin after `prefix` bytes.
    fn start_row(&mut self, columns: &[String]) -> io::Result<Row> {
        if !self.queried {
            self.query(columns)?;
        }
        let floats: Vec<Option<usize>> =
            columns.iter().map(|column| self.table.floats.iter().position(|float| float == column)).collect();
        // The reading session's fields: the selected columns, then each float as a double.
        let keep: Vec<(usize, usize)> = (0..self.table.floats.len())
            .map(|float| {
                let at = floats.iter().position(|&found| found == Some(float)).unwrap_or(usize::MAX);
                (at, columns.len() + float)
            })
            .collect();
        let total = columns.len() + self.table.floats.len();
        let Some(exact) = self.next_exact(&keep, total)? else {
            return Err(self.fail("the dump has more rows than the reading session".to_owned()));
        };
        Ok(Row { floats, exact, value: 0, quoted: false, escaped: false, token: Vec::new(), ended: false })
    }

    /// The text to write for the `FLOAT` value `token` of the current row's `float`th
    /// `FLOAT` column.
    fn exact_text(&mut self, row: &Row, float: usize) -> io::Result<Vec<u8>> {
        let (read, exact) = &row.exact[float];
        if row.token != read.as_bytes() {
            let found = String::from_utf8_lossy(&row.token).into_owned();
            return Err(self.fail(format!("the dump wrote `{found}` where the reading session read `{read}`")));
        }
        let parse = |text: &str| text.parse::<f64>().ok().map(|value| (value as f32).to_bits());
        let token = String::from_utf8_lossy(&row.token);
        match (parse(&token), parse(exact)) {
            // An exponent makes it a floating-point literal, read as a double.
            (Some(written), Some(wanted)) if written != wanted => {
                let suffix = if exact.contains(['e', 'E']) { "" } else { "e0" };
                Ok(format!("{exact}{suffix}").into_bytes())
            }
            _ => Ok(row.token.clone()),
        }
    }

    /// Passes the values of the current row in `piece`, putting exact `FLOAT`s in.
    fn values(&mut self, row: &mut Row, piece: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        for &byte in piece {
            if row.ended {
                out.push(byte);
                continue;
            }
            let is_float = row.floats.get(row.value).copied().flatten();
            if row.quoted {
                if row.escaped {
                    row.escaped = false;
                } else if byte == b'\\' {
                    row.escaped = true;
                } else if byte == b'\'' {
                    row.quoted = false;
                }
            } else if byte == b'\'' {
                row.quoted = true;
            } else if byte == b',' || byte == b')' {
                if let Some(float) = is_float {
                    let text = self.exact_text(row, float)?;
                    out.extend_from_slice(&text);
                    row.token.clear();
                }
                out.push(byte);
                row.value += 1;
                row.ended = byte == b')';
                continue;
            }
            if is_float.is_some() {
                if row.token.len() >= TOKEN_LIMIT {
                    return Err(self.fail("a FLOAT value of the dump is longer than any".to_owned()));
                }
                row.token.push(byte);
            } else {
                out.push(byte);
            }
        }
        Ok(())
    }
}

impl<R: Read> Produce for FloatPatch<'_, R> {
    fn produce(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        let mut piece = Vec::new();
        if (&mut self.inner).take(BATCH_LIMIT as u64).read_until(b'\n', &mut piece)? == 0 {
            if self.row.is_some() {
                return Err(self.fail("the dump ended inside a row".to_owned()));
            }
            if self.queried && self.next_exact(&[], 0)?.is_some() {
                return Err(self.fail("the reading session has more rows than the dump".to_owned()));
            }
            return Ok(false);
        }
        let at_start = !self.inside_line;
        self.inside_line = !piece.ends_with(b"\n");
        let mut row = self.row.take();
        let mut from = 0;
        if at_start && let Some((columns, prefix)) = self.columns(&piece) {
            row = Some(self.start_row(&columns)?);
            out.extend_from_slice(&piece[..prefix]);
            from = prefix;
        }
        match row {
            Some(mut current) => {
                self.values(&mut current, &piece[from..], out)?;
                if self.inside_line {
                    self.row = Some(current);
                } else {
                    if !current.ended {
                        return Err(self.fail("a row of the dump did not end on its line".to_owned()));
                    }
                    self.rows += 1;
                }
            }
            None => out.extend_from_slice(&piece[from..]),
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_are_read_from_the_columns_query() {
        let hex_text = |text: &str| hex::encode_upper(text);
        let rows = [
            ("a`b", "id", "0", "0", "1"),
            ("a`b", "x", "1", "0", "1"),
            ("a`b", "h", "1", "1", "1"),
            ("m", "y", "1", "0", "0"),
        ]
        .iter()
        .map(|(table, column, float, invisible, innodb)| {
            format!("{}\t{}\t{float}\t{invisible}\t{innodb}\n", hex_text(table), hex_text(column))
        })
        .collect::<String>();
        let tables = FloatTable::parse(&rows);
        assert_eq!(tables.len(), 2);
        assert_eq!(tables[0].name, "a`b");
        assert_eq!(tables[0].visible, ["id", "x"]);
        assert_eq!(tables[0].floats, ["x", "h"]);
        assert!(tables[0].transactional && !tables[1].transactional);
    }
}
