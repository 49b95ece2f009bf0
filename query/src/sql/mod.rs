//! SQL for analysts: a restricted dialect compiled to a [`QuerySpec`], so a statement is answered
//! by the one DP engine (no second path to the data) and has the same canonical hash as the same
//! question asked in JSON.
//!
//! ```sql
//! SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 0.5, max_records_per_person = 2)
//!        mission, registration_year, COUNT(DISTINCT person) AS persons
//! FROM cases
//! WHERE registration_year BETWEEN 2003 AND 2008 AND gender = 'female'
//! GROUP BY mission, registration_year
//! ORDER BY persons DESC
//! LIMIT 10
//! ```
//!
//! The statement is tokenised and parsed by the SQL parser DataFusion ships (its `sqlparser`
//! re-export). The `WITH DIFFERENTIAL_PRIVACY OPTIONS (...)` clause after `SELECT` (BigQuery's
//! syntax, which that parser does not know) is taken out of the token stream first; the rest is
//! parsed as an ordinary `SELECT` and compiled:
//!
//! - options: `epsilon`, `delta`, `rho` (a budget) or `half_width_95` (an accuracy target),
//!   `max_records_per_person` (a number or `'auto'`), `max_exploitation_types_per_record`,
//!   `mechanism` (`'laplace'`, `'gaussian'`), `keys` (`'public'`, `'threshold'`) and
//!   `privacy_unit_column` (only `person`);
//! - one aggregate: `COUNT(DISTINCT person)` (persons), `COUNT(*)` (cases), `SUM`, `AVG`,
//!   `PERCENTILE_CONT` (several quantiles of one column allowed), over a value column or
//!   `CLAMP(column, lower, upper)` (without `CLAMP`, the column's default bounds,
//!   [`default_bounds`]); `COUNT(*)` grouped by a bin, `WIDTH_BUCKET(column, lower, upper, n)`
//!   or `CASE WHEN column < e1 THEN lower WHEN column < e2 THEN e1 ... ELSE ek END`, is a
//!   histogram;
//! - `FROM cases`; `WHERE`: conditions joined by `AND`, each `=`, `IN (...)`, `IS NULL` over a
//!   public dimension, or a range (`BETWEEN`, `<`, `<=`, `>`, `>=`) over `registration_year` or
//!   `registration_month`; the period is the months those conditions allow, and must be bounded;
//! - `GROUP BY` public dimensions (by name, alias or position); every non-aggregated column of
//!   `SELECT` must be grouped;
//! - `ORDER BY` group keys and the aggregate, `LIMIT` and `OFFSET`: applied to the released
//!   cells, after noise (post-processing, free).
//!
//! Everything else is refused with a [`SqlError`] naming the construct, its line and column and
//! what is allowed: joins, subqueries, set operations, window functions, `HAVING`, `MIN`/`MAX`,
//! non-grouped columns, unknown columns (with the nearest known name) and the pseudonymised
//! columns anywhere but in `COUNT(DISTINCT person)`. No message quotes a literal of the
//! statement: a value typed into a query is not echoed into logs or errors.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use ctstats_schemas::codes::{AssistanceType, CodeList};
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CaseWhen, Distinct, DuplicateTreatment, Expr, Function, FunctionArg,
    FunctionArgExpr, FunctionArguments, GroupByExpr, LimitClause, ObjectName, ObjectNamePart,
    OrderByKind, Query, Select, SelectItem, SetExpr, Spanned, Statement, TableFactor,
    UnaryOperator, Value,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Span, Token, TokenWithSpan, Tokenizer};
use serde::Serialize;

use crate::spec::{
    Accuracy, Auto, Bins, Bounds, Budget, ContributionBound, Dimension, KeysMode, Measure,
    Mechanism, Month, Period, PeriodSpec, QuerySpec, UNKNOWN, ValueColumn, dimensions,
    value_columns,
};

/// The one table a statement reads.
pub const TABLE: &str = "cases";
/// The privacy unit, as counted by `COUNT(DISTINCT person)`.
pub const PERSON: &str = "person";
/// Names that stand for the pseudonymised keys.
const PSEUDONYMS: &[&str] = &["person", "person_key", "record_key"];
/// Longest statement taken, in bytes.
pub const MAX_SQL_BYTES: usize = 65_536;
/// The dimension of a histogram's bins in answers.
const BIN: &str = "bin";

const SUBQUERY: &str = "subqueries are not allowed; a statement reads FROM cases once";
const CTE: &str = "common table expressions are not allowed; ask FROM cases directly";
const WINDOW: &str = "window functions are not allowed: they would release per-record values";
const STATEMENT_FORM: &str =
    "a statement is SELECT ... FROM cases [WHERE] [GROUP BY] [ORDER BY] [LIMIT]";
const LIST_VALUES: &str = "list the values kept with IN (...)";
const ONE_STATEMENT: &str = "send one SELECT statement per request";
const ONLY_SELECT: &str = "only SELECT WITH DIFFERENTIAL_PRIVACY is answered";

/// A refusal: where, which construct, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SqlError {
    /// 1-based line of the construct.
    pub line: u64,
    /// 1-based column of the construct.
    pub column: u64,
    /// What was refused, e.g. `JOIN`.
    pub construct: String,
    /// Why, and what is allowed instead.
    pub message: String,
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}: {}",
            self.line, self.column, self.construct, self.message
        )
    }
}

impl std::error::Error for SqlError {}

type Result<T, E = SqlError> = std::result::Result<T, E>;

fn refuse<T>(at: Location, construct: &str, message: impl Into<String>) -> Result<T> {
    Err(SqlError {
        line: at.line.max(1),
        column: at.column.max(1),
        construct: construct.to_string(),
        message: message.into(),
    })
}

/// Where a span starts; the statement's start when the parser kept no span.
fn start(span: Span) -> Location {
    if span.start.line == 0 {
        Location::new(1, 1)
    } else {
        span.start
    }
}

fn at(node: &impl Spanned) -> Location {
    start(node.span())
}

/// A statement compiled: the query and what is done to its released cells.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SqlQuery {
    pub spec: QuerySpec,
    #[serde(flatten)]
    pub arrangement: Arrangement,
}

/// `ORDER BY`, `LIMIT` and `OFFSET`: applied to the released cells, after noise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Arrangement {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub order_by: Vec<OrderKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(skip_serializing_if = "is_zero")]
    pub offset: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Arrangement {
    /// Whether the cells are left as released.
    pub fn is_none(&self) -> bool {
        self.order_by.is_empty() && self.limit.is_none() && self.offset == 0
    }
}

/// One sort key: a key dimension of the answer, or `estimate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderKey {
    pub column: String,
    pub descending: bool,
}

/// The bounds a value column gets without `CLAMP`: public, chosen without looking at any data.
/// Flags are 0/1; a case is followed for two years (`months_to_closure` 0 to 24); persons are
/// registered within a year of identification (0 to 12); at most every assistance type.
pub fn default_bounds(column: ValueColumn) -> Bounds {
    let upper = match column {
        ValueColumn::Flag { .. } => 1,
        ValueColumn::MonthsToClosure => 24,
        ValueColumn::MonthsIdentificationToRegistration => 12,
        ValueColumn::AssistanceTypeCount => AssistanceType::ALL.len() as i64,
    };
    Bounds { lower: 0, upper }
}

