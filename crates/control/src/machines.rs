//! Instances that really run (issue 11): when the server has a VM runner, an instance's
//! states are driven by its VM instead of by timers.
//!
//! - **Starting** lasts until the VM runs: the reconciler launches it (its disks attached as
//!   NBD exports, the system disk first) and marks the instance Running once qemu reports
//!   the guest running. A launch that fails leaves the instance Stopped, the reason logged.
//! - **Running** means the VM's process runs. A VM that ends on its own (the guest powered
//!   off, or qemu died) leaves the instance Stopped, the reason logged. When the server
//!   starts, instances recorded Running become Starting and get their VMs started again.
//! - **Stopping** asks the guest to power off (ACPI power button); StopInstance with
//!   ForceStop, or a guest still up after the stop timeout, is killed. The instance becomes
//!   Stopped only once the VM is gone, and its disks' NBD writers are revoked then, so a
//!   stopped instance never has a writer left (ResetDisk's rule stays safe).
//! - RebootInstance resets the guest; DeleteInstance ends the VM before releasing anything.
//!
//! Handlers only record what they ask of a VM (`VmRequests`: ForceStop, reset); the
//! reconciler does it, with the power button and kills, outside the catalog lock.
//! Pending → Starting keeps its timer (`InstanceMs`), as without VMs.
//! [`Control::reconcile_machines`] runs on the server's ticker; it is level-triggered, so it
//! also repairs whatever a crash left (a VM with no running instance is killed).

use crate::model::now_ms;
use crate::{Control, ControlError};
use rusqlite::OptionalExtension;
use std::collections::HashSet;
use std::sync::Arc;

/// One VM to run, as the control plane describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The instance id.
    pub id: String,
    /// From the instance type (the runner may cap it).
    pub vcpus: u32,
    /// From the instance type, MiB (the runner may cap it).
    pub memory_mib: u64,
    /// NBD export names (disk ids): the system disk first, then data disks by device.
    pub disks: Vec<String>,
    /// The instance's UserData, decoded from base64.
    pub user_data: Option<Vec<u8>>,
}

/// What a runner knows of one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineState {
    /// Never started by this process (or forgotten after it ended).
    Unknown,
    /// Its process was started; the guest does not run yet.
    Launching,
    /// Its process runs; `powering_off_ms` is how long ago an ACPI power-off was asked for.
    Running { powering_off_ms: Option<u64> },
    /// Its process ended; `orderly` is false for a crash, `reason` says how it ended.
    Exited { orderly: bool, reason: String },
}

/// The capability the control plane needs from a VM runner (implemented by the binary).
/// Every method may block for a short while (a QMP round trip, a process start).
pub trait Machines: Send + Sync {
    /// Start the VM and return once the guest runs.
    fn start(&self, m: &Machine) -> Result<(), String>;
    /// Press the guest's ACPI power button.
    fn power_off(&self, id: &str) -> Result<(), String>;
    /// Reset the guest.
    fn reset(&self, id: &str) -> Result<(), String>;
    /// End the VM at once; returns when its process is gone.
    fn kill(&self, id: &str) -> Result<(), String>;
    /// The instance is gone: end its VM, forget it and delete its files (console, user data).
    fn remove(&self, id: &str) -> Result<(), String>;
    fn state(&self, id: &str) -> MachineState;
    /// Drop the record of an exited VM.
    fn forget(&self, id: &str);
    /// Ids of every VM whose process runs.
    fn running(&self) -> Vec<String>;
    /// The last `max` bytes of the serial console and when it last changed (Unix ms).
    fn console(&self, id: &str, max: u64) -> Option<(Vec<u8>, i64)>;
    /// How long a guest has to power off after StopInstance before it is killed, ms.
    fn stop_timeout_ms(&self) -> u64;
}

/// What handlers ask of VMs, done by the reconciler outside the catalog lock (a QMP round
/// trip or a kill must not hold every other write up).
#[derive(Default)]
pub(crate) struct VmRequests {
    /// StopInstance with ForceStop: kill instead of pressing the power button.
    pub force_stop: std::sync::Mutex<HashSet<String>>,
    /// RebootInstance: reset the guest.
    pub reset: std::sync::Mutex<HashSet<String>>,
}

impl VmRequests {
    pub(crate) fn ask(set: &std::sync::Mutex<HashSet<String>>, id: &str) {
        if let Ok(mut s) = set.lock() {
            s.insert(id.to_string());
        }
    }

    fn take(set: &std::sync::Mutex<HashSet<String>>, id: &str) -> bool {
        set.lock().map(|mut s| s.remove(id)).unwrap_or(false)
    }
}

