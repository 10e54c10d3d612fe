//! `rollcall keygen`: a fresh random key line for a key file.

use crate::cli::KeygenArgs;
use anyhow::Context;
use rollcall_core::Key;

pub fn run(args: &KeygenArgs) -> anyhow::Result<()> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).context("reading the OS random source")?;
    println!("{}", Key::generate_line(args.id, &secret));
    Ok(())
}
