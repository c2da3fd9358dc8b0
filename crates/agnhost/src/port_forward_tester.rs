//! `agnhost port-forward-tester`: the server side of the `kubectl port-forward` e2e tests,
//! configured by environment variables and reporting its progress on stdout (the tests read the
//! container log). It listens on `BIND_ADDRESS` (default localhost) port `BIND_PORT`, accepts one
//! connection, checks that the client first sends `EXPECTED_CLIENT_DATA` (if set), writes
//! `CHUNKS` chunks of `CHUNK_SIZE` bytes `CHUNK_INTERVAL` ms apart, closes and exits 0.
//! Exit codes as upstream: 1 setup error, 2 short read, 3 wrong data, 4 short write.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Time between closing the write side and the whole socket, so the client sees the FIN before
/// a reset from unread data.
const LINGER: Duration = Duration::from_millis(500);

pub async fn run() -> anyhow::Result<i32> {
    let host = std::env::var("BIND_ADDRESS").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "localhost".to_owned());
    let port = std::env::var("BIND_PORT").unwrap_or_default();
    let Ok(port) = port.parse::<u16>() else {
        outln!("Error resolving: invalid BIND_PORT {port:?}");
        return Ok(1);
    };
    let listener = match tokio::net::TcpListener::bind((host.as_str(), port)).await {
        Ok(listener) => listener,
        Err(e) => {
            outln!("Error listening: {e}");
            return Ok(1);
        }
    };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("port-forward-tester listening on {addr}");
    }
    let (mut conn, _) = match listener.accept().await {
        Ok(accepted) => accepted,
        Err(e) => {
            outln!("Error accepting connection: {e}");
            return Ok(1);
        }
    };
    outln!("Accepted client connection");

    let expected = std::env::var("EXPECTED_CLIENT_DATA").unwrap_or_default();
    if !expected.is_empty() {
        let mut buffer = vec![0u8; expected.len()];
        let read = read_up_to(&mut conn, &mut buffer).await;
        if read != expected.len() {
            outln!("Expected to read {} bytes from client, but got {read} instead.", expected.len());
            return Ok(2);
        }
        if buffer != expected.as_bytes() {
            outln!("Expect to read {expected:?}, but got {:?}.", String::from_utf8_lossy(&buffer));
            return Ok(3);
        }
        outln!("Received expected client data");
    }

    let (Some(chunks), Some(chunk_size), Some(interval)) =
        (env_int("CHUNKS"), env_int("CHUNK_SIZE"), env_int("CHUNK_INTERVAL"))
    else {
        return Ok(1);
    };
    let chunk = vec![b'x'; chunk_size];
    for i in 0..chunks {
        if let Err(e) = conn.write_all(&chunk).await {
            outln!("Expected to write {chunk_size} bytes from client, but wrote 0 instead. err={e}");
            return Ok(4);
        }
        if i + 1 < chunks {
            tokio::time::sleep(Duration::from_millis(interval as u64)).await;
        }
    }
    outln!("Shutting down connection");
    let _ = conn.shutdown().await;
    tokio::time::sleep(LINGER).await;
    drop(conn);
    outln!("Done");
    Ok(0)
}

/// Reads until `buffer` is full or the client stops sending; returns the bytes read.
async fn read_up_to(conn: &mut tokio::net::TcpStream, buffer: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buffer.len() {
        match conn.read(&mut buffer[filled..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    filled
}

/// A non-negative integer environment variable; prints upstream's error otherwise.
fn env_int(name: &str) -> Option<usize> {
    let value = std::env::var(name).unwrap_or_default();
    match value.parse::<usize>() {
        Ok(n) => Some(n),
        Err(_) => {
            outln!("Error parsing {name} {value:?}: invalid syntax");
            None
        }
    }
}
