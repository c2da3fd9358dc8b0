//! The answer table: every name the server is authoritative for, with its records already in
//! wire format.
//!
//! Records come in [`Contribution`]s: everything one source (a Service, a Namespace, the
//! zone's own apex records) puts into the table. The watch side replaces a source's
//! contribution whenever the source changes ([`Zone::replace`]), under one write lock, so a
//! reader never sees half of an update. Answering is then one hash lookup on the lowercase
//! query name plus copying bytes.
//!
//! A name exists (NOERROR) when some source put it in the table, even without records, or
//! when a name below it exists: such an *empty non-terminal* (`svc.cluster.local`,
//! `testns.svc.cluster.local`) answers NODATA, every other name NXDOMAIN. Each entry counts
//! its children so that empty non-terminals appear and disappear with their last child.
//!
//! Memory is the table's main cost (tens of thousands of names, a 1 KB budget per Service
//! and endpoint for the whole process), so the table is compact:
//! - every name is one [`NameEntry`] holding the name, its child count and every record set
//!   stored there, and all entries live back to back in one byte arena: no allocation (and
//!   no allocator overhead) per name;
//! - the index is a hash table of 4-byte arena offsets, hashed by the entry's name with a
//!   keyed hasher (query names are chosen by clients);
//! - a changed entry is written anew at the end of the arena and the old bytes become
//!   garbage, which [`Zone::replace`] compacts away once it outweighs the live entries;
//! - record sets carry no owner id: a source removes its set by content, which the feeder
//!   can always recompute, and two byte-identical sets at one name are interchangeable.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;

use hashbrown::HashTable;

use crate::name::{parent_wire, Name};
use crate::wire::{append_tail, tails};

/// Records at one name from one source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameRecords {
    /// Record tails (type, class, TTL, RDLENGTH, RDATA), concatenated.
    pub tails: Vec<u8>,
}

/// Everything one source puts into the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contribution {
    /// Records (possibly none, to make a name exist) per owner name.
    pub names: BTreeMap<Name, NameRecords>,
    /// Pod addresses and their namespaces (from endpoint `targetRef`s), for answering pod
    /// records in `verified` mode and for search-path completion keyed by client address.
    pub pods: Vec<(IpAddr, Arc<str>)>,
}

impl Contribution {
    /// Adds one record at `owner`.
    pub fn add(&mut self, owner: Name, rtype: u16, ttl: u32, rdata: &[u8]) {
        append_tail(&mut self.names.entry(owner).or_default().tails, rtype, ttl, rdata);
    }

    /// Makes `owner` exist without adding records.
    pub fn touch(&mut self, owner: Name) {
        self.names.entry(owner).or_default();
    }
}

/// Bytes of the entry length at the start of an entry.
const LEN_LEN: usize = 4;
/// Offset of the child count in an entry.
const CHILDREN_AT: usize = LEN_LEN;
/// Offset of the name length in an entry.
const NAME_LEN_AT: usize = CHILDREN_AT + 4;
/// Bytes of the length before each record set.
const SET_HEADER_LEN: usize = 4;
/// Garbage below this is never worth a compaction.
const MIN_COMPACTION_GARBAGE: usize = 64 << 10;

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    bytes.get(at..at + 4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// One name in the table, as stored in the arena:
/// `[entry length: u32][children: u32][name length: u8][name][record set]*`, each record set
/// (what one source stored here, possibly nothing) being `[tails length: u32][tails]`.
#[derive(Clone, Copy)]
pub struct NameEntry<'z>(&'z [u8]);

impl<'z> NameEntry<'z> {
    /// The entry starting at `offset` of `arena` (empty if the arena is inconsistent, which
    /// the writer never lets happen).
    fn at(arena: &'z [u8], offset: usize) -> NameEntry<'z> {
        let len = read_u32(arena, offset) as usize;
        NameEntry(arena.get(offset..offset + len).unwrap_or(&[]))
    }

    /// The name, lowercase wire format.
    pub fn name(&self) -> &'z [u8] {
        let len = self.0.get(NAME_LEN_AT).copied().unwrap_or(0) as usize;
        self.0.get(NAME_LEN_AT + 1..NAME_LEN_AT + 1 + len).unwrap_or(&[])
    }

    fn sets_start(&self) -> usize {
        NAME_LEN_AT + 1 + self.name().len()
    }

