//! iptables mode: kube-proxy's chain layout written with `iptables-restore --noflush`.
//!
//! nat table: `KUBE-SERVICES` (from PREROUTING and OUTPUT) has one rule per frontend
//! jumping to the Service port's chain; its last rule sends local destinations to
//! `KUBE-NODEPORTS`. `KUBE-SVC-*` picks an endpoint with `-m statistic --mode random`
//! (probability 1/(n−i) for endpoint i, the last one unconditional), after `-m recent`
//! affinity checks; `KUBE-SEP-*` marks hairpin traffic for masquerade and DNATs;
//! `KUBE-EXT-*` masquerades external traffic of Cluster-policy Services; `KUBE-SVL-*` holds
//! the local endpoints external traffic uses under the Local policy. `KUBE-POSTROUTING`
//! masquerades marked packets. filter table: `KUBE-SERVICES` (FORWARD, OUTPUT) rejects or
//! drops frontends without endpoints and rejects untranslated ClusterIP traffic (an unused
//! port); `KUBE-EXTERNAL-SERVICES` (INPUT, FORWARD) does the same for node ports.
//!
//! Like kube-proxy's partial sync (KEP-3453), a sync rewrites the top-level chains in full
//! but only the per-Service chains of Services that changed, and deletes the chains those
//! Services no longer use.
//!
//! Large syncs (a full sync of thousands of Services) write the per-Service chains in
//! chunks of [`CHAINS_PER_RESTORE`] before the restore that rewrites the top-level chains.
//! Why: with the nf_tables backend (iptables 1.8.x), `iptables-restore --noflush` keeps
//! the chains a restore names in a sorted linked list and walks it for every line, so one
//! restore costs lines × chains: a full sync of 10,000 Services × 10 endpoints (110,000
//! chains) took over 15 minutes in one piece, seconds in chunks. Nothing a packet sees
//! changes meanwhile: new chains are unreferenced until the top-level restore, a rewritten
//! chain is replaced within one restore, and stale chains go last.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};
use skiff_core::service_view::ServiceKey;

use super::{Dataplane, Update};
use crate::model::{Backend, NoEndpoints, ServicePortState, ServiceState, Targets};

const MASQ_MARK: &str = "0x4000/0x4000";
/// Packets the nat table wants dropped (loadBalancerSourceRanges).
const DROP_MARK: &str = "0x8000";
/// Per-Service chains written per `iptables-restore` when a sync has more (see the module
/// documentation).
pub const CHAINS_PER_RESTORE: usize = 2000;

/// The per-Service part of the ruleset, kept to rewrite the top-level chains without
/// recomputing every Service.
#[derive(Default, Clone)]
struct Rendered {
    /// nat chains owned by the Service: name → rules (each a full `-A …` line).
    chains: Vec<(String, Vec<String>)>,
    /// Lines for the shared chains.
    nat_services: Vec<String>,
    nat_nodeports: Vec<String>,
    filter_services: Vec<String>,
    filter_external: Vec<String>,
    /// `-d VIP -j REJECT` lines, which must come after every no-endpoint rule.
    filter_unused_ports: Vec<String>,
}

/// iptables-mode data plane.
pub struct Iptables {
    cluster_cidr: Option<(Ipv4Addr, u8)>,
    rendered: HashMap<ServiceKey, Rendered>,
    jumps_installed: bool,
}

impl Iptables {
    pub fn new(cluster_cidr: Option<(Ipv4Addr, u8)>) -> Iptables {
        Iptables { cluster_cidr, rendered: HashMap::new(), jumps_installed: false }
    }

