//! The binary's VM runner: `vm::Runner` behind `control::machines::Machines`, with the
//! operator's caps on vCPUs and memory and the stop timeout.

use control::machines::{Machine, MachineState, Machines};
use std::time::{Duration, UNIX_EPOCH};

/// `--vms`: whether instances run VMs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum VmMode {
    /// qemu when the `--qemu` binary is found, else none (logged).
    Auto,
    /// Always; the server refuses to start without the qemu binary.
    Qemu,
    /// Instances are catalog rows whose states follow timers (`timings`).
    None,
}

/// The operator's VM settings (from `serve`'s flags).
pub struct VmSettings {
    pub qemu: std::path::PathBuf,
    pub accel: vm::Accel,
    /// vCPUs a VM gets at most, whatever its instance type says.
    pub max_vcpus: u32,
    /// MiB of memory a VM gets at most, whatever its instance type says.
    pub max_memory_mib: u64,
    /// How long a guest has to power off after StopInstance, ms.
    pub stop_timeout_ms: u64,
}

pub struct QemuMachines {
    pub runner: vm::Runner,
    settings: VmSettings,
}

/// Find `name` as the shell would: a path as given, else on PATH.
fn find(name: &std::path::Path) -> Option<std::path::PathBuf> {
    if name.components().count() > 1 {
        return name.is_file().then(|| name.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|c| c.is_file()))
}

impl QemuMachines {
    /// The runner for `mode`, or `None` when instances run no VMs. Logs the accelerator
    /// picked and why, and kills VMs a previous server left running.
    pub fn open(
        mode: VmMode,
        settings: VmSettings,
        run_dir: std::path::PathBuf,
        nbd_socket: std::path::PathBuf,
    ) -> anyhow::Result<Option<QemuMachines>> {
        let binary = match (mode, find(&settings.qemu)) {
            (VmMode::None, _) => return Ok(None),
            (_, Some(b)) => b,
            (VmMode::Auto, None) => {
                tracing::info!(qemu = %settings.qemu.display(), "no qemu binary found: instances run no VMs (--vms auto)");
                return Ok(None);
            }
            (VmMode::Qemu, None) => anyhow::bail!("--vms qemu: {} not found", settings.qemu.display()),
        };
        let choice = vm::accel::choose(settings.accel);
        tracing::info!(qemu = %binary.display(), accel = choice.accel, reason = %choice.reason, "instances run VMs");
        let runner = vm::Runner::new(vm::Config {
            binary,
            accel: choice.accel,
            run_dir,
            nbd_socket,
            launch_timeout: Duration::from_secs(30),
        });
        let stale = runner.reap_stale();
        if !stale.is_empty() {
            tracing::warn!(?stale, "killed VMs a previous server left running");
        }
        Ok(Some(QemuMachines { runner, settings }))
    }

    /// The server is stopping: power every guest off, kill what is still up after `grace`
    /// (the server's --shutdown-grace-ms). Their instances stay Running in the catalog and
    /// start again with the server.
    pub fn shutdown(&self, grace: Duration) {
        self.runner.shutdown(grace);
    }
}

impl Machines for QemuMachines {
    fn start(&self, m: &Machine) -> Result<(), String> {
        let spec = vm::MachineSpec {
            id: m.id.clone(),
            vcpus: m.vcpus.clamp(1, self.settings.max_vcpus.max(1)),
            memory_mib: m.memory_mib.clamp(64, self.settings.max_memory_mib.max(64)),
            disks: m.disks.iter().map(|d| vm::DiskSpec { export: d.clone(), serial: d.clone() }).collect(),
            user_data: m.user_data.clone(),
        };
        self.runner.start(&spec).map_err(|e| e.to_string())
    }
    fn power_off(&self, id: &str) -> Result<(), String> {
        self.runner.power_off(id).map_err(|e| e.to_string())
    }
    fn reset(&self, id: &str) -> Result<(), String> {
        self.runner.reset(id).map_err(|e| e.to_string())
    }
    fn kill(&self, id: &str) -> Result<(), String> {
        self.runner.kill(id).map_err(|e| e.to_string())
    }
    fn remove(&self, id: &str) -> Result<(), String> {
        self.runner.remove(id).map_err(|e| e.to_string())
    }
    fn state(&self, id: &str) -> MachineState {
        match self.runner.state(id) {
            None => MachineState::Unknown,
            Some(vm::State::Launching { .. }) => MachineState::Launching,
            Some(vm::State::Running { powerdown_since, .. }) => MachineState::Running {
                powering_off_ms: powerdown_since.map(|t| t.elapsed().as_millis().try_into().unwrap_or(u64::MAX)),
            },
            Some(vm::State::Exited(e)) => MachineState::Exited { orderly: e.orderly, reason: e.reason },
        }
    }
    fn forget(&self, id: &str) {
        self.runner.forget(id);
    }
    fn running(&self) -> Vec<String> {
        self.runner.running()
    }
    fn console(&self, id: &str, max: u64) -> Option<(Vec<u8>, i64)> {
        let (bytes, at) = self.runner.console(id, max)?;
        let ms = at.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        Some((bytes, ms))
    }
    fn stop_timeout_ms(&self) -> u64 {
        self.settings.stop_timeout_ms
    }
}

/// Operator commands answered here: `instance-vm` {"InstanceId"} reports the VM of an
/// instance (whether it runs, its pid, the loopback SSH port forwarded to the guest's port 22,
/// the accelerator, the console log's path).
pub const COMMANDS: [&str; 1] = ["instance-vm"];

impl QemuMachines {
    /// Run one of [`COMMANDS`]: `Err((http status, message))` on bad input.
    pub fn admin(&self, command: &str, body: &serde_json::Value) -> Result<serde_json::Value, (u16, String)> {
        if command != "instance-vm" {
            return Err((404, format!("unknown command {command}")));
        }
        let id = body
            .get("InstanceId")
            .and_then(serde_json::Value::as_str)
            .ok_or((400, "InstanceId is required".to_string()))?;
        let dir = self.runner.config().run_dir.join(id);
        let mut out = serde_json::json!({
            "InstanceId": id,
            "Accel": self.runner.config().accel,
            "ConsoleLog": dir.join("console.log").display().to_string(),
            "Running": false,
        });
        match self.runner.state(id) {
            Some(vm::State::Running { pid, ssh_port, .. }) => {
                out["Running"] = true.into();
                out["Pid"] = pid.into();
                out["SshHost"] = "127.0.0.1".into();
                out["SshPort"] = ssh_port.into();
            }
            Some(vm::State::Exited(e)) => out["LastExit"] = e.reason.into(),
            Some(vm::State::Launching { pid }) => {
                out["Pid"] = pid.into();
                out["Launching"] = true.into();
            }
            None => {}
        }
        Ok(out)
    }
}