    /// Names directly below this one that exist.
    fn children(&self) -> u32 {
        read_u32(self.0, CHILDREN_AT)
    }

    /// The record sets stored here (one per source), with each set's byte range in the entry.
    fn sets(&self) -> impl Iterator<Item = (&'z [u8], Range<usize>)> {
        let bytes = self.0;
        let mut at = self.sets_start();
        std::iter::from_fn(move || {
            let len = bytes.get(at..at + SET_HEADER_LEN).map(|_| read_u32(bytes, at) as usize)?;
            let end = at + SET_HEADER_LEN + len;
            let set = (bytes.get(at + SET_HEADER_LEN..end)?, at..end);
            at = end;
            Some(set)
        })
    }

    fn has_sets(&self) -> bool {
        self.sets().next().is_some()
    }

    /// Record tails of type `rtype` (all types for ANY), across sources.
    pub fn records(&self, rtype: u16) -> impl Iterator<Item = &'z [u8]> {
        self.sets()
            .flat_map(|(records, _)| tails(records))
            .filter(move |(t, _, _)| rtype == crate::wire::rtype::ANY || *t == rtype)
            .map(|(_, tail, _)| tail)
    }

    /// Whether any record has type `rtype`.
    pub fn has(&self, rtype: u16) -> bool {
        self.records(rtype).next().is_some()
    }

    /// The RDATA of the first record of type `rtype`.
    pub fn first_rdata(&self, rtype: u16) -> Option<&'z [u8]> {
        self.sets().flat_map(|(records, _)| tails(records)).find(|(t, _, _)| *t == rtype).map(|(_, _, rd)| rd)
    }

    fn is_removable(&self) -> bool {
        !self.has_sets() && self.children() == 0
    }
}

impl std::fmt::Debug for NameEntry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameEntry")
            .field("name", &Name::from_wire_unchecked(self.name()))
            .field("children", &self.children())
            .field("sets", &self.sets().count())
            .finish()
    }
}

/// Which pods the table knows, by address: their namespace, for `pods verified` and for
/// search-path completion. Addresses are stored as plain integers and namespaces as
/// small ids, since there is one entry per endpoint in the cluster.
#[derive(Debug, Default)]
struct PodTable {
    /// IPv4 address → pod.
    v4: HashMap<u32, PodRef>,
    /// IPv6 address → pod.
    v6: HashMap<u128, PodRef>,
    /// Namespace names by id, with how many pods use each (free ids have `None`).
    namespaces: Vec<Option<(Arc<str>, u32)>>,
    namespace_ids: HashMap<Arc<str>, u32>,
}

/// A known pod address: its namespace id and how many contributions name it.
#[derive(Debug, Clone, Copy)]
struct PodRef {
    namespace: u32,
    count: u32,
}

impl PodTable {
    fn get(&self, ip: IpAddr) -> Option<&PodRef> {
        match ip {
            IpAddr::V4(v4) => self.v4.get(&u32::from(v4)),
            IpAddr::V6(v6) => self.v6.get(&u128::from(v6)),
        }
    }

    fn namespace(&self, ip: IpAddr) -> Option<&str> {
        let pod = self.get(ip)?;
        self.namespaces.get(pod.namespace as usize)?.as_ref().map(|(name, _)| &**name)
    }

    fn namespace_id(&mut self, namespace: &Arc<str>) -> u32 {
        if let Some(id) = self.namespace_ids.get(namespace) {
            if let Some(Some((_, users))) = self.namespaces.get_mut(*id as usize) {
                *users += 1;
            }
            return *id;
        }
        let free = self.namespaces.iter().position(Option::is_none);
        let id = free.unwrap_or(self.namespaces.len());
        let slot = Some((namespace.clone(), 1));
        match free {
            Some(index) => self.namespaces[index] = slot,
            None => self.namespaces.push(slot),
        }
        // Ids stay far below u32::MAX: there is at most one per namespace in use.
        self.namespace_ids.insert(namespace.clone(), id as u32);
        id as u32
    }

    fn release_namespace(&mut self, id: u32) {
        let Some(slot) = self.namespaces.get_mut(id as usize) else { return };
        if let Some((name, users)) = slot {
            *users = users.saturating_sub(1);
            if *users == 0 {
                self.namespace_ids.remove(&**name);
                *slot = None;
            }
        }
    }

