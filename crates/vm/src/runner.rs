//! [`Runner`]: one qemu-system process per VM, started, powered off, reset and killed on
//! request, with its state read back by whoever drives the VMs (the control plane's
//! reconciler). A VM's files live in `<run_dir>/<id>/`: `console.log` (the serial port),
//! `qmp.sock`, `qemu.pid`, `qemu.log` (qemu's own stderr) and `user-data`.

use crate::qmp::{self, QmpError};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How every VM is launched.
#[derive(Debug, Clone)]
pub struct Config {
    /// The emulator binary (`qemu-system-x86_64`).
    pub binary: PathBuf,
    /// `kvm` or `tcg` (see [`crate::accel::choose`]).
    pub accel: &'static str,
    /// Where each VM's directory is made.
    pub run_dir: PathBuf,
    /// The NBD unix socket the VM's disks are opened on.
    pub nbd_socket: PathBuf,
    /// How long qemu has to come up (QMP answering, status `running`).
    pub launch_timeout: Duration,
}

/// One disk of a VM: an NBD export, shown to the guest as a virtio-blk device with `serial`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    pub export: String,
    pub serial: String,
}

/// What to run. The first disk is the boot disk (`/dev/vda` in a Linux guest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineSpec {
    /// Names the VM's directory and its qemu process (`-name snapdisk-vm:<id>`).
    pub id: String,
    pub vcpus: u32,
    /// Guest memory, MiB.
    pub memory_mib: u64,
    pub disks: Vec<DiskSpec>,
    /// Passed as the fw_cfg file `opt/com.snapdisk/user-data` when present.
    pub user_data: Option<Vec<u8>>,
}

/// Errors of VM operations.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("VM {id}: {what}: {source}")]
    Io { id: String, what: &'static str, source: std::io::Error },
    #[error("VM {id} did not start: {detail}")]
    Launch { id: String, detail: String },
    #[error("VM {id}: {0}", id = .1)]
    Qmp(#[source] QmpError, String),
    #[error("VM {0} is not running")]
    NotRunning(String),
    #[error("invalid VM id {0:?}")]
    BadId(String),
}

/// How a VM's process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The runner asked for it (power-off, kill) or the guest powered itself off: an
    /// orderly stop. False for a crash or a kill from outside.
    pub orderly: bool,
    /// In words, for the log: the exit status and the tail of qemu's stderr.
    pub reason: String,
}

/// What the runner knows of a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// qemu was spawned; the guest is not confirmed running yet.
    Launching {
        pid: u32,
    },
    Running {
        pid: u32,
        /// When an ACPI power-off was asked for, if it was.
        powerdown_since: Option<Instant>,
        /// The loopback host port forwarded to the guest's port 22.
        ssh_port: u16,
    },
    Exited(Exit),
}

struct Vm {
    pid: u32,
    /// QMP reported the guest running ([`Runner::start`] returned).
    confirmed: bool,
    ssh_port: u16,
    powerdown_since: Option<Instant>,
    requested: bool,
    exit: Option<Exit>,
}

