//! The userspace TCP relay's copy loop: bytes both ways between a client connection and the
//! backend connection dialled for it, on the lane task that accepted the client.
//!
//! Why not `tokio::io::copy_bidirectional`: it makes the same system calls (measured with
//! `perf stat` during `skiff bench proxy --userspace`: one `recvfrom` and one `sendto` per
//! message and direction, no `EAGAIN` reads, as tokio takes a short read for a drained
//! socket), but it allocates and zeroes an 8 KiB buffer per direction for every connection,
//! which `Connection: close` traffic pays on each request, and keeps per-direction
//! bookkeeping (byte counts, flush state) the relay never reads. This loop:
//!
//! - reads into one scratch buffer per thread and writes the message out at once, so a
//!   connection owns no buffer while its messages fit the socket buffers (keep-alive HTTP,
//!   and idle connections cost no buffer memory); only bytes the destination did not take
//!   are copied into the direction's own `Vec`, which is kept for reuse and stops reading
//!   from the source (back-pressure) until it is written out;
//! - tries both directions on each wake-up, where an idle direction costs one readiness check
//!   (no system call);
//! - forwards end of stream on one side as a FIN (`shutdown(SHUT_WR)`) to the other while the
//!   opposite direction keeps flowing (half-close, as HTTP/1.0 clients or `nc -N` use);
//! - ends at the first error on either socket (a reset, a failed write), and the caller drops
//!   both sockets, which closes both connections.
//!
//! In `skiff bench proxy --userspace` this changed neither req/s nor p99 beyond run-to-run
//! noise (CPU per request was already haproxy's, kernel time dominating both); the gain is
//! no buffer allocation per connection and no buffer memory for idle ones.
//!
//! Fairness between connections of one lane comes from tokio's cooperative budget: socket
//! reads and writes return `Pending` once the task has used its budget, so a bulk transfer
//! cannot hold the lane.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The scratch buffer's size: haproxy's default `bufsize`, large enough that a bulk transfer
/// moves in few system calls.
const SCRATCH: usize = 16 * 1024;

thread_local! {
    /// Where every relay on this thread reads into. Only used between a read and the write
    /// that follows it within one poll, never across an `.await`, so relays on one lane
    /// cannot see each other's bytes.
    static SCRATCH_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// How far one direction has got.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flow {
    /// Reading from the source and writing what was read.
    Open,
    /// The source sent its FIN and everything read was written: the destination's write side
    /// must be shut down.
    Ending,
    /// The FIN was forwarded; nothing more will flow this way.
    Done,
}

/// One direction of the relay.
struct Direction {
    /// Bytes read but not yet taken by the destination (`left[written..]`); empty, and
    /// without an allocation, unless a write was short.
    left: Vec<u8>,
    written: usize,
    flow: Flow,
}

impl Direction {
    fn new() -> Direction {
        Direction { left: Vec::new(), written: 0, flow: Flow::Open }
    }

    /// Moves bytes from `from` to `to` until one of them would block (`Pending`, with the task
    /// registered for the socket that blocked) or this direction is done (`Ready(Ok)`, after
    /// forwarding the FIN). Any I/O error ends the direction with that error.
    fn poll_pump<R, W>(&mut self, cx: &mut Context<'_>, from: &mut R, to: &mut W) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            while self.written < self.left.len() {
                let n = ready!(poll_write_some(cx, to, &self.left[self.written..]))?;
                self.written += n;
            }
            self.left.clear();
            self.written = 0;
            match self.flow {
                Flow::Open => {
                    let read = SCRATCH_BUF.with(|scratch| {
                        let mut scratch = scratch.borrow_mut();
                        if scratch.len() < SCRATCH {
                            scratch.resize(SCRATCH, 0);
                        }
                        self.relay_one_read(cx, from, to, &mut scratch)
                    });
                    if ready!(read)? == 0 {
                        self.flow = Flow::Ending;
                    }
                }
                Flow::Ending => {
                    ready!(Pin::new(&mut *to).poll_shutdown(cx))?;
                    self.flow = Flow::Done;
                }
                Flow::Done => return Poll::Ready(Ok(())),
            }
        }
    }

    /// One read from `from` into `scratch`, written on to `to` as far as `to` takes it; the
    /// rest is kept in `self.left`. Ready with the number of bytes read (0: end of stream);
    /// `Pending` when `from` has nothing to read or `to` took less than was read.
    fn relay_one_read<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut R,
        to: &mut W,
        scratch: &mut [u8],
    ) -> Poll<io::Result<usize>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut read = ReadBuf::new(scratch);
        ready!(Pin::new(&mut *from).poll_read(cx, &mut read))?;
        let data = read.filled();
        let mut sent = 0;
        while sent < data.len() {
            match poll_write_some(cx, to, &data[sent..]) {
                Poll::Ready(Ok(n)) => sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    // The task is registered for `to` becoming writable; `from` is not read
                    // again until these bytes are out.
                    self.left.extend_from_slice(&data[sent..]);
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(data.len()))
    }
}

