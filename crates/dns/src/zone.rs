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
//! Memory is the table's main cost (tens of thousands of names), so each name is a single
//! allocation ([`NameEntry`]) holding the name, its child count and every record set stored
//! there, and the table is a set of those entries looked up by their name. Record sets carry
//! no owner id: a source removes its set by content, which the feeder can always recompute,
//! and two byte-identical sets at one name are interchangeable.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

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

/// Bytes of the child count at the start of a [`NameEntry`].
const CHILDREN_LEN: usize = 4;
/// Bytes of the length before each record set.
const SET_HEADER_LEN: usize = 4;

/// One name in the table, in one allocation:
/// `[children: u32][name length: u8][name][record set]*`, each record set (what one source
/// stored here, possibly empty) being `[tails length: u32][tails]`.
/// Entries hash and compare by name only, so the table finds them by the query's wire name.
pub struct NameEntry(Box<[u8]>);

impl NameEntry {
    /// A name with no record sets and no children.
    fn new(name: &[u8]) -> NameEntry {
        let mut bytes = Vec::with_capacity(CHILDREN_LEN + 1 + name.len());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        // Names are at most 255 bytes (checked when a Name is built).
        bytes.push(name.len() as u8);
        bytes.extend_from_slice(name);
        NameEntry(bytes.into_boxed_slice())
    }

    fn name(&self) -> &[u8] {
        let len = self.0.get(CHILDREN_LEN).copied().unwrap_or(0) as usize;
        self.0.get(CHILDREN_LEN + 1..CHILDREN_LEN + 1 + len).unwrap_or(&[])
    }

    fn sets_start(&self) -> usize {
        CHILDREN_LEN + 1 + self.name().len()
    }

    /// Names directly below this one that exist.
    fn children(&self) -> u32 {
        let mut count = [0u8; CHILDREN_LEN];
        count.copy_from_slice(&self.0[..CHILDREN_LEN]);
        u32::from_le_bytes(count)
    }

    fn set_children(&mut self, children: u32) {
        self.0[..CHILDREN_LEN].copy_from_slice(&children.to_le_bytes());
    }

    /// The record sets stored here (one per source), with each set's byte range.
    fn sets(&self) -> impl Iterator<Item = (&[u8], std::ops::Range<usize>)> {
        let bytes = &self.0;
        let mut at = self.sets_start();
        std::iter::from_fn(move || {
            let header = bytes.get(at..at + SET_HEADER_LEN)?;
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let end = at + SET_HEADER_LEN + len;
            let set = (bytes.get(at + SET_HEADER_LEN..end)?, at..end);
            at = end;
            Some(set)
        })
    }

    /// This entry with `records` added as one more set.
    fn with_set(self, records: &NameRecords) -> NameEntry {
        let mut bytes = Vec::with_capacity(self.0.len() + SET_HEADER_LEN + records.tails.len());
        bytes.extend_from_slice(&self.0);
        // One name's records stay far below 4 GiB (a DNS message is at most 64 KiB).
        bytes.extend_from_slice(&(records.tails.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&records.tails);
        NameEntry(bytes.into_boxed_slice())
    }

    /// This entry without one set equal to `records` (unchanged if there is none).
    fn without_set(self, records: &NameRecords) -> NameEntry {
        let found = self.sets().find(|(tails, _)| *tails == records.tails.as_slice()).map(|(_, range)| range);
        let Some(range) = found else { return self };
        let mut bytes = Vec::with_capacity(self.0.len() - range.len());
        bytes.extend_from_slice(&self.0[..range.start]);
        bytes.extend_from_slice(&self.0[range.end..]);
        NameEntry(bytes.into_boxed_slice())
    }

    fn has_sets(&self) -> bool {
        self.sets().next().is_some()
    }

    /// Record tails of type `rtype` (all types for ANY), across sources.
    pub fn records(&self, rtype: u16) -> impl Iterator<Item = &[u8]> {
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
    pub fn first_rdata(&self, rtype: u16) -> Option<&[u8]> {
        self.sets().flat_map(|(records, _)| tails(records)).find(|(t, _, _)| *t == rtype).map(|(_, _, rd)| rd)
    }

    fn is_removable(&self) -> bool {
        !self.has_sets() && self.children() == 0
    }
}

impl std::fmt::Debug for NameEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameEntry")
            .field("name", &Name::from_wire_unchecked(self.name()))
            .field("children", &self.children())
            .field("sets", &self.sets().count())
            .finish()
    }
}

impl Hash for NameEntry {
    /// The name's hash, exactly as `[u8]` hashes it: lookups go by wire name (`Borrow<[u8]>`).
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name().hash(state)
    }
}