/// Compile one statement. Its domains (missions, values) are checked afterwards, by
/// [`QuerySpec::validate`], as for a JSON query.
pub fn compile(sql: &str) -> Result<SqlQuery> {
    let origin = Location::new(1, 1);
    if sql.len() > MAX_SQL_BYTES {
        return refuse(
            origin,
            "statement",
            format!("longer than {MAX_SQL_BYTES} bytes"),
        );
    }
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| SqlError {
            line: e.location.line.max(1),
            column: e.location.column.max(1),
            construct: "syntax".into(),
            message: e.message,
        })?;
    let (options, tokens) = take_dp_clause(tokens)?;
    let mut statements = Parser::new(&dialect)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(parser_error)?;
    if statements.len() != 1 {
        let second = statements.get(1).map_or(origin, at);
        return refuse(second, "statement", ONE_STATEMENT);
    }
    match statements.remove(0) {
        Statement::Query(query) => compile_query(&query, options),
        other => refuse(at(&other), "statement", ONLY_SELECT),
    }
}

/// The parser's message without its position, and the position.
fn parser_error(e: ParserError) -> SqlError {
    let text = match e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        ParserError::RecursionLimitExceeded => "the statement is nested too deeply".to_string(),
    };
    let (message, line, column) = match text.rfind(" at Line: ") {
        Some(i) => {
            let rest = &text[i + " at Line: ".len()..];
            let mut parts = rest.split(", Column: ");
            let line = parts.next().and_then(|l| l.trim().parse().ok());
            let column = parts.next().and_then(|c| c.trim().parse().ok());
            (text[..i].to_string(), line, column)
        }
        None => (text, None, None),
    };
    SqlError {
        line: line.unwrap_or(1).max(1),
        column: column.unwrap_or(1).max(1),
        construct: "syntax".into(),
        message: format!("{message}; see the SQL section of the README for the dialect"),
    }
}

// ---------------------------------------------------------------------------------------------
// WITH DIFFERENTIAL_PRIVACY OPTIONS (...)

/// An option's value.
#[derive(Debug, Clone)]
enum OptionValue {
    Number(String),
    Text(String),
}

#[derive(Debug, Default)]
struct Options {
    /// Each option given, with where its name is.
    given: BTreeMap<String, (Location, OptionValue)>,
    /// Where `DIFFERENTIAL_PRIVACY` is.
    clause: Option<Location>,
}

const OPTION_NAMES: &[&str] = &[
    "epsilon",
    "delta",
    "rho",
    "half_width_95",
    "max_records_per_person",
    "max_exploitation_types_per_record",
    "mechanism",
    "keys",
    "privacy_unit_column",
];

fn word(t: &TokenWithSpan) -> Option<&str> {
    match &t.token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.as_str()),
        _ => None,
    }
}

fn is_word(t: &TokenWithSpan, w: &str) -> bool {
    word(t).is_some_and(|v| v.eq_ignore_ascii_case(w))
}

const DP_CLAUSE: &str = "a statement starts SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = \
    ...): every answer is noised and charged to your budget";

/// Take `WITH DIFFERENTIAL_PRIVACY OPTIONS (...)` out of the tokens after `SELECT`.
fn take_dp_clause(mut tokens: Vec<TokenWithSpan>) -> Result<(Options, Vec<TokenWithSpan>)> {
    let significant: Vec<usize> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| !matches!(t.token, Token::Whitespace(_)))
        .map(|(i, _)| i)
        .collect();
    let token = |k: usize| significant.get(k).map(|&i| &tokens[i]);
    let Some(first) = token(0) else {
        return refuse(Location::new(1, 1), "statement", "the statement is empty");
    };
    // One statement: anything but a last `;` after a `;` is a second one.
    if let Some(k) = (0..significant.len()).find(|&k| token(k).unwrap().token == Token::SemiColon)
        && let Some(next) = token(k + 1)
    {
        return refuse(start(next.span), "statement", ONE_STATEMENT);
    }
    if is_word(first, "with") {
        return refuse(start(first.span), "WITH", CTE);
    }
    if !is_word(first, "select") {
        return refuse(start(first.span), "statement", ONLY_SELECT);
    }
    let (Some(with), Some(dp)) = (token(1), token(2)) else {
        return refuse(start(first.span), "SELECT", DP_CLAUSE);
    };
    if !is_word(with, "with") || !is_word(dp, "differential_privacy") {
        return refuse(start(first.span), "SELECT", DP_CLAUSE);
    }
    let mut options = Options {
        clause: Some(start(dp.span)),
        ..Options::default()
    };
    let missing = |t: &TokenWithSpan| {
        refuse(
            start(t.span),
            "DIFFERENTIAL_PRIVACY",
            "OPTIONS (...) must follow, with epsilon, rho or half_width_95",
        )
    };
    let Some(opts) = token(3).filter(|t| is_word(t, "options")) else {
        return missing(dp);
    };
    let Some(open) = token(4).filter(|t| t.token == Token::LParen) else {
        return missing(opts);
    };
    let mut k = 5;
    loop {
        let Some(name) = token(k) else {
            return refuse(
                start(open.span),
                "OPTIONS",
                "the list is not closed with `)`",
            );
        };
        if name.token == Token::RParen && options.given.is_empty() {
            return refuse(
                start(name.span),
                "OPTIONS",
                "give epsilon, rho or half_width_95",
            );
        }
        let Some(key) = word(name).map(str::to_ascii_lowercase) else {
            return refuse(
                start(name.span),
                "OPTIONS",
                "each option is name = value, separated by commas",
            );
        };
        let where_ = start(name.span);
        if !OPTION_NAMES.contains(&key.as_str()) {
            return refuse(
                where_,
                "option",
                format!(
                    "`{key}` is not an option{}; allowed: {}",
                    nearest(&key, OPTION_NAMES.iter().copied()),
                    OPTION_NAMES.join(", ")
                ),
            );
        }
        if options.given.contains_key(&key) {
            return refuse(where_, "option", format!("`{key}` is given twice"));
        }
        if token(k + 1).is_none_or(|t| t.token != Token::Eq) {
            return refuse(where_, "option", format!("write {key} = value"));
        }
        k += 2;
        let negative = token(k).is_some_and(|t| t.token == Token::Minus);
        if negative {
            k += 1;
        }
        let value = match token(k).map(|t| &t.token) {
            Some(Token::Number(n, _)) => {
                OptionValue::Number(if negative { format!("-{n}") } else { n.clone() })
            }
            Some(Token::SingleQuotedString(s)) if !negative => OptionValue::Text(s.clone()),
            Some(Token::Word(w)) if !negative && w.quote_style.is_none() => {
                OptionValue::Text(w.value.clone())
            }
            _ => {
                return refuse(
                    where_,
                    "option",
                    format!("`{key}` takes a number or a word"),
                );
            }
        };
        options.given.insert(key, (where_, value));
        k += 1;
        match token(k) {
            Some(t) if t.token == Token::Comma => k += 1,
            Some(t) if t.token == Token::RParen => break,
            Some(t) => {
                return refuse(
                    start(t.span),
                    "OPTIONS",
                    "options are separated by commas and closed with `)`",
                );
            }
            None => {
                return refuse(
                    start(open.span),
                    "OPTIONS",
                    "the list is not closed with `)`",
                );
            }
        }
    }
    let close = significant[k];
    tokens.drain(significant[1]..=close);
    Ok((options, tokens))
}

impl Options {
    fn clause(&self) -> Location {
        self.clause.unwrap_or(Location::new(1, 1))
    }

    fn number(&self, key: &str) -> Result<Option<f64>> {
        match self.given.get(key) {
            None => Ok(None),
            Some((at, OptionValue::Number(n))) => match n.parse::<f64>() {
                Ok(v) => Ok(Some(v)),
                Err(_) => refuse(*at, "option", format!("`{key}` takes a number")),
            },
            Some((at, OptionValue::Text(_))) => {
                refuse(*at, "option", format!("`{key}` takes a number"))
            }
        }
    }

