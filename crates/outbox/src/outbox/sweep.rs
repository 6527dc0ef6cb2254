//! What a sweep acts on: every pending record of a parent, in its inbox and
//! in a claim a failed or crashed drain left (`inboxes/<id>.jsonl.claimed`),
//! judged by each child's latest record. Sweeps hold the drain lock, so a
//! drain in progress finishes first and what it delivers is out of reach.

use std::collections::{HashMap, HashSet};

use super::{Outbox, child_of, encode};
use crate::durable::write_durable;
use crate::error::{IoContext, Result};
use crate::io::{Io, parent_dir};
use crate::paths::ParentPaths;
use crate::record::Record;

impl<I: Io> Outbox<I> {
    /// Drops each child whose latest pending record fails `keep`, from the
    /// claim and the inbox; returns how many children were dropped. Call it
    /// holding `paths`' drain lock and inbox lock.
    ///
    /// The claim is rewritten first and durably, then the inbox: a crash
    /// in between leaves the inbox's (newer) records of the child, never
    /// brings back an older record than the one that was pending.
    pub(super) fn sweep_records(
        &self,
        paths: &ParentPaths,
        keep: impl Fn(&Record) -> bool,
    ) -> Result<usize> {
        let io = &self.inner.io;
        let inbox = self.read_scan_opt(&paths.inbox)?.unwrap_or_default();
        let claim = self.read_scan_opt(&paths.claimed)?;
        let mut latest: HashMap<&str, &Record> = HashMap::new();
        let claimed_records = claim.as_ref().map_or(&[][..], |c| &c.records[..]);
        // Commit order: the claim, then the inbox; the last of each child wins.
        for r in claimed_records.iter().chain(&inbox.records) {
            latest.insert(child_of(r), r);
        }
        let dropped: HashSet<String> = latest
            .iter()
            .filter(|(_, r)| !keep(r))
            .map(|(child, _)| (*child).to_owned())
            .collect();
        if dropped.is_empty() {
            // Only the inbox's unreadable lines, if any, are set aside.
            return self.rewrite_inbox(paths, |_| true);
        }
        if let Some(claim) = &claim
            && claim.records.iter().any(|r| dropped.contains(child_of(r)))
        {
            if !claim.bad_lines.is_empty() {
                self.quarantine(paths, &paths.claimed, &claim.bad_lines)?;
            }
            let mut bytes = Vec::new();
            for r in claim
                .records
                .iter()
                .filter(|r| !dropped.contains(child_of(r)))
            {
                bytes.extend(encode(r)?);
            }
            if bytes.is_empty() {
                io.remove_file(&paths.claimed)
                    .at("remove", &paths.claimed)?;
                let dir = parent_dir(&paths.claimed);
                io.sync_dir(dir).at("fsync directory", dir)?;
            } else {
                write_durable(io, &paths.claimed, &bytes)?;
            }
        }
        self.rewrite_inbox(paths, |r| !dropped.contains(child_of(r)))?;
        Ok(dropped.len())
    }
}