    /// The restore input for this sync: top-level chains in full, `dirty_chains` (with
    /// their rules) and `-X` for `stale_chains`.
    fn restore_input(&self, dirty: &[&Rendered], stale_chains: &[String]) -> String {
        let mut nat = String::from("*nat\n");
        for chain in ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"] {
            let _ = writeln!(nat, ":{chain} - [0:0]");
        }
        for r in dirty {
            for (name, _) in &r.chains {
                let _ = writeln!(nat, ":{name} - [0:0]");
            }
        }
        let _ = writeln!(nat, "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000");
        let _ = writeln!(nat, "-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK} -j RETURN");
        let _ = writeln!(nat, "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000");
        let _ = writeln!(
            nat,
            "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully"
        );
        let mut services: Vec<&Rendered> = self.rendered.values().collect();
        services.sort_by(|a, b| a.nat_services.first().cmp(&b.nat_services.first()));
        for r in &services {
            for line in r.nat_services.iter().chain(&r.nat_nodeports) {
                nat.push_str(line);
                nat.push('\n');
            }
        }
        let _ = writeln!(
            nat,
            "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS"
        );
        for r in dirty {
            for (_, rules) in &r.chains {
                for line in rules {
                    nat.push_str(line);
                    nat.push('\n');
                }
            }
        }
        for chain in stale_chains {
            let _ = writeln!(nat, "-X {chain}");
        }
        nat.push_str("COMMIT\n*filter\n");
        for chain in ["KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"] {
            let _ = writeln!(nat, ":{chain} - [0:0]");
        }
        for chain in ["KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"] {
            let _ = writeln!(nat, "-A {chain} -m mark --mark {DROP_MARK}/{DROP_MARK} -j DROP");
        }
        for r in &services {
            for line in r.filter_services.iter().chain(&r.filter_external) {
                nat.push_str(line);
                nat.push('\n');
            }
        }
        for r in &services {
            for line in &r.filter_unused_ports {
                nat.push_str(line);
                nat.push('\n');
            }
        }
        nat.push_str("COMMIT\n");
        nat
    }

    fn install_jumps(&mut self) -> anyhow::Result<()> {
        let jumps: [(&str, &str, &[&str]); 7] = [
            ("nat", "PREROUTING", &["-j", "KUBE-SERVICES"]),
            ("nat", "OUTPUT", &["-j", "KUBE-SERVICES"]),
            ("nat", "POSTROUTING", &["-j", "KUBE-POSTROUTING"]),
            ("filter", "FORWARD", &["-m", "conntrack", "--ctstate", "NEW", "-j", "KUBE-SERVICES"]),
            ("filter", "OUTPUT", &["-m", "conntrack", "--ctstate", "NEW", "-j", "KUBE-SERVICES"]),
            ("filter", "INPUT", &["-m", "conntrack", "--ctstate", "NEW", "-j", "KUBE-EXTERNAL-SERVICES"]),
            ("filter", "FORWARD", &["-m", "conntrack", "--ctstate", "NEW", "-j", "KUBE-EXTERNAL-SERVICES"]),
        ];
        // The chains must exist before rules can jump to them. `-N` (not a restore, which
        // would flush them) keeps a restarted proxy's rules in place until its first sync.
        for (table, chain) in [
            ("nat", "KUBE-SERVICES"),
            ("nat", "KUBE-POSTROUTING"),
            // Per-Service chains jump here; they may be written before the top-level restore.
            ("nat", "KUBE-MARK-MASQ"),
            ("filter", "KUBE-SERVICES"),
            ("filter", "KUBE-EXTERNAL-SERVICES"),
        ] {
            let _ = std::process::Command::new("iptables").args(["-w", "-t", table, "-N", chain]).output();
        }
        for (table, chain, rule) in jumps {
            let exists = std::process::Command::new("iptables")
                .args(["-w", "-t", table, "-C", chain])
                .args(rule)
                .output()
                .is_ok_and(|o| o.status.success());
            if !exists {
                let out = std::process::Command::new("iptables")
                    .args(["-w", "-t", table, "-I", chain])
                    .args(rule)
                    .output()?;
                anyhow::ensure!(
                    out.status.success(),
                    "iptables -t {table} -I {chain}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        self.jumps_installed = true;
        Ok(())
    }
}

impl Dataplane for Iptables {
    fn mode(&self) -> &'static str {
        "iptables"
    }

    fn sync(&mut self, update: &Update<'_>) -> anyhow::Result<()> {
        if update.full || !self.jumps_installed {
            self.install_jumps()?;
        }
        let full = update.full || !self.jumps_installed;
        let mut stale = Vec::new();
        let keys: Vec<&ServiceKey> =
            if full { update.desired.keys().collect() } else { update.changed.iter().collect() };
        let mut dirty_keys = Vec::new();
        let old_chains: HashSet<String> = if full {
            self.rendered.values().flat_map(|r| r.chains.iter().map(|(n, _)| n.clone())).collect()
        } else {
            keys.iter()
                .filter_map(|k| self.rendered.get(*k))
                .flat_map(|r| r.chains.iter().map(|(n, _)| n.clone()))
                .collect()
        };
        if full {
            self.rendered.clear();
        }
        for key in keys {
            match update.desired.get(key) {
                Some(state) => {
                    self.rendered.insert(key.clone(), render(state, self.cluster_cidr));
                    dirty_keys.push(key.clone());
                }
                None => {
                    self.rendered.remove(key);
                }
            }
        }
        let new_chains: HashSet<&String> = dirty_keys
            .iter()
            .filter_map(|k| self.rendered.get(k))
            .flat_map(|r| r.chains.iter().map(|(n, _)| n))
            .collect();
        for chain in old_chains {
            if !new_chains.contains(&chain) {
                stale.push(chain);
            }
        }
        stale.sort();
        // Stale chains are flushed (declared) before being deleted, in the same restore.
        let mut dirty: Vec<&Rendered> = dirty_keys.iter().filter_map(|k| self.rendered.get(k)).collect();
        if dirty.iter().map(|r| r.chains.len()).sum::<usize>() > CHAINS_PER_RESTORE {
            for chunk in chunks_of_chains(&dirty, CHAINS_PER_RESTORE) {
                super::run_with_stdin("iptables-restore", &["-w", "--noflush"], &chains_input(chunk))?;
            }
            dirty.clear();
        }
        let mut input = self.restore_input(&dirty, &stale);
        if !stale.is_empty() {
            let declare: String = stale.iter().map(|c| format!(":{c} - [0:0]\n")).collect();
            input = input.replacen("*nat\n", &format!("*nat\n{declare}"), 1);
        }
        super::run_with_stdin("iptables-restore", &["-w", "--noflush"], &input)
    }
}

/// Splits `services` into runs of whole Services with about `max_chains` chains each (a
/// Service's chains jump to each other, so they stay in one restore).
fn chunks_of_chains<'a, 'r>(services: &'a [&'r Rendered], max_chains: usize) -> Vec<&'a [&'r Rendered]> {
    let mut chunks = Vec::new();
    let (mut start, mut chains) = (0, 0);
    for (i, r) in services.iter().enumerate() {
        if chains > 0 && chains + r.chains.len() > max_chains {
            chunks.push(&services[start..i]);
            (start, chains) = (i, 0);
        }
        chains += r.chains.len();
    }
    if start < services.len() {
        chunks.push(&services[start..]);
    }
    chunks
}