/// The VMs of this process.
pub struct Runner {
    config: Config,
    vms: Arc<Mutex<HashMap<String, Vm>>>,
    /// Set by [`Runner::shutdown`]: no VM starts after it.
    closed: std::sync::atomic::AtomicBool,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Runner {
    pub fn new(config: Config) -> Runner {
        Runner { config, vms: Arc::new(Mutex::new(HashMap::new())), closed: Default::default() }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn dir(&self, id: &str) -> Result<PathBuf, VmError> {
        if !valid_id(id) {
            return Err(VmError::BadId(id.to_string()));
        }
        Ok(self.config.run_dir.join(id))
    }

    fn vms(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vm>> {
        self.vms.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Kill qemu processes a previous server left behind (after `kill -9` of the server): a
    /// `qemu.pid` under the run directory whose process still names itself
    /// `snapdisk-vm:<id>`. Returns the ids killed.
    pub fn reap_stale(&self) -> Vec<String> {
        let mut killed = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.config.run_dir) else { return killed };
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = std::fs::read_to_string(e.path().join("qemu.pid")).ok().and_then(|s| s.trim().parse().ok())
            else {
                continue;
            };
            if is_our_qemu(pid, &id) {
                tracing::warn!(vm = %id, pid, "killing a VM left running by a previous server");
                kill_pid(pid);
                wait_gone(pid, Duration::from_secs(5));
                killed.push(id);
            }
        }
        killed
    }

    /// Launch `spec` and return once qemu runs the guest (QMP answers `running`). The console
    /// log starts empty at each launch. Fails with the tail of qemu's stderr if qemu exits or
    /// does not answer within the launch timeout.
    pub fn start(&self, spec: &MachineSpec) -> Result<(), VmError> {
        let id = spec.id.clone();
        let dir = self.dir(&id)?;
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(VmError::Launch { id, detail: "the server is shutting down".into() });
        }
        if matches!(self.state(&id), Some(State::Running { .. } | State::Launching { .. })) {
            return Ok(());
        }
        let io = |what| {
            let id = id.clone();
            move |source| VmError::Io { id, what, source }
        };
        std::fs::create_dir_all(&dir).map_err(io("creating its directory"))?;
        let qmp_path = dir.join("qmp.sock");
        let _ = std::fs::remove_file(&qmp_path);
        let _ = std::fs::remove_file(dir.join("qemu.pid"));
        std::fs::write(dir.join("console.log"), b"").map_err(io("clearing the console log"))?;
        let stderr = std::fs::File::create(dir.join("qemu.log")).map_err(io("creating qemu.log"))?;
        let ssh_port = free_port().map_err(io("picking the SSH port"))?;
        let args = self.args(spec, &dir, ssh_port)?;
        // qemu runs under `setsid setpriv --pdeathsig SIGKILL` (util-linux), spawned by the
        // thread that then waits for it. In a session of its own, a terminal's Ctrl-C (sent to
        // the server's process group) does not end the VMs abruptly: the server powers them
        // off. With the parent-death signal, a server that dies, even by SIGKILL, takes its
        // VMs with it (the signal follows the spawning thread, which lives as long as qemu).
        let (mut cmd, wrapped) = match (find_tool("setsid"), find_tool("setpriv")) {
            (Some(setsid), Some(setpriv)) => {
                let mut c = Command::new(setsid);
                c.arg(setpriv).args(["--pdeathsig", "SIGKILL", "--"]).arg(&self.config.binary);
                (c, true)
            }
            (None, Some(setpriv)) => {
                let mut c = Command::new(setpriv);
                c.args(["--pdeathsig", "SIGKILL", "--"]).arg(&self.config.binary);
                (c, true)
            }
            _ => (Command::new(&self.config.binary), false),
        };
        cmd.args(&args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
        let (tx, rx) = std::sync::mpsc::channel::<std::io::Result<u32>>();
        let vms = self.vms.clone();
        let log = dir.join("qemu.log");
        let waiter_id = id.clone();
        std::thread::Builder::new()
            .name(format!("vm-{id}"))
            .spawn(move || {
                let mut child = match cmd.spawn() {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let pid = child.id();
                vms.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(
                    waiter_id.clone(),
                    Vm { pid, confirmed: false, ssh_port, powerdown_since: None, requested: false, exit: None },
                );
                let _ = tx.send(Ok(pid));
                let status = child.wait();
                let mut m = vms.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(vm) = m.get_mut(&waiter_id)
                    && vm.pid == pid
                {
                    let (ok, what) = match &status {
                        Ok(s) if s.success() => (true, format!("qemu exited ({s})")),
                        Ok(s) => (false, format!("qemu ended: {s}")),
                        Err(e) => (false, format!("waiting for qemu: {e}")),
                    };
                    // qemu exits 0 when the guest powers off and when asked to quit.
                    let orderly = vm.requested || ok;
                    let tail = tail_text(&log, 600);
                    let reason = if tail.is_empty() { what } else { format!("{what}; stderr: {tail}") };
                    vm.exit = Some(Exit { orderly, reason });
                }
            })
            .map_err(io("starting the VM's thread"))?;
        let pid = rx
            .recv()
            .map_err(|_| VmError::Launch { id: id.clone(), detail: "the VM's thread ended".into() })?
            .map_err(io("spawning qemu"))?;
        tracing::info!(vm = %id, pid, accel = self.config.accel, vcpus = spec.vcpus, memory_mib = spec.memory_mib,
            ssh_port, pdeathsig = wrapped, "VM launched");
        let deadline = Instant::now() + self.config.launch_timeout;
        let running = loop {
            if let Some(State::Exited(e)) = self.state(&id) {
                break Err(VmError::Launch { id: id.clone(), detail: e.reason });
            }
            match qmp::Client::connect(&qmp_path, Duration::from_millis(500))
                .and_then(|mut c| c.execute("query-status", None))
            {
                Ok(v) if v["status"] == "running" => break Ok(()),
                Ok(_) | Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                Ok(v) => break Err(VmError::Launch { id: id.clone(), detail: format!("status {}", v["status"]) }),
                Err(e) => break Err(VmError::Qmp(e, id.clone())),
            }
        };
        match &running {
            Ok(()) => {
                if let Some(vm) = self.vms().get_mut(&id).filter(|v| v.pid == pid) {
                    vm.confirmed = true;
                }
            }
            Err(_) => {
                let _ = self.kill(&id);
            }
        }
        running
    }

    fn args(&self, spec: &MachineSpec, dir: &Path, ssh_port: u16) -> Result<Vec<String>, VmError> {
        let d = |p: &str| dir.join(p).display().to_string();
        let mut a: Vec<String> = vec![
            "-name".into(),
            format!("snapdisk-vm:{}", spec.id),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-machine".into(),
            "pc".into(),
            "-accel".into(),
            self.config.accel.into(),
            "-smp".into(),
            spec.vcpus.max(1).to_string(),
            "-m".into(),
            format!("{}M", spec.memory_mib.max(64)),
            "-display".into(),
            "none".into(),
            "-serial".into(),
            format!("file:{}", d("console.log")),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", d("qmp.sock")),
            "-pidfile".into(),
            d("qemu.pid"),
            "-netdev".into(),
            format!("user,id=net0,hostfwd=tcp:127.0.0.1:{ssh_port}-:22"),
            "-device".into(),
            "virtio-net-pci,netdev=net0,romfile=".into(),
        ];
        let sock = self.config.nbd_socket.display().to_string();
        // Disk I/O runs in an I/O thread of its own, out of the big qemu lock the vCPU (and,
        // under TCG, the emulation) holds: each NBD request needs less of the main loop.
        a.push("-object".into());
        a.push("iothread,id=io0".into());
        for (i, disk) in spec.disks.iter().enumerate() {
            if !valid_id(&disk.export) || !valid_id(&disk.serial) {
                return Err(VmError::BadId(disk.export.clone()));
            }
            a.push("-drive".into());
            a.push(format!(
                "if=none,id=disk{i},format=raw,file.driver=nbd,file.server.type=unix,file.server.path={sock},file.export={}",
                disk.export
            ));
            a.push("-device".into());
            let boot = if i == 0 { ",bootindex=0" } else { "" };
            a.push(format!("virtio-blk-pci,drive=disk{i},iothread=io0,serial={}{boot}", disk.serial));
        }
        if let Some(data) = &spec.user_data {
            let path = dir.join("user-data");
            std::fs::write(&path, data).map_err(|source| VmError::Io {
                id: spec.id.clone(),
                what: "writing the user data",
                source,
            })?;
            a.push("-fw_cfg".into());
            a.push(format!("name=opt/com.snapdisk/user-data,file={}", path.display()));
        }
        Ok(a)
    }

    fn qmp(&self, id: &str, command: &str) -> Result<(), VmError> {
        let dir = self.dir(id)?;
        let mut c = qmp::Client::connect(&dir.join("qmp.sock"), Duration::from_secs(2))
            .map_err(|e| VmError::Qmp(e, id.to_string()))?;
        c.execute(command, None).map_err(|e| VmError::Qmp(e, id.to_string()))?;
        Ok(())
    }

    /// Press the ACPI power button (`system_powerdown`); the guest decides when to power off.
    /// The stop timeout counts from the first press that reached qemu: a failed one is
    /// pressed again on the next call.
    pub fn power_off(&self, id: &str) -> Result<(), VmError> {
        {
            let mut vms = self.vms();
            let vm = vms.get_mut(id).filter(|v| v.exit.is_none()).ok_or_else(|| VmError::NotRunning(id.into()))?;
            vm.requested = true;
        }
        self.qmp(id, "system_powerdown")?;
        if let Some(vm) = self.vms().get_mut(id) {
            vm.powerdown_since.get_or_insert_with(Instant::now);
        }
        Ok(())
    }

    /// Reset the guest (`system_reset`), as the reset button would: it boots again.
    pub fn reset(&self, id: &str) -> Result<(), VmError> {
        if !matches!(self.state(id), Some(State::Running { .. })) {
            return Err(VmError::NotRunning(id.into()));
        }
        self.qmp(id, "system_reset")
    }

    /// End the VM now (SIGKILL; the guest gets no say) and return once its process is gone.
    /// Writes the guest flushed before are on the disk: each flush was answered by the NBD
    /// server only after the data was durable.
    pub fn kill(&self, id: &str) -> Result<(), VmError> {
        let pid = {
            let mut vms = self.vms();
            match vms.get_mut(id) {
                Some(vm) if vm.exit.is_none() => {
                    vm.requested = true;
                    vm.pid
                }
                _ => return Ok(()),
            }
        };
        kill_pid(pid);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.state(id), Some(State::Exited(_)) | None) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(VmError::Launch { id: id.into(), detail: format!("process {pid} did not exit after SIGKILL") })
    }

    /// What is known of VM `id` in this process; `None` if it was never started here (or was
    /// forgotten).
    pub fn state(&self, id: &str) -> Option<State> {
        let vms = self.vms();
        let vm = vms.get(id)?;
        Some(match &vm.exit {
            Some(e) => State::Exited(e.clone()),
            None if !vm.confirmed => State::Launching { pid: vm.pid },
            None => State::Running { pid: vm.pid, powerdown_since: vm.powerdown_since, ssh_port: vm.ssh_port },
        })
    }

    /// Drop the record of an exited VM (its files stay, the console log included).
    pub fn forget(&self, id: &str) {
        let mut vms = self.vms();
        if vms.get(id).is_some_and(|v| v.exit.is_some()) {
            vms.remove(id);
        }
    }

    /// Ids of every VM whose process runs.
    pub fn running(&self) -> Vec<String> {
        self.vms().iter().filter(|(_, v)| v.exit.is_none()).map(|(k, _)| k.clone()).collect()
    }

    /// The last `max` bytes (at most) of the VM's serial console and when it last changed.
    /// Kept after the VM stops, until its next start.
    pub fn console(&self, id: &str, max: u64) -> Option<(Vec<u8>, SystemTime)> {
        let path = self.dir(id).ok()?.join("console.log");
        let mut f = std::fs::File::open(&path).ok()?;
        let meta = f.metadata().ok()?;
        let len = meta.len();
        f.seek(SeekFrom::Start(len.saturating_sub(max))).ok()?;
        let mut buf = Vec::new();
        f.take(max).read_to_end(&mut buf).ok()?;
        Some((buf, meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
    }

    /// End VM `id` if it runs, forget it and delete its directory (console log and user data
    /// included): the instance is gone.
    pub fn remove(&self, id: &str) -> Result<(), VmError> {
        self.kill(id)?;
        self.vms().remove(id);
        let dir = self.dir(id)?;
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(VmError::Io { id: id.into(), what: "removing its directory", source: e })
            }
            _ => Ok(()),
        }
    }

    /// Power every VM off, wait up to `grace` for their guests, then kill what remains (the
    /// server's shutdown: the catalog keeps such instances Running, and the next server
    /// starts them again). No VM starts after this begins.
    pub fn shutdown(&self, grace: Duration) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        let ids = self.running();
        for id in &ids {
            if let Err(e) = self.power_off(id) {
                tracing::warn!(vm = %id, error = %e, "power-off at shutdown");
            }
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && !self.running().is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
        for id in self.running() {
            tracing::warn!(vm = %id, "the guest did not power off in time; killing it");
            let _ = self.kill(&id);
        }
    }
}

/// A util-linux tool (`setsid`, `setpriv`), if installed (Debian: essential).
fn find_tool(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/bin"].iter().map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn kill_pid(pid: u32) {
    if let Ok(p) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
    }
}

fn is_our_qemu(pid: u32, id: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|b| *b == 0).any(|arg| arg == format!("snapdisk-vm:{id}").as_bytes()))
        .unwrap_or(false)
}

