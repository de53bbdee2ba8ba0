//! Garbage collection. Heads dropped by reset or delete are freed whole. A frozen layer that
//! no snapshot pins is dropped when nothing sits on it, and folded into its only child when
//! one does (what the child overwrote is freed, the rest moves down). Chains therefore stay
//! as short as the snapshots the user keeps; reads never walk them anyway (every readable
//! layer has a complete map), but memory, replay time and space do.

use crate::engine::{Engine, Frozen};
use crate::error::Result;
use crate::format::{LayerId, Phys, Record};
use crate::io::runs;
use crate::volume::{Head, OwnMap};
use std::collections::{HashMap, HashSet};

/// Fold `parent` into `child` (a frozen layer or a head). Returns the data blocks freed.
pub(crate) fn merge_state<'a>(
    layers: &mut HashMap<LayerId, Frozen>,
    mut heads: impl Iterator<Item = &'a mut Head>,
    parent: LayerId,
    child: LayerId,
) -> std::result::Result<Vec<Phys>, String> {
    let p = layers.remove(&parent).ok_or_else(|| format!("merge of missing layer {parent}"))?;
    let (own, up): (&mut OwnMap, &mut Option<LayerId>) = match layers.get_mut(&child) {
        Some(c) => (&mut c.own, &mut c.parent),
        None => match heads.find(|h| h.layer == child) {
            Some(h) => (&mut h.own, &mut h.parent),
            None => return Err(format!("merge into missing layer {child}")),
        },
    };
    if *up != Some(parent) {
        return Err(format!("layer {child} is not a child of {parent}"));
    }
    let mut freed = Vec::new();
    for (b, v) in p.own {
        if own.contains_key(&b) {
            if let Some(x) = v {
                freed.push(x);
            }
        } else {
            own.insert(b, v);
        }
    }
    *up = p.parent;
    if up.is_none() {
        // Nothing lies beneath a root: tombstones there mean nothing.
        let stale: Vec<u64> = own.iter().filter(|(_, v)| v.is_none()).map(|(b, _)| *b).collect();
        for b in stale {
            own.remove(&b);
        }
    }
    Ok(freed)
}

impl Engine {
    /// Free dropped heads, drop unreferenced layers, fold single-child layers. Runs on the GC
    /// thread; also callable directly.
    pub fn gc(&self) -> Result<()> {
        let mut meta = self.meta()?;
        let mut freed: Vec<Phys> = Vec::new();
        for own in meta.garbage.drain(..) {
            freed.extend(own.values().filter_map(|v| *v));
        }
        let mut records = Vec::new();
        let volumes: Vec<_> = meta.volumes.values().cloned().collect();
        let mut heads = volumes.iter().map(|v| v.head_write()).collect::<Result<Vec<_>>>()?;
        loop {
            let pinned: HashSet<LayerId> = meta.snapshots.values().map(|s| s.layer).collect();
            let mut children: HashMap<LayerId, Vec<LayerId>> = HashMap::new();
            for (id, l) in &meta.layers {
                if let Some(p) = l.parent {
                    children.entry(p).or_default().push(*id);
                }
            }
            for h in heads.iter() {
                if let Some(p) = h.parent {
                    children.entry(p).or_default().push(h.layer);
                }
            }
            let candidate = meta
                .layers
                .keys()
                .filter(|id| !pinned.contains(id))
                .map(|id| (*id, children.get(id).cloned().unwrap_or_default()))
                .find(|(_, c)| c.len() <= 1);
            let Some((id, kids)) = candidate else { break };
            match kids.first() {
                None => {
                    if let Some(l) = meta.layers.remove(&id) {
                        freed.extend(l.own.values().filter_map(|v| *v));
                    }
                    records.push(Record::Drop { layer: id });
                }
                Some(&child) => {
                    let f = merge_state(&mut meta.layers, heads.iter_mut().map(|h| &mut **h), id, child)
                        .map_err(crate::error::StoreError::corrupt)?;
                    freed.extend(f);
                    records.push(Record::Merge { parent: id, child });
                }
            }
        }
        if records.is_empty() && freed.is_empty() {
            drop(heads);
            drop(meta);
            // Releases recorded by replay or by writes since the last flush become durable here.
            self.io.sync()?;
            return self.io.punch_released();
        }
        // Records go in while the heads are held, so they stay ordered with the heads' own
        // writes; the sync and the punching need not hold up their I/O.
        self.io.append(&records, runs(freed))?;
        drop(heads);
        drop(meta);
        self.io.sync()?;
        self.io.punch_released()
    }
}
