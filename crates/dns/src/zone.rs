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

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use crate::name::{parent_wire, Name};
use crate::wire::{append_tail, tails};

/// Identifies a source of records (a Service, a Namespace, the static apex records).
pub type SourceId = u32;

/// Records at one name from one source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameRecords {
    /// Record tails (type, class, TTL, RDLENGTH, RDATA), concatenated.
    pub tails: Vec<u8>,
    /// Complete records (owner included) for the additional section of answers from these
    /// records: the addresses of SRV targets.
    pub glue: Vec<u8>,
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

    /// Adds a glue record (`glue_owner` `rtype` `rdata`) to the additional section of answers
    /// from `owner`.
    pub fn add_glue(&mut self, owner: &Name, glue_owner: &Name, rtype: u16, ttl: u32, rdata: &[u8]) {
        let glue = &mut self.names.entry(owner.clone()).or_default().glue;
        glue.extend_from_slice(glue_owner.wire());
        append_tail(glue, rtype, ttl, rdata);
    }

    /// Makes `owner` exist without adding records.
    pub fn touch(&mut self, owner: Name) {
        self.names.entry(owner).or_default();
    }
}

/// [`NameRecords`] as the table stores them: tails and glue in one exact-size allocation
/// (the table holds tens of thousands of these).
#[derive(Debug)]
struct StoredRecords {
    source: SourceId,
    /// Where the glue starts in `bytes`.
    glue_at: u32,
    bytes: Box<[u8]>,
}

impl StoredRecords {
    fn new(source: SourceId, records: &NameRecords) -> StoredRecords {
        let mut bytes = Vec::with_capacity(records.tails.len() + records.glue.len());
        bytes.extend_from_slice(&records.tails);
        bytes.extend_from_slice(&records.glue);
        // Record data of one name stays far below 4 GiB (a DNS message is at most 64 KiB).
        StoredRecords { source, glue_at: records.tails.len() as u32, bytes: bytes.into_boxed_slice() }
    }

    fn tails(&self) -> &[u8] {
        &self.bytes[..self.glue_at as usize]
    }

    fn glue(&self) -> &[u8] {
        &self.bytes[self.glue_at as usize..]
    }
}

/// One name in the table.
#[derive(Debug, Default)]
pub struct NameEntry {
    /// Records per source. Almost always one source; PTR names of shared addresses have more.
    sources: Vec<StoredRecords>,
    /// Names directly below this one that exist.
    children: u32,
}

impl NameEntry {
    /// Record tails of type `rtype` (all types for ANY), across sources.
    pub fn records(&self, rtype: u16) -> impl Iterator<Item = &[u8]> {
        self.sources
            .iter()
            .flat_map(|records| tails(records.tails()))
            .filter(move |(t, _, _)| rtype == crate::wire::rtype::ANY || *t == rtype)
            .map(|(_, tail, _)| tail)
    }

    /// Whether any record has type `rtype`.
    pub fn has(&self, rtype: u16) -> bool {
        self.records(rtype).next().is_some()
    }

    /// The RDATA of the first record of type `rtype`.
    pub fn first_rdata(&self, rtype: u16) -> Option<&[u8]> {
        self.sources.iter().flat_map(|r| tails(r.tails())).find(|(t, _, _)| *t == rtype).map(|(_, _, rd)| rd)
    }

    /// Glue records of every source, concatenated per source.
    pub fn glue(&self) -> impl Iterator<Item = &[u8]> {
        self.sources.iter().map(StoredRecords::glue).filter(|g| !g.is_empty())
    }

    fn is_removable(&self) -> bool {
        self.sources.is_empty() && self.children == 0
    }
}

/// The table. Readers share it behind a `RwLock`; the watch task is its only writer.
#[derive(Debug)]
pub struct Zone {
    apex: Name,
    names: HashMap<Name, NameEntry>,
    pods: HashMap<IpAddr, (Arc<str>, u32)>,
    serial: u32,
}

