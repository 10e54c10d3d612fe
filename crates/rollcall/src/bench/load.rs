//! The load generator (a fleet of impersonated nodes sending authenticated heartbeats with
//! `sendmmsg` from several sockets) and the raw receiver (counts datagrams with `recvmmsg`,
//! decodes nothing): the same generator against both gives the same-run baseline.

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, sendmmsg};
use rollcall_core::KeyRing;
use rollcall_core::wire::{Kind, Outgoing, encode};
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Datagrams per `sendmmsg` call.
const SEND_BATCH: usize = 64;
/// Datagrams per `recvmmsg` call of the raw receiver.
const RECV_BATCH: usize = 64;

/// One impersonated node: its id, and the sequence of its last heartbeat.
struct Node {
    id: String,
    sequence: u64,
    stopped: bool,
    /// Not yet registered (see [`Fleet::activate`]).
    idle: bool,
}

/// How a phase paces its sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// Every running node sends once per interval, spread evenly over it.
    Interval(Duration),
    /// As fast as the sockets take them, round-robin over the running nodes.
    Saturate,
    /// Every running node once, as fast as the sockets take them: agents started together.
    Once,
}

/// What a phase sent.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sent {
    pub datagrams: u64,
    pub errors: u64,
    pub elapsed: Duration,
}

/// The nodes one sending thread owns, and where its round-robin stands (kept across
/// phases, so that every node keeps its own rhythm from one phase to the next).
struct Shard {
    nodes: Vec<Node>,
    cursor: usize,
    /// Heartbeats signed ahead (see [`Fleet::presign`]), sent by the next saturated run.
    pool: Option<Pool>,
}

/// Signed datagrams, one after another in one buffer, sent in order.
struct Pool {
    bytes: Vec<u8>,
    /// Where each datagram ends in `bytes`.
    ends: Vec<usize>,
}

/// N nodes, split into one shard per sending socket (and thread).
pub struct Fleet {
    ring: KeyRing,
    generation: u64,
    interval_ms: u32,
    shards: Vec<Shard>,
}

impl Fleet {
    /// `nodes` nodes named `bench-0000000`... in `senders` shards; `interval` is what each
    /// node declares.
    pub fn new(ring: KeyRing, nodes: usize, senders: usize, interval: Duration, generation: u64) -> Fleet {
        let senders = senders.clamp(1, nodes.max(1));
        let mut shards: Vec<Shard> = (0..senders)
            .map(|_| Shard { nodes: Vec::with_capacity(nodes / senders + 1), cursor: 0, pool: None })
            .collect();
        for index in 0..nodes {
            let node = Node { id: node_id(index), sequence: 0, stopped: false, idle: false };
            shards[index % senders].nodes.push(node);
        }
        let interval_ms = u32::try_from(interval.as_millis()).unwrap_or(u32::MAX).max(1);
        Fleet { ring, generation, interval_ms, shards }
    }

    /// Signs about `datagrams` heartbeats ahead, the next ones of every running node in
    /// round-robin order (each node's sequences ascending), so that the next saturated run
    /// sends them with `sendmmsg` and does nothing else; it ends when they are sent (or at
    /// its duration; the sequences it did not send are a gap, which the monitor counts as
    /// missed). One thread per shard; not part of any measured time.
    pub fn presign(&mut self, datagrams: usize) -> anyhow::Result<()> {
        let shards = self.shards.len();
        let (ring, generation, interval_ms) = (&self.ring, self.generation, self.interval_ms);
        std::thread::scope(|scope| {
            for shard in &mut self.shards {
                scope.spawn(move || shard.presign(datagrams / shards, ring, generation, interval_ms));
            }
        });
        if self.shards.iter().any(|shard| shard.pool.is_none()) {
            anyhow::bail!("the generator could not sign its heartbeats ahead");
        }
        Ok(())
    }