    fn add(&mut self, ip: IpAddr, namespace: &Arc<str>) {
        let id = self.namespace_id(namespace);
        let pod = match ip {
            IpAddr::V4(v4) => self.v4.entry(u32::from(v4)).or_insert(PodRef { namespace: id, count: 0 }),
            IpAddr::V6(v6) => self.v6.entry(u128::from(v6)).or_insert(PodRef { namespace: id, count: 0 }),
        };
        // The latest contribution decides the namespace (an address moved between pods).
        let previous = std::mem::replace(&mut pod.namespace, id);
        pod.count += 1;
        if pod.count > 1 {
            self.release_namespace(previous);
        }
    }

    fn remove(&mut self, ip: IpAddr) {
        let (pod, gone) = match ip {
            IpAddr::V4(v4) => remove_one(&mut self.v4, u32::from(v4)),
            IpAddr::V6(v6) => remove_one(&mut self.v6, u128::from(v6)),
        };
        if let (Some(pod), true) = (pod, gone) {
            self.release_namespace(pod.namespace);
        }
    }

    fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// Counts one contribution less for `key`; returns the pod and whether it is gone.
fn remove_one<K: std::hash::Hash + Eq>(map: &mut HashMap<K, PodRef>, key: K) -> (Option<PodRef>, bool) {
    let Some(pod) = map.get_mut(&key) else { return (None, false) };
    pod.count = pod.count.saturating_sub(1);
    if pod.count == 0 {
        return (map.remove(&key), true);
    }
    (Some(*pod), false)
}

/// The table. Readers share it behind a `RwLock`; the watch task is its only writer.
pub struct Zone {
    apex: Name,
    /// Every entry, back to back, plus garbage (replaced entries) until the next compaction.
    arena: Vec<u8>,
    /// Bytes of `arena` that belong to no live entry.
    garbage: usize,
    /// Arena offsets of the live entries, by the hash of their name.
    index: HashTable<u32>,
    hasher: std::collections::hash_map::RandomState,
    pods: PodTable,
    serial: u32,
}

impl Zone {
    /// An empty table for the cluster zone `apex`. `serial` starts the SOA serial (callers
    /// use the start time, so serials grow across restarts).
    pub fn new(apex: Name, serial: u32) -> Zone {
        Zone {
            apex,
            arena: Vec::new(),
            garbage: 0,
            index: HashTable::new(),
            hasher: Default::default(),
            pods: PodTable::default(),
            serial,
        }
    }

    pub fn apex(&self) -> &Name {
        &self.apex
    }

    /// The SOA serial; it changes with every update.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The entry for a lowercase wire name.
    pub fn get(&self, wire: &[u8]) -> Option<NameEntry<'_>> {
        let hash = self.hasher.hash_one(wire);
        let offset = self.index.find(hash, |&offset| NameEntry::at(&self.arena, offset as usize).name() == wire)?;
        Some(NameEntry::at(&self.arena, *offset as usize))
    }

    /// The namespace of the pod with address `ip`, if an endpoint names it.
    pub fn pod_namespace(&self, ip: IpAddr) -> Option<&str> {
        self.pods.namespace(ip)
    }

