//! Every enabled event automation, indexed by org and source, changed one automation at a time.
//!
//! Matching an event only looks at its own source's list, so its cost does not depend on the
//! automations of other sources. The maps are persistent (`imbl`): a snapshot is an O(1) clone
//! that shares structure with the next one, and a change copies only the touched source's list
//! (of `Arc`s) and O(log n) map nodes — never the whole index. The writer owns the glob interner,
//! so each distinct `on` pattern is compiled once.

use std::sync::Arc;

use uuid::Uuid;

use super::automations::{self, CompiledAutomation, Outcome};
use super::expr::Value;
use super::glob::GlobInterner;

/// One source's automations, ordered by id (the order outcomes are recorded in).
type SourceList = Arc<[Arc<CompiledAutomation>]>;

/// A read-only snapshot of the index (cheap to clone, Send + Sync).
#[derive(Clone, Debug, Default)]
pub struct AutomationIndex {
    /// org → source slug → its automations.
    by_org: imbl::HashMap<Uuid, imbl::HashMap<Arc<str>, SourceList>>,
    /// automation id → where it is listed.
    placed: imbl::HashMap<Uuid, (Uuid, Arc<str>)>,
}

impl AutomationIndex {
    /// The automations of one org's source, ordered by id (empty when it has none).
    pub fn automations_of(&self, org_id: Uuid, source: &str) -> &[Arc<CompiledAutomation>] {
        self.by_org
            .get(&org_id)
            .and_then(|sources| sources.get(source))
            .map_or(&[], |list| list)
    }

    /// Judges an event against every automation of its org and source. Events without a key
    /// match nothing (and produce no outcome rows).
    pub fn evaluate(
        &self,
        org_id: Uuid,
        source: &str,
        event_key: Option<&str>,
        payload: &Value,
    ) -> Vec<Outcome> {
        automations::evaluate(self.automations_of(org_id, source), event_key, payload)
    }

    /// Number of automations indexed.
    pub fn len(&self) -> usize {
        self.placed.len()
    }

    /// Whether no automation is indexed.
    pub fn is_empty(&self) -> bool {
        self.placed.is_empty()
    }

    /// Lists `automation` under its org and source (it must not be listed yet).
    fn insert(&mut self, org_id: Uuid, source: &str, automation: Arc<CompiledAutomation>) {
        let mut sources = self.by_org.get(&org_id).cloned().unwrap_or_default();
        let (key, old): (Arc<str>, &[Arc<CompiledAutomation>]) = match sources.get_key_value(source)
        {
            Some((key, list)) => (key.clone(), list),
            None => (source.into(), &[]),
        };
        let at = old.partition_point(|a| a.id < automation.id);
        let id = automation.id;
        let list: SourceList = old[..at]
            .iter()
            .cloned()
            .chain(std::iter::once(automation))
            .chain(old[at..].iter().cloned())
            .collect();
        sources.insert(key.clone(), list);
        self.by_org.insert(org_id, sources);
        self.placed.insert(id, (org_id, key));
    }

    /// Takes automation `id` out of its source's list; gives it back when it was listed.
    fn remove(&mut self, id: Uuid) -> Option<Arc<CompiledAutomation>> {
        let (org_id, source) = self.placed.remove(&id)?;
        let mut sources = self.by_org.get(&org_id).cloned().unwrap_or_default();
        let old = sources.get(&source).cloned().unwrap_or_default();
        let removed = old.iter().find(|a| a.id == id).cloned();
        let list: SourceList = old.iter().filter(|a| a.id != id).cloned().collect();
        if list.is_empty() {
            sources.remove(&source);
        } else {
            sources.insert(source, list);
        }
        if sources.is_empty() {
            self.by_org.remove(&org_id);
        } else {
            self.by_org.insert(org_id, sources);
        }
        removed
    }
}

/// What storage says of one automation that belongs in the index: an enabled event automation.
#[derive(Debug, Clone)]
pub struct IndexedRow {
    /// Automation id.
    pub id: Uuid,
    /// Its org.
    pub org_id: Uuid,
    /// Its stored trigger (`{"type": "event", "source", "on", "filter"?}`).
    pub trigger: serde_json::Value,
}

/// The writer's side: the index and the glob interner it draws from. One change at a time;
/// readers get snapshots.
#[derive(Debug, Default)]
pub struct IndexWriter {
    index: AutomationIndex,
    globs: GlobInterner,
}

impl IndexWriter {
    /// Builds the index from every row (the full load at start). Gives back the rows that do
    /// not compile (left out), with why.
    pub fn build(rows: impl IntoIterator<Item = IndexedRow>) -> (IndexWriter, Vec<(Uuid, String)>) {
        let mut writer = IndexWriter::default();
        let skipped = rows
            .into_iter()
            .filter_map(|row| {
                let id = row.id;
                writer.apply(id, Some(row)).err().map(|why| (id, why))
            })
            .collect();
        (writer, skipped)
    }

    /// Applies what storage now says of automation `id`: `Some(row)` when it is an enabled event
    /// automation, `None` when it is deleted, disabled or not an event automation. Idempotent. A
    /// row that does not compile is left out of the index, and the error says why.
    pub fn apply(&mut self, id: Uuid, row: Option<IndexedRow>) -> Result<(), String> {
        if let Some(old) = self.index.remove(id) {
            self.globs.release(&old.on);
        }
        let Some(row) = row else {
            return Ok(());
        };
        let (source, compiled) = automations::compile(id, &row.trigger, Some(&mut self.globs))?;
        self.index.insert(row.org_id, &source, Arc::new(compiled));
        Ok(())
    }

    /// The index as it stands (an O(1) clone).
    pub fn snapshot(&self) -> AutomationIndex {
        self.index.clone()
    }

    /// The index as it stands.
    pub fn index(&self) -> &AutomationIndex {
        &self.index
    }

    /// The glob interner (distinct patterns compiled).
    pub fn globs(&self) -> &GlobInterner {
        &self.globs
    }
}

#[cfg(test)]
mod tests;