    fn count(&self, key: &str) -> Result<Option<u32>> {
        let Some(v) = self.number(key)? else {
            return Ok(None);
        };
        if v.fract() != 0.0 || !(0.0..=f64::from(u32::MAX)).contains(&v) {
            let at = self.given[key].0;
            return refuse(at, "option", format!("`{key}` takes a whole number"));
        }
        Ok(Some(v as u32))
    }

    fn word(&self, key: &str, allowed: &[&str]) -> Result<Option<String>> {
        match self.given.get(key) {
            None => Ok(None),
            Some((at, OptionValue::Text(t))) => {
                let t = t.to_ascii_lowercase();
                if allowed.contains(&t.as_str()) {
                    Ok(Some(t))
                } else {
                    refuse(
                        *at,
                        "option",
                        format!("`{key}` is one of {}", allowed.join(", ")),
                    )
                }
            }
            Some((at, OptionValue::Number(_))) => refuse(
                *at,
                "option",
                format!("`{key}` is one of {}", allowed.join(", ")),
            ),
        }
    }

    /// The spec's privacy fields.
    fn apply(&self, spec: &mut QuerySpec) -> Result<()> {
        let (epsilon, delta, rho) = (
            self.number("epsilon")?,
            self.number("delta")?,
            self.number("rho")?,
        );
        let half_width = self.number("half_width_95")?;
        match (half_width, epsilon.is_some() || rho.is_some()) {
            (Some(_), true) => {
                let at = self.given["half_width_95"].0;
                return refuse(
                    at,
                    "option",
                    "give a budget (epsilon or rho) or an accuracy target (half_width_95), not both",
                );
            }
            (Some(h), false) => {
                spec.accuracy = Some(Accuracy {
                    half_width_95: h,
                    delta,
                });
            }
            (None, true) => {
                spec.budget = Some(Budget {
                    epsilon,
                    delta,
                    rho,
                })
            }
            (None, false) => {
                return refuse(
                    self.clause(),
                    "OPTIONS",
                    "give epsilon or rho (a budget to spend) or half_width_95 (an accuracy target)",
                );
            }
        }
        spec.contribution_bound = match self.given.get("max_records_per_person") {
            None => None,
            Some((_, OptionValue::Text(t))) if t.eq_ignore_ascii_case("auto") => {
                Some(ContributionBound::Chosen(Auto::Auto))
            }
            Some(_) => self
                .count("max_records_per_person")?
                .map(ContributionBound::Records),
        };
        spec.list_items_bound = self.count("max_exploitation_types_per_record")?;
        spec.mechanism =
            self.word("mechanism", &["laplace", "gaussian"])?
                .map(|m| match m.as_str() {
                    "gaussian" => Mechanism::Gaussian,
                    _ => Mechanism::Laplace,
                });
        if let Some(k) = self.word("keys", &["public", "threshold"])? {
            spec.keys = if k == "threshold" {
                KeysMode::Threshold
            } else {
                KeysMode::Public
            };
        }
        self.word("privacy_unit_column", &[PERSON])?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Columns and literals

/// The nearest of `names` to `name`, as ` (did you mean `x`?)`, or nothing.
fn nearest<'a>(name: &str, names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| (strsim::levenshtein(name, n), n))
        .filter(|(d, n)| *d <= 3.max(n.len() / 3))
        .min()
        .map_or(String::new(), |(_, n)| format!(" (did you mean `{n}`?)"))
}

/// Every column name a statement may use.
fn known_columns() -> Vec<&'static str> {
    let mut names: Vec<&str> = dimensions().iter().map(|d| d.name()).collect();
    for c in value_columns() {
        if !names.contains(&c.name()) {
            names.push(c.name());
        }
    }
    names.push(PERSON);
    names
}

/// A column reference as written: its name (lowercased unless quoted) and where.
#[derive(Debug, Clone)]
struct ColumnRef {
    name: String,
    at: Location,
}

/// How a column is used, to word the refusal of a pseudonymised one.
const PSEUDONYM_USE: &str = "the pseudonymised keys are never released, grouped or filtered; \
    persons are counted with COUNT(DISTINCT person)";

struct Scope {
    /// The names the table may be qualified by.
    qualifiers: Vec<String>,
}

impl Scope {
    /// The column an expression names, if it is a column reference.
    fn column_ref(&self, expr: &Expr) -> Result<Option<ColumnRef>> {
        let ident = match expr {
            Expr::Identifier(i) => i,
            Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
                let q = ident_name(&parts[0]);
                if !self.qualifiers.contains(&q) {
                    return refuse(
                        start(parts[0].span),
                        "table",
                        format!("`{q}` is not the table; columns are of {TABLE}"),
                    );
                }
                &parts[1]
            }
            Expr::CompoundIdentifier(parts) => {
                return refuse(
                    start(parts[0].span),
                    "column",
                    "write a column as name or cases.name",
                );
            }
            Expr::Nested(inner) => return self.column_ref(inner),
            _ => return Ok(None),
        };
        Ok(Some(ColumnRef {
            name: ident_name(ident),
            at: start(ident.span),
        }))
    }

    /// A known column, or a refusal naming the nearest; pseudonymised ones are refused.
    fn known(&self, c: &ColumnRef) -> Result<()> {
        if PSEUDONYMS.contains(&c.name.as_str()) {
            return refuse(c.at, "pseudonymised column", PSEUDONYM_USE);
        }
        if !known_columns().contains(&c.name.as_str()) {
            return refuse(
                c.at,
                "unknown column",
                format!(
                    "`{}` is not a column of {TABLE}{}; GET /v1/dimensions lists them",
                    c.name,
                    nearest(&c.name, known_columns().into_iter())
                ),
            );
        }
        Ok(())
    }

    /// The public dimension an expression names.
    fn dimension(&self, expr: &Expr, context: &str) -> Result<Dimension> {
        let Some(c) = self.column_ref(expr)? else {
            return refuse_expr(expr, context);
        };
        self.known(&c)?;
        match Dimension::from_name(&c.name) {
            Some(d) => Ok(d),
            None => refuse(
                c.at,
                "value column",
                format!(
                    "`{}` is a value column, not a public dimension: aggregate it with SUM, AVG \
                     or PERCENTILE_CONT, or bin it with WIDTH_BUCKET",
                    c.name
                ),
            ),
        }
    }

    /// The value column an expression names (`column` or `CLAMP(column, lower, upper)`), with its
    /// bounds and whether they were given.
    fn value(&self, expr: &Expr) -> Result<(ValueColumn, Bounds)> {
        if let Expr::Nested(inner) = expr {
            return self.value(inner);
        }
        if let Expr::Function(f) = expr
            && function_name(&f.name) == "clamp"
        {
            let args = plain_args(f, 3, "CLAMP(column, lower, upper)")?;
            let (column, _) = self.value_column(args[0])?;
            let lower = integer(args[1], "CLAMP's lower bound")?;
            let upper = integer(args[2], "CLAMP's upper bound")?;
            return Ok((column, Bounds { lower, upper }));
        }
        self.value_column(expr)
    }

    fn value_column(&self, expr: &Expr) -> Result<(ValueColumn, Bounds)> {
        let Some(c) = self.column_ref(expr)? else {
            return refuse(
                at(expr),
                "expression",
                "an aggregate takes a value column or CLAMP(column, lower, upper)",
            );
        };
        self.known(&c)?;
        match ValueColumn::from_name(&c.name) {
            Some(v) => Ok((v, default_bounds(v))),
            None => refuse(
                c.at,
                "column",
                format!(
                    "`{}` is not numeric; value columns are the yes/no flags, {}",
                    c.name,
                    [
                        crate::spec::MONTHS_TO_CLOSURE,
                        crate::spec::MONTHS_IDENTIFICATION_TO_REGISTRATION,
                        crate::spec::ASSISTANCE_TYPE_COUNT
                    ]
                    .join(", ")
                ),
            ),
        }
    }
}

