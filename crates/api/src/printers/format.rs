//! Cell formats shared by the printers, and tolerant readers for the JSON objects they print
//! (a missing or mistyped field reads as its zero value, as in a Go struct).

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

/// The string at a JSON pointer, or "".
pub(super) fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The integer at a JSON pointer, or 0.
pub(super) fn integer(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// The array at a JSON pointer, or an empty slice.
pub(super) fn array<'a>(object: &'a Value, pointer: &str) -> &'a [Value] {
    object.pointer(pointer).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// The number of entries of the map (or array) at a JSON pointer.
pub(super) fn count(object: &Value, pointer: &str) -> usize {
    match object.pointer(pointer) {
        Some(Value::Object(map)) => map.len(),
        Some(Value::Array(items)) => items.len(),
        _ => 0,
    }
}

/// The timestamp at a JSON pointer. Absent, unparsable and Go's zero time all read as None
/// (upstream's `IsZero`).
pub(super) fn timestamp(object: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    let parsed = DateTime::parse_from_rfc3339(text(object, pointer)).ok()?.with_timezone(&Utc);
    let go_zero_time = DateTime::parse_from_rfc3339("0001-01-01T00:00:00Z").ok()?.with_timezone(&Utc);
    (parsed != go_zero_time).then_some(parsed)
}

/// `<unknown>` for no timestamp, otherwise [`human_duration`] of the time since it.
pub(super) fn since(timestamp: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match timestamp {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_string(),
    }
}

/// The Age cell: time since `metadata.creationTimestamp`.
pub(super) fn age(object: &Value, now: DateTime<Utc>) -> String {
    since(timestamp(object, "/metadata/creationTimestamp"), now)
}

/// The object's name.
pub(super) fn name(object: &Value) -> &str {
    text(object, "/metadata/name")
}

/// A duration as `kubectl get` prints ages (apimachinery's `duration.HumanDuration`): about
/// two significant figures, `45s`, `2m3s`, `15m`, `3h4m`, `10h`, `2d3h`, `30d`, `2y10d`.
/// Up to a second in the future counts as `0s` (clock skew); further is `<invalid>`.
pub fn human_duration(duration: TimeDelta) -> String {
    const SECOND: i64 = 1_000_000_000;
    const MINUTE: i64 = 60 * SECOND;
    const HOUR: i64 = 60 * MINUTE;
    // Go durations are i64 nanoseconds and saturate (about 292 years).
    let nanos = duration.num_nanoseconds().unwrap_or(if duration < TimeDelta::zero() { i64::MIN } else { i64::MAX });
    let seconds = nanos / SECOND;
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = nanos / MINUTE;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = nanos / HOUR;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{days}d") } else { format!("{days}d{h}h") };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        let dy = days % 365;
        return if dy == 0 { format!("{years}y") } else { format!("{years}y{dy}d") };
    }
    format!("{years}y")
}

/// Container names and images of a pod template, each joined by `,`.
pub(super) fn container_cells(containers: &[Value]) -> (String, String) {
    let names: Vec<&str> = containers.iter().map(|c| text(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, "/image")).collect();
    (names.join(","), images.join(","))
}

/// `host:port`, with brackets around IPv6 hosts (Go's `net.JoinHostPort`).
pub(super) fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Upstream's "first few, then a count" list: `a,b,c + 2 more...`, or `<unset>` when empty.
pub(super) fn list_with_more(list: &[String], more: bool, count: usize, max: usize) -> String {
    let joined = list.join(",");
    if more {
        return format!("{joined} + {} more...", count.saturating_sub(max));
    }
    if joined.is_empty() {
        return "<unset>".to_string();
    }
    joined
}

/// The IPs (or, failing that, hostnames) of a load-balancer status, sorted, de-duplicated
/// and joined by `,`. The server prints wide, so upstream's 16-character clipping never applies.
pub(super) fn load_balancer_ingress(status: &Value) -> String {
    let mut addresses: Vec<&str> = array(status, "/ingress")
        .iter()
        .map(|ingress| match text(ingress, "/ip") {
            "" => text(ingress, "/hostname"),
            ip => ip,
        })
        .filter(|address| !address.is_empty())
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    addresses.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn human_durations() {
        let s = TimeDelta::seconds;
        let cases: &[(TimeDelta, &str)] = &[
            (s(-3), "<invalid>"),
            (s(-2), "<invalid>"),
            (TimeDelta::milliseconds(-1999), "0s"),
            (s(-1), "0s"),
            (TimeDelta::milliseconds(-500), "0s"),
            (s(0), "0s"),
            (s(59), "59s"),
            (s(119), "119s"),
            (s(120), "2m"),
            (s(123), "2m3s"),
            (s(599), "9m59s"),
            (s(600), "10m"),
            (s(179 * 60 + 59), "179m"),
            (s(3 * 3600), "3h"),
            (s(3 * 3600 + 4 * 60 + 5), "3h4m"),
            (s(8 * 3600), "8h"),
            (s(47 * 3600 + 59 * 60), "47h"),
            (s(48 * 3600), "2d"),
            (s(51 * 3600), "2d3h"),
            (s(8 * 86400 - 1), "7d23h"),
            (s(8 * 86400), "8d"),
            (s(729 * 86400), "729d"),
            (s(730 * 86400), "2y"),
            (s(740 * 86400), "2y10d"),
            (s(8 * 365 * 86400), "8y"),
            (s(10 * 365 * 86400 + 86400 * 100), "10y"),
            (TimeDelta::MAX, "292y"),
        ];
        for (duration, want) in cases {
            assert_eq!(human_duration(*duration), *want, "{duration:?}");
        }
    }

    #[test]
    fn timestamps() {
        let now = DateTime::parse_from_rfc3339("2024-01-01T00:10:00Z").unwrap().with_timezone(&Utc);
        let object = json!({"metadata": {"creationTimestamp": "2024-01-01T00:00:00Z"}});
        assert_eq!(age(&object, now), "10m");
        assert_eq!(age(&json!({}), now), "<unknown>");
        assert_eq!(age(&json!({"metadata": {"creationTimestamp": "0001-01-01T00:00:00Z"}}), now), "<unknown>");
        assert_eq!(age(&json!({"metadata": {"creationTimestamp": "yesterday"}}), now), "<unknown>");
        let micro = json!({"t": "2024-01-01T00:09:30.123456Z"});
        assert_eq!(since(timestamp(&micro, "/t"), now), "29s");
    }

    #[test]
    fn small_formats() {
        assert_eq!(join_host_port("10.0.0.1", 80), "10.0.0.1:80");
        assert_eq!(join_host_port("fd00::1", 80), "[fd00::1]:80");
        assert_eq!(list_with_more(&[], false, 0, 3), "<unset>");
        assert_eq!(list_with_more(&["a".into(), "b".into(), "c".into()], true, 5, 3), "a,b,c + 2 more...");
        let containers = [json!({"name": "a", "image": "nginx"}), json!({"name": "b", "image": "busybox"})];
        assert_eq!(container_cells(&containers), ("a,b".to_string(), "nginx,busybox".to_string()));
        let lb = json!({"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example.com"}, {"ip": "1.2.3.4"}, {"ip": "1.2.3.4"}]});
        assert_eq!(load_balancer_ingress(&lb), "1.2.3.4,5.6.7.8,lb.example.com");
    }
}
