//! The redb tables behind [`RedbStore`](super::RedbStore).
//!
//! - [`KV`]: the current state, key → `create_revision | mod_revision | value`
//!   ([`codec::encode_current`](super::codec::encode_current)). Point reads, compares and
//!   latest ranges only touch this table.
//! - [`LOG`]: the history, revision → every event of that revision, each with the key's
//!   previous state ([`codec::encode_events`](super::codec::encode_events)). Exactly one entry
//!   per revision. Watches replay it; ranges at an old revision undo it (that is why every
//!   event carries its `prev`: undoing a write needs what it overwrote). Entries at or below
//!   the compacted revision are deleted.
//! - [`META`]: the current and the compacted revision, so both survive restarts.

use redb::{ReadableTable, TableDefinition};

use crate::{Result, Revision};

pub(crate) const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
pub(crate) const LOG: TableDefinition<i64, &[u8]> = TableDefinition::new("log");
pub(crate) const META: TableDefinition<&str, i64> = TableDefinition::new("meta");

/// `META` key of the latest committed revision.
pub(crate) const CURRENT_REVISION: &str = "current_revision";
/// `META` key of the compacted revision: log entries at or below it are gone.
pub(crate) const COMPACTED_REVISION: &str = "compacted_revision";

/// Reads a revision from `META`; a missing entry (a new database) is revision 0.
pub(crate) fn meta_revision(meta: &impl ReadableTable<&'static str, i64>, name: &str) -> Result<Revision> {
    Ok(meta.get(name)?.map(|guard| guard.value()).unwrap_or(0))
}