fn ident_name(i: &datafusion::sql::sqlparser::ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_ascii_lowercase()
    }
}

fn function_name(name: &ObjectName) -> String {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(i)] => i.value.to_ascii_lowercase(),
        _ => name.to_string().to_ascii_lowercase(),
    }
}

/// A literal: text, a number (as written), a boolean, or NULL.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Text(String),
    Number(String),
    Bool(bool),
    Null,
}

fn literal(expr: &Expr) -> Option<Literal> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => Some(Literal::Number(n.clone())),
            Value::SingleQuotedString(s) => Some(Literal::Text(s.clone())),
            Value::Boolean(b) => Some(Literal::Bool(*b)),
            Value::Null => Some(Literal::Null),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match literal(expr)? {
            Literal::Number(n) => Some(Literal::Number(format!("-{n}"))),
            _ => None,
        },
        Expr::Nested(inner) => literal(inner),
        _ => None,
    }
}

/// A whole-number literal.
fn integer(expr: &Expr, what: &str) -> Result<i64> {
    match literal(expr) {
        Some(Literal::Number(n)) => match n.parse::<i64>() {
            Ok(v) => Ok(v),
            Err(_) => refuse(at(expr), "literal", format!("{what} is a whole number")),
        },
        _ => refuse(at(expr), "expression", format!("{what} is a whole number")),
    }
}

/// The arguments of a plain call (no DISTINCT, no clauses), exactly `n` of them.
fn plain_args<'a>(f: &'a Function, n: usize, form: &str) -> Result<Vec<&'a Expr>> {
    let list = match &f.args {
        FunctionArguments::List(list)
            if list.duplicate_treatment.is_none() && list.clauses.is_empty() =>
        {
            list
        }
        _ => return refuse(at(f), "function call", format!("write {form}")),
    };
    let args: Vec<&Expr> = list
        .args
        .iter()
        .filter_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect();
    if args.len() != n || list.args.len() != n {
        return refuse(at(f), "function call", format!("write {form}"));
    }
    Ok(args)
}

/// Refuse an expression where it does not belong, naming what it is.
fn refuse_expr<T>(expr: &Expr, context: &str) -> Result<T> {
    let here = at(expr);
    match expr {
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
            refuse(here, "subquery", SUBQUERY)
        }
        Expr::Function(f) if f.over.is_some() => refuse(
            here,
            "window function",
            "window functions (OVER) are not allowed: they would release per-record values",
        ),
        Expr::Function(f) if matches!(function_name(&f.name).as_str(), "min" | "max") => refuse(
            here,
            "MIN/MAX",
            "MIN and MAX are decided by one person's record; use PERCENTILE_CONT with bounds",
        ),
        _ => refuse(here, "expression", context.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// SELECT

/// An aggregate of the select list.
#[derive(Debug, Clone, PartialEq)]
enum Aggregate {
    Persons,
    Cases,
    Sum(ValueColumn, Bounds),
    Mean(ValueColumn, Bounds),
    /// The column, its bounds and the quantile.
    Quantile(ValueColumn, Bounds, f64),
}

/// The bins of a histogram.
#[derive(Debug, Clone, PartialEq)]
struct Binning {
    column: ValueColumn,
    bounds: Bounds,
    bins: Bins,
}

/// One item of the select list.
#[derive(Debug, Clone)]
enum Item {
    Key(Dimension),
    Bin(Binning),
    Aggregate(Aggregate),
}

const SELECT_ITEMS: &str = "SELECT lists group keys and one aggregate: COUNT(DISTINCT person), \
    COUNT(*), SUM, AVG or PERCENTILE_CONT";

fn compile_query(query: &Query, options: Options) -> Result<SqlQuery> {
    if let Some(with) = &query.with {
        return refuse(at(with), "WITH", CTE);
    }
    if query.fetch.is_some() {
        return refuse(at(query), "FETCH", "use LIMIT");
    }
    if !query.locks.is_empty()
        || query.for_clause.is_some()
        || query.settings.is_some()
        || query.format_clause.is_some()
        || !query.pipe_operators.is_empty()
    {
        return refuse(at(query), "clause", STATEMENT_FORM);
    }
    let select = match query.body.as_ref() {
        SetExpr::Select(s) => s.as_ref(),
        SetExpr::SetOperation { op, .. } => {
            return refuse(
                at(query.body.as_ref()),
                &op.to_string(),
                "set operations are not allowed; send each SELECT on its own",
            );
        }
        SetExpr::Query(q) => {
            return refuse(at(q.as_ref()), "subquery", SUBQUERY);
        }
        other => return refuse(at(other), "statement", "only SELECT is answered"),
    };
    let scope = check_from(select)?;
    check_clauses(select)?;

    // The select list, and what its aliases stand for.
    let mut items: Vec<(Item, Location)> = Vec::new();
    let mut aliases: BTreeMap<String, usize> = BTreeMap::new();
    for item in &select.projection {
        let (expr, alias) = match item {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(ident_name(alias))),
            SelectItem::ExprWithAliases { expr, .. } => (expr, None),
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                return refuse(
                    at(item),
                    "*",
                    format!("records are never released; {SELECT_ITEMS}"),
                );
            }
        };
        let compiled = scope.item(expr)?;
        if let Some(a) = alias {
            aliases.insert(a, items.len());
        }
        items.push((compiled, at(expr)));
    }

    // One aggregate (several quantiles of one column).
    let aggregates: Vec<(&Aggregate, Location)> = items
        .iter()
        .filter_map(|(i, l)| match i {
            Item::Aggregate(a) => Some((a, *l)),
            _ => None,
        })
        .collect();
    let Some(&(first, _)) = aggregates.first() else {
        return refuse(at(select), "SELECT", SELECT_ITEMS);
    };
    let mut quantiles = Vec::new();
    for &(a, l) in &aggregates {
        match (first, a) {
            (Aggregate::Quantile(c0, b0, _), Aggregate::Quantile(c, b, q)) => {
                if (c0, b0) != (c, b) {
                    return refuse(
                        l,
                        "PERCENTILE_CONT",
                        "the quantiles of one statement are of one column with one CLAMP",
                    );
                }
                quantiles.push(*q);
            }
            _ if std::ptr::eq(first, a) => {}
            _ => {
                return refuse(
                    l,
                    "aggregate",
                    "one aggregate per statement (several PERCENTILE_CONT of one column are \
                     one); ask another statement for another",
                );
            }
        }
    }

    // GROUP BY: dimensions, and at most one bin.
    let (group_exprs, modifiers) = match &select.group_by {
        GroupByExpr::Expressions(exprs, modifiers) => (exprs.as_slice(), modifiers),
        GroupByExpr::All(_) => {
            return refuse(at(select), "GROUP BY ALL", "name the group keys");
        }
    };
    if !modifiers.is_empty() {
        return refuse(
            at(select),
            "GROUP BY modifier",
            "ROLLUP, CUBE and TOTALS are not allowed; name the group keys",
        );
    }
    let mut group_by: Vec<Dimension> = Vec::new();
    let mut binning: Option<Binning> = None;
    for expr in group_exprs {
        let item = match grouped_item(expr, &items, &aliases)? {
            Some(i) => i,
            None => scope.group_key(expr)?,
        };
        match item {
            Item::Key(d) if group_by.contains(&d) => {}
            Item::Key(d) => group_by.push(d),
            Item::Bin(b) => {
                if binning.as_ref().is_some_and(|prev| *prev != b) {
                    return refuse(at(expr), "GROUP BY", "a statement has one histogram's bins");
                }
                binning = Some(b);
            }
            Item::Aggregate(_) => {
                return refuse(at(expr), "GROUP BY", "an aggregate cannot be grouped by");
            }
        }
    }
    for (item, l) in &items {
        match item {
            Item::Key(d) if !group_by.contains(d) => {
                return refuse(
                    *l,
                    "column not grouped",
                    format!(
                        "`{}` is not aggregated, so it must be in GROUP BY",
                        d.name()
                    ),
                );
            }
            Item::Bin(b) if binning.as_ref() != Some(b) => {
                return refuse(
                    *l,
                    "bin not grouped",
                    "add the bin to GROUP BY (by its alias)",
                );
            }
            _ => {}
        }
    }

    let mut spec = measure(first, binning, quantiles, aggregates[0].1)?;
    spec.group_by = group_by.iter().map(|d| d.name().to_string()).collect();
    let (period, filters) = compile_where(&scope, select.selection.as_ref(), at(select))?;
    spec.period = PeriodSpec {
        from: period.from.to_string(),
        to: period.to.to_string(),
    };
    spec.filters = filters;
    options.apply(&mut spec)?;

    let arrangement = arrangement(query, &scope, &items, &aliases, &spec)?;
    Ok(SqlQuery { spec, arrangement })
}

