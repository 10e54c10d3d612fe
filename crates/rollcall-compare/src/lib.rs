//! Rollcall's SWIM + Lifeguard peers against the peer crates foca and chitchat, in one
//! simulated network on a virtual clock: detection time per (crash, observer), false
//! positives, and traffic per node (issue #5, part 3).
//!
//! It reuses rollcall-sim's network model (a [`rollcall_sim::net::Path`] per sender: loss,
//! latency) and judges every implementation by what it tells its application, never by its
//! internals. It does not model CPU time, pauses, partitions or restarts: only crashes,
//! loss and a few slow nodes (whose datagrams leave and arrive late).
//!
//! Start reading at [`run`], then `model.rs` (cells, plan, network), `sansio.rs` (the loop
//! driving rollcall and foca), `chitchat_node.rs` (chitchat on paused tokio time) and
//! `metrics.rs` (the judge). docs/PEER-COMPARISON.md has the results.

#![forbid(unsafe_code)]

mod chitchat_node;
mod foca_node;
pub mod metrics;
pub mod model;
mod rollcall;
mod sansio;
pub mod sweep;

pub use metrics::{Kind, Run, Summary, View, false_down_timelines, summarise};
pub use model::{Cell, Plan};

use core::time::Duration;

/// An implementation, with its settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    /// `rollcall_core::swim::Peer` with its defaults, or with the suspicion multiplier
    /// `alpha` instead of its default.
    Rollcall { alpha: Option<u32> },
    /// `rollcall_core::swim::Peer` with memberlist's LAN profile instead of rollcall's
    /// defaults (scenarios/peer-memberlist.toml): the second anchor, next to foca.
    Memberlist,
    /// foca 2 with `Config::new_lan(n)`.
    Foca,
    /// chitchat 0.13 with its default failure detector and a 1 s gossip round.
    Chitchat,
}

impl Impl {
    /// Parses `rollcall`, `rollcall-a<alpha>` (e.g. `rollcall-a1`), `memberlist`, `foca`,
    /// `chitchat`.
    pub fn parse(text: &str) -> Result<Impl, String> {
        match text {
            "rollcall" => Ok(Impl::Rollcall { alpha: None }),
            "memberlist" => Ok(Impl::Memberlist),
            "foca" => Ok(Impl::Foca),
            "chitchat" => Ok(Impl::Chitchat),
            other => other
                .strip_prefix("rollcall-a")
                .and_then(|alpha| alpha.parse().ok())
                .filter(|&alpha| alpha >= 1)
                .map(|alpha| Impl::Rollcall { alpha: Some(alpha) })
                .ok_or_else(|| {
                    format!("unknown implementation {other:?} (rollcall, rollcall-a<N>, memberlist, foca, chitchat)")
                }),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Impl::Rollcall { alpha: None } => "rollcall".into(),
            Impl::Rollcall { alpha: Some(alpha) } => format!("rollcall-a{alpha}"),
            Impl::Memberlist => "memberlist".into(),
            Impl::Foca => "foca".into(),
            Impl::Chitchat => "chitchat".into(),
        }
    }

    /// Whether a run is a pure function of the cell.
    pub fn deterministic(&self) -> bool {
        !matches!(self, Impl::Chitchat)
    }
}

/// Runs `implementation` over `cell`, reporting the virtual time reached now and then.
pub fn run(implementation: Impl, cell: &Cell, plan: &Plan, progress: &mut dyn FnMut(Duration)) -> Run {
    match implementation {
        Impl::Rollcall { .. } | Impl::Memberlist => {
            let config = match implementation {
                Impl::Rollcall { alpha } => rollcall::config(cell.nodes, alpha),
                _ => rollcall::memberlist_config(cell.nodes),
            };
            let ids = rollcall::ids(cell.nodes);
            sansio::run(cell, plan, |i| rollcall::boot(&config, &ids, cell.seed, i), progress)
        }
        Impl::Foca => {
            let config = foca_node::config(cell.nodes);
            sansio::run(cell, plan, |i| foca_node::boot(&config, cell.nodes, cell.seed, i), progress)
        }
        Impl::Chitchat => chitchat_node::run(cell, plan, progress),
    }
}

/// Runs and judges one (implementation, cell).
pub fn compare(implementation: Impl, cell: &Cell, progress: &mut dyn FnMut(Duration)) -> Summary {
    let plan = Plan::new(cell);
    let run = run(implementation, cell, &plan, progress);
    summarise(&plan, cell.nodes, &run)
}

/// Runs one (implementation, cell) and traces its false downs: each episode's timeline of
/// views (see [`false_down_timelines`]). The run is the one [`compare`] judges.
pub fn trace(implementation: Impl, cell: &Cell) -> Vec<String> {
    let plan = Plan::new(cell);
    let run = run(implementation, cell, &plan, &mut |_| {});
    false_down_timelines(&plan, &run)
}