fn wait_gone(pid: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists() {
        // A killed child of a dead server is reaped by init; until then it is a zombie.
        if std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z ")) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tail_text(path: &Path, max: usize) -> String {
    let t = std::fs::read(path).unwrap_or_default();
    let s = String::from_utf8_lossy(&t[t.len().saturating_sub(max)..]).trim().to_string();
    s.replace('\n', " | ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn runner(binary: &str, dir: &Path) -> Runner {
        Runner::new(Config {
            binary: binary.into(),
            accel: "tcg",
            run_dir: dir.to_path_buf(),
            nbd_socket: dir.join("nbd.sock"),
            launch_timeout: Duration::from_secs(3),
        })
    }

    fn spec(id: &str) -> MachineSpec {
        MachineSpec {
            id: id.into(),
            vcpus: 2,
            memory_mib: 256,
            disks: vec![
                DiskSpec { export: "d-sys".into(), serial: "d-sys".into() },
                DiskSpec { export: "d-data".into(), serial: "d-data".into() },
            ],
            user_data: Some(b"pattern=x".to_vec()),
        }
    }

    #[test]
    fn qemu_arguments_name_the_vm_boot_the_first_disk_and_forward_ssh_on_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let r = runner("qemu-system-x86_64", dir.path());
        std::fs::create_dir_all(dir.path().join("i-1")).unwrap();
        let a = r.args(&spec("i-1"), &dir.path().join("i-1"), 2222).unwrap();
        let joined = a.join(" ");
        assert!(joined.contains("-name snapdisk-vm:i-1"));
        assert!(joined.contains("-accel tcg -smp 2 -m 256M"));
        assert!(joined.contains("hostfwd=tcp:127.0.0.1:2222-:22"));
        assert!(joined.contains("file.export=d-sys"));
        assert!(joined.contains("virtio-blk-pci,drive=disk0,iothread=io0,serial=d-sys,bootindex=0"));
        assert!(joined.contains("virtio-blk-pci,drive=disk1,iothread=io0,serial=d-data "));
        assert!(joined.contains("name=opt/com.snapdisk/user-data,file="));
        assert_eq!(std::fs::read(dir.path().join("i-1/user-data")).unwrap(), b"pattern=x");
        // Ids end up in paths and qemu option strings: only plain ones are accepted.
        let mut bad = spec("i-1");
        bad.disks[0].export = "d,file=/etc/passwd".into();
        assert!(matches!(r.args(&bad, dir.path(), 1), Err(VmError::BadId(_))));
        assert!(matches!(r.start(&spec("../x")), Err(VmError::BadId(_))));
    }

    #[test]
    fn a_qemu_that_exits_at_once_is_a_failed_launch_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("fake-qemu");
        std::fs::write(&script, "#!/bin/sh\necho 'could not open disk' >&2\nexit 1\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let r = runner(script.to_str().unwrap(), dir.path());
        let err = r.start(&spec("i-2")).unwrap_err().to_string();
        assert!(err.contains("could not open disk"), "{err}");
        match r.state("i-2") {
            Some(State::Exited(e)) => assert!(!e.orderly, "{e:?}"),
            other => panic!("{other:?}"),
        }
        assert!(r.running().is_empty());
        r.forget("i-2");
        assert_eq!(r.state("i-2"), None);
    }
}
