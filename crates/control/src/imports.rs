//! ImportImage's background work. An image that is Creating is converted here, one thread
//! per image: `qemu-img` reads the object (raw, qcow2 or VHD) into a raw file, whose bytes
//! fill a new volume; the volume is frozen as the image's snapshot (so instances boot from a
//! clone of it, in O(1)) and dropped. Progress is the share of the work done: the first half
//! converting (raw objects skip it), the second filling. A failure leaves the image
//! CreateFailed and is logged. Work interrupted by a restart starts over: every step is
//! idempotent. [`Control::run_imports`] runs on the server's ticker.

use crate::model::{ImportSource, now_ms};
use crate::volumes::Volumes;
use crate::{Control, ControlError};
use rusqlite::params;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

const GIB: u64 = 1 << 30;

/// The file of `object` in a bucket's directory, if it is a plain relative path to a file
/// there (no `..`, no absolute path, no link out of the directory).
pub(crate) fn object_path(dir: &Path, object: &str) -> Option<PathBuf> {
    let rel = Path::new(object);
    if object.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    // A link may not lead out of the bucket.
    let root = dir.canonicalize().ok()?;
    let path = dir.join(rel).canonicalize().ok()?;
    (path.starts_with(&root) && path.is_file()).then_some(path)
}

/// ImportImage's task (`t-` and the image id's tail) ends `status` now.
fn task_done(conn: &rusqlite::Connection, image: &str, status: &str) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE tasks SET status=?2, finished_ms=?3 WHERE id=?1 AND status='Processing'",
        params![format!("t-{}", image.trim_start_matches("m-")), status, now_ms()],
    )
}

struct Job {
    image: String,
    account: String,
    region: String,
    snapshot: String,
    name: String,
    source: ImportSource,
}