    /// Lets only the first `count` nodes send (by index); the others stay silent until a
    /// later call lets them in. Used to ramp registrations up at a chosen rate.
    pub fn activate(&mut self, count: usize) {
        let senders = self.shards.len();
        for (s, shard) in self.shards.iter_mut().enumerate() {
            for (i, node) in shard.nodes.iter_mut().enumerate() {
                node.idle = i * senders + s >= count;
            }
        }
    }

    /// Stops `count` nodes spread evenly over the fleet (they send nothing from now on);
    /// returns their ids.
    pub fn stop(&mut self, count: usize) -> Vec<String> {
        let total: usize = self.shards.iter().map(|shard| shard.nodes.len()).sum();
        let count = count.min(total);
        let mut stopped = Vec::with_capacity(count);
        if count == 0 {
            return stopped;
        }
        let step = total / count;
        let senders = self.shards.len();
        for k in 0..count {
            let index = k * step;
            let node = &mut self.shards[index % senders].nodes[index / senders];
            node.stopped = true;
            stopped.push(node.id.clone());
        }
        stopped
    }

    /// Lets every stopped node send again, its sequence going on where it stopped (a node
    /// whose network came back); returns how many.
    pub fn resume(&mut self) -> usize {
        let mut resumed = 0;
        for node in self.shards.iter_mut().flat_map(|shard| shard.nodes.iter_mut()) {
            resumed += usize::from(node.stopped);
            node.stopped = false;
        }
        resumed
    }

    /// Sends to `target` for `duration` at `pace`, one thread per shard; `progress` counts
    /// datagrams sent as they go.
    pub fn run(&mut self, target: SocketAddr, pace: Pace, duration: Duration, progress: &AtomicU64) -> Sent {
        self.run_until(&[target], pace, duration, progress, &AtomicBool::new(false))
    }

    /// Like [`Fleet::run`], to every one of `targets` (each heartbeat goes to each, as an
    /// agent with several `--monitor`s sends it), and ends early when `stop` is set (checked
    /// between batches), so that the fleet can beat without a gap while another thread
    /// watches the monitor or waits for a command.
    pub fn run_until(
        &mut self,
        targets: &[SocketAddr],
        pace: Pace,
        duration: Duration,
        progress: &AtomicU64,
        stop: &AtomicBool,
    ) -> Sent {
        let started = Instant::now();
        let deadline = started + duration;
        let (ring, generation, interval_ms) = (&self.ring, self.generation, self.interval_ms);
        let results: Vec<Sent> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .shards
                .iter_mut()
                .map(|shard| {
                    let sender = ShardSender { ring, generation, interval_ms, targets };
                    scope.spawn(move || sender.run(shard, pace, deadline, progress, stop))
                })
                .collect();
            handles.into_iter().map(|handle| handle.join().expect("a sender thread panicked")).collect()
        });
        let mut total = Sent { elapsed: started.elapsed(), ..Sent::default() };
        for sent in results {
            total.datagrams += sent.datagrams;
            total.errors += sent.errors;
        }
        total
    }
}

impl Shard {
    fn presign(&mut self, datagrams: usize, ring: &KeyRing, generation: u64, interval_ms: u32) {
        let running: Vec<usize> =
            (0..self.nodes.len()).filter(|&i| !self.nodes[i].stopped && !self.nodes[i].idle).collect();
        let rounds = datagrams.div_ceil(running.len().max(1)).max(1);
        let count = rounds * running.len();
        let mut pool = Pool { bytes: Vec::with_capacity(count * 80), ends: Vec::with_capacity(count) };
        let mut datagram = Vec::with_capacity(128);
        for _ in 0..rounds {
            for &index in &running {
                let node = &mut self.nodes[index];
                node.sequence += 1;
                let message = Outgoing {
                    follows_advice: false,
                    kind: Kind::Heartbeat,
                    node: &node.id,
                    generation,
                    sequence: node.sequence,
                    interval_ms,
                    labels: &[],
                };
                if encode(&message, ring, &mut datagram).is_err() {
                    return;
                }
                pool.bytes.extend_from_slice(&datagram);
                pool.ends.push(pool.bytes.len());
            }
        }
        self.pool = Some(pool);
    }
}

