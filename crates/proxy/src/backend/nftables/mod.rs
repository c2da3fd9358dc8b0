//! nftables mode: the fixed ruleset of [`ruleset`] loaded once through `nft -f`, and every
//! Service as set and map elements written over netlink ([`netlink`]) in one batch per
//! sync.
//!
//! The proxier keeps what it committed ([`ElementStore`]: each element with the Services
//! that want it), so an incremental sync computes the element difference of the changed
//! Services alone and never reads the kernel's table back. A full sync flushes every set
//! and adds all elements in the same transaction, so packets never see a half state.

pub mod netlink;
pub mod ruleset;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use anyhow::Context;

use self::netlink::{ElementData, ElementOp, NftSocket};
use self::ruleset::{key, TABLE};
use super::{Dataplane, KeyIds, Update};
use crate::model::{Backend, NoEndpoints, ServiceState, Targets};

/// nftables-mode data plane.
pub struct Nftables {
    socket: NftSocket,
    cluster_cidr: Option<(Ipv4Addr, u8)>,
    base_loaded: bool,
    /// Names of the dispatch and firewall chains created in this process (re-created
    /// after a restart).
    chains: HashSet<String>,
    ids: KeyIds,
    elements: ElementStore,
    /// Per Service id, per frontend key: the endpoint in each slot (index = slot − 1), so
    /// an endpoint keeps its slot — and affinity clients their endpoint — across changes.
    slots: HashMap<u32, HashMap<Vec<u8>, Vec<Backend>>>,
}

impl Nftables {
    /// Opens the netlink socket; the table is written by the first (full) sync.
    pub fn new(cluster_cidr: Option<(Ipv4Addr, u8)>) -> anyhow::Result<Nftables> {
        Ok(Nftables {
            socket: NftSocket::open().context("opening an nftables netlink socket")?,
            cluster_cidr,
            base_loaded: false,
            chains: HashSet::new(),
            ids: KeyIds::default(),
            elements: ElementStore::default(),
            slots: HashMap::new(),
        })
    }

    fn load_base(&mut self) -> anyhow::Result<()> {
        let text = ruleset::base_ruleset(self.cluster_cidr);
        if let Err(first) = super::run_with_stdin("nft", &["-f", "-"], &text) {
            // An incompatible table (another skiff version's layout): replace it.
            tracing::warn!(error = %first, "replacing the existing nftables table");
            let replace = format!("add table ip {TABLE}\ndelete table ip {TABLE}\n{text}");
            super::run_with_stdin("nft", &["-f", "-"], &replace)?;
        }
        self.base_loaded = true;
        self.chains.clear();
        Ok(())
    }

