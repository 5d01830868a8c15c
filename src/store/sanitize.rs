//! What the store does to captured text on the way in, the same on both backends, and which
//! database errors mean "these rows", not "this database".
//!
//! The rule: every NUL character (U+0000) in a captured string — a text column, a cohort label
//! key or value, and every string (object keys included) inside a JSON column — is replaced by
//! U+FFFD (the replacement character). Postgres can hold NUL in neither `text` nor `jsonb`, so
//! one NUL in a user id, a label, a prompt or an answer used to fail a whole batch; SQLite could
//! hold it, so the two backends stored different things. Nothing else is changed: Rust strings
//! are valid UTF-8 already, and JSON numbers and structure pass as they are.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

use crate::capture::{JsonBody, Observation};

/// `s` with every NUL replaced; borrowed when there is none.
pub fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

fn text_in_place(s: &mut String) {
    if s.contains('\0') {
        *s = s.replace('\0', "\u{FFFD}");
    }
}

/// Whether `value` holds a NUL in any string or object key.
pub fn json_has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(json_has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Replaces every NUL in `value`'s strings and object keys.
pub fn json_in_place(value: &mut Value) {
    match value {
        Value::String(s) => text_in_place(s),
        Value::Array(items) => items.iter_mut().for_each(json_in_place),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                let old = std::mem::take(map);
                for (k, mut v) in old {
                    json_in_place(&mut v);
                    map.insert(text(&k).into_owned(), v);
                }
            } else {
                map.values_mut().for_each(json_in_place);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Whether a JSON body holds a NUL in a string or key. JSON text can only spell one as the
/// escape `\u0000`, so a body without that sequence holds none (one with it, say after an
/// escaped backslash, is checked exactly).
pub fn body_has_nul(body: &JsonBody) -> bool {
    let escape = br"\u0000";
    body.as_bytes().windows(escape.len()).any(|w| w == escape) && json_has_nul(&body.value())
}

/// Replaces every NUL in a body's strings and keys (the body is then serde_json's writing of
/// the same JSON).
fn body_in_place(body: &mut JsonBody) {
    if !body_has_nul(body) {
        return;
    }
    let mut value = body.value();
    json_in_place(&mut value);
    *body = JsonBody::from(value);
}

/// Cohort labels with every NUL replaced; borrowed when there is none.
pub fn labels(map: &BTreeMap<String, String>) -> Cow<'_, BTreeMap<String, String>> {
    if map
        .iter()
        .any(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        Cow::Owned(
            map.iter()
                .map(|(k, v)| (text(k).into_owned(), text(v).into_owned()))
                .collect(),
        )
    } else {
        Cow::Borrowed(map)
    }
}

fn opt_has_nul(s: &Option<String>) -> bool {
    s.as_deref().is_some_and(|s| s.contains('\0'))
}

/// `o` as the store writes it: borrowed when it holds no NUL, a sanitized copy otherwise.
pub fn observation(o: &Observation) -> Cow<'_, Observation> {
    let dirty = [&o.deployment, &o.variant, &o.stage, &o.upstream_model]
        .iter()
        .any(|s| s.contains('\0'))
        || [
            &o.unit_key,
            &o.error_detail,
            &o.finish_reason,
            &o.response_text,
        ]
        .iter()
        .any(|s| opt_has_nul(s))
        || matches!(labels(&o.cohort), Cow::Owned(_))
        || o.request_body.as_ref().is_some_and(body_has_nul)
        || o.response_body.as_ref().is_some_and(body_has_nul);
    if !dirty {
        return Cow::Borrowed(o);
    }
    let mut o = o.clone();
    for s in [
        &mut o.deployment,
        &mut o.variant,
        &mut o.stage,
        &mut o.upstream_model,
    ] {
        text_in_place(s);
    }
    for s in [
        &mut o.unit_key,
        &mut o.error_detail,
        &mut o.finish_reason,
        &mut o.response_text,
    ]
    .into_iter()
    .flatten()
    {
        text_in_place(s);
    }
    o.cohort = labels(&o.cohort).into_owned();
    for body in [&mut o.request_body, &mut o.response_body]
        .into_iter()
        .flatten()
    {
        body_in_place(body);
    }
    Cow::Owned(o)
}

/// Whether a database error is about the rows written — a constraint they violate, a value the
/// column cannot hold, a statement they make too large — so that the same rows fail the same way
/// however often they are retried. Connection, I/O, pool, lock and server-state errors are not:
/// those are worth retrying (and spooling) as they are.
pub fn rejects_the_rows(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            use sqlx::error::ErrorKind;
            if matches!(
                db.kind(),
                ErrorKind::UniqueViolation
                    | ErrorKind::ForeignKeyViolation
                    | ErrorKind::NotNullViolation
                    | ErrorKind::CheckViolation
                    | ErrorKind::ExclusionViolation
            ) {
                return true;
            }
            let Some(code) = db.code() else {
                return false;
            };
            if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                // SQLSTATE classes 22 (data exception: a NUL, an invalid escape, a value out of
                // range), 23 (integrity constraint), 54 (program limit: too large, too deep).
                return ["22", "23", "54"]
                    .iter()
                    .any(|class| code.starts_with(class));
            }
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // Primary result codes: SQLITE_TOOBIG 18, SQLITE_CONSTRAINT 19 (a trigger's
                // RAISE(ABORT) too), SQLITE_MISMATCH 20, SQLITE_RANGE 25.
                let primary = code.parse::<i32>().map_or(0, |c| c & 0xff);
                return matches!(primary, 18 | 19 | 20 | 25);
            }
            false
        }
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nul_becomes_the_replacement_character_everywhere_in_json() {
        let mut v = json!({"a\u{0}b": ["x\u{0}", 1, null, {"k": "v\u{0}"}], "n": 1.5});
        assert!(json_has_nul(&v));
        json_in_place(&mut v);
        assert!(!json_has_nul(&v));
        assert_eq!(
            v,
            json!({"a\u{FFFD}b": ["x\u{FFFD}", 1, null, {"k": "v\u{FFFD}"}], "n": 1.5})
        );
        assert!(matches!(text("clean"), Cow::Borrowed("clean")));
        let body = |t: &str| JsonBody::parse(t.as_bytes().to_vec()).unwrap();
        assert!(body_has_nul(&body(r#"{"a":"x\u0000"}"#)));
        assert!(!body_has_nul(&body(r#"{"a":"x\\u0000"}"#)));
        assert!(!body_has_nul(&body(r#"{"a":"x"}"#)));
        let mut dirty = body(r#"{"a\u0000":"x\u0000"}"#);
        body_in_place(&mut dirty);
        assert_eq!(dirty.value(), json!({"a\u{FFFD}": "x\u{FFFD}"}));
        assert_eq!(text("a\0\0"), "a\u{FFFD}\u{FFFD}");
    }
}