impl Control {
    /// Drive instances by VMs from now on (see the module documentation). A new runner has
    /// no VM yet: instances recorded Running are Starting again until theirs runs.
    pub fn set_machines(&self, machines: Arc<dyn Machines>) -> Result<(), ControlError> {
        {
            let conn = self.lock();
            conn.execute("INSERT OR REPLACE INTO settings(key, value) VALUES('machines', 'on')", [])?;
            // From now on Starting and Stopping end with the VM, not with a timer.
            conn.execute(
                "DELETE FROM transitions WHERE kind='instance'
                   AND id IN (SELECT id FROM instances WHERE status IN ('Starting', 'Stopping'))",
                [],
            )?;
            let n = conn.execute("UPDATE instances SET status='Starting' WHERE status='Running' AND released=0", [])?;
            if n > 0 {
                tracing::info!(instances = n, "instances recorded Running start their VMs again");
            }
        }
        if let Ok(mut m) = self.machines.write() {
            *m = Some(machines);
        }
        Ok(())
    }

    pub(crate) fn machines(&self) -> Option<Arc<dyn Machines>> {
        self.machines.read().ok().and_then(|m| m.clone())
    }

    /// One pass of the reconciler: make every VM match its instance's state.
    pub fn reconcile_machines(self: &Arc<Self>) -> Result<(), ControlError> {
        let Some(m) = self.machines() else { return Ok(()) };
        let rows: Vec<(String, String)> = {
            let conn = self.lock();
            crate::transitions::complete_due_conn(&conn, now_ms())?;
            let mut stmt = conn.prepare_cached(
                "SELECT id, status FROM instances WHERE released=0 AND status IN ('Starting', 'Running', 'Stopping')",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
        };
        let wanted: HashSet<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
        for (id, status) in &rows {
            let state = m.state(id);
            let force = || VmRequests::take(&self.vm_requests.force_stop, id);
            match (status.as_str(), state) {
                ("Starting", MachineState::Running { .. }) => {
                    if VmRequests::take(&self.vm_requests.reset, id)
                        && let Err(e) = m.reset(id)
                    {
                        tracing::warn!(instance = %id, error = %e, "resetting the VM");
                    }
                    self.mark(id, &["Starting"], "Running")?;
                }
                ("Starting", MachineState::Exited { reason, .. }) => {
                    tracing::warn!(instance = %id, %reason, "the VM ended while starting; the instance is Stopped");
                    m.forget(id);
                    self.mark_stopped(id)?;
                }
                ("Starting", MachineState::Unknown) => self.launch(&m, id)?,
                ("Running", MachineState::Unknown) => {
                    tracing::warn!(instance = %id, "a Running instance has no VM: starting it again");
                    self.mark(id, &["Running"], "Starting")?;
                    self.launch(&m, id)?;
                }
                ("Running", MachineState::Exited { orderly, reason }) => {
                    if orderly {
                        tracing::info!(instance = %id, %reason, "the guest powered off; the instance is Stopped");
                    } else {
                        tracing::warn!(instance = %id, %reason, "the VM died; the instance is Stopped");
                    }
                    m.forget(id);
                    self.mark_stopped(id)?;
                }
                ("Stopping", MachineState::Running { powering_off_ms }) => {
                    // ForceStop, a guest with no OS to answer the button, or one past the stop
                    // timeout: killed. Otherwise the button, pressed until it reaches qemu.
                    let overdue = powering_off_ms.is_some_and(|ms| ms > m.stop_timeout_ms());
                    let done = if force() || !self.has_os(id)? || overdue {
                        if overdue {
                            tracing::warn!(instance = %id, "the guest did not power off in time; killing the VM");
                        }
                        m.kill(id)
                    } else if powering_off_ms.is_none() {
                        m.power_off(id)
                    } else {
                        Ok(())
                    };
                    if let Err(e) = done {
                        tracing::warn!(instance = %id, error = %e, "stopping the VM");
                    }
                }
                ("Stopping", MachineState::Launching) => {
                    if let Err(e) = m.kill(id) {
                        tracing::warn!(instance = %id, error = %e, "ending a VM stopped while it started");
                    }
                }
                ("Stopping", MachineState::Exited { reason, .. }) => {
                    tracing::info!(instance = %id, %reason, "the VM ended; the instance is Stopped");
                    m.forget(id);
                    self.mark_stopped(id)?;
                }
                ("Stopping", MachineState::Unknown) => self.mark_stopped(id)?,
                _ => {}
            }
        }
        for id in m.running() {
            if !wanted.contains(id.as_str()) {
                tracing::warn!(instance = %id, "a VM runs for an instance that should not run: killing it");
                if let Err(e) = m.kill(&id) {
                    tracing::error!(instance = %id, error = %e, "killing the VM");
                }
                m.forget(&id);
            }
        }
        Ok(())
    }

    /// Start the VM of `id` on a thread of its own, once per instance at a time.
    fn launch(self: &Arc<Self>, m: &Arc<dyn Machines>, id: &str) -> Result<(), ControlError> {
        let Some(machine) = self.machine_of(id)? else { return Ok(()) };
        {
            let Ok(mut l) = self.launching.lock() else { return Ok(()) };
            if !l.insert(id.to_string()) {
                return Ok(());
            }
        }
        let (control, m, id, name) = (self.clone(), m.clone(), id.to_string(), id.to_string());
        let spawned = std::thread::Builder::new().name(format!("launch-{id}")).spawn(move || {
            let started = m.start(&machine);
            if let Err(e) = &started {
                tracing::error!(instance = %id, error = %e, "the VM did not start; the instance is Stopped");
                m.forget(&id);
                if let Err(e) = control.mark_stopped(&id) {
                    tracing::error!(instance = %id, error = %e, "marking the instance Stopped");
                }
            } else if let Err(e) = control.mark(&id, &["Starting"], "Running") {
                tracing::error!(instance = %id, error = %e, "marking the instance Running");
            }
            if let Ok(mut l) = control.launching.lock() {
                l.remove(&id);
            }
        });
        if let Err(e) = spawned {
            tracing::error!(instance = %name, error = %e, "starting a launch thread");
            if let Ok(mut l) = self.launching.lock() {
                l.remove(&name);
            }
        }
        Ok(())
    }

    /// Whether the instance's image has an OS that answers the power button.
    fn has_os(&self, id: &str) -> Result<bool, ControlError> {
        let image: Option<String> =
            self.lock().query_row("SELECT image_id FROM instances WHERE id=?1", [id], |r| r.get(0)).optional()?;
        Ok(image.is_none_or(|i| crate::ops::has_os(&i)))
    }

    /// The VM of instance `id`, or `None` while one of its disks is not attached yet.
    fn machine_of(&self, id: &str) -> Result<Option<Machine>, ControlError> {
        let conn = self.lock();
        let row: Option<(u32, u32, Option<String>)> = conn
            .query_row("SELECT cpu, memory_mib, user_data FROM instances WHERE id=?1 AND released=0", [id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let Some((cpus, memory, user_data)) = row else { return Ok(None) };
        let disks = crate::guards::instance_disks(&conn, id).map_err(|e| ControlError::Invalid(format!("{e:?}")))?;
        if disks.iter().any(|d| d.status != "In_use") {
            return Ok(None);
        }
        let mut ordered: Vec<_> = disks.iter().filter(|d| d.disk_type == "system").collect();
        ordered.extend(disks.iter().filter(|d| d.disk_type != "system"));
        let (vcpus, memory_mib) = (cpus.max(1), if memory == 0 { 1024 } else { memory });
        use base64::Engine as _;
        let user_data = user_data
            .filter(|u| !u.is_empty())
            .and_then(|u| base64::engine::general_purpose::STANDARD.decode(u.as_bytes()).ok());
        Ok(Some(Machine {
            id: id.to_string(),
            vcpus,
            memory_mib: u64::from(memory_mib),
            disks: ordered.iter().map(|d| d.id.clone()).collect(),
            user_data,
        }))
    }

    /// Move instance `id` from one of `from` to `to` (Running sets StartTime).
    fn mark(&self, id: &str, from: &[&str], to: &str) -> Result<(), ControlError> {
        let conn = self.lock();
        let now = now_ms();
        for f in from {
            conn.execute(
                "UPDATE instances SET status=?3, start_ms=CASE WHEN ?3='Running' THEN ?4 ELSE start_ms END
                 WHERE id=?1 AND status=?2 AND released=0",
                rusqlite::params![id, f, to, now],
            )?;
        }
        Ok(())
    }

    /// The VM is gone: the instance is Stopped and its disks lose their writers.
    fn mark_stopped(&self, id: &str) -> Result<(), ControlError> {
        let disks: Vec<String> = {
            let conn = self.lock();
            conn.execute(
                "UPDATE instances SET status='Stopped', pending_target=NULL
                 WHERE id=?1 AND status IN ('Starting', 'Running', 'Stopping') AND released=0",
                [id],
            )?;
            conn.execute("DELETE FROM transitions WHERE kind='instance' AND id=?1", [id])?;
            let mut stmt = conn.prepare_cached("SELECT id FROM disks WHERE instance_id=?1 AND released=0")?;
            stmt.query_map([id], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        if let Some(e) = self.events.read().ok().and_then(|e| e.clone())
            && !disks.is_empty()
        {
            e.revoke(&disks);
        }
        Ok(())
    }
}