/// The id of the node at `index`: fixed width, so every datagram has the same size.
pub fn node_id(index: usize) -> String {
    format!("bench-{index:07}")
}

struct ShardSender<'a> {
    ring: &'a KeyRing,
    generation: u64,
    interval_ms: u32,
    targets: &'a [SocketAddr],
}

impl ShardSender<'_> {
    fn run(
        &self,
        shard: &mut Shard,
        pace: Pace,
        deadline: Instant,
        progress: &AtomicU64,
        stop: &AtomicBool,
    ) -> Sent {
        let mut sent = Sent::default();
        let Ok(socket) = UdpSocket::bind("127.0.0.1:0") else {
            sent.errors += 1;
            return sent;
        };
        let _ = socket.set_write_timeout(Some(Duration::from_millis(100)));
        let addresses: Vec<Option<SockaddrIn>> = self
            .targets
            .iter()
            .filter_map(|target| match target {
                SocketAddr::V4(v4) => Some(Some(SockaddrIn::from(*v4))),
                SocketAddr::V6(_) => None,
            })
            .collect();
        if addresses.is_empty() || addresses.len() != self.targets.len() {
            sent.errors += 1;
            return sent;
        }
        let running = shard.nodes.iter().filter(|node| !node.stopped && !node.idle).count();
        if running == 0 {
            return sent;
        }
        if pace == Pace::Saturate
            && let Some(pool) = shard.pool.take()
        {
            self.send_pool(&socket, &addresses, &pool, (deadline, stop), progress, &mut sent);
            return sent;
        }
        let per_second = match pace {
            Pace::Interval(interval) => running as f64 / interval.as_secs_f64(),
            Pace::Saturate | Pace::Once => f64::INFINITY,
        };
        let limit = if pace == Pace::Once { running as u64 } else { u64::MAX };
        let mut buffers: Vec<Vec<u8>> = (0..SEND_BATCH).map(|_| Vec::with_capacity(128)).collect();
        let started = Instant::now();
        // Heartbeats made (each sent to every target): what the pace counts.
        let mut beats = 0u64;
        // Bounded in time by `deadline` (or `stop`), and in count by the pace.
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            let due = ((started.elapsed().as_secs_f64() * per_second) as u64).min(limit);
            if beats >= limit {
                break;
            }
            let wanted = due.saturating_sub(beats).min(SEND_BATCH as u64) as usize;
            if wanted == 0 {
                std::thread::sleep(Duration::from_micros(500));
                continue;
            }
            let mut filled = 0;
            while filled < wanted {
                let length = shard.nodes.len();
                let node = &mut shard.nodes[shard.cursor];
                shard.cursor = (shard.cursor + 1) % length;
                if node.stopped || node.idle {
                    continue;
                }
                node.sequence += 1;
                let message = Outgoing {
                    follows_advice: false,
                    kind: Kind::Heartbeat,
                    node: &node.id,
                    generation: self.generation,
                    sequence: node.sequence,
                    interval_ms: self.interval_ms,
                    labels: &[],
                };
                if encode(&message, self.ring, &mut buffers[filled]).is_err() {
                    sent.errors += 1;
                    continue;
                }
                filled += 1;
            }
            beats += filled as u64;
            let batch: Vec<&[u8]> = buffers[..filled].iter().map(Vec::as_slice).collect();
            for &address in &addresses {
                match send_batch(&socket, &batch, address) {
                    Ok(count) => {
                        sent.datagrams += count as u64;
                        progress.fetch_add(count as u64, Ordering::Relaxed);
                        // What the kernel refused is lost, as it would be from real agents;
                        // the sequences already moved on, so nothing is resent.
                        sent.errors += (filled - count) as u64;
                    }
                    Err(_) => sent.errors += filled as u64,
                }
            }
        }
        sent
    }
}