impl Control {
    /// Start converting every Creating image that no thread works on yet.
    pub fn run_imports(self: &Arc<Self>) -> Result<(), ControlError> {
        let jobs: Vec<Job> = {
            let conn = self.lock();
            let mut stmt = conn.prepare_cached(
                "SELECT id, account_id, region_id, snapshot_id, name, import_json FROM images
                 WHERE status='Creating' AND released=0 AND import_json IS NOT NULL AND source_image_id IS NULL",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get::<_, String>(5)?))
            })?;
            let mut jobs = Vec::new();
            for row in rows {
                let (image, account, region, snapshot, name, json) = row?;
                match serde_json::from_str(&json) {
                    Ok(source) => jobs.push(Job { image, account, region, snapshot, name, source }),
                    Err(e) => tracing::error!(image = %image, error = %e, "unreadable import source"),
                }
            }
            jobs
        };
        for job in jobs {
            {
                let Ok(mut busy) = self.importing.lock() else { return Ok(()) };
                if !busy.insert(job.image.clone()) {
                    continue;
                }
            }
            let control = self.clone();
            let image = job.image.clone();
            let spawned = std::thread::Builder::new().name(format!("import-{image}")).spawn(move || {
                let image = job.image.clone();
                if let Err(reason) = control.import(&job) {
                    tracing::error!(image = %image, %reason, "ImportImage failed; the image is CreateFailed");
                    let conn = control.lock();
                    let failed = conn
                        .execute(
                            "UPDATE images SET status='CreateFailed', progress=0 WHERE id=?1 AND status='Creating'",
                            [&image],
                        )
                        .and_then(|_| task_done(&conn, &image, "Failed"));
                    if let Err(e) = failed {
                        tracing::error!(image = %image, error = %e, "marking the image CreateFailed");
                    }
                }
                if let Ok(mut busy) = control.importing.lock() {
                    busy.remove(&image);
                }
            });
            if let Err(e) = spawned {
                tracing::error!(image = %image, error = %e, "starting an import thread");
                if let Ok(mut busy) = self.importing.lock() {
                    busy.remove(&image);
                }
            }
        }
        Ok(())
    }

    fn set_progress(&self, image: &str, percent: i64) {
        let conn = self.lock();
        let _ = conn.execute(
            "UPDATE images SET progress=?2 WHERE id=?1 AND status='Creating'",
            params![image, percent.clamp(0, 99)],
        );
    }

    fn import(&self, job: &Job) -> Result<(), String> {
        let dir = self
            .config
            .oss_buckets
            .get(&job.source.bucket)
            .ok_or_else(|| format!("bucket {} is no longer configured", job.source.bucket))?;
        let path = object_path(dir, &job.source.object)
            .ok_or_else(|| format!("object {} is gone from bucket {}", job.source.object, job.source.bucket))?;
        let qemu_fmt = match job.source.format.as_deref() {
            Some("RAW") => Some("raw"),
            Some("QCOW2") => Some("qcow2"),
            Some("VHD") => Some("vpc"),
            _ => None,
        };
        let (format, virtual_bytes) = self.probe(&path, qemu_fmt)?;
        let gib = virtual_bytes.div_ceil(GIB).max(1) as i64;
        let size_gib = gib.max(job.source.min_gib.unwrap_or(0));
        if size_gib > 2048 {
            return Err(format!("the image's disk would be {size_gib} GiB; at most 2048 GiB are supported"));
        }
        let work = self.catalog.parent().unwrap_or(Path::new(".")).join("imports");
        std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
        let raw = work.join(format!("{}.raw", job.image));
        let (source, half) = if format == "raw" {
            (path.clone(), 0)
        } else {
            let converted = self.convert(&path, &format, &raw, &job.image, &work);
            if converted.is_err() {
                let _ = std::fs::remove_file(&raw);
            }
            converted?;
            (raw.clone(), 50)
        };
        let volume = format!("import-{}", job.image);
        let volumes = &self.volumes;
        let run = || -> Result<(), String> {
            volumes.create(&volume, size_gib as u64 * GIB, None).map_err(|e| e.to_string())?;
            let mut file = std::fs::File::open(&source).map_err(|e| format!("{}: {e}", source.display()))?;
            let total = file.metadata().map(|m| m.len().max(1)).unwrap_or(1);
            let mut last = -1;
            let mut report = |done: u64| {
                let p = half + (done.min(total) * (100 - half as u64) / total) as i64;
                if p != last {
                    last = p;
                    self.set_progress(&job.image, p);
                }
            };
            volumes.fill(&volume, &mut file as &mut dyn Read, &mut report).map_err(|e| e.to_string())?;
            volumes.snapshot(&volume, &job.snapshot).map_err(|e| e.to_string())
        };
        let filled = run();
        if let Err(e) = volumes.delete_volume(&volume) {
            tracing::warn!(volume = %volume, error = %e, "removing an import's volume");
        }
        let _ = std::fs::remove_file(&raw);
        filled?;
        self.finish(job, size_gib)
    }

    /// qemu-img info: (qemu format name, virtual size in bytes). Only raw, qcow2 and vpc (VHD).
    fn probe(&self, path: &Path, format: Option<&str>) -> Result<(String, u64), String> {
        let mut cmd = Command::new(&self.config.qemu_img);
        cmd.args(["info", "--output=json"]);
        if let Some(f) = format {
            cmd.args(["-f", f]);
        }
        let out = cmd.arg(path).stdin(Stdio::null()).output().map_err(|e| format!("running qemu-img: {e}"))?;
        if !out.status.success() {
            return Err(format!("qemu-img info: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("qemu-img info output: {e}"))?;
        let found = v["format"].as_str().unwrap_or_default().to_string();
        if !["raw", "qcow2", "vpc"].contains(&found.as_str()) {
            return Err(format!("format {found:?} is not one ImportImage takes (RAW, QCOW2, VHD)"));
        }
        // An image is its own bytes only: a backing file or an external data file would have
        // qemu-img read another file of this host (or another disk) into the image.
        if v.get("backing-filename").is_some() || v["format-specific"]["data"].get("data-file").is_some() {
            return Err("the image names a backing or data file; import a standalone image".into());
        }
        let size = v["virtual-size"].as_u64().ok_or("qemu-img info gave no virtual-size")?;
        Ok((found, size))
    }

    /// qemu-img convert to a raw file, reporting its progress as the first half.
    fn convert(&self, src: &Path, format: &str, dst: &Path, image: &str, work: &Path) -> Result<(), String> {
        // stderr to a file: a pipe nobody reads while stdout is drained could fill and stall it.
        let err_path = work.join(format!("{image}.stderr"));
        let err_file = std::fs::File::create(&err_path).map_err(|e| format!("{}: {e}", err_path.display()))?;
        let mut child = Command::new(&self.config.qemu_img)
            .args(["convert", "-p", "-f", format, "-O", "raw"])
            .arg(src)
            .arg(dst)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err_file)
            .spawn()
            .map_err(|e| format!("running qemu-img: {e}"))?;
        if let Some(mut out) = child.stdout.take() {
            // `-p` prints "    (12.34/100%)" and a carriage return as it goes.
            let mut buf = [0u8; 256];
            let mut line = Vec::new();
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                for &b in &buf[..n] {
                    if b == b'\r' || b == b'\n' {
                        let text = String::from_utf8_lossy(&line);
                        if let Some(p) = text.trim().strip_prefix('(').and_then(|t| t.split('/').next())
                            && let Ok(p) = p.parse::<f64>()
                        {
                            self.set_progress(image, (p / 2.0) as i64);
                        }
                        line.clear();
                    } else if line.len() < 128 {
                        line.push(b);
                    }
                }
            }
        }
        let status = child.wait().map_err(|e| format!("waiting for qemu-img: {e}"))?;
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        let _ = std::fs::remove_file(&err_path);
        if !status.success() {
            return Err(format!("qemu-img convert: {}", stderr.trim()));
        }
        Ok(())
    }

    /// The snapshot is in the store: record it and make the image Available, unless the
    /// image was deleted meanwhile (then the snapshot goes too).
    fn finish(&self, job: &Job, size_gib: i64) -> Result<(), String> {
        let conn = self.lock();
        let now = now_ms();
        let tx = conn.unchecked_transaction().map_err(|e| e.to_string())?;
        let live = tx
            .execute(
                "UPDATE images SET status='Available', progress=100, size_gib=?2 WHERE id=?1 AND status='Creating' AND released=0",
                params![job.image, size_gib],
            )
            .map_err(|e| e.to_string())?;
        if live == 0 {
            // The image was deleted meanwhile: so is its snapshot, and its task failed.
            task_done(&tx, &job.image, "Failed").map_err(|e| e.to_string())?;
            tx.commit().map_err(|e| e.to_string())?;
            drop(conn);
            let _ = self.volumes.delete_snapshot(&job.snapshot);
            return Ok(());
        }
        tx.execute(
            "INSERT OR IGNORE INTO snapshots(id, account_id, region_id, disk_id, disk_size_gib, disk_type, disk_category,
               name, description, status, created_ms, due_ms, encrypted, tags)
             VALUES(?1, ?2, ?3, '', ?4, 'system', 'cloud_essd', ?5, ?6, 'accomplished', ?7, ?7, 0, '[]')",
            params![
                job.snapshot,
                job.account,
                job.region,
                size_gib,
                format!("import-{}", job.image),
                format!("The system disk of image {} ({}), imported by ImportImage", job.image, job.name),
                now
            ],
        )
        .map_err(|e| e.to_string())?;
        task_done(&tx, &job.image, "Finished").map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
        tracing::info!(image = %job.image, size_gib, "ImportImage done");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::object_path;

    #[test]
    fn objects_stay_inside_their_bucket() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(dir.path().join("a")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("a/img.raw"), b"x").unwrap_or_else(|e| panic!("{e}"));
        assert!(object_path(dir.path(), "a/img.raw").is_some());
        for bad in ["", "../a/img.raw", "/etc/passwd", "a/../a/img.raw", "a", "missing.raw", "./a/img.raw"] {
            assert!(object_path(dir.path(), bad).is_none(), "{bad:?}");
        }
    }
}