/// A nat-table restore that (re)writes just these Services' own chains.
fn chains_input(services: &[&Rendered]) -> String {
    let mut s = String::from("*nat\n");
    for r in services {
        for (name, _) in &r.chains {
            let _ = writeln!(s, ":{name} - [0:0]");
        }
    }
    for r in services {
        for line in r.chains.iter().flat_map(|(_, rules)| rules) {
            s.push_str(line);
            s.push('\n');
        }
    }
    s.push_str("COMMIT\n");
    s
}

/// kube-proxy's chain-name hash: base32(sha256(s)), first 16 characters.
fn hash16(s: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = Sha256::digest(s.as_bytes());
    let mut out = String::with_capacity(16);
    let mut bits: u32 = 0;
    let mut nbits = 0;
    for byte in digest.iter() {
        bits = (bits << 8) | u32::from(*byte);
        nbits += 8;
        while nbits >= 5 && out.len() < 16 {
            nbits -= 5;
            out.push(ALPHABET[((bits >> nbits) & 31) as usize] as char);
        }
        if out.len() == 16 {
            break;
        }
    }
    out
}

fn proto(p: &ServicePortState) -> &'static str {
    p.name.protocol.as_lower_str()
}

fn render(state: &ServiceState, cluster_cidr: Option<(Ipv4Addr, u8)>) -> Rendered {
    let mut r = Rendered::default();
    for port in &state.ports {
        let name = port.name.to_string();
        let p = proto(port);
        let comment = format!("-m comment --comment \"{}\"", name.replace('"', ""));
        let base = hash16(&name);
        let svc_chain = format!("KUBE-SVC-{base}");
        let svl_chain = format!("KUBE-SVL-{base}");
        let ext_chain = format!("KUBE-EXT-{base}");
        let fw_chain = format!("KUBE-FW-{base}");
        let external_chain = if port.external.backends == port.internal.backends { &svc_chain } else { &svl_chain };
        // ClusterIP frontends.
        for ip in &port.cluster_ips {
            let m = format!("-d {ip}/32 -p {p} -m {p} --dport {}", port.port);
            if port.internal.backends.is_empty() {
                r.filter_services.push(format!("-A KUBE-SERVICES {comment} {m} -j {}", verdict(&port.internal)));
            } else {
                r.nat_services.push(format!("-A KUBE-SERVICES {comment} {m} -j {svc_chain}"));
            }
            r.filter_unused_ports.push(format!("-A KUBE-SERVICES -d {ip}/32 -j REJECT"));
        }
        if !port.internal.backends.is_empty() {
            let mut rules = Vec::new();
            if let Some((net, len)) = cluster_cidr {
                for ip in &port.cluster_ips {
                    rules.push(format!(
                        "-A {svc_chain} {comment} ! -s {net}/{len} -d {ip}/32 -p {p} -m {p} --dport {} -j KUBE-MARK-MASQ",
                        port.port
                    ));
                }
            }
            balance(&mut r, &svc_chain, &rules, &name, port, &port.internal.backends, &comment);
        }
        // External frontends: external IPs, LoadBalancer IPs, node port.
        if !port.has_external() {
            continue;
        }
        for ip in &port.external_ips {
            let m = format!("-d {ip}/32 -p {p} -m {p} --dport {}", port.port);
            if port.external.backends.is_empty() {
                r.filter_external
                    .push(format!("-A KUBE-EXTERNAL-SERVICES {comment} {m} -j {}", verdict(&port.external)));
                r.filter_services.push(format!("-A KUBE-SERVICES {comment} {m} -j {}", verdict(&port.external)));
            } else {
                let guarded = port.firewall.as_ref().is_some_and(|f| f.ips.contains(ip));
                let target = if guarded { &fw_chain } else { &ext_chain };
                r.nat_services.push(format!("-A KUBE-SERVICES {comment} {m} -j {target}"));
            }
        }
        if port.node_port != 0 {
            let m = format!("-p {p} -m {p} --dport {}", port.node_port);
            if port.external.backends.is_empty() {
                r.filter_external.push(format!(
                    "-A KUBE-EXTERNAL-SERVICES {comment} -m addrtype --dst-type LOCAL {m} -j {}",
                    verdict(&port.external)
                ));
            } else {
                r.nat_nodeports.push(format!("-A KUBE-NODEPORTS {comment} {m} -j {ext_chain}"));
            }
        }
        if !port.external.backends.is_empty() {
            let mut rules = Vec::new();
            if port.masquerade_external {
                rules.push(format!("-A {ext_chain} {comment} -j KUBE-MARK-MASQ"));
            }
            rules.push(format!("-A {ext_chain} {comment} -j {external_chain}"));
            r.chains.push((ext_chain.clone(), rules));
            if let Some(firewall) = &port.firewall {
                // loadBalancerSourceRanges: allowed sources continue, the rest is dropped.
                let mut fw: Vec<String> = firewall
                    .allowed
                    .iter()
                    .map(|(net, len)| format!("-A {fw_chain} {comment} -s {net}/{len} -j {ext_chain}"))
                    .collect();
                // DROP is not allowed in nat: mark, and the filter table drops (as kube-proxy's
                // KUBE-MARK-DROP).
                fw.push(format!("-A {fw_chain} {comment} -j MARK --or-mark {DROP_MARK}"));
                r.chains.push((fw_chain.clone(), fw));
            }
            if external_chain == &svl_chain {
                balance(&mut r, &svl_chain, &[], &name, port, &port.external.backends, &comment);
            }
        }
    }
    r
}