impl ShardSender<'_> {
    /// Sends a pool of signed datagrams to every target, as fast as the socket takes them.
    fn send_pool(
        &self,
        socket: &UdpSocket,
        addresses: &[Option<SockaddrIn>],
        pool: &Pool,
        (deadline, stop): (Instant, &AtomicBool),
        progress: &AtomicU64,
        sent: &mut Sent,
    ) {
        let mut start = 0;
        // Bounded by the pool's length, and in time by `deadline` (or `stop`).
        for ends in pool.ends.chunks(SEND_BATCH) {
            if Instant::now() >= deadline || stop.load(Ordering::Relaxed) {
                break;
            }
            let batch: Vec<&[u8]> = ends
                .iter()
                .map(|&end| {
                    let datagram = &pool.bytes[start..end];
                    start = end;
                    datagram
                })
                .collect();
            for &address in addresses {
                match send_batch(socket, &batch, address) {
                    Ok(count) => {
                        sent.datagrams += count as u64;
                        progress.fetch_add(count as u64, Ordering::Relaxed);
                        sent.errors += (batch.len() - count) as u64;
                    }
                    Err(_) => sent.errors += batch.len() as u64,
                }
            }
        }
    }
}

fn send_batch(socket: &UdpSocket, buffers: &[&[u8]], address: Option<SockaddrIn>) -> nix::Result<usize> {
    let slices: Vec<[IoSlice<'_>; 1]> = buffers.iter().map(|buffer| [IoSlice::new(buffer)]).collect();
    let addresses = vec![address; buffers.len()];
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(buffers.len(), None);
    let results =
        sendmmsg(socket.as_raw_fd(), &mut headers, slices.iter(), addresses, [], MsgFlags::empty())?;
    Ok(results.count())
}

/// A receiver that only counts datagrams: what the machine can deliver to one socket with
/// batched reads at this moment, the baseline every throughput figure is divided by.
pub struct RawReceiver {
    pub addr: SocketAddr,
    /// The receiving thread's id, whose CPU time is the kernel's receive path: the floor the
    /// monitor's CPU per heartbeat is compared with.
    tid: i32,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    drops_port: u16,
}

impl RawReceiver {
    /// Binds `127.0.0.1:0` with the monitor's receive buffer size and starts counting.
    pub fn start(recv_buffer_bytes: usize) -> anyhow::Result<RawReceiver> {
        let socket = crate::monitor::udp::bind("127.0.0.1:0".parse()?, recv_buffer_bytes, false)?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let addr = socket.local_addr()?;
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopping) = (received.clone(), stop.clone());
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name("bench-raw-receiver".into()).spawn(move || {
            let _ = tid_tx.send(nix::unistd::gettid().as_raw());
            let mut buffers = vec![[0u8; 2048]; RECV_BATCH];
            // Bounded by the stop flag, checked at least every read timeout.
            while !stopping.load(Ordering::Relaxed) {
                let mut slices: Vec<[IoSliceMut<'_>; 1]> =
                    buffers.iter_mut().map(|buffer| [IoSliceMut::new(&mut buffer[..])]).collect();
                let mut headers = MultiHeaders::<SockaddrIn>::preallocate(RECV_BATCH, None);
                let flags = MsgFlags::MSG_WAITFORONE;
                if let Ok(results) =
                    recvmmsg(socket.as_raw_fd(), &mut headers, slices.iter_mut(), flags, None)
                {
                    count.fetch_add(results.count() as u64, Ordering::Relaxed);
                }
            }
        })?;
        let tid = tid_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| anyhow::anyhow!("the raw receiver's thread did not start"))?;
        Ok(RawReceiver { addr, tid, received, stop, thread: Some(thread), drops_port: addr.port() })
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// CPU seconds the receiving thread has used so far (user + system: nearly all of it
    /// the kernel's `recvmmsg` path, since the thread only counts what it reads).
    pub fn cpu_seconds(&self) -> Option<f64> {
        super::probe::thread_cpu_seconds(self.tid)
    }

    /// The kernel's drop count for this socket.
    pub fn kernel_drops(&self) -> Option<u64> {
        super::probe::udp_drops_by_port(self.drops_port)
    }
}

impl Drop for RawReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