/// One write of a non-empty `data`; a write of zero bytes is an error (the destination can
/// take nothing more, and retrying would spin).
fn poll_write_some<W: AsyncWrite + Unpin>(cx: &mut Context<'_>, to: &mut W, data: &[u8]) -> Poll<io::Result<usize>> {
    match ready!(Pin::new(to).poll_write(cx, data)) {
        Ok(0) => Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
        other => Poll::Ready(other),
    }
}

/// Relays between `client` and `upstream` until both directions have ended (each side sent
/// its FIN and it was forwarded) or either socket fails. Returns the first error; dropping
/// the streams afterwards closes both connections.
pub async fn relay<C, U>(client: &mut C, upstream: &mut U) -> io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let mut to_upstream = Direction::new();
    let mut to_client = Direction::new();
    poll_fn(|cx| {
        // Both directions are tried on every wake-up: the task has one waker, so it cannot
        // tell which socket woke it, and an idle direction costs only a readiness check.
        let up = to_upstream.poll_pump(cx, client, upstream)?;
        let down = to_client.poll_pump(cx, upstream, client)?;
        if up.is_ready() && down.is_ready() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A relay on loopback: returns (client side, backend side, the relay's task). The relay
    /// runs between the accepted client connection and a connection it dials to the backend.
    async fn relayed() -> (TcpStream, TcpStream, tokio::task::JoinHandle<io::Result<()>>) {
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let front = TcpListener::bind(any).await.unwrap();
        let back = TcpListener::bind(any).await.unwrap();
        let back_addr = back.local_addr().unwrap();
        let front_addr = front.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut client, _) = front.accept().await?;
            let mut upstream = TcpStream::connect(back_addr).await?;
            relay(&mut client, &mut upstream).await
        });
        let client = TcpStream::connect(front_addr).await.unwrap();
        let (backend, _) = back.accept().await.unwrap();
        (client, backend, task)
    }

    /// Reads exactly `n` bytes, failing after a timeout instead of hanging the test.
    async fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf)).await.unwrap().unwrap();
        buf
    }

    async fn read_to_end(s: &mut TcpStream) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await.unwrap()?;
        Ok(buf)
    }

    #[tokio::test]
    async fn request_response_exchanges_both_ways() {
        let (mut client, mut backend, task) = relayed().await;
        for i in 0..100u32 {
            let request = format!("request {i}");
            client.write_all(request.as_bytes()).await.unwrap();
            assert_eq!(read_n(&mut backend, request.len()).await, request.as_bytes());
            let response = format!("response {i}");
            backend.write_all(response.as_bytes()).await.unwrap();
            assert_eq!(read_n(&mut client, response.len()).await, response.as_bytes());
        }
        drop(client);
        drop(backend);
        tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn bulk_data_larger_than_the_buffers_arrives_intact_both_ways_at_once() {
        let (client, backend, task) = relayed().await;
        let up: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let down: Vec<u8> = (0..2_000_000u32).map(|i| (i % 241) as u8).collect();
        // Both ends write and read concurrently, so the relay must move both directions
        // while either one is blocked on a full socket buffer.
        let (mut client_rd, mut client_wr) = client.into_split();
        let (mut backend_rd, mut backend_wr) = backend.into_split();
        let (up_sent, down_sent) = (up.clone(), down.clone());
        let client_writer = tokio::spawn(async move {
            client_wr.write_all(&up_sent).await.unwrap();
            client_wr.shutdown().await.unwrap();
        });
        let backend_writer = tokio::spawn(async move {
            backend_wr.write_all(&down_sent).await.unwrap();
            backend_wr.shutdown().await.unwrap();
        });
        let mut got_up = Vec::new();
        let mut got_down = Vec::new();
        let reads =
            async { tokio::try_join!(backend_rd.read_to_end(&mut got_up), client_rd.read_to_end(&mut got_down)) };
        tokio::time::timeout(Duration::from_secs(20), reads).await.unwrap().unwrap();
        client_writer.await.unwrap();
        backend_writer.await.unwrap();
        assert!(got_up == up, "client → backend bytes differ ({} of {} bytes)", got_up.len(), up.len());
        assert!(got_down == down, "backend → client bytes differ ({} of {} bytes)", got_down.len(), down.len());
        tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn bytes_a_destination_did_not_take_are_sent_later_in_order() {
        // In-memory pipes of a few bytes: almost every write is short or would block, so
        // nearly all data passes through the directions' own leftover buffers.
        let (client, mut relay_client_side) = tokio::io::duplex(7);
        let (mut relay_upstream_side, backend) = tokio::io::duplex(5);
        let task = tokio::spawn(async move { relay(&mut relay_client_side, &mut relay_upstream_side).await });
        let up: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let down: Vec<u8> = (0..80_000u32).map(|i| (i % 239) as u8).collect();
        let (mut client_rd, mut client_wr) = tokio::io::split(client);
        let (mut backend_rd, mut backend_wr) = tokio::io::split(backend);
        let (up_sent, down_sent) = (up.clone(), down.clone());
        let writers = async {
            let client_side = async {
                client_wr.write_all(&up_sent).await?;
                client_wr.shutdown().await
            };
            let backend_side = async {
                backend_wr.write_all(&down_sent).await?;
                backend_wr.shutdown().await
            };
            tokio::try_join!(client_side, backend_side)
        };
        let mut got_up = Vec::new();
        let mut got_down = Vec::new();
        let readers =
            async { tokio::try_join!(backend_rd.read_to_end(&mut got_up), client_rd.read_to_end(&mut got_down)) };
        let both = async { tokio::try_join!(writers, readers) };
        tokio::time::timeout(Duration::from_secs(20), both).await.unwrap().unwrap();
        assert!(got_up == up, "client → backend bytes differ ({} of {} bytes)", got_up.len(), up.len());
        assert!(got_down == down, "backend → client bytes differ ({} of {} bytes)", got_down.len(), down.len());
        tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_client_fin_reaches_the_backend_and_the_response_still_flows() {
        let (mut client, mut backend, task) = relayed().await;
        client.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        client.shutdown().await.unwrap();
        // The backend sees the request and then end of stream (the forwarded FIN)...
        assert_eq!(read_to_end(&mut backend).await.unwrap(), b"GET / HTTP/1.0\r\n\r\n");
        // ...and its answer, sent after that, still reaches the half-closed client.
        backend.write_all(b"HTTP/1.0 200 OK\r\n\r\nok").await.unwrap();
        backend.shutdown().await.unwrap();
        assert_eq!(read_to_end(&mut client).await.unwrap(), b"HTTP/1.0 200 OK\r\n\r\nok");
        tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_backend_fin_reaches_the_client_and_the_client_can_still_send() {
        let (mut client, mut backend, task) = relayed().await;
        backend.write_all(b"banner").await.unwrap();
        backend.shutdown().await.unwrap();
        assert_eq!(read_to_end(&mut client).await.unwrap(), b"banner");
        client.write_all(b"after the backend's FIN").await.unwrap();
        assert_eq!(read_n(&mut backend, 23).await, b"after the backend's FIN");
        // The relay is still running: only one direction has ended.
        assert!(!task.is_finished());
        client.shutdown().await.unwrap();
        assert_eq!(read_to_end(&mut backend).await.unwrap(), b"");
        tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_reset_backend_closes_the_client() {
        let (mut client, backend, task) = relayed().await;
        client.write_all(b"hello").await.unwrap();
        // Closing with a zero linger time makes the kernel send a RST instead of a FIN.
        socket2::SockRef::from(&backend).set_linger(Some(Duration::ZERO)).unwrap();
        drop(backend);
        let result = tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
        assert!(result.is_err(), "the relay reports the reset: {result:?}");
        // The relay dropped the client connection: the client sees end of stream or a reset,
        // never a hang.
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf)).await.unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
}