impl PartialEq for NameEntry {
    fn eq(&self, other: &NameEntry) -> bool {
        self.name() == other.name()
    }
}

impl Eq for NameEntry {}

impl std::borrow::Borrow<[u8]> for NameEntry {
    fn borrow(&self) -> &[u8] {
        self.name()
    }
}

/// The table. Readers share it behind a `RwLock`; the watch task is its only writer.
#[derive(Debug)]
pub struct Zone {
    apex: Name,
    names: HashSet<NameEntry>,
    /// Pod address → (namespace, how many contributions name it).
    pods: HashMap<IpAddr, (Arc<str>, u32)>,
    /// One shared copy of each namespace name the pod map uses.
    pod_namespaces: HashSet<Arc<str>>,
    serial: u32,
}

impl Zone {
    /// An empty table for the cluster zone `apex`. `serial` starts the SOA serial (callers
    /// use the start time, so serials grow across restarts).
    pub fn new(apex: Name, serial: u32) -> Zone {
        Zone { apex, names: HashSet::new(), pods: HashMap::new(), pod_namespaces: HashSet::new(), serial }
    }

    pub fn apex(&self) -> &Name {
        &self.apex
    }

    /// The SOA serial; it changes with every update.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The entry for a lowercase wire name.
    pub fn get(&self, wire: &[u8]) -> Option<&NameEntry> {
        self.names.get(wire)
    }

    /// The namespace of the pod with address `ip`, if an endpoint names it.
    pub fn pod_namespace(&self, ip: IpAddr) -> Option<&str> {
        self.pods.get(&ip).map(|(ns, _)| &**ns)
    }

    /// Number of names in the table (including empty non-terminals).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Replaces a source's contribution `old` (exactly as previously inserted) with `new`.
    pub fn replace(&mut self, old: &Contribution, new: &Contribution) {
        if old == new {
            return;
        }
        self.remove(old);
        self.insert(new);
        self.serial = self.serial.wrapping_add(1);
    }

    fn insert(&mut self, contribution: &Contribution) {
        for (name, records) in &contribution.names {
            match self.names.take(name.wire()) {
                Some(entry) => {
                    self.names.insert(entry.with_set(records));
                }
                None => {
                    self.names.insert(NameEntry::new(name.wire()).with_set(records));
                    self.link_to_parent(name.wire());
                }
            }
        }
        for (ip, namespace) in &contribution.pods {
            let namespace = match self.pod_namespaces.get(&**namespace) {
                Some(shared) => shared.clone(),
                None => {
                    self.pod_namespaces.insert(namespace.clone());
                    namespace.clone()
                }
            };
            let entry = self.pods.entry(*ip).or_insert_with(|| (namespace.clone(), 0));
            entry.0 = namespace;
            entry.1 += 1;
        }
    }

    fn remove(&mut self, contribution: &Contribution) {
        for (name, records) in &contribution.names {
            let Some(entry) = self.names.take(name.wire()) else { continue };
            let entry = entry.without_set(records);
            if entry.is_removable() {
                self.unlink_from_parent(name.wire());
            } else {
                self.names.insert(entry);
            }
        }
        for (ip, _) in &contribution.pods {
            let Some(entry) = self.pods.get_mut(ip) else { continue };
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                if let Some((namespace, _)) = self.pods.remove(ip) {
                    // Only the shared copy and this one left: no pod uses the name any more.
                    if Arc::strong_count(&namespace) <= 2 {
                        self.pod_namespaces.remove(&*namespace);
                    }
                }
            }
        }
    }

    /// Adds `delta` to the child count of the entry at `wire`; false if there is none.
    fn adjust_children(&mut self, wire: &[u8], delta: i64) -> bool {
        let Some(mut entry) = self.names.take(wire) else { return false };
        let children = (i64::from(entry.children()) + delta).clamp(0, i64::from(u32::MAX)) as u32;
        entry.set_children(children);
        if !entry.is_removable() {
            self.names.insert(entry);
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
            let mut entry = NameEntry::new(parent);
            entry.set_children(1);
            self.names.insert(entry);
            child = parent;
        }
    }

    /// The counterpart of [`Self::link_to_parent`] for a removed name.
    fn unlink_from_parent(&mut self, wire: &[u8]) {
        let mut child = wire;
        while child != self.apex.wire() && crate::name::is_within_wire(child, self.apex.wire()) {
            let Some(parent) = parent_wire(child) else { return };
            if !self.adjust_children(parent, -1) || self.names.contains(parent) {
                return;
            }
            child = parent;
        }
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
}
