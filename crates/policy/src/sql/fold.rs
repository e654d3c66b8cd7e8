//! Constant folding of a `WHERE` clause: is it true for every row?
//!
//! Used by `no_where`: a predicate that folds to true (`true`, `1 = 1`,
//! `'a' = 'a'`, `id = id`, `x OR true`, `NOT false`, `1 < 2`,
//! `coalesce(true, x)`, `x IS NULL OR x IS NOT NULL`, `x LIKE '%'`, …)
//! restricts nothing. The folding only ever says "true" when it is sure
//! (up to NULLs: `id = id` keeps the rows where `id` is NULL out, and still
//! counts as no restriction); anything it does not understand is unknown.

use sqlparser::ast::{BinaryOperator, CastKind, DataType, Expr, UnaryOperator, Value};

/// A folded constant.
#[derive(Debug, Clone, PartialEq)]
enum C {
    Bool(bool),
    Num(f64),
    Str(String),
    Null,
}

/// Bounds the folding of hostile input (the parser bounds the depth too).
const MAX_DEPTH: usize = 64;

/// True when `e` is true for every row whose columns are not NULL.
pub(crate) fn is_tautology(e: &Expr) -> bool {
    matches!(fold(e, 0), Some(C::Bool(true)))
}

fn as_bool(c: &C) -> Option<bool> {
    match c {
        C::Bool(b) => Some(*b),
        C::Str(s) => match s.to_ascii_lowercase().trim() {
            "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
            "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn as_num(c: &C) -> Option<f64> {
    match c {
        C::Num(n) => Some(*n),
        C::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The expression's text without its spans, for "same expression" tests;
/// only plain column references (no function: `random() = random()` is not
/// a tautology).
fn same_column_expr(a: &Expr, b: &Expr) -> bool {
    let plain = |e: &Expr| matches!(strip(e), Expr::Identifier(_) | Expr::CompoundIdentifier(_));
    plain(a) && plain(b) && strip(a).to_string() == strip(b).to_string()
}

fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(inner) => strip(inner),
        other => other,
    }
}

fn compare(op: &BinaryOperator, l: &C, r: &C) -> Option<bool> {
    use std::cmp::Ordering;
    let ord = match (l, r) {
        (C::Null, _) | (_, C::Null) => return None,
        (C::Str(a), C::Str(b)) => a.cmp(b),
        (C::Bool(a), b) => a.cmp(&as_bool(b)?),
        (a, C::Bool(b)) => as_bool(a)?.cmp(b),
        (a, b) => as_num(a)?.partial_cmp(&as_num(b)?)?,
    };
    Some(match op {
        BinaryOperator::Eq => ord == Ordering::Equal,
        BinaryOperator::NotEq => ord != Ordering::Equal,
        BinaryOperator::Lt => ord == Ordering::Less,
        BinaryOperator::LtEq => ord != Ordering::Greater,
        BinaryOperator::Gt => ord == Ordering::Greater,
        BinaryOperator::GtEq => ord != Ordering::Less,
        _ => return None,
    })
}

fn fold(e: &Expr, depth: usize) -> Option<C> {
    if depth > MAX_DEPTH {
        return None;
    }
    let d = depth + 1;
    match e {
        Expr::Nested(inner) => fold(inner, d),
        Expr::Value(v) => match &v.value {
            Value::Boolean(b) => Some(C::Bool(*b)),
            Value::Null => Some(C::Null),
            Value::Number(n, _) => n.parse().ok().map(C::Num),
            Value::SingleQuotedString(s)
            | Value::EscapedStringLiteral(s)
            | Value::UnicodeStringLiteral(s) => Some(C::Str(s.clone())),
            Value::DollarQuotedString(s) => Some(C::Str(s.value.clone())),
            _ => None,
        },
        Expr::UnaryOp { op, expr } => {
            let c = fold(expr, d)?;
            match op {
                UnaryOperator::Not => match c {
                    C::Null => Some(C::Null),
                    other => Some(C::Bool(!as_bool(&other)?)),
                },
                UnaryOperator::Minus => Some(C::Num(-as_num(&c)?)),
                UnaryOperator::Plus => Some(C::Num(as_num(&c)?)),
                _ => None,
            }
        }
        Expr::Cast {
            kind: CastKind::Cast | CastKind::DoubleColon,
            expr,
            data_type,
            ..
        } => {
            let c = fold(expr, d)?;
            match data_type {
                DataType::Boolean | DataType::Bool => match c {
                    C::Null => Some(C::Null),
                    other => as_bool(&other).map(C::Bool),
                },
                DataType::Text | DataType::Varchar(_) | DataType::Char(_) => match c {
                    C::Str(s) => Some(C::Str(s)),
                    _ => None,
                },
                _ => as_num(&c).map(C::Num).or(match c {
                    C::Null => Some(C::Null),
                    _ => None,
                }),
            }
        }
        Expr::BinaryOp { left, op, right } => binary(left, op, right, d),
        Expr::IsTrue(x) => Some(C::Bool(fold(x, d).as_ref().and_then(as_bool) == Some(true))),
        Expr::IsNotFalse(x) => match fold(x, d)? {
            C::Null => Some(C::Bool(true)),
            other => Some(C::Bool(as_bool(&other)?)),
        },
        Expr::IsNull(x) => match fold(x, d)? {
            C::Null => Some(C::Bool(true)),
            _ => Some(C::Bool(false)),
        },
        Expr::IsNotNull(x) => match fold(x, d)? {
            C::Null => Some(C::Bool(false)),
            _ => Some(C::Bool(true)),
        },
        Expr::IsNotDistinctFrom(a, b) => {
            if same_column_expr(a, b) {
                return Some(C::Bool(true));
            }
            let (l, r) = (fold(a, d)?, fold(b, d)?);
            Some(C::Bool(l == r))
        }
        Expr::InList {
            expr,
            list,
            negated: false,
        } => {
            if list.iter().any(|x| same_column_expr(expr, x)) {
                return Some(C::Bool(true));
            }
            let v = fold(expr, d)?;
            list.iter()
                .any(|x| {
                    fold(x, d).is_some_and(|c| compare(&BinaryOperator::Eq, &v, &c) == Some(true))
                })
                .then_some(C::Bool(true))
        }
        Expr::Between {
            expr,
            negated: false,
            low,
            high,
        } => {
            let v = fold(expr, d)?;
            let ge = compare(&BinaryOperator::GtEq, &v, &fold(low, d)?)?;
            let le = compare(&BinaryOperator::LtEq, &v, &fold(high, d)?)?;
            Some(C::Bool(ge && le))
        }
        Expr::Like {
            negated: false,
            pattern,
            ..
        }
        | Expr::ILike {
            negated: false,
            pattern,
            ..
        } => match fold(pattern, d)? {
            // `x LIKE '%'` matches every non-NULL x.
            C::Str(p) if !p.is_empty() && p.chars().all(|c| c == '%') => Some(C::Bool(true)),
            _ => None,
        },
        Expr::Function(f) => {
            let name = f.name.to_string().to_ascii_lowercase();
            let base = name.rsplit('.').next().unwrap_or(&name);
            if base != "coalesce" {
                return None;
            }
            let sqlparser::ast::FunctionArguments::List(list) = &f.args else {
                return None;
            };
            // The first argument that folds to a non-NULL constant, provided
            // every argument before it folds to NULL.
            for a in &list.args {
                let sqlparser::ast::FunctionArg::Unnamed(sqlparser::ast::FunctionArgExpr::Expr(x)) =
                    a
                else {
                    return None;
                };
                match fold(x, d)? {
                    C::Null => continue,
                    c => return Some(c),
                }
            }
            Some(C::Null)
        }
        _ => None,
    }
}

fn binary(left: &Expr, op: &BinaryOperator, right: &Expr, d: usize) -> Option<C> {
    match op {
        BinaryOperator::Or => {
            let l = fold(left, d).and_then(|c| as_bool(&c));
            let r = fold(right, d).and_then(|c| as_bool(&c));
            if l == Some(true) || r == Some(true) || null_check_pair(left, right) {
                Some(C::Bool(true))
            } else if let (Some(a), Some(b)) = (l, r) {
                Some(C::Bool(a || b))
            } else {
                None
            }
        }
        BinaryOperator::And => {
            let l = as_bool(&fold(left, d)?)?;
            let r = as_bool(&fold(right, d)?)?;
            Some(C::Bool(l && r))
        }
        BinaryOperator::Eq | BinaryOperator::LtEq | BinaryOperator::GtEq
            if same_column_expr(left, right) =>
        {
            Some(C::Bool(true))
        }
        BinaryOperator::Eq
        | BinaryOperator::NotEq
        | BinaryOperator::Lt
        | BinaryOperator::LtEq
        | BinaryOperator::Gt
        | BinaryOperator::GtEq => {
            let (l, r) = (fold(left, d)?, fold(right, d)?);
            if l == C::Null || r == C::Null {
                return Some(C::Null);
            }
            compare(op, &l, &r).map(C::Bool)
        }
        BinaryOperator::Plus
        | BinaryOperator::Minus
        | BinaryOperator::Multiply
        | BinaryOperator::Divide => {
            let (l, r) = (as_num(&fold(left, d)?)?, as_num(&fold(right, d)?)?);
            let v = match op {
                BinaryOperator::Plus => l + r,
                BinaryOperator::Minus => l - r,
                BinaryOperator::Multiply => l * r,
                _ if r != 0.0 => l / r,
                _ => return None,
            };
            v.is_finite().then_some(C::Num(v))
        }
        BinaryOperator::StringConcat => match (fold(left, d)?, fold(right, d)?) {
            (C::Str(a), C::Str(b)) => Some(C::Str(a + &b)),
            _ => None,
        },
        _ => None,
    }
}

/// `x IS NULL OR x IS NOT NULL` (either order) for the same column.
fn null_check_pair(a: &Expr, b: &Expr) -> bool {
    match (strip(a), strip(b)) {
        (Expr::IsNull(x), Expr::IsNotNull(y)) | (Expr::IsNotNull(x), Expr::IsNull(y)) => {
            same_column_expr(x, y)
        }
        _ => false,
    }
}