    /// Number of names in the table (including empty non-terminals).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes the table holds: the arena (live entries and garbage not yet compacted) and the
    /// index.
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.index.capacity() * (std::mem::size_of::<u32>() + 1)
    }

    /// Replaces a source's contribution `old` (exactly as previously inserted) with `new`.
    pub fn replace(&mut self, old: &Contribution, new: &Contribution) {
        if old == new {
            return;
        }
        self.remove(old);
        self.insert(new);
        self.serial = self.serial.wrapping_add(1);
        self.compact_if_worth_it();
    }

    fn insert(&mut self, contribution: &Contribution) {
        for (name, records) in &contribution.names {
            match self.offset_of(name.wire()) {
                Some(offset) => self.rewrite(offset, |arena, entry| {
                    arena.extend_from_within(entry.clone());
                    append_set(arena, &records.tails);
                }),
                None => {
                    if self.append_new(name.wire(), 0, Some(&records.tails)).is_some() {
                        self.link_to_parent(name.wire());
                    }
                }
            }
        }
        for (ip, namespace) in &contribution.pods {
            self.pods.add(*ip, namespace);
        }
    }

    fn remove(&mut self, contribution: &Contribution) {
        for (name, records) in &contribution.names {
            let Some(offset) = self.offset_of(name.wire()) else { continue };
            let entry = NameEntry::at(&self.arena, offset);
            let found = entry.sets().find(|(tails, _)| *tails == records.tails.as_slice()).map(|(_, range)| range);
            let Some(set) = found else { continue };
            self.rewrite(offset, |arena, entry| {
                arena.extend_from_within(entry.start..entry.start + set.start);
                arena.extend_from_within(entry.start + set.end..entry.end);
            });
            let Some(offset) = self.offset_of(name.wire()) else { continue };
            if NameEntry::at(&self.arena, offset).is_removable() {
                self.drop_entry(name.wire());
                self.unlink_from_parent(name.wire());
            }
        }
        for (ip, _) in &contribution.pods {
            self.pods.remove(*ip);
        }
    }

    /// The arena offset of the entry named `wire`.
    fn offset_of(&self, wire: &[u8]) -> Option<usize> {
        let hash = self.hasher.hash_one(wire);
        self.index.find(hash, |&offset| NameEntry::at(&self.arena, offset as usize).name() == wire).map(|o| *o as usize)
    }

    /// Appends an entry for `wire` with `children` and one record set (or none) and
    /// indexes it; `None` when the arena has outgrown 4-byte offsets (4 GiB, far beyond any
    /// cluster).
    fn append_new(&mut self, wire: &[u8], children: u32, set: Option<&[u8]>) -> Option<usize> {
        let offset = self.arena.len();
        let offset32 = u32::try_from(offset).ok()?;
        let len = NAME_LEN_AT + 1 + wire.len() + set.map_or(0, |tails| SET_HEADER_LEN + tails.len());
        // An entry is a name plus records for one DNS name, far below 4 GiB.
        self.arena.extend_from_slice(&(len as u32).to_le_bytes());
        self.arena.extend_from_slice(&children.to_le_bytes());
        // Names are at most 255 bytes (checked when a Name is built).
        self.arena.push(wire.len() as u8);
        self.arena.extend_from_slice(wire);
        if let Some(tails) = set {
            append_set(&mut self.arena, tails);
        }
        let hash = self.hasher.hash_one(wire);
        let (arena, hasher) = (&self.arena, &self.hasher);
        self.index.insert_unique(hash, offset32, |&o| hasher.hash_one(NameEntry::at(arena, o as usize).name()));
        Some(offset)
    }

    /// Writes a new version of the entry at `offset` at the end of the arena (`write` gets
    /// the arena and the old entry's byte range, and appends the new entry's bytes, length
    /// field included), points the index at it and counts the old bytes as garbage.
    fn rewrite(&mut self, offset: usize, write: impl FnOnce(&mut Vec<u8>, Range<usize>)) {
        let old = NameEntry::at(&self.arena, offset);
        let old_range = offset..offset + old.0.len();
        let name_hash = self.hasher.hash_one(old.name());
        let new_offset = self.arena.len();
        let Ok(new_offset32) = u32::try_from(new_offset) else { return };
        write(&mut self.arena, old_range.clone());
        let new_len = (self.arena.len() - new_offset) as u32;
        self.arena[new_offset..new_offset + LEN_LEN].copy_from_slice(&new_len.to_le_bytes());
        if let Some(slot) = self.index.find_mut(name_hash, |&o| o as usize == offset) {
            *slot = new_offset32;
        }
        self.garbage += old_range.len();
    }

    /// Removes the entry named `wire` from the index; its bytes become garbage.
    fn drop_entry(&mut self, wire: &[u8]) {
        let hash = self.hasher.hash_one(wire);
        let arena = &self.arena;
        if let Ok(found) = self.index.find_entry(hash, |&o| NameEntry::at(arena, o as usize).name() == wire) {
            let (offset, _) = found.remove();
            self.garbage += NameEntry::at(&self.arena, offset as usize).0.len();
        }
    }

    /// Adds `delta` to the child count of the entry at `wire` (in place); false if there is
    /// no such entry. An entry left with no records and no children is dropped.
    fn adjust_children(&mut self, wire: &[u8], delta: i64) -> bool {
        let Some(offset) = self.offset_of(wire) else { return false };
        let entry = NameEntry::at(&self.arena, offset);
        let children = (i64::from(entry.children()) + delta).clamp(0, i64::from(u32::MAX)) as u32;
        self.arena[offset + CHILDREN_AT..offset + CHILDREN_AT + 4].copy_from_slice(&children.to_le_bytes());
        if NameEntry::at(&self.arena, offset).is_removable() {
            self.drop_entry(wire);
        }
        true
    }

    /// A new name inside the zone makes its parent exist (creating empty non-terminals up
    /// to the apex). Names outside the zone (reverse names) have no tracked parents.
    fn link_to_parent(&mut self, wire: &[u8]) {
        let mut child = wire;
        while child != self.apex.wire() && crate::name::is_within_wire(child, self.apex.wire()) {
            let Some(parent) = parent_wire(child) else { return };
            if self.adjust_children(parent, 1) {
                return;
            }
            if self.append_new(parent, 1, None).is_none() {
                return;
            }
            child = parent;
        }
    }

    /// The counterpart of [`Self::link_to_parent`] for a removed name.
    fn unlink_from_parent(&mut self, wire: &[u8]) {
        let mut child = wire;
        while child != self.apex.wire() && crate::name::is_within_wire(child, self.apex.wire()) {
            let Some(parent) = parent_wire(child) else { return };
            if !self.adjust_children(parent, -1) || self.offset_of(parent).is_some() {
                return;
            }
            child = parent;
        }
    }

    /// Copies the live entries into a fresh arena once garbage outweighs them, so the table
    /// stays within twice its live size however much it churns. Offsets change but names do
    /// not, so the index is updated in place without rehashing.
    fn compact_if_worth_it(&mut self) {
        let live = self.arena.len() - self.garbage;
        if self.garbage < MIN_COMPACTION_GARBAGE || self.garbage < live {
            return;
        }
        let mut arena = Vec::with_capacity(live);
        for offset in self.index.iter_mut() {
            let entry = NameEntry::at(&self.arena, *offset as usize);
            // The new arena is smaller than the old one, so its offsets fit in u32 too.
            *offset = arena.len() as u32;
            arena.extend_from_slice(entry.0);
        }
        self.arena = arena;
        self.garbage = 0;
    }
}