fn verdict(targets: &Targets) -> &'static str {
    match targets.when_empty {
        NoEndpoints::Reject => "REJECT",
        NoEndpoints::Drop => "DROP",
    }
}

/// Writes `chain` (prefix rules, affinity checks, random choice) and its endpoint chains.
fn balance(
    r: &mut Rendered,
    chain: &str,
    prefix: &[String],
    name: &str,
    port: &ServicePortState,
    backends: &[Backend],
    comment: &str,
) {
    let p = proto(port);
    let seps: Vec<(String, Backend)> = backends
        .iter()
        .map(|(ip, bp)| (format!("KUBE-SEP-{}", hash16(&format!("{name}:{ip}:{bp}"))), (*ip, *bp)))
        .collect();
    let mut rules: Vec<String> = prefix.to_vec();
    if let Some(timeout) = port.affinity_timeout {
        for (sep, _) in &seps {
            rules.push(format!("-A {chain} {comment} -m recent --name {sep} --mask 255.255.255.255 --rsource --rcheck --seconds {timeout} --reap -j {sep}"));
        }
    }
    let n = seps.len();
    for (i, (sep, (ip, bp))) in seps.iter().enumerate() {
        let left = n - i;
        let stat = if left > 1 {
            format!("-m statistic --mode random --probability {:.10} ", 1.0 / left as f64)
        } else {
            String::new()
        };
        rules.push(format!("-A {chain} {comment} -m comment --comment \"-> {ip}:{bp}\" {stat}-j {sep}"));
    }
    r.chains.push((chain.to_owned(), rules));
    for (sep, (ip, bp)) in seps {
        if r.chains.iter().any(|(c, _)| *c == sep) {
            continue;
        }
        let mut sep_rules = vec![format!("-A {sep} {comment} -s {ip}/32 -j KUBE-MARK-MASQ")];
        if port.affinity_timeout.is_some() {
            sep_rules.push(format!("-A {sep} {comment} -m recent --name {sep} --mask 255.255.255.255 --rsource --set"));
        }
        sep_rules.push(format!("-A {sep} {comment} -p {p} -m {p} -j DNAT --to-destination {ip}:{bp}"));
        r.chains.push((sep, sep_rules));
    }
}

