//! The table of every kind without its own printer: Name and Created At, as upstream's
//! default table convertor prints (the creation time as an RFC 3339 date, not an age).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use super::columns::{CREATED_AT, NAME};
use super::format::{name, timestamp};
use super::{KindPrinter, TableRow};

/// What Go prints for a zero (absent) creation time.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub(super) const GENERIC: KindPrinter = KindPrinter {
    columns: &[NAME, CREATED_AT],
    print: |object, _now: DateTime<Utc>| {
        let created = timestamp(object, "/metadata/creationTimestamp")
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
            .unwrap_or_else(|| GO_ZERO_TIME.to_string());
        TableRow::new(vec![json!(name(object)), json!(created)])
    },
};
