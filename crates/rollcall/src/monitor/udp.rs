//! The monitor's UDP receive path: binding with a receive buffer sized for synchronised
//! bursts, and batched reads (`recvmmsg`) that hand each datagram to the core.
//!
//! The socket stays an ordinary tokio `UdpSocket` owned by the owner task, so the same socket
//! can also send (probes); this module only reads from it, and only when the owner asks.
//! With `monitor.receive_threads` above 1, `threads.rs` reads instead: several SO_REUSEPORT
//! sockets, each with a thread that authenticates and decodes before the owner sees anything
//! (docs/BENCHMARKS.md, session 9).

mod threads;

pub use threads::{ReceiveThreads, ThreadStats, total};

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use rollcall_core::monitor::VerifiedBatch;
use rollcall_core::{Instant, KeyRing};
use std::cell::RefCell;
use std::io::IoSliceMut;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// Largest datagram read; longer ones are truncated by the kernel and then refused by the
/// codec as malformed, which is what they are.
const DATAGRAM_BUFFER: usize = rollcall_core::wire::MAX_DATAGRAM + 1;
/// Datagrams read by one `recvmmsg` call.
pub const BATCH: usize = 64;

/// Binds the heartbeat socket and asks for a receive buffer of `recv_buffer_bytes`; with
/// `reuse_port`, other sockets may bind the same address (the receive threads' sockets).
///
/// The kernel caps SO_RCVBUF at `net.core.rmem_max`; a privileged monitor (CAP_NET_ADMIN)
/// goes past the cap with SO_RCVBUFFORCE. What was granted is logged, with the sysctl to run
/// when it falls short, and exported as `rollcall_udp_receive_buffer_bytes`.
pub fn bind(addr: SocketAddr, recv_buffer_bytes: usize, reuse_port: bool) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if reuse_port {
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReusePort, &true)?;
    }
    if let Err(error) = socket.set_recv_buffer_size(recv_buffer_bytes) {
        tracing::warn!(%error, "could not set the UDP receive buffer");
    }
    // Linux reports twice the requested size (it counts its own bookkeeping), so compare
    // against the doubled request.
    let granted = socket.recv_buffer_size().unwrap_or(0);
    if granted < recv_buffer_bytes.saturating_mul(2) {
        let forced = i32::try_from(recv_buffer_bytes).unwrap_or(i32::MAX) as usize;
        if nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBufForce, &forced).is_ok() {
            tracing::debug!("raised the UDP receive buffer past net.core.rmem_max with SO_RCVBUFFORCE");
        }
    }
    let granted = socket.recv_buffer_size().unwrap_or(0);
    if granted < recv_buffer_bytes {
        tracing::warn!(
            requested = recv_buffer_bytes,
            granted,
            "the kernel granted a smaller UDP receive buffer than monitor.recv_buffer_bytes: \
             bursts of heartbeats may be dropped; raise the cap with \
             `sysctl -w net.core.rmem_max={recv_buffer_bytes}` (or run with CAP_NET_ADMIN)"
        );
    } else {
        tracing::info!(requested = recv_buffer_bytes, granted, "UDP receive buffer");
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Counters of the receive path, for `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReceiveStats {
    /// Datagrams read from the socket (before any check).
    pub datagrams: u64,
    /// `recvmmsg` calls that returned at least one datagram.
    pub batches: u64,
    /// Read errors other than "nothing queued".
    pub errors: u64,
    /// Datagrams the kernel dropped on this socket because its buffer was full (from
    /// /proc/net/udp; `None` where that is unreadable).
    pub kernel_drops: Option<u64>,
}

/// Batched reads from the heartbeat socket. Its buffers are allocated once; a read allocates
/// only the small arrays of headers and slices `recvmmsg` fills (nix's headers hold raw
/// pointers, so they cannot live in a `Send` task across an await).
///
/// Each read is authenticated into a [`VerifiedBatch`] (the core's one check) and handed
/// over whole, so that the core can look the batch's ids up together
/// ([`rollcall_core::Monitor::handle_verified`]).
pub struct Receiver {
    buffers: Vec<[u8; DATAGRAM_BUFFER]>,
    ipv6: bool,
    ring: KeyRing,
    batch: VerifiedBatch,
    stats: ReceiveStats,
}

impl Receiver {
    /// A receiver for `socket`'s reads.
    pub fn new(ring: KeyRing, socket: &tokio::net::UdpSocket) -> Receiver {
        Receiver {
            buffers: read_buffers(),
            ipv6: is_ipv6(socket),
            ring,
            batch: VerifiedBatch::new(),
            stats: ReceiveStats::default(),
        }
    }

    /// Reads what is queued on `socket`, up to about `max` datagrams, without waiting, and
    /// hands each read, authenticated, to `handle` with the instant it was read (`now()` is
    /// called once per read: every datagram of it was already queued then). Returns how many
    /// datagrams were read, refused ones included.
    pub fn drain(
        &mut self,
        socket: &tokio::net::UdpSocket,
        max: usize,
        now: impl Fn() -> Instant,
        mut handle: impl FnMut(Instant, &VerifiedBatch),
    ) -> usize {
        let mut read = 0;
        while read < max {
            let result = socket.try_io(tokio::io::Interest::READABLE, || {
                self.read_batch(socket.as_raw_fd(), &now, &mut handle).map_err(std::io::Error::from)
            });
            match result {
                Ok(0) => break,
                Ok(count) => {
                    read += count;
                    self.stats.datagrams += count as u64;
                    self.stats.batches += 1;
                    if count < BATCH {
                        // The queue is empty (or nearly): the next call would most likely
                        // come back with nothing, at the price of a system call.
                        break;
                    }
                }
                // Nothing queued, or a signal: the owner comes back on the next readiness.
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    break;
                }
                Err(error) => {
                    // ICMP errors from an earlier send surface here on some kernels; they say
                    // nothing about what is queued, so count them and stop this round.
                    self.stats.errors += 1;
                    tracing::debug!(%error, "UDP receive failed");
                    break;
                }
            }
        }
        read
    }

    /// The counters so far, with the kernel's drop count for `socket`.
    pub fn stats(&self, socket: &tokio::net::UdpSocket) -> ReceiveStats {
        ReceiveStats { kernel_drops: kernel_drops(socket.as_raw_fd()), ..self.stats }
    }

    fn read_batch(
        &mut self,
        fd: std::os::fd::RawFd,
        now: &impl Fn() -> Instant,
        handle: &mut impl FnMut(Instant, &VerifiedBatch),
    ) -> nix::Result<usize> {
        self.batch.clear();
        let count = read_verified(fd, self.ipv6, &mut self.buffers, &self.ring, &mut self.batch)?;
        if count > 0 {
            // Stamped once per read, after it: every datagram of it was queued by then.
            handle(now(), &self.batch);
        }
        Ok(count)
    }
}

thread_local! {
    /// `recvmmsg`'s headers, made once per thread: one set for IPv4 sockets, one for IPv6.
    /// nix's headers hold raw pointers (not `Send`), so the owner's task cannot keep them
    /// across an await; made per read, they were 12 KiB allocated and zeroed for a read of
    /// about 15 datagrams under load.
    ///
    /// The kernel writes each address's length back into its header, and the next read
    /// offers only that much room for the address (nix sets it once). Every address a socket
    /// reads has its family's length (a `sockaddr_in` on an IPv4 socket, a `sockaddr_in6` on
    /// an IPv6 one, IPv4 senders included as mapped addresses), so a set used by sockets of
    /// one family never cuts one; a set shared by both would cut IPv6 senders after an IPv4
    /// read (test `reused_headers_keep_every_sender_whole`).
    static HEADERS: RefCell<[MultiHeaders<SockaddrStorage>; 2]> =
        RefCell::new([MultiHeaders::preallocate(BATCH, None), MultiHeaders::preallocate(BATCH, None)]);
}

/// Buffers for [`read_verified`]: one per datagram of a read.
fn read_buffers() -> Vec<[u8; DATAGRAM_BUFFER]> {
    vec![[0u8; DATAGRAM_BUFFER]; BATCH]
}

/// Whether `socket` is an IPv6 one, for [`read_verified`].
fn is_ipv6(socket: &impl AsRawFd) -> bool {
    nix::sys::socket::getsockname::<SockaddrStorage>(socket.as_raw_fd())
        .is_ok_and(|local| local.as_sockaddr_in6().is_some())
}

/// One `recvmmsg` on `fd` (an IPv6 socket if `ipv6`) without waiting: up to [`BATCH`] queued
/// datagrams, each authenticated and added to `batch` (a refusal is counted in it). What the
/// batch already holds stays: a receive thread carries a dropped batch's refusal counts in
/// the next one. Returns how many datagrams were read, refused ones included.
fn read_verified(
    fd: std::os::fd::RawFd,
    ipv6: bool,
    buffers: &mut [[u8; DATAGRAM_BUFFER]],
    ring: &KeyRing,
    batch: &mut VerifiedBatch,
) -> nix::Result<usize> {
    HEADERS.with_borrow_mut(|sets| {
        let headers = &mut sets[usize::from(ipv6)];
        let mut free = buffers.iter_mut();
        let mut slices: [[IoSliceMut<'_>; 1]; BATCH] = std::array::from_fn(|_| {
            [IoSliceMut::new(&mut free.next().expect("one buffer per datagram")[..])]
        });
        let results = recvmmsg(fd, headers, slices.iter_mut(), MsgFlags::MSG_DONTWAIT, None)?;
        let mut count = 0;
        for message in results {
            count += 1;
            let Some(from) = message.address.as_ref().and_then(socket_addr) else { continue };
            let bytes = message.iovs().next().unwrap_or(&[]);
            // A refusal is counted in the batch and reaches the core's stats with it.
            let _ = batch.push(from, bytes, ring);
        }
        Ok(count)
    })
}

fn socket_addr(storage: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = storage.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    storage.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// The kernel's count of datagrams dropped on the socket `fd` (the `drops` column of
/// /proc/net/udp and /proc/net/udp6, found by the socket's inode).
pub fn kernel_drops(fd: std::os::fd::RawFd) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let inode = link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.to_string();
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .find_map(|table| drops_by_inode(&std::fs::read_to_string(table).ok()?, &inode))
}

/// Finds the row of `inode` in the text of /proc/net/udp and returns its drop count (the
/// last column; the inode is the tenth).
pub fn drops_by_inode(table: &str, inode: &str) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(9) == Some(&inode)).then(|| fields.last()?.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollcall_core::wire::{Kind, Outgoing, encode};
    use std::time::Duration;

    /// Reads `socket` (an IPv6 one if `ipv6`) until `expected` heartbeats came, bounded in
    /// time, and returns each one's sender and node id.
    fn read_senders(
        socket: &UdpSocket,
        ipv6: bool,
        ring: &KeyRing,
        expected: usize,
    ) -> Vec<(SocketAddr, String)> {
        let (mut buffers, mut batch) = (read_buffers(), VerifiedBatch::new());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut senders = Vec::new();
        while senders.len() < expected && std::time::Instant::now() < deadline {
            match read_verified(socket.as_raw_fd(), ipv6, &mut buffers, ring, &mut batch) {
                Ok(_) => {
                    senders.extend(batch.messages().map(|(from, message)| (from, message.node.to_string())))
                }
                Err(nix::errno::Errno::EAGAIN) => std::thread::sleep(Duration::from_millis(1)),
                Err(error) => panic!("read failed: {error}"),
            }
        }
        senders
    }

    fn send(from: &UdpSocket, to: SocketAddr, node: &str, ring: &KeyRing) {
        let message = Outgoing {
            kind: Kind::Heartbeat,
            node,
            generation: 1,
            sequence: 1,
            interval_ms: 1000,
            labels: &[],
            follows_advice: false,
        };
        let mut bytes = Vec::new();
        encode(&message, ring, &mut bytes).expect("a valid heartbeat");
        from.send_to(&bytes, to).expect("loopback send");
    }

    /// A read adds to the batch: refusals it already counts (a dropped batch's, carried by a
    /// receive thread) stay, next to the read's own.
    #[test]
    fn a_read_keeps_what_the_batch_already_holds() {
        let ring = KeyRing::parse(&rollcall_core::Key::generate_line(1, &[7; 32])).expect("a valid key");
        let socket = bind("127.0.0.1:0".parse().unwrap(), 1 << 20, false).expect("bind");
        socket.set_nonblocking(true).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = VerifiedBatch::new();
        let carried = rollcall_core::monitor::Rejection::Decode(rollcall_core::wire::DecodeError::BadTag);
        batch.add_rejections([(carried, 3)]);
        send(&sender, socket.local_addr().unwrap(), "kept", &ring);
        sender.send_to(b"not a heartbeat", socket.local_addr().unwrap()).unwrap();
        let mut buffers = read_buffers();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut read = 0;
        while read < 2 && std::time::Instant::now() < deadline {
            match read_verified(socket.as_raw_fd(), false, &mut buffers, &ring, &mut batch) {
                Ok(count) => read += count,
                Err(nix::errno::Errno::EAGAIN) => std::thread::sleep(Duration::from_millis(1)),
                Err(error) => panic!("read failed: {error}"),
            }
        }
        assert_eq!(read, 2, "both datagrams read");
        assert_eq!(batch.len(), 1, "the heartbeat verified");
        assert_eq!(batch.rejected(), 4, "the three carried refusals and the garbage");
        assert_eq!(batch.take_rejections().get(&carried), Some(&3), "the carried count kept its reason");
    }

    /// The headers of one thread are reused from read to read and from socket to socket:
    /// reads of an IPv4 socket, then of a dual-stack IPv6 one (IPv4 and IPv6 senders), in
    /// turn, must each give every sender's whole address.
    #[test]
    fn reused_headers_keep_every_sender_whole() {
        let ring = KeyRing::parse(&rollcall_core::Key::generate_line(1, &[7; 32])).expect("a valid key");
        let plain = bind("127.0.0.1:0".parse().unwrap(), 1 << 20, false).expect("bind IPv4");
        let dual = bind("[::]:0".parse().unwrap(), 1 << 20, false).expect("bind IPv6");
        for socket in [&plain, &dual] {
            socket.set_nonblocking(true).unwrap();
        }
        let (plain_port, dual_port) = (plain.local_addr().unwrap().port(), dual.local_addr().unwrap().port());
        assert!(!is_ipv6(&plain) && is_ipv6(&dual));
        let v4 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let v6 = UdpSocket::bind("[::1]:0").unwrap();
        let mapped = |addr: SocketAddr| match addr {
            SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
            v6 => v6,
        };
        for round in 0..10 {
            send(&v4, SocketAddr::from(([127, 0, 0, 1], plain_port)), &format!("plain-{round}"), &ring);
            assert_eq!(
                read_senders(&plain, false, &ring, 1),
                [(v4.local_addr().unwrap(), format!("plain-{round}"))],
                "an IPv4 socket's read, round {round}"
            );
            send(
                &v6,
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, dual_port)),
                &format!("six-{round}"),
                &ring,
            );
            send(&v4, SocketAddr::from(([127, 0, 0, 1], dual_port)), &format!("four-{round}"), &ring);
            let mut heard = read_senders(&dual, true, &ring, 2);
            heard.sort_by(|a, b| a.1.cmp(&b.1));
            assert_eq!(
                heard,
                [
                    (mapped(v4.local_addr().unwrap()), format!("four-{round}")),
                    (v6.local_addr().unwrap(), format!("six-{round}")),
                ],
                "a dual-stack socket's read, round {round}"
            );
        }
    }
}