    /// Creates the chains `wanted` (name → `nft -f` text) that do not exist yet.
    fn ensure_chains(&mut self, wanted: &HashMap<String, String>) -> anyhow::Result<()> {
        let missing: Vec<(&String, &String)> = wanted.iter().filter(|(name, _)| !self.chains.contains(*name)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let text: String = missing.iter().map(|(_, text)| text.as_str()).collect();
        super::run_with_stdin("nft", &["-f", "-"], &text)?;
        self.chains.extend(missing.into_iter().map(|(name, _)| name.clone()));
        Ok(())
    }

    /// The elements Service `id` contributes, and the dispatch chains they jump to.
    fn service_elements(&mut self, id: u32, state: &ServiceState, chains: &mut Chains) -> Vec<Element> {
        let old_slots = self.slots.remove(&id).unwrap_or_default();
        let mut new_slots = HashMap::new();
        let mut out = Vec::new();
        for port in &state.ports {
            let proto = ruleset::proto_number(port.name.protocol);
            for ip in &port.cluster_ips {
                out.push((ruleset::SET_CLUSTER_IPS, key::ip(*ip), ElementData::None));
                let frontend = key::frontend(*ip, proto, port.port);
                frontend_elements(
                    Frontend { key: frontend, nodeport: false, masquerade: false },
                    &port.internal,
                    port.affinity_timeout,
                    &old_slots,
                    &mut new_slots,
                    &mut out,
                    chains,
                );
            }
            for ip in &port.external_ips {
                let frontend = key::frontend(*ip, proto, port.port);
                frontend_elements(
                    Frontend { key: frontend, nodeport: false, masquerade: port.masquerade_external },
                    &port.external,
                    port.affinity_timeout,
                    &old_slots,
                    &mut new_slots,
                    &mut out,
                    chains,
                );
            }
            if let Some(firewall) = &port.firewall {
                let (name, text) = ruleset::firewall_chain(&firewall.allowed);
                for ip in &firewall.ips {
                    let frontend = key::frontend(*ip, proto, port.port);
                    out.push((ruleset::MAP_FIREWALL_IPS, frontend, ElementData::Goto(name.clone())));
                }
                chains.entry(name).or_insert(text);
            }
            if port.node_port != 0 {
                frontend_elements(
                    Frontend {
                        key: key::nodeport(proto, port.node_port),
                        nodeport: true,
                        masquerade: port.masquerade_external,
                    },
                    &port.external,
                    port.affinity_timeout,
                    &old_slots,
                    &mut new_slots,
                    &mut out,
                    chains,
                );
            }
        }
        if !new_slots.is_empty() {
            self.slots.insert(id, new_slots);
        }
        out
    }
}

/// (set, key, data)
type Element = (&'static str, Vec<u8>, ElementData);

/// Chains elements jump to: name → `nft -f` text creating it.
type Chains = HashMap<String, String>;

struct Frontend {
    key: Vec<u8>,
    nodeport: bool,
    masquerade: bool,
}

fn frontend_elements(
    frontend: Frontend,
    targets: &Targets,
    affinity_timeout: Option<u32>,
    old_slots: &HashMap<Vec<u8>, Vec<Backend>>,
    new_slots: &mut HashMap<Vec<u8>, Vec<Backend>>,
    out: &mut Vec<Element>,
    chains: &mut Chains,
) {
    use ruleset::*;
    let (dispatch_map, endpoints_map, masq_set, no_endpoints_map) = if frontend.nodeport {
        (MAP_SERVICE_NODEPORTS, MAP_NODEPORT_ENDPOINTS, SET_MASQ_NODEPORTS, MAP_NO_ENDPOINT_NODEPORTS)
    } else {
        (MAP_SERVICE_IPS, MAP_ENDPOINTS, SET_MASQ_FRONTENDS, MAP_NO_ENDPOINT_SERVICES)
    };
    if targets.backends.is_empty() {
        let verdict = match targets.when_empty {
            NoEndpoints::Reject => ElementData::Goto(REJECT_CHAIN.to_owned()),
            NoEndpoints::Drop => ElementData::Drop,
        };
        out.push((no_endpoints_map, frontend.key, verdict));
        return;
    }
    let slots = assign_slots(old_slots.get(&frontend.key).map(Vec::as_slice).unwrap_or(&[]), &targets.backends);
    let chain = DispatchChain { nodeport: frontend.nodeport, endpoints: slots.len(), affinity_timeout };
    let name = chain.name();
    out.push((dispatch_map, frontend.key.clone(), ElementData::Goto(name.clone())));
    chains.entry(name).or_insert_with(|| chain.text());
    if frontend.masquerade {
        out.push((masq_set, frontend.key.clone(), ElementData::None));
    }
    for (i, (ip, port)) in slots.iter().enumerate() {
        let slot_key = key::with_slot(frontend.key.clone(), i as u32 + 1);
        out.push((endpoints_map, slot_key, ElementData::Value(key::backend(*ip, *port))));
        out.push((SET_HAIRPIN, key::pair(*ip, *ip), ElementData::None));
    }
    new_slots.insert(frontend.key, slots);
}

/// Places `backends` into slots 1..=N: an endpoint that had a slot within range keeps it,
/// the others fill the gaps in order.
pub fn assign_slots(old: &[Backend], backends: &[Backend]) -> Vec<Backend> {
    let n = backends.len();
    let mut slots: Vec<Option<Backend>> = vec![None; n];
    let mut placed: HashSet<Backend> = HashSet::new();
    for (i, b) in old.iter().enumerate().take(n) {
        if backends.binary_search(b).is_ok() && placed.insert(*b) {
            slots[i] = Some(*b);
        }
    }
    let mut rest = backends.iter().filter(|b| !placed.contains(*b));
    slots.into_iter().map(|s| s.or_else(|| rest.next().copied())).collect::<Option<Vec<_>>>().unwrap_or_default()
}

impl Dataplane for Nftables {
    fn mode(&self) -> &'static str {
        "nftables"
    }

    fn sync(&mut self, update: &Update<'_>) -> anyhow::Result<()> {
        let mut chains = Chains::new();
        let mut ops = Vec::new();
        if update.full || !self.base_loaded {
            self.load_base()?;
            self.elements = ElementStore::default();
            for (key, state) in update.desired {
                let id = self.ids.id(key);
                let elements = self.service_elements(id, state, &mut chains);
                self.elements.insert_service(id, elements);
            }
            let live = &self.elements.by_service;
            self.slots.retain(|id, _| live.contains_key(id));
            ops.extend(ruleset::ELEMENT_SETS.iter().map(|set| ElementOp::Flush { set }));
            self.elements.all_effective(&mut ops);
        } else {
            let mut deletes = Vec::new();
            let mut adds = Vec::new();
            for key in update.changed {
                let id = self.ids.id(key);
                let elements = match update.desired.get(key) {
                    Some(state) => self.service_elements(id, state, &mut chains),
                    None => {
                        self.slots.remove(&id);
                        self.ids.forget(key);
                        Vec::new()
                    }
                };
                self.elements.replace_service(id, elements, &mut deletes, &mut adds);
            }
            sort_ops(&mut deletes);
            sort_ops(&mut adds);
            ops = deletes;
            ops.extend(adds);
        }
        self.ensure_chains(&chains)?;
        self.socket.apply(TABLE, &ops).context("writing nftables elements")?;
        Ok(())
    }
}

fn sort_ops(ops: &mut [ElementOp]) {
    ops.sort_by_key(|op| match op {
        ElementOp::Add { set, .. } | ElementOp::Delete { set, .. } | ElementOp::Flush { set } => *set,
    });
}

/// Deletes the nftables-mode table, if present.
pub fn cleanup() -> anyhow::Result<()> {
    // `add` first makes the delete succeed when the table is absent.
    super::run_with_stdin("nft", &["-f", "-"], &format!("add table ip {TABLE}\ndelete table ip {TABLE}\n"))
}

/// Every element committed, with the Services that want it. Two Services can want the
/// same element (the hairpin pair of a shared endpoint, a frontend declared twice); the
/// kernel gets the data of the lowest Service id, and the element goes away only when no
/// Service wants it any more.
#[derive(Default)]
struct ElementStore {
    owners: HashMap<ElementKey, Vec<(u32, ElementData)>>,
    by_service: HashMap<u32, Vec<ElementKey>>,
}

/// (set, key)
type ElementKey = (&'static str, Vec<u8>);

impl ElementStore {
    fn effective(&self, k: &ElementKey) -> Option<&ElementData> {
        self.owners.get(k).and_then(|o| o.first()).map(|(_, d)| d)
    }

    /// Adds a Service's elements without computing operations (full sync).
    fn insert_service(&mut self, id: u32, elements: Vec<Element>) {
        let mut keys = Vec::with_capacity(elements.len());
        for (set, key, data) in elements {
            let k = (set, key);
            let owners = self.owners.entry(k.clone()).or_default();
            if owners.iter().any(|(o, _)| *o == id) {
                continue;
            }
            owners.push((id, data));
            owners.sort_by_key(|(o, _)| *o);
            keys.push(k);
        }
        self.by_service.insert(id, keys);
    }

    /// Replaces a Service's elements and appends the kernel operations the change needs.
    fn replace_service(
        &mut self,
        id: u32,
        elements: Vec<Element>,
        deletes: &mut Vec<ElementOp>,
        adds: &mut Vec<ElementOp>,
    ) {
        let old = self.by_service.remove(&id).unwrap_or_default();
        let mut affected: Vec<ElementKey> = old.clone();
        affected.extend(elements.iter().map(|(s, k, _)| (*s, k.clone())));
        affected.sort();
        affected.dedup();
        let before: Vec<Option<ElementData>> = affected.iter().map(|k| self.effective(k).cloned()).collect();
        for k in &old {
            if let Some(owners) = self.owners.get_mut(k) {
                owners.retain(|(o, _)| *o != id);
                if owners.is_empty() {
                    self.owners.remove(k);
                }
            }
        }
        self.insert_service(id, elements);
        if self.by_service.get(&id).is_some_and(Vec::is_empty) {
            self.by_service.remove(&id);
        }
        for (k, before) in affected.into_iter().zip(before) {
            let after = self.effective(&k);
            if before.as_ref() == after {
                continue;
            }
            let (set, key) = k;
            if before.is_some() {
                deletes.push(ElementOp::Delete { set, key: key.clone() });
            }
            if let Some(data) = after {
                adds.push(ElementOp::Add { set, key, data: data.clone() });
            }
        }
    }

    fn all_effective(&self, ops: &mut Vec<ElementOp>) {
        let mut adds: Vec<ElementOp> = self
            .owners
            .iter()
            .filter_map(|((set, key), owners)| {
                let (_, data) = owners.first()?;
                Some(ElementOp::Add { set, key: key.clone(), data: data.clone() })
            })
            .collect();
        sort_ops(&mut adds);
        ops.extend(adds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(last: u8) -> Backend {
        (Ipv4Addr::new(10, 0, 0, last), 80)
    }

    #[test]
    fn slots_are_stable_across_changes() {
        assert_eq!(assign_slots(&[], &[b(1), b(2), b(3)]), vec![b(1), b(2), b(3)]);
        // b(2) is replaced by b(4): b(1) and b(3) keep their slots.
        assert_eq!(assign_slots(&[b(1), b(2), b(3)], &[b(1), b(3), b(4)]), vec![b(1), b(4), b(3)]);
        // Shrinking: b(3) in slot 3 no longer fits and moves into the free slot.
        assert_eq!(assign_slots(&[b(1), b(2), b(3)], &[b(1), b(3)]), vec![b(1), b(3)]);
    }

    #[test]
    fn shared_elements_live_until_their_last_owner_goes() {
        let mut store = ElementStore::default();
        let (mut dels, mut adds) = (Vec::new(), Vec::new());
        let e = |d: u8| (ruleset::SET_HAIRPIN, vec![d], ElementData::None);
        store.replace_service(1, vec![e(1)], &mut dels, &mut adds);
        assert_eq!((dels.len(), adds.len()), (0, 1));
        store.replace_service(2, vec![e(1), e(2)], &mut dels, &mut adds);
        assert_eq!((dels.len(), adds.len()), (0, 2), "only the new element is added");
        store.replace_service(1, vec![], &mut dels, &mut adds);
        assert_eq!(dels.len(), 0, "service 2 still wants element 1");
        store.replace_service(2, vec![], &mut dels, &mut adds);
        assert_eq!(dels.len(), 2);
        assert!(store.owners.is_empty() && store.by_service.is_empty());
    }

    #[test]
    fn changed_data_is_deleted_then_added() {
        let mut store = ElementStore::default();
        let (mut dels, mut adds) = (Vec::new(), Vec::new());
        store.replace_service(1, vec![("m", vec![1], ElementData::Goto("a".into()))], &mut dels, &mut adds);
        store.replace_service(1, vec![("m", vec![1], ElementData::Goto("b".into()))], &mut dels, &mut adds);
        assert_eq!(dels.len(), 1);
        assert_eq!(adds.len(), 2);
        store.replace_service(1, vec![("m", vec![1], ElementData::Goto("b".into()))], &mut dels, &mut adds);
        assert_eq!((dels.len(), adds.len()), (1, 2), "no change, no operation");
    }
}