/// Removes every `KUBE-*` chain and the jumps to them from the nat and filter tables.
/// Does nothing (and starts no iptables table) when none exist.
pub fn cleanup() -> anyhow::Result<()> {
    for table in ["nat", "filter"] {
        let Ok(out) = std::process::Command::new("iptables-save").args(["-t", table]).output() else {
            return Ok(()); // no iptables tools: nothing of ours can exist
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let chains: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix(':'))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|c| c.starts_with("KUBE-"))
            .collect();
        if chains.is_empty() {
            continue;
        }
        let mut input = format!("*{table}\n");
        // Jumps from built-in chains to ours.
        for line in text.lines().filter(|l| l.starts_with("-A ")) {
            let mut words = line.split_whitespace();
            let chain = words.nth(1).unwrap_or_default();
            if !chain.starts_with("KUBE-") && line.contains("-j KUBE-") {
                let _ = writeln!(input, "-D {}", &line[3..]);
            }
        }
        for c in &chains {
            let _ = writeln!(input, ":{c} - [0:0]");
        }
        for c in &chains {
            let _ = writeln!(input, "-X {c}");
        }
        input.push_str("COMMIT\n");
        super::run_with_stdin("iptables-restore", &["-w", "--noflush"], &input)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ServicePortName;
    use skiff_core::service_view::Protocol;

    #[test]
    fn chunks_keep_services_whole() {
        let service = |chains: usize| Rendered {
            chains: (0..chains).map(|i| (format!("KUBE-SEP-{i}"), vec![format!("-A KUBE-SEP-{i} -j DNAT")])).collect(),
            ..Default::default()
        };
        let (a, b, c, d) = (service(3), service(3), service(5), service(1));
        let all = [&a, &b, &c, &d];
        let sizes: Vec<usize> = chunks_of_chains(&all, 6).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![2, 2], "3+3 fill one chunk; 5+1 the next");
        // A Service larger than the limit gets a chunk of its own.
        let sizes: Vec<usize> = chunks_of_chains(&all, 2).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![1, 1, 1, 1]);
        let input = chains_input(&all[..1]);
        assert!(input.starts_with("*nat\n:KUBE-SEP-0 - [0:0]\n"));
        assert!(input.ends_with("-A KUBE-SEP-2 -j DNAT\nCOMMIT\n"));
    }

    #[test]
    fn hash_matches_kube_proxy_style() {
        let h = hash16("default/svc-0/tcp/p80");
        assert_eq!(h.len(), 16);
        assert!(h.chars().all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)));
        // base32 of sha256("") starts with 4OYMIQUY7QOBJGX3 (RFC 4648 alphabet).
        assert_eq!(hash16(""), "4OYMIQUY7QOBJGX3");
    }

    #[test]
    fn renders_probabilities_and_reject() {
        let targets = |n: u8| Targets {
            backends: (1..=n).map(|i| (Ipv4Addr::new(10, 244, 1, i), 8080)).collect(),
            when_empty: NoEndpoints::Reject,
        };
        let port = |n| ServicePortState {
            name: ServicePortName { service: ServiceKey::new("ns", "s"), port: "http".into(), protocol: Protocol::Tcp },
            cluster_ips: vec!["10.96.0.5".parse().unwrap()],
            port: 80,
            node_port: 0,
            external_ips: vec![],
            internal: targets(n),
            external: targets(n),
            masquerade_external: true,
            affinity_timeout: None,
            firewall: None,
        };
        let r = render(&ServiceState { ports: vec![port(3)], ..Default::default() }, None);
        let svc = &r.chains.iter().find(|(c, _)| c.starts_with("KUBE-SVC-")).unwrap().1;
        assert!(svc[0].contains("--probability 0.3333333333"));
        assert!(svc[1].contains("--probability 0.5000000000"));
        assert!(!svc[2].contains("statistic"));
        assert_eq!(r.chains.len(), 4);
        let r = render(&ServiceState { ports: vec![port(0)], ..Default::default() }, None);
        assert!(r.chains.is_empty());
        assert!(r.filter_services[0].ends_with("-j REJECT"));
    }
}