fn quantile_value(q: &Expr) -> Result<f64> {
    match literal(q) {
        Some(Literal::Number(n)) => n.parse::<f64>().or_else(|_| {
            refuse(
                at(q),
                "PERCENTILE_CONT",
                "the quantile is a number in [0, 1]",
            )
        }),
        _ => refuse(
            at(q),
            "PERCENTILE_CONT",
            "the quantile is a number in [0, 1]",
        ),
    }
}

/// The spec of the aggregate (and bins), before grouping, filters and options.
fn measure(
    aggregate: &Aggregate,
    binning: Option<Binning>,
    quantiles: Vec<f64>,
    at_aggregate: Location,
) -> Result<QuerySpec> {
    let mut spec = QuerySpec {
        measure: Measure::Persons,
        column: None,
        bounds: None,
        bins: None,
        quantiles: None,
        group_by: Vec::new(),
        filters: BTreeMap::new(),
        period: PeriodSpec {
            from: String::new(),
            to: String::new(),
        },
        contribution_bound: None,
        list_items_bound: None,
        mechanism: None,
        budget: None,
        accuracy: None,
        keys: KeysMode::Public,
    };
    let value = |spec: &mut QuerySpec, m: Measure, c: &ValueColumn, b: &Bounds| {
        spec.measure = m;
        spec.column = Some(c.name().to_string());
        spec.bounds = Some(*b);
    };
    match (aggregate, binning) {
        (Aggregate::Cases, Some(b)) => {
            value(&mut spec, Measure::Histogram, &b.column, &b.bounds);
            spec.bins = Some(b.bins);
        }
        (_, Some(_)) => {
            return refuse(
                at_aggregate,
                "aggregate",
                "a histogram counts records per bin: COUNT(*)",
            );
        }
        (Aggregate::Persons, None) => spec.measure = Measure::Persons,
        (Aggregate::Cases, None) => spec.measure = Measure::Cases,
        (Aggregate::Sum(c, b), None) => value(&mut spec, Measure::Sum, c, b),
        (Aggregate::Mean(c, b), None) => value(&mut spec, Measure::Mean, c, b),
        (Aggregate::Quantile(c, b, _), None) => {
            value(&mut spec, Measure::Quantile, c, b);
            spec.quantiles = Some(quantiles);
        }
    }
    Ok(spec)
}

/// The select item a GROUP BY expression refers to by alias or position.
fn grouped_item(
    expr: &Expr,
    items: &[(Item, Location)],
    aliases: &BTreeMap<String, usize>,
) -> Result<Option<Item>> {
    if let Expr::Identifier(i) = expr
        && let Some(&k) = aliases.get(&ident_name(i))
    {
        return Ok(Some(items[k].0.clone()));
    }
    if let Some(Literal::Number(n)) = literal(expr) {
        return match n.parse::<usize>() {
            Ok(k) if (1..=items.len()).contains(&k) => Ok(Some(items[k - 1].0.clone())),
            _ => refuse(
                at(expr),
                "position",
                format!("a position in the select list, 1 to {}", items.len()),
            ),
        };
    }
    Ok(None)
}

/// `FROM cases`, alone: its qualifiers.
fn check_from(select: &Select) -> Result<Scope> {
    let [from] = select.from.as_slice() else {
        let here = select.from.get(1).map_or(at(select), at);
        return refuse(
            here,
            if select.from.is_empty() {
                "FROM"
            } else {
                "FROM list"
            },
            format!("a statement reads FROM {TABLE}, one table, no joins"),
        );
    };
    if let Some(join) = from.joins.first() {
        return refuse(
            at(&join.relation),
            "JOIN",
            format!("joins are not allowed; every column is in {TABLE}"),
        );
    }
    match &from.relation {
        TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } => {
            let table = function_name(name);
            if table != TABLE {
                return refuse(
                    at(&from.relation),
                    "table",
                    format!(
                        "`{table}` is not a table; the one table is {TABLE}{}",
                        nearest(&table, [TABLE].into_iter())
                    ),
                );
            }
            let mut qualifiers = vec![TABLE.to_string()];
            if let Some(a) = alias {
                if !a.columns.is_empty() {
                    return refuse(
                        start(a.name.span),
                        "alias",
                        "the table's columns keep their names",
                    );
                }
                qualifiers.push(ident_name(&a.name));
            }
            Ok(Scope { qualifiers })
        }
        TableFactor::Derived { .. } => refuse(at(&from.relation), "subquery", SUBQUERY),
        other => refuse(at(other), "FROM", format!("a statement reads FROM {TABLE}")),
    }
}

/// Refuse the clauses of a SELECT that the dialect has no use for.
fn check_clauses(select: &Select) -> Result<()> {
    if let Some(having) = &select.having {
        return refuse(
            at(having),
            "HAVING",
            "HAVING would filter on noisy values before they are released; filter the released \
             cells yourself, or filter records with WHERE on public dimensions",
        );
    }
    if let Some(d) = &select.distinct {
        let here = match d {
            Distinct::On(exprs) => exprs.first().map_or(at(select), at),
            _ => at(select),
        };
        return refuse(
            here,
            "SELECT DISTINCT",
            "answers are grouped: use GROUP BY and an aggregate",
        );
    }
    if let Some(q) = &select.qualify {
        return refuse(at(q), "QUALIFY", "window functions are not allowed");
    }
    if !select.named_window.is_empty() {
        return refuse(at(select), "WINDOW", WINDOW);
    }
    if select.top.is_some()
        || select.into.is_some()
        || !select.lateral_views.is_empty()
        || select.prewhere.is_some()
        || !select.connect_by.is_empty()
        || !select.cluster_by.is_empty()
        || !select.distribute_by.is_empty()
        || !select.sort_by.is_empty()
        || select.exclude.is_some()
        || select.value_table_mode.is_some()
    {
        return refuse(at(select), "clause", STATEMENT_FORM);
    }
    Ok(())
}

