//! Leases and the fencing token counter.
//!
//! The counter (`lease_tokens`, one row) holds the highest token ever granted; a grant's
//! lease row and the counter are written in the same transaction, and the monitor answers a
//! grant only once that transaction is committed, so a token that reached a client is never
//! handed out again, whatever crashes. The counter never goes down (`max`), even if lease
//! rows are deleted.

use super::{Store, StoreError, Write};
use rusqlite::{Transaction, params};

/// A held lease, as stored. Times are wall-clock milliseconds; the monitor gives every
/// restored lease a full TTL from its restart, so no expiry is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    pub name: String,
    pub node: String,
    pub holder: String,
    pub token: u64,
    pub ttl_ms: u64,
    pub since_ms: i64,
}

pub(crate) fn write(tx: &Transaction<'_>, write: &Write) -> Result<(), StoreError> {
    match write {
        Write::Lease(lease) => {
            tx.prepare_cached(
                "INSERT INTO leases (name, node, holder, token, ttl_ms, since_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (name) DO UPDATE SET node = ?2, holder = ?3, token = ?4, ttl_ms = ?5, since_ms = ?6",
            )?
            .execute(params![
                lease.name,
                lease.node,
                lease.holder,
                lease.token as i64,
                lease.ttl_ms as i64,
                lease.since_ms
            ])?;
            tx.prepare_cached("UPDATE lease_tokens SET last = max(last, ?1)")?
                .execute([lease.token as i64])?;
        }
        Write::EndLease { name, token } => {
            // Only this tenure's row: a later grant of the same name may already be queued.
            tx.prepare_cached("DELETE FROM leases WHERE name = ?1 AND token = ?2")?
                .execute(params![name, *token as i64])?;
        }
        _ => unreachable!("written by Store::write or another module"),
    }
    Ok(())
}

impl Store {
    /// Every stored lease, by name.
    pub fn leases(&self) -> Result<Vec<LeaseRecord>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT name, node, holder, token, ttl_ms, since_ms FROM leases ORDER BY name")?;
        let rows = statement.query_map([], |row| {
            Ok(LeaseRecord {
                name: row.get(0)?,
                node: row.get(1)?,
                holder: row.get(2)?,
                token: row.get::<_, i64>(3)? as u64,
                ttl_ms: row.get::<_, i64>(4)? as u64,
                since_ms: row.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The highest fencing token ever granted (0 if none).
    pub fn last_lease_token(&self) -> Result<u64, StoreError> {
        let last: i64 = self.connection.query_row("SELECT last FROM lease_tokens", [], |row| row.get(0))?;
        Ok(last as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(name: &str, token: u64) -> LeaseRecord {
        LeaseRecord {
            name: name.into(),
            node: "n1".into(),
            holder: "h".into(),
            token,
            ttl_ms: 10_000,
            since_ms: 1,
        }
    }

    #[test]
    fn the_token_counter_survives_reopening_and_never_goes_down() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let mut store = Store::open(dir.path()).expect("open");
            assert_eq!(store.last_lease_token().expect("read"), 0);
            store.write(&[Write::Lease(lease("a", 5)), Write::Lease(lease("b", 3))]).expect("write");
            store.write(&[Write::EndLease { name: "a".into(), token: 5 }]).expect("write");
            store.write(&[Write::EndLease { name: "b".into(), token: 2 }]).expect("write");
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.last_lease_token().expect("read"), 5, "deleting a lease keeps its token used");
        assert_eq!(
            store.leases().expect("read"),
            vec![lease("b", 3)],
            "an older tenure's end deletes nothing"
        );
    }
}