/// Appends one record set (`[tails length: u32][tails]`) to the entry being written.
fn append_set(arena: &mut Vec<u8>, tails: &[u8]) {
    // One name's records stay far below 4 GiB (a DNS message is at most 64 KiB).
    arena.extend_from_slice(&(tails.len() as u32).to_le_bytes());
    arena.extend_from_slice(tails);
}

impl std::fmt::Debug for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries: Vec<NameEntry<'_>> =
            self.index.iter().map(|&offset| NameEntry::at(&self.arena, offset as usize)).collect();
        f.debug_struct("Zone")
            .field("apex", &self.apex)
            .field("entries", &entries)
            .field("garbage", &self.garbage)
            .field("pods", &self.pods.len())
            .field("serial", &self.serial)
            .finish()
    }
}

impl std::borrow::Borrow<[u8]> for Name {
    fn borrow(&self) -> &[u8] {
        self.wire()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::rtype;

    fn name(text: &str) -> Name {
        Name::from_dotted(text).unwrap()
    }

    fn a_record(owner: &str, ip: [u8; 4]) -> Contribution {
        let mut c = Contribution::default();
        c.add(name(owner), rtype::A, 30, &ip);
        c
    }

    #[test]
    fn empty_non_terminals_follow_their_children() {
        let mut zone = Zone::new(name("cluster.local"), 1);
        let svc = a_record("svc1.testns.svc.cluster.local", [10, 0, 0, 1]);
        zone.replace(&Contribution::default(), &svc);
        let entry = zone.get(name("svc1.testns.svc.cluster.local").wire()).unwrap();
        assert_eq!(entry.records(rtype::A).count(), 1);
        assert!(!entry.has(rtype::AAAA));
        for ent in ["testns.svc.cluster.local", "svc.cluster.local", "cluster.local"] {
            assert!(zone.get(name(ent).wire()).is_some(), "{ent} exists");
        }
        assert!(zone.get(name("local").wire()).is_none(), "nothing above the apex");
        zone.replace(&svc, &Contribution::default());
        assert!(zone.is_empty(), "{zone:?}");
        assert_eq!(zone.serial(), 3);
    }

    #[test]
    fn shared_names_keep_both_sources() {
        let mut zone = Zone::new(name("cluster.local"), 1);
        let ptr = "1.0.0.10.in-addr.arpa";
        let mut one = Contribution::default();
        one.add(name(ptr), rtype::PTR, 30, name("a.ns.svc.cluster.local").wire());
        let mut two = Contribution::default();
        two.add(name(ptr), rtype::PTR, 30, name("b.ns.svc.cluster.local").wire());
        two.pods.push(("10.0.0.1".parse().unwrap(), "ns".into()));
        zone.replace(&Contribution::default(), &one);
        zone.replace(&Contribution::default(), &two);
        assert_eq!(zone.get(name(ptr).wire()).unwrap().records(rtype::PTR).count(), 2);
        assert_eq!(zone.pod_namespace("10.0.0.1".parse().unwrap()), Some("ns"));
        zone.replace(&one, &Contribution::default());
        assert_eq!(zone.get(name(ptr).wire()).unwrap().records(rtype::PTR).count(), 1);
        zone.replace(&two, &Contribution::default());
        assert!(zone.get(name(ptr).wire()).is_none());
        assert_eq!(zone.pod_namespace("10.0.0.1".parse().unwrap()), None);
        assert!(zone.is_empty(), "reverse names have no tracked parents: {zone:?}");
    }

    #[test]
    fn a_touched_name_exists_without_records() {
        let mut zone = Zone::new(name("cluster.local"), 1);
        let mut ns = Contribution::default();
        ns.touch(name("testns.svc.cluster.local"));
        zone.replace(&Contribution::default(), &ns);
        let svc = a_record("x.testns.svc.cluster.local", [1, 2, 3, 4]);
        zone.replace(&Contribution::default(), &svc);
        zone.replace(&svc, &Contribution::default());
        assert!(zone.get(name("testns.svc.cluster.local").wire()).is_some(), "still touched by the namespace");
        zone.replace(&ns, &Contribution::default());
        assert!(zone.is_empty());
    }

    #[test]
    fn churn_is_compacted_and_entries_survive_it() {
        let mut zone = Zone::new(name("cluster.local"), 1);
        let stable = a_record("stable.testns.svc.cluster.local", [10, 0, 0, 1]);
        zone.replace(&Contribution::default(), &stable);
        let mut current = Contribution::default();
        // Each round rewrites a few entries; far more garbage than live bytes overall.
        for round in 0..20_000u32 {
            let next = a_record("churn.testns.svc.cluster.local", round.to_be_bytes());
            zone.replace(&current, &next);
            current = next;
        }
        let live: usize = zone.index.iter().map(|&o| NameEntry::at(&zone.arena, o as usize).0.len()).sum();
        assert!(zone.arena.len() <= 2 * live.max(MIN_COMPACTION_GARBAGE), "{} bytes for {live} live", zone.arena.len());
        let churn = zone.get(name("churn.testns.svc.cluster.local").wire()).unwrap();
        assert_eq!(churn.first_rdata(rtype::A), Some(&19_999u32.to_be_bytes()[..]));
        let kept = zone.get(name("stable.testns.svc.cluster.local").wire()).unwrap();
        assert_eq!(kept.first_rdata(rtype::A), Some(&[10, 0, 0, 1][..]));
        assert_eq!(zone.get(name("testns.svc.cluster.local").wire()).unwrap().children(), 2);
    }

    #[test]
    fn pods_keep_the_latest_namespace() {
        let mut zone = Zone::new(name("cluster.local"), 1);
        let pod =
            |ip: &str, ns: &str| Contribution { pods: vec![(ip.parse().unwrap(), ns.into())], ..Default::default() };
        let (a, b, v6) = (pod("10.0.0.5", "one"), pod("10.0.0.5", "two"), pod("fd00::5", "one"));
        zone.replace(&Contribution::default(), &a);
        zone.replace(&Contribution::default(), &v6);
        zone.replace(&Contribution::default(), &b);
        assert_eq!(zone.pod_namespace("10.0.0.5".parse().unwrap()), Some("two"));
        assert_eq!(zone.pod_namespace("fd00::5".parse().unwrap()), Some("one"));
        zone.replace(&b, &Contribution::default());
        assert_eq!(zone.pod_namespace("10.0.0.5".parse().unwrap()), Some("two"), "still named by one source");
        zone.replace(&a, &Contribution::default());
        zone.replace(&v6, &Contribution::default());
        assert_eq!(zone.pod_namespace("10.0.0.5".parse().unwrap()), None);
        assert!(zone.pods.namespace_ids.is_empty(), "namespace ids are released: {:?}", zone.pods);
    }
}