impl Scope {
    /// One select item.
    fn item(&self, expr: &Expr) -> Result<Item> {
        if let Expr::Nested(inner) = expr {
            return self.item(inner);
        }
        if let Some(bin) = self.binning(expr)? {
            return Ok(Item::Bin(bin));
        }
        if let Expr::Function(f) = expr
            && f.over.is_none()
            && let Some(a) = self.aggregate(f)?
        {
            return Ok(Item::Aggregate(a));
        }
        if self.column_ref(expr)?.is_some() {
            return Ok(Item::Key(self.dimension(expr, SELECT_ITEMS)?));
        }
        refuse_expr(expr, SELECT_ITEMS)
    }

    /// A GROUP BY expression that is not an alias or a position.
    fn group_key(&self, expr: &Expr) -> Result<Item> {
        if let Some(bin) = self.binning(expr)? {
            return Ok(Item::Bin(bin));
        }
        Ok(Item::Key(self.dimension(
            expr,
            "GROUP BY takes public dimensions and a histogram's bin",
        )?))
    }

    /// An aggregate call, or `None` for another function.
    fn aggregate(&self, f: &Function) -> Result<Option<Aggregate>> {
        let name = function_name(&f.name);
        // MIN and MAX are not aggregates here: `refuse_expr` says why.
        if !matches!(name.as_str(), "count" | "sum" | "avg" | "percentile_cont") {
            return Ok(None);
        }
        if let Some(filter) = &f.filter {
            return refuse(
                at(filter.as_ref()),
                "FILTER",
                "filter records with WHERE on public dimensions",
            );
        }
        match name.as_str() {
            "count" => self.count(f),
            "sum" => {
                let args = plain_args(f, 1, "SUM(column) or SUM(CLAMP(column, lower, upper))")?;
                let (c, b) = self.value(args[0])?;
                Ok(Some(Aggregate::Sum(c, b)))
            }
            "avg" => {
                let args = plain_args(f, 1, "AVG(column) or AVG(CLAMP(column, lower, upper))")?;
                let (c, b) = self.value(args[0])?;
                Ok(Some(Aggregate::Mean(c, b)))
            }
            _ => self.percentile(f),
        }
    }

    fn count(&self, f: &Function) -> Result<Option<Aggregate>> {
        const FORMS: &str = "COUNT(DISTINCT person) counts persons, COUNT(*) counts cases";
        let FunctionArguments::List(list) = &f.args else {
            return refuse(at(f), "COUNT", FORMS);
        };
        if !list.clauses.is_empty() || list.args.len() != 1 {
            return refuse(at(f), "COUNT", FORMS);
        }
        let distinct = list.duplicate_treatment == Some(DuplicateTreatment::Distinct);
        match &list.args[0] {
            FunctionArg::Unnamed(FunctionArgExpr::Wildcard) if !distinct => {
                Ok(Some(Aggregate::Cases))
            }
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => {
                let Some(c) = self.column_ref(e)? else {
                    return refuse(at(e), "COUNT", FORMS);
                };
                if distinct && (c.name == PERSON || c.name == "person_key") {
                    return Ok(Some(Aggregate::Persons));
                }
                if c.name == "record_key" || c.name == "person_key" || c.name == PERSON {
                    return refuse(c.at, "pseudonymised column", PSEUDONYM_USE);
                }
                self.known(&c)?;
                refuse(c.at, "COUNT", FORMS)
            }
            _ => refuse(at(f), "COUNT", FORMS),
        }
    }

    /// `PERCENTILE_CONT(value, q)` (BigQuery) or `PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY
    /// value)` (standard SQL).
    fn percentile(&self, f: &Function) -> Result<Option<Aggregate>> {
        const FORMS: &str = "PERCENTILE_CONT(column, 0.5) or PERCENTILE_CONT(0.5) WITHIN GROUP \
            (ORDER BY column), the column optionally CLAMP(column, lower, upper)";
        if f.within_group.is_empty() {
            let args = plain_args(f, 2, FORMS)?;
            let (c, b) = self.value(args[0])?;
            return Ok(Some(Aggregate::Quantile(c, b, quantile_value(args[1])?)));
        }
        let args = plain_args(f, 1, FORMS)?;
        let [order] = f.within_group.as_slice() else {
            return refuse(at(f), "PERCENTILE_CONT", FORMS);
        };
        if order.options.asc == Some(false) {
            return refuse(at(&order.expr), "PERCENTILE_CONT", FORMS);
        }
        let (c, b) = self.value(&order.expr)?;
        Ok(Some(Aggregate::Quantile(c, b, quantile_value(args[0])?)))
    }

    /// `WIDTH_BUCKET(column, lower, upper, n)` or a bin `CASE`; `None` for another expression.
    fn binning(&self, expr: &Expr) -> Result<Option<Binning>> {
        match expr {
            Expr::Function(f) if function_name(&f.name) == "width_bucket" => {
                let args = plain_args(f, 4, "WIDTH_BUCKET(column, lower, upper, bins)")?;
                let (column, _) = self.value(args[0])?;
                let lower = integer(args[1], "WIDTH_BUCKET's lower bound")?;
                let upper = integer(args[2], "WIDTH_BUCKET's upper bound")?;
                let n = integer(args[3], "WIDTH_BUCKET's number of bins")?;
                let Ok(n) = u32::try_from(n) else {
                    return refuse(
                        at(args[3]),
                        "WIDTH_BUCKET",
                        "the number of bins is positive",
                    );
                };
                Ok(Some(Binning {
                    column,
                    bounds: Bounds { lower, upper },
                    bins: Bins::Count(n),
                }))
            }
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => self.case_bins(expr, operand.is_some(), conditions, else_result.as_deref()),
            _ => Ok(None),
        }
    }

