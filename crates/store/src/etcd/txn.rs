//! Store transactions as etcd transactions.
//!
//! `Compare`s become etcd compares on the key's revisions (a missing key has every revision 0
//! in etcd's compares, exactly like the redb backend):
//!
//! | store                 | etcd                              |
//! |-----------------------|-----------------------------------|
//! | `Absent(k)`           | `CREATE(k) == 0`                  |
//! | `Exists(k)`           | `CREATE(k) > 0`                   |
//! | `ModRevision(k, r)`   | `MOD(k) == r` (so `r = 0` ⇔ absent) |
//!
//! The `then` branch holds the ops (each asking for the previous key-value); the `else` branch
//! reads every compared key, atomically with the failed evaluation, so the store can tell the
//! caller *which* compare failed ([`StoreError::CompareFailed`]`{ index }`), which etcd itself
//! does not report.
//!
//! Differences from the redb backend, both etcd's rules: a transaction may write a key at most
//! once, and may hold at most `--max-txn-ops` (128 by default) ops; both fail with
//! [`StoreError::Backend`].

use etcd_client::{
    Compare as EtcdCompare, CompareOp, DeleteOptions, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};

use super::keys::KeyMapping;
use crate::{Compare, KeyValue, Op, Result, StoreError, TxnResult};

/// Builds the etcd transaction for `compares` and `ops`.
pub(crate) fn build(keys: &KeyMapping, compares: &[Compare], ops: &[Op]) -> Result<Txn> {
    let mut when = Vec::with_capacity(compares.len());
    let mut reads = Vec::with_capacity(compares.len());
    for compare in compares {
        when.push(match compare {
            Compare::Absent(key) => EtcdCompare::create_revision(keys.key(key)?, CompareOp::Equal, 0),
            Compare::Exists(key) => EtcdCompare::create_revision(keys.key(key)?, CompareOp::Greater, 0),
            Compare::ModRevision(key, revision) => {
                EtcdCompare::mod_revision(keys.key(key)?, CompareOp::Equal, *revision)
            }
        });
        reads.push(TxnOp::get(keys.key(compared_key(compare))?, None));
    }
    let mut writes = Vec::with_capacity(ops.len());
    for op in ops {
        writes.push(match op {
            Op::Put { key, value } => {
                TxnOp::put(keys.key(key)?, value.to_vec(), Some(PutOptions::new().with_prev_key()))
            }
            Op::Delete { key } => TxnOp::delete(keys.key(key)?, Some(DeleteOptions::new().with_prev_key())),
        });
    }
    Ok(Txn::new().when(when).and_then(writes).or_else(reads))
}

fn compared_key(compare: &Compare) -> &str {
    match compare {
        Compare::Absent(key) | Compare::Exists(key) | Compare::ModRevision(key, _) => key,
    }
}

/// Interprets the answer to a transaction built by [`build`].
pub(crate) fn outcome(keys: &KeyMapping, compares: &[Compare], response: &TxnResponse) -> Result<TxnResult> {
    let revision = super::header_revision(response.header())?;
    let responses = response.op_responses();
    if !response.succeeded() {
        return Err(failed_compare(keys, compares, &responses));
    }
    let mut prev = Vec::with_capacity(responses.len());
    for response in &responses {
        let before = match response {
            TxnOpResponse::Put(put) => put.prev_key(),
            TxnOpResponse::Delete(delete) => delete.prev_kvs().first(),
            TxnOpResponse::Get(_) | TxnOpResponse::Txn(_) => {
                return Err(StoreError::Backend("etcd answered a write with a read".into()));
            }
        };
        prev.push(before.map(|kv| keys.key_value(kv)).transpose()?);
    }
    Ok(TxnResult { revision, prev })
}

/// Finds the first compare that does not hold against the keys the `else` branch read.
fn failed_compare(keys: &KeyMapping, compares: &[Compare], reads: &[TxnOpResponse]) -> StoreError {
    for (index, (compare, read)) in compares.iter().zip(reads).enumerate() {
        let TxnOpResponse::Get(read) = read else {
            return StoreError::Backend("etcd answered a read with a write".into());
        };
        let current: Option<KeyValue> = match read.kvs().first().map(|kv| keys.key_value(kv)).transpose() {
            Ok(current) => current,
            Err(error) => return error,
        };
        let mod_revision = current.as_ref().map_or(0, |kv| kv.mod_revision);
        let holds = match compare {
            Compare::Absent(_) => current.is_none(),
            Compare::Exists(_) => current.is_some(),
            Compare::ModRevision(_, expected) => mod_revision == *expected,
        };
        if !holds {
            return StoreError::CompareFailed { index };
        }
    }
    StoreError::Backend("etcd reported a failed compare, but every compare holds".into())
}
