//! Rollcall's peer mode, `rollcall_core::swim::Peer`, unchanged, as a [`Machine`].

use crate::metrics::{Kind, View};
use crate::model::{address, index_of};
use crate::sansio::Machine;
use core::time::Duration;
use rollcall_core::swim::{MemberId, MemberState, Peer, SwimConfig, SwimEvent};
use rollcall_core::{Instant, KeyRing};
use rollcall_sim::Rng;
use rollcall_sim::peer::PeerSettings;
use std::sync::Arc;

/// rollcall-sim's key: real HMAC-SHA256 over every datagram, as in production.
const KEY_FILE: &str = "1:73696d756c61746f722d6b65792d6e6f742d666f722d70726f64756374696f6e\n";

/// The SWIM settings of a row: rollcall's defaults (a 1 s period), with the suspicion
/// multiplier `alpha` if one is given (the default is 1; memberlist's is 4).
pub fn config(nodes: u32, alpha: Option<u32>) -> SwimConfig {
    let defaults = SwimConfig::default();
    let swim = SwimConfig { suspicion_mult: alpha.unwrap_or(defaults.suspicion_mult), ..defaults };
    PeerSettings { swim, ..PeerSettings::default() }.swim_config(Duration::from_secs(1), nodes)
}

/// memberlist's `DefaultLANConfig` on rollcall's peer, as in scenarios/peer-memberlist.toml:
/// α = 4, β = 6, two confirmations, gossip rounds every 200 ms to 3 members.
pub fn memberlist_config(nodes: u32) -> SwimConfig {
    let swim = SwimConfig {
        suspicion_mult: 4,
        suspicion_max_mult: 6,
        suspicion_confirmations: 2,
        gossip_interval: Some(Duration::from_millis(200)),
        gossip_fanout: 3,
        ..SwimConfig::default()
    };
    PeerSettings { swim, ..PeerSettings::default() }.swim_config(Duration::from_secs(1), nodes)
}

/// Builds node `index` of `nodes`, warm: it knows every other member at incarnation 0.
pub fn boot(config: &SwimConfig, ids: &[Arc<MemberId>], seed: u64, index: u32) -> RollcallNode {
    let keys = KeyRing::parse(KEY_FILE).expect("the simulator's key file is valid");
    let id = &ids[index as usize];
    let seed = Rng::new(seed ^ u64::from(index).wrapping_mul(0x9e37_79b9_7f4a_7c15)).next_u64();
    let mut peer = Peer::new(config.clone(), &id.name, id.addr, keys, 0, seed, Instant::ZERO)
        .expect("the comparison's settings are valid");
    peer.add_known(ids.iter().filter(|other| other.name != id.name).map(|other| (other.clone(), 0)));
    RollcallNode { peer, index }
}

/// Every node's identity: `n{index}` at its simulated address.
pub fn ids(nodes: u32) -> Vec<Arc<MemberId>> {
    (0..nodes).map(|i| MemberId::new(&format!("n{i}"), address(i))).collect()
}

pub struct RollcallNode {
    peer: Peer,
    index: u32,
}

impl Machine for RollcallNode {
    fn handle_datagram(&mut self, now: Instant, from: u32, bytes: &[u8]) {
        self.peer.handle_datagram(now, address(from), bytes);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.peer.handle_timeout(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.peer.poll_timeout()
    }

    fn drain(&mut self, sends: &mut Vec<(u32, Vec<u8>)>, views: &mut Vec<View>) {
        while let Some(rollcall_core::Transmit { to, payload: bytes }) = self.peer.poll_transmit() {
            if let Some(to) = index_of(to) {
                sends.push((to, bytes));
            }
        }
        while let Some(event) = self.peer.poll_event() {
            let SwimEvent::Member { member, to, incarnation, at, .. } = event else { continue };
            let Some(subject) = index_of(member.addr) else { continue };
            let kind = match to {
                MemberState::Up => Kind::Up,
                MemberState::Suspect => Kind::Suspect,
                MemberState::Down | MemberState::Left => Kind::Down,
            };
            views.push(View { observer: self.index, subject, kind, episode: u64::from(incarnation), at });
        }
    }
}