    /// `CASE WHEN c < e1 THEN lower WHEN c < e2 THEN e1 ... ELSE ek END`: the bins with lower
    /// edges `lower, e1, ..., ek`, `c` a value column or its CLAMP (which gives `lower`).
    fn case_bins(
        &self,
        expr: &Expr,
        simple: bool,
        conditions: &[CaseWhen],
        else_result: Option<&Expr>,
    ) -> Result<Option<Binning>> {
        const FORM: &str = "a histogram's CASE is WHEN column < e1 THEN lower WHEN column < e2 \
            THEN e1 ... ELSE ek END: each THEN the lower edge of its bin, edges increasing";
        let here = at(expr);
        if simple || conditions.is_empty() {
            return refuse(here, "CASE", FORM);
        }
        let Some(else_result) = else_result else {
            return refuse(here, "CASE", FORM);
        };
        let mut column: Option<(ValueColumn, Bounds)> = None;
        let mut edges: Vec<i64> = Vec::new();
        for (k, when) in conditions.iter().enumerate() {
            let Expr::BinaryOp {
                left,
                op: BinaryOperator::Lt,
                right,
            } = &when.condition
            else {
                return refuse(at(&when.condition), "CASE", FORM);
            };
            let (c, b) = self.value(left)?;
            match &column {
                None => {
                    column = Some((c, b));
                    edges.push(b.lower);
                }
                Some((c0, _)) if *c0 != c => {
                    return refuse(at(left.as_ref()), "CASE", FORM);
                }
                Some(_) => {}
            }
            let (Ok(edge), Ok(then)) = (integer(right, FORM), integer(&when.result, FORM)) else {
                return refuse(at(&when.condition), "CASE", FORM);
            };
            if then != edges[k] || edge <= edges[k] {
                return refuse(at(&when.result), "CASE", FORM);
            }
            edges.push(edge);
        }
        if integer(else_result, FORM).ok() != edges.last().copied() {
            return refuse(at(else_result), "CASE", FORM);
        }
        let (column, bounds) = column.expect("one condition at least");
        Ok(Some(Binning {
            column,
            bounds,
            bins: Bins::Edges(edges),
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// WHERE

const CONDITIONS: &str = "WHERE takes conditions joined by AND: dimension = value, dimension IN \
    (...), dimension IS NULL, and ranges (BETWEEN, <, <=, >, >=) of registration_year or \
    registration_month";
const PERIOD_NEEDED: &str = "bound the period: WHERE registration_year BETWEEN 2003 AND 2008 (or \
    registration_month BETWEEN '2003-01' AND '2008-12')";

/// The months a condition allows: at least `from`, at most `to`.
#[derive(Debug, Clone, Copy, Default)]
struct Envelope {
    from: Option<Month>,
    to: Option<Month>,
}

impl Envelope {
    fn and(&mut self, other: Envelope) {
        if let Some(f) = other.from {
            self.from = Some(self.from.map_or(f, |s| s.max(f)));
        }
        if let Some(t) = other.to {
            self.to = Some(self.to.map_or(t, |s| s.min(t)));
        }
    }
}

fn flatten_and<'a>(expr: &'a Expr, out: &mut Vec<&'a Expr>) {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            flatten_and(left, out);
            flatten_and(right, out);
        }
        Expr::Nested(inner) => flatten_and(inner, out),
        other => out.push(other),
    }
}

/// What one condition says about one dimension.
enum Condition {
    /// The values kept (`unknown` for nulls).
    Values(Vec<Literal>, Location),
    /// A range: the operator and the bound (`>=`, `<=`, `>`, `<`).
    Range(BinaryOperator, Literal, Location),
}

fn compile_where(
    scope: &Scope,
    selection: Option<&Expr>,
    at_select: Location,
) -> Result<(Period, BTreeMap<String, Vec<String>>)> {
    let mut conditions: Vec<&Expr> = Vec::new();
    if let Some(s) = selection {
        flatten_and(s, &mut conditions);
    }
    let mut envelope = Envelope::default();
    let mut values: Vec<(Dimension, Vec<String>, Location)> = Vec::new();
    for expr in conditions {
        for (dim, condition) in scope.condition(expr)? {
            match (dim, condition) {
                (
                    Dimension::RegistrationYear | Dimension::RegistrationMonth,
                    Condition::Range(op, bound, l),
                ) => envelope.and(range(dim, &op, &bound, l)?),
                (_, Condition::Range(_, _, l)) => {
                    return refuse(
                        l,
                        "range",
                        format!(
                            "ranges work on registration_year and registration_month; list the \
                             values of {} with IN (...)",
                            dim.name()
                        ),
                    );
                }
                (_, Condition::Values(list, l)) => {
                    let keys = list
                        .iter()
                        .map(|v| key(dim, v, l))
                        .collect::<Result<Vec<_>>>()?;
                    if let Some(e) = period_envelope(dim, &keys) {
                        envelope.and(e);
                    }
                    values.push((dim, keys, l));
                }
            }
        }
    }
    let (Some(from), Some(to)) = (envelope.from, envelope.to) else {
        return refuse(selection.map_or(at_select, at), "period", PERIOD_NEEDED);
    };
    if from > to {
        return refuse(
            selection.map_or(at_select, at),
            "period",
            "the conditions on the period allow no month",
        );
    }
    let period = Period { from, to };

    // Several conditions on one dimension keep the values all of them allow.
    let mut filters: BTreeMap<String, (Vec<String>, Location)> = BTreeMap::new();
    for (dim, keys, l) in values {
        let mut keys: Vec<String> = if is_period(dim) {
            let domain = dim.domain(&[], period);
            keys.into_iter().filter(|k| domain.contains(k)).collect()
        } else {
            keys
        };
        keys.dedup();
        let entry = filters
            .entry(dim.name().to_string())
            .or_insert_with(|| (keys.clone(), l));
        entry.0.retain(|k| keys.contains(k));
        if entry.0.is_empty() {
            return refuse(
                l,
                "condition",
                format!("the conditions on {} allow no value", dim.name()),
            );
        }
    }
    let mut out = BTreeMap::new();
    for (name, (keys, _)) in filters {
        let dim = Dimension::from_name(&name).expect("a dimension");
        // A period dimension restricted to every key of the period is the period itself.
        if is_period(dim) {
            let mut domain = dim.domain(&[], period);
            domain.retain(|k| k != UNKNOWN);
            if domain.iter().all(|k| keys.contains(k)) && keys.len() == domain.len() {
                continue;
            }
        }
        out.insert(name, keys);
    }
    Ok((period, out))
}

fn is_period(dim: Dimension) -> bool {
    matches!(
        dim,
        Dimension::RegistrationYear | Dimension::RegistrationQuarter | Dimension::RegistrationMonth
    )
}

impl Scope {
    /// The dimension and what a condition says about it.
    fn condition(&self, expr: &Expr) -> Result<Vec<(Dimension, Condition)>> {
        let here = at(expr);
        let literal_of = |e: &Expr| -> Result<Literal> {
            match literal(e) {
                Some(l) => Ok(l),
                None => {
                    if matches!(e, Expr::Subquery(_)) || self.column_ref(e)?.is_none() {
                        refuse_expr(e, "compare a dimension with literal values")
                    } else {
                        refuse(
                            at(e),
                            "condition",
                            "compare a dimension with literal values",
                        )
                    }
                }
            }
        };
        match expr {
            Expr::BinaryOp { left, op, right } => {
                let flipped = |op: &BinaryOperator| match op {
                    BinaryOperator::Lt => BinaryOperator::Gt,
                    BinaryOperator::LtEq => BinaryOperator::GtEq,
                    BinaryOperator::Gt => BinaryOperator::Lt,
                    BinaryOperator::GtEq => BinaryOperator::LtEq,
                    other => other.clone(),
                };
                match op {
                    BinaryOperator::Or => {
                        return refuse(
                            here,
                            "OR",
                            "conditions are joined by AND; for several values of one dimension \
                             write IN (...)",
                        );
                    }
                    BinaryOperator::NotEq => {
                        return refuse(here, "<>", LIST_VALUES);
                    }
                    BinaryOperator::Eq
                    | BinaryOperator::Lt
                    | BinaryOperator::LtEq
                    | BinaryOperator::Gt
                    | BinaryOperator::GtEq => {}
                    _ => return refuse(here, "condition", CONDITIONS),
                }
                let (column, value, op) = if self.column_ref(left)?.is_some() {
                    (left, right, op.clone())
                } else if self.column_ref(right)?.is_some() {
                    (right, left, flipped(op))
                } else {
                    return refuse_expr(left, CONDITIONS);
                };
                let dim = self.dimension(column, CONDITIONS)?;
                let value = literal_of(value)?;
                let condition = if op == BinaryOperator::Eq {
                    Condition::Values(vec![value], here)
                } else {
                    Condition::Range(op, value, here)
                };
                Ok(vec![(dim, condition)])
            }
            Expr::InList {
                expr: column,
                list,
                negated,
            } => {
                if *negated {
                    return refuse(here, "NOT IN", LIST_VALUES);
                }
                let dim = self.dimension(column, CONDITIONS)?;
                let values = list.iter().map(literal_of).collect::<Result<Vec<_>>>()?;
                Ok(vec![(dim, Condition::Values(values, here))])
            }
            Expr::Between {
                expr: column,
                negated,
                low,
                high,
            } => {
                if *negated {
                    return refuse(here, "NOT BETWEEN", CONDITIONS);
                }
                let dim = self.dimension(column, CONDITIONS)?;
                Ok(vec![
                    (
                        dim,
                        Condition::Range(BinaryOperator::GtEq, literal_of(low)?, here),
                    ),
                    (
                        dim,
                        Condition::Range(BinaryOperator::LtEq, literal_of(high)?, here),
                    ),
                ])
            }
            Expr::IsNull(column) => {
                let dim = self.dimension(column, CONDITIONS)?;
                Ok(vec![(dim, Condition::Values(vec![Literal::Null], here))])
            }
            Expr::IsNotNull(_) => refuse(here, "IS NOT NULL", LIST_VALUES),
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                ..
            } => refuse(here, "NOT", LIST_VALUES),
            Expr::Like { .. } | Expr::ILike { .. } | Expr::SimilarTo { .. } => {
                refuse(here, "LIKE", LIST_VALUES)
            }
            other => {
                if self.column_ref(other)?.is_some() {
                    self.dimension(other, CONDITIONS)?;
                    return refuse(
                        here,
                        "condition",
                        "compare the column with a value, e.g. shelter_accepted = 'yes'",
                    );
                }
                refuse_expr(other, CONDITIONS)
            }
        }
    }
}

/// The key a literal stands for in a dimension's domain.
fn key(dim: Dimension, value: &Literal, l: Location) -> Result<String> {
    match (value, dim) {
        (Literal::Null, _) => Ok(UNKNOWN.to_string()),
        (Literal::Text(t), _) => Ok(t.clone()),
        (Literal::Bool(b), Dimension::Flag { .. }) => Ok(if *b { "yes" } else { "no" }.into()),
        (Literal::Bool(_), _) => {
            refuse(l, "literal", format!("{} is not a yes/no flag", dim.name()))
        }
        (Literal::Number(n), Dimension::RegistrationYear) => match n.parse::<i32>() {
            Ok(y) => Ok(y.to_string()),
            Err(_) => refuse(l, "literal", "a registration year is a whole number"),
        },
        (Literal::Number(_), _) => refuse(
            l,
            "literal",
            format!("the values of {} are quoted text", dim.name()),
        ),
    }
}

/// The months that the keys of a period dimension cover, if it is one.
fn period_envelope(dim: Dimension, keys: &[String]) -> Option<Envelope> {
    let months: Vec<(Month, Month)> = keys
        .iter()
        .filter_map(|k| match dim {
            Dimension::RegistrationYear => {
                let year = k.parse().ok()?;
                Some((Month { year, month: 1 }, Month { year, month: 12 }))
            }
            Dimension::RegistrationMonth => Month::parse(k).map(|m| (m, m)),
            Dimension::RegistrationQuarter => {
                let (y, q) = k.split_once("-Q")?;
                let (year, q): (i32, u32) = (y.parse().ok()?, q.parse().ok()?);
                (1..=4).contains(&q).then(|| {
                    (
                        Month {
                            year,
                            month: q * 3 - 2,
                        },
                        Month { year, month: q * 3 },
                    )
                })
            }
            _ => None,
        })
        .collect();
    if !is_period(dim) {
        return None;
    }
    // Keys outside every period (nulls, malformed) bound nothing; validation names them.
    Some(Envelope {
        from: months.iter().map(|m| m.0).min(),
        to: months.iter().map(|m| m.1).max(),
    })
}

/// The months a range of the year or the month allows.
fn range(dim: Dimension, op: &BinaryOperator, bound: &Literal, l: Location) -> Result<Envelope> {
    let (first, last) = match (dim, bound) {
        (Dimension::RegistrationYear, Literal::Number(n) | Literal::Text(n)) => {
            match n.parse::<i32>() {
                Ok(year) if (1900..=2100).contains(&year) => {
                    (Month { year, month: 1 }, Month { year, month: 12 })
                }
                _ => {
                    return refuse(l, "literal", "a registration year is between 1900 and 2100");
                }
            }
        }
        (Dimension::RegistrationMonth, Literal::Text(t)) => match Month::parse(t) {
            Some(m) => (m, m),
            None => return refuse(l, "literal", "a registration month is 'YYYY-MM'"),
        },
        (Dimension::RegistrationMonth, _) => {
            return refuse(l, "literal", "a registration month is 'YYYY-MM'");
        }
        _ => return refuse(l, "literal", "a registration year is a whole number"),
    };
    let previous = |m: Month| {
        if m.month == 1 {
            Month {
                year: m.year - 1,
                month: 12,
            }
        } else {
            Month {
                year: m.year,
                month: m.month - 1,
            }
        }
    };
    Ok(match op {
        BinaryOperator::GtEq => Envelope {
            from: Some(first),
            to: None,
        },
        BinaryOperator::Gt => Envelope {
            from: Some(last.next()),
            to: None,
        },
        BinaryOperator::LtEq => Envelope {
            from: None,
            to: Some(last),
        },
        _ => Envelope {
            from: None,
            to: Some(previous(first)),
        },
    })
}

// ---------------------------------------------------------------------------------------------
// ORDER BY, LIMIT, OFFSET

const ORDER_KEYS: &str = "ORDER BY takes group keys and the aggregate (by name, alias or \
    position); it orders the released cells";

fn arrangement(
    query: &Query,
    scope: &Scope,
    items: &[(Item, Location)],
    aliases: &BTreeMap<String, usize>,
    spec: &QuerySpec,
) -> Result<Arrangement> {
    let mut out = Arrangement::default();
    let column_of = |item: &Item| match item {
        Item::Key(d) => d.name().to_string(),
        Item::Bin(_) => BIN.to_string(),
        Item::Aggregate(_) => "estimate".to_string(),
    };
    if let Some(order) = &query.order_by {
        if order.interpolate.is_some() {
            return refuse(at(query), "INTERPOLATE", ORDER_KEYS);
        }
        let exprs = match &order.kind {
            OrderByKind::Expressions(e) => e,
            OrderByKind::All(_) => return refuse(at(query), "ORDER BY ALL", ORDER_KEYS),
        };
        for o in exprs {
            if o.with_fill.is_some() {
                return refuse(at(&o.expr), "WITH FILL", ORDER_KEYS);
            }
            let column = match grouped_item(&o.expr, items, aliases)? {
                Some(item) => column_of(&item),
                None => match &o.expr {
                    Expr::Function(f) if f.over.is_none() => match scope.aggregate(f)? {
                        Some(_) => "estimate".to_string(),
                        None => return refuse_expr(&o.expr, ORDER_KEYS),
                    },
                    e if scope.binning(e)?.is_some() => BIN.to_string(),
                    e => {
                        let d = scope.dimension(e, ORDER_KEYS)?;
                        if !spec.group_by.iter().any(|g| g == d.name()) {
                            return refuse(
                                at(e),
                                "ORDER BY",
                                format!("`{}` is not a group key; {ORDER_KEYS}", d.name()),
                            );
                        }
                        d.name().to_string()
                    }
                },
            };
            out.order_by.push(OrderKey {
                column,
                descending: o.options.asc == Some(false),
            });
        }
    }
    let count = |e: &Expr, what: &str| -> Result<u64> {
        match integer(e, what) {
            Ok(n) if n >= 0 => Ok(n as u64),
            _ => refuse(at(e), what, "a whole number, 0 or more"),
        }
    };
    match &query.limit_clause {
        None => {}
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) => {
            if let Some(e) = limit_by.first() {
                return refuse(at(e), "LIMIT BY", "LIMIT takes a number");
            }
            if let Some(l) = limit {
                out.limit = Some(count(l, "LIMIT")?);
            }
            if let Some(o) = offset {
                out.offset = count(&o.value, "OFFSET")?;
            }
        }
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
            out.limit = Some(count(limit, "LIMIT")?);
            out.offset = count(offset, "OFFSET")?;
        }
    }
    Ok(out)
}
