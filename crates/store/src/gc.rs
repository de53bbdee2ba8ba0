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
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::RwLockWriteGuard;

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

/// Drop every unpinned layer without children and fold every unpinned layer with one child
/// into it, until none is left; appends the records and the freed blocks. One walk over the
/// layers and heads builds the children lists, which are then kept up to date, so a pass is
/// O(layers + heads + blocks moved) however many layers it folds.
fn fold_layers(
    layers: &mut HashMap<LayerId, Frozen>,
    snapshots: &BTreeMap<String, crate::engine::Snap>,
    heads: &mut [RwLockWriteGuard<'_, Head>],
    records: &mut Vec<Record>,
    freed: &mut Vec<Phys>,
) -> Result<()> {
    let pinned: HashSet<LayerId> = snapshots.values().map(|s| s.layer).collect();
    let mut children: HashMap<LayerId, Vec<LayerId>> = HashMap::new();
    for (id, l) in layers.iter() {
        if let Some(p) = l.parent {
            children.entry(p).or_default().push(*id);
        }
    }
    let mut head_at: HashMap<LayerId, usize> = HashMap::new();
    for (i, h) in heads.iter().enumerate() {
        head_at.insert(h.layer, i);
        if let Some(p) = h.parent {
            children.entry(p).or_default().push(h.layer);
        }
    }
    let collectable = |id: &LayerId, children: &HashMap<LayerId, Vec<LayerId>>| {
        !pinned.contains(id) && children.get(id).map_or(0, Vec::len) <= 1
    };
    let mut work: Vec<LayerId> = layers.keys().filter(|id| collectable(id, &children)).copied().collect();
    // Lowest ids first, as they sit nearer the roots (ids grow along every chain).
    work.sort_unstable_by(|a, b| b.cmp(a));
    while let Some(id) = work.pop() {
        let Some(parent) = layers.get(&id).map(|l| l.parent) else { continue };
        if !collectable(&id, &children) {
            continue;
        }
        let kids = children.remove(&id).unwrap_or_default();
        match kids.first() {
            None => {
                if let Some(l) = layers.remove(&id) {
                    freed.extend(l.own.values().filter_map(|v| *v));
                }
                records.push(Record::Drop { layer: id });
                // The parent lost a child: it may be collectable now.
                if let Some(p) = parent
                    && let Some(siblings) = children.get_mut(&p)
                {
                    siblings.retain(|c| *c != id);
                    if collectable(&p, &children) {
                        work.push(p);
                    }
                }
            }
            Some(&child) => {
                let head = head_at.get(&child).and_then(|i| heads.get_mut(*i)).map(|h| &mut **h);
                let f = merge_state(layers, head.into_iter(), id, child).map_err(crate::error::StoreError::corrupt)?;
                freed.extend(f);
                records.push(Record::Merge { parent: id, child });
                // The child takes the layer's place under its parent: no count changes.
                if let Some(p) = parent
                    && let Some(siblings) = children.get_mut(&p)
                {
                    for c in siblings.iter_mut().filter(|c| **c == id) {
                        *c = child;
                    }
                }
            }
        }
    }
    Ok(())
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
        // Only a deleted snapshot, a deleted volume or a reset (and an open, which replayed
        // them) can leave a layer unpinned with fewer than two children; otherwise there is
        // no layer to look at, and a pass does not lock every volume or walk every layer.
        let due = meta.gc_due;
        let volumes: Vec<_> = if due { meta.volumes.values().cloned().collect() } else { Vec::new() };
        let mut heads = volumes.iter().map(|v| v.head_write()).collect::<Result<Vec<_>>>()?;
        if due {
            let m = &mut *meta;
            fold_layers(&mut m.layers, &m.snapshots, &mut heads, &mut records, &mut freed)?;
            m.gc_due = false;
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
