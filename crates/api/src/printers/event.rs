//! Events: LAST SEEN TYPE REASON OBJECT MESSAGE, with SUBOBJECT SOURCE FIRST SEEN COUNT
//! NAME under `-o wide`.
//!
//! Upstream prints `events.k8s.io/v1` Events from the same internal type as core Events, so
//! both group's JSON shapes are read into one [`EventView`] first.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::columns::{Column, NAME};
use super::format::{integer, since, text, timestamp};
use super::{KindPrinter, TableRow};

const COLUMNS: &[Column] = &[
    Column::string("Last Seen", "The time at which the most recent occurrence of this event was recorded."),
    Column::string("Type", "Type of this event (Normal, Warning), new types could be added in the future"),
    Column::string(
        "Reason",
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
    ),
    Column::string("Object", "The object that this event is about."),
    Column::string(
        "Subobject",
        "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
    )
    .wide(),
    Column::string("Source", "The component reporting this event.").wide(),
    Column::string("Message", "A human-readable description of the status of this operation."),
    Column::string("First Seen", "The time at which the event was first recorded.").wide(),
    Column::string("Count", "The number of times this event has occurred.").wide(),
    NAME.wide(),
];

pub(super) const CORE_EVENT: KindPrinter =
    KindPrinter { columns: COLUMNS, print: |e, now| print_event(&EventView::core(e), now) };

pub(super) const EVENTS_EVENT: KindPrinter =
    KindPrinter { columns: COLUMNS, print: |e, now| print_event(&EventView::events_v1(e), now) };

/// The fields the printer reads, whichever API group the Event came from.
struct EventView<'a> {
    name: &'a str,
    first_timestamp: Option<DateTime<Utc>>,
    last_timestamp: Option<DateTime<Utc>>,
    event_time: Option<DateTime<Utc>>,
    /// `(count, lastObservedTime)` of an event series.
    series: Option<(i64, Option<DateTime<Utc>>)>,
    count: i64,
    object: &'a Value,
    type_: &'a str,
    reason: &'a str,
    message: &'a str,
    source_component: &'a str,
    source_host: &'a str,
    reporting_controller: &'a str,
    reporting_instance: &'a str,
}

impl<'a> EventView<'a> {
    /// A core `v1` Event.
    fn core(event: &'a Value) -> Self {
        Self::read(
            event,
            [
                "/firstTimestamp",
                "/lastTimestamp",
                "/count",
                "/involvedObject",
                "/message",
                "/source",
                "/reportingComponent",
            ],
        )
    }

    /// An `events.k8s.io/v1` Event (its deprecated* fields carry the core ones).
    fn events_v1(event: &'a Value) -> Self {
        Self::read(
            event,
            [
                "/deprecatedFirstTimestamp",
                "/deprecatedLastTimestamp",
                "/deprecatedCount",
                "/regarding",
                "/note",
                "/deprecatedSource",
                "/reportingController",
            ],
        )
    }

    /// Reads an Event given the pointers of the fields whose names differ between groups:
    /// first and last timestamp, count, involved object, message, source, reporting controller.
    fn read(event: &'a Value, [first, last, count, object, message, source, controller]: [&str; 7]) -> Self {
        let series = event
            .get("series")
            .filter(|s| s.is_object())
            .map(|s| (integer(s, "/count"), timestamp(s, "/lastObservedTime")));
        let source = event.pointer(source).unwrap_or(&Value::Null);
        EventView {
            name: text(event, "/metadata/name"),
            first_timestamp: timestamp(event, first),
            last_timestamp: timestamp(event, last),
            event_time: timestamp(event, "/eventTime"),
            series,
            count: integer(event, count),
            object: event.pointer(object).unwrap_or(&Value::Null),
            type_: text(event, "/type"),
            reason: text(event, "/reason"),
            message: text(event, message),
            source_component: text(source, "/component"),
            source_host: text(source, "/host"),
            reporting_controller: text(event, controller),
            reporting_instance: text(event, "/reportingInstance"),
        }
    }
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() {
        b
    } else {
        a
    }
}

fn print_event(event: &EventView<'_>, now: DateTime<Utc>) -> TableRow {
    // FIRST SEEN falls back to the new-style eventTime, LAST SEEN to FIRST SEEN; a series
    // overrides both LAST SEEN and COUNT, and a singleton new-style event counts once.
    let first_seen = match event.first_timestamp {
        Some(t) => since(Some(t), now),
        None => since(event.event_time, now),
    };
    let mut last_seen = match event.last_timestamp {
        Some(t) => since(Some(t), now),
        None => first_seen.clone(),
    };
    let mut count = event.count;
    if let Some((series_count, last_observed)) = event.series {
        last_seen = since(last_observed, now);
        count = series_count;
    } else if count == 0 {
        count = 1;
    }

    let kind = text(event.object, "/kind").to_lowercase();
    let target = match text(event.object, "/name") {
        "" => kind,
        object_name => format!("{kind}/{object_name}"),
    };
    let component = first_non_empty(event.source_component, event.reporting_controller);
    let instance = first_non_empty(event.source_host, event.reporting_instance);
    let source = if instance.is_empty() { component.to_string() } else { format!("{component}, {instance}") };

    TableRow::new(vec![
        json!(last_seen),
        json!(event.type_),
        json!(event.reason),
        json!(target),
        json!(text(event.object, "/fieldPath")),
        json!(source),
        json!(event.message.trim()),
        json!(first_seen),
        json!(count),
        json!(event.name),
    ])
}
