// Shared by the store's and the skiff binary's etcd tests (included with #[path]).

/// Free loopback ports for processes (etcd) that cannot report a port they picked
/// themselves, all held until every one is picked so they are distinct. They come from below
/// the kernel's ephemeral range (32768 and up), so an outgoing connection of some other test
/// cannot take one between this probe and etcd's bind.
pub fn free_ports(n: usize) -> Vec<u16> {
    const FIRST: u64 = 20_000;
    const COUNT: u64 = 12_000;
    let mut seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
            ^ (u64::from(std::process::id()) << 20);
    let mut listeners = Vec::with_capacity(n);
    while listeners.len() < n {
        // xorshift: good enough to spread concurrent test processes over the range.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let port = (FIRST + seed % COUNT) as u16;
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            listeners.push(listener);
        }
    }
    listeners.iter().map(|l| l.local_addr().expect("local addr").port()).collect()
}