impl Zone {
    /// An empty table for the cluster zone `apex`. `serial` starts the SOA serial (callers
    /// use the start time, so serials grow across restarts).
    pub fn new(apex: Name, serial: u32) -> Zone {
        Zone { apex, names: HashMap::new(), pods: HashMap::new(), serial }
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

    /// Replaces what `source` contributed (`old`, exactly as previously inserted) with `new`.
    pub fn replace(&mut self, source: SourceId, old: &Contribution, new: &Contribution) {
        if old == new {
            return;
        }
        self.remove(source, old);
        self.insert(source, new);
        self.serial = self.serial.wrapping_add(1);
    }

    fn insert(&mut self, source: SourceId, contribution: &Contribution) {
        for (name, records) in &contribution.names {
            let created = match self.names.entry(name.clone()) {
                Entry::Occupied(mut slot) => {
                    slot.get_mut().sources.push(StoredRecords::new(source, records));
                    false
                }
                Entry::Vacant(slot) => {
                    slot.insert(NameEntry { sources: vec![StoredRecords::new(source, records)], children: 0 });
                    true
                }
            };
            if created {
                self.link_to_parent(name.wire());
            }
        }
        for (ip, namespace) in &contribution.pods {
            let entry = self.pods.entry(*ip).or_insert_with(|| (namespace.clone(), 0));
            entry.0 = namespace.clone();
            entry.1 += 1;
        }
    }

    fn remove(&mut self, source: SourceId, contribution: &Contribution) {
        for name in contribution.names.keys() {
            let Some(entry) = self.names.get_mut(name.wire()) else { continue };
            if let Some(at) = entry.sources.iter().position(|r| r.source == source) {
                entry.sources.swap_remove(at);
            }
            if entry.is_removable() {
                self.names.remove(name.wire());
                self.unlink_from_parent(name.wire());
            }
        }
        for (ip, _) in &contribution.pods {
            if let Some(entry) = self.pods.get_mut(ip) {
                entry.1 = entry.1.saturating_sub(1);
                if entry.1 == 0 {
                    self.pods.remove(ip);
                }
            }
        }
    }

    /// A new name inside the zone makes its parent exist (creating empty non-terminals up
    /// to the apex). Names outside the zone (reverse names) have no tracked parents.
    fn link_to_parent(&mut self, wire: &[u8]) {
        let mut child = wire;
        while child != self.apex.wire() && crate::name::is_within_wire(child, self.apex.wire()) {
            let Some(parent) = parent_wire(child) else { return };
            match self.names.get_mut(parent) {
                Some(entry) => {
                    entry.children += 1;
                    return;
                }
                None => {
                    self.names
                        .insert(Name::from_wire_unchecked(parent), NameEntry { sources: Vec::new(), children: 1 });
                    child = parent;
                }
            }
        }
    }

    /// The counterpart of [`Self::link_to_parent`] for a removed name.
    fn unlink_from_parent(&mut self, wire: &[u8]) {
        let mut child = wire;
        while child != self.apex.wire() && crate::name::is_within_wire(child, self.apex.wire()) {
            let Some(parent) = parent_wire(child) else { return };
            let Some(entry) = self.names.get_mut(parent) else { return };
            entry.children = entry.children.saturating_sub(1);
            if !entry.is_removable() {
                return;
            }
            self.names.remove(parent);
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
        zone.replace(1, &Contribution::default(), &svc);
        let entry = zone.get(name("svc1.testns.svc.cluster.local").wire()).unwrap();
        assert_eq!(entry.records(rtype::A).count(), 1);
        assert!(!entry.has(rtype::AAAA));
        for ent in ["testns.svc.cluster.local", "svc.cluster.local", "cluster.local"] {
            assert!(zone.get(name(ent).wire()).is_some(), "{ent} exists");
        }
        assert!(zone.get(name("local").wire()).is_none(), "nothing above the apex");
        zone.replace(1, &svc, &Contribution::default());
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
        zone.replace(1, &Contribution::default(), &one);
        zone.replace(2, &Contribution::default(), &two);
        assert_eq!(zone.get(name(ptr).wire()).unwrap().records(rtype::PTR).count(), 2);
        assert_eq!(zone.pod_namespace("10.0.0.1".parse().unwrap()), Some("ns"));
        zone.replace(1, &one, &Contribution::default());
        assert_eq!(zone.get(name(ptr).wire()).unwrap().records(rtype::PTR).count(), 1);
        zone.replace(2, &two, &Contribution::default());
        assert!(zone.get(name(ptr).wire()).is_none());
        assert_eq!(zone.pod_namespace("10.0.0.1".parse().unwrap()), None);
        assert!(zone.is_empty(), "reverse names have no tracked parents: {zone:?}");
    }

    #[test]
    fn a_touched_name_exists_without_records() {
        let mut zone = Zone::new(name("cluster.local"), 1);
        let mut ns = Contribution::default();
        ns.touch(name("testns.svc.cluster.local"));
        zone.replace(7, &Contribution::default(), &ns);
        let svc = a_record("x.testns.svc.cluster.local", [1, 2, 3, 4]);
        zone.replace(8, &Contribution::default(), &svc);
        zone.replace(8, &svc, &Contribution::default());
        assert!(zone.get(name("testns.svc.cluster.local").wire()).is_some(), "still touched by the namespace");
        zone.replace(7, &ns, &Contribution::default());
        assert!(zone.is_empty());
    }
}
