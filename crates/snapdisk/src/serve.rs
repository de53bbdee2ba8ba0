//! `snapdisk serve`: open the data directory, bootstrap the first account, serve HTTP until
//! SIGTERM or Ctrl-C, and drive timed transitions in the background.

use crate::{DataDir, dataplane, http};
use anyhow::Context;
use control::Control;
use control::config::{Config, Region, Timings};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    data: DataDir,
    /// Address of the ECS API; port 0 picks a free one (printed on its own line).
    #[arg(long, default_value = crate::DEFAULT_LISTEN, value_parser = crate::parse_listen)]
    listen: SocketAddr,
    /// TCP address for NBD; port 0 picks a free one (printed on its own line). Refused
    /// without --nbd-tls-cert/--nbd-tls-key unless --nbd-insecure is given. Without it, NBD
    /// is served only on the unix socket (--nbd-socket).
    #[arg(long, value_parser = crate::parse_listen)]
    nbd_listen: Option<SocketAddr>,
    /// The unix socket NBD is always served on, mode 0600, for the server's own VMs and
    /// local tools (default <data-dir>/nbd.sock; printed as `nbd socket PATH`).
    #[arg(long)]
    nbd_socket: Option<std::path::PathBuf>,
    /// Serve NBD over TCP in the clear, to anyone who can connect, with every export visible
    /// (the behaviour before NBD security). Logs a warning.
    #[arg(long)]
    nbd_insecure: bool,
    /// PEM certificate chain of the NBD server (e.g. from `snapdisk nbd-tls-init`). With
    /// --nbd-tls-key, TCP NBD is TLS-only and clients need a certificate from the operator CA.
    #[arg(long, requires = "nbd_tls_key")]
    nbd_tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --nbd-tls-cert.
    #[arg(long, requires = "nbd_tls_cert")]
    nbd_tls_key: Option<std::path::PathBuf>,
    /// PEM file of further CAs whose client certificates are accepted (their CN is the
    /// account id), besides the operator CA in <data-dir>/nbd-ca.
    #[arg(long, requires = "nbd_tls_cert")]
    nbd_tls_client_ca: Option<std::path::PathBuf>,
    /// Milliseconds an NBD client has from connecting to the start of transmission (the TLS
    /// handshake included).
    #[arg(long, default_value_t = 10_000)]
    nbd_negotiation_timeout_ms: u64,
    /// MiB of NBD request and reply payload all connections together may hold (each may also
    /// hold one request beyond it).
    #[arg(long, default_value_t = 256)]
    nbd_reply_memory_mib: u64,
    /// Open NBD connections at once (default: an eighth of the open-file limit, at most
    /// 8,192; a TLS connection uses three descriptors). Past it, new ones are closed at accept.
    #[arg(long)]
    nbd_max_connections: Option<usize>,
    /// Open NBD connections from one address (default: half of --nbd-max-connections).
    #[arg(long)]
    nbd_max_connections_per_peer: Option<usize>,
    /// Microseconds a TCP NBD connection whose client sends one request at a time may poll for
    /// the next before sleeping (adaptive, like qemu's `poll-max-ns`; 0 turns polling off and
    /// spends no CPU waiting). Unix-socket connections (the server's VMs) never poll.
    #[arg(long, default_value_t = 32)]
    nbd_poll_max_us: u64,
    /// Data I/O mode, as qemu names it: `none` bypasses the page cache (O_DIRECT), `writeback`
    /// goes through it.
    #[arg(long, value_enum, default_value_t = Cache::None)]
    cache: Cache,
    /// Extra time every transitional state lasts (Creating, Stopping, ReIniting, ...).
    #[arg(long)]
    transition_ms: Option<u64>,
    /// A JSON file listing regions and zones: [{"id", "local_name", "zones": [{"id", "local_name"}]}].
    #[arg(long)]
    regions: Option<std::path::PathBuf>,
    /// A JSON file listing the instance types on offer, in order: [{"id": "ecs.g7.large",
    /// "cpus": 2, "memory_mib": 8192}, ...]. Default: 16 common types (docs/api-compat.md §2.5a).
    #[arg(long)]
    instance_types: Option<std::path::PathBuf>,
    /// Signed API requests a second each account may make, sustained; more are answered
    /// Throttling.User with x-acs-retry-after (0: no limit). The operator's account-limits
    /// command overrides this and the next four per account.
    #[arg(long, default_value_t = 500)]
    account_requests_per_second: u32,
    /// Requests each account may make at once above its rate, after a quiet spell.
    #[arg(long, default_value_t = 1000)]
    account_burst: u32,
    /// Live disks (system and data) each account may hold; more: QuotaExceed.PortableCloudDisk.
    #[arg(long, default_value_t = 50_000)]
    quota_disks: i64,
    /// Live snapshots each account may hold; more: QuotaExceed.Snapshot.
    #[arg(long, default_value_t = 500_000)]
    quota_snapshots: i64,
    /// Live instances each account may hold; more: QuotaExceed.ElasticQuota.
    #[arg(long, default_value_t = 5_000)]
    quota_instances: i64,
    /// SignatureNonces remembered at once (about 60 bytes each; each is kept 30 minutes). When
    /// full, requests are refused with Throttling until the oldest expire: never forgotten early.
    #[arg(long, default_value_t = ecs_api::auth::DEFAULT_NONCE_CAPACITY)]
    max_nonces: usize,
    /// Milliseconds an API client has to send a request's headers, and to start its next
    /// request on a kept-alive connection.
    #[arg(long, default_value_t = 10_000)]
    http_header_timeout_ms: u64,
    /// Milliseconds an API client has to send a request's body.
    #[arg(long, default_value_t = 30_000)]
    http_body_timeout_ms: u64,
    /// Open API connections at once (default: a quarter of the open-file limit, at most 16,384).
    #[arg(long)]
    max_connections: Option<usize>,
    /// Open API connections from one address (default: half of --max-connections).
    #[arg(long)]
    max_connections_per_peer: Option<usize>,
    /// Milliseconds open API connections get to finish after SIGTERM before they are dropped.
    #[arg(long, default_value_t = 10_000)]
    shutdown_grace_ms: u64,
    /// Whether instances run VMs (qemu-system-x86_64 on their disks over the NBD socket):
    /// `auto` when the qemu binary is found.
    #[arg(long, value_enum, default_value_t = crate::vms::VmMode::Auto)]
    vms: crate::vms::VmMode,
    /// The qemu system emulator VMs run in.
    #[arg(long, default_value = "qemu-system-x86_64")]
    qemu: std::path::PathBuf,
    /// VM accelerator: auto (KVM on bare metal with a usable /dev/kvm, TCG otherwise), kvm or tcg.
    #[arg(long, default_value = "auto")]
    accel: vm::Accel,
    /// vCPUs a VM gets at most, whatever its instance type says.
    #[arg(long, default_value_t = 2)]
    vm_max_vcpus: u32,
    /// MiB of memory a VM gets at most, whatever its instance type says.
    #[arg(long, default_value_t = 1024)]
    vm_max_memory_mib: u64,
    /// Milliseconds a guest has to power off after StopInstance (and at server shutdown)
    /// before its VM is killed.
    #[arg(long, default_value_t = 60_000)]
    vm_stop_timeout_ms: u64,
    /// An OSS bucket for ImportImage, as NAME=DIR: objects of bucket NAME are the files under
    /// DIR (repeat for more buckets).
    #[arg(long, value_parser = parse_bucket)]
    oss_bucket: Vec<(String, std::path::PathBuf)>,
    /// The image converter ImportImage runs.
    #[arg(long, default_value = "qemu-img")]
    qemu_img: std::path::PathBuf,
}

fn parse_bucket(s: &str) -> Result<(String, std::path::PathBuf), String> {
    let (name, dir) = s.split_once('=').ok_or("expected NAME=DIR")?;
    let ok = (3..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        return Err(format!("{name:?} is not an OSS bucket name (3-63 of a-z, 0-9, -)"));
    }
    let dir = std::path::PathBuf::from(dir);
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    Ok((name.to_string(), dir))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Cache {
    None,
    Writeback,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let dir = args.data.data_dir.clone();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut config = Config::default();
    if let Some(path) = &args.regions {
        let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let regions: Vec<Region> =
            serde_json::from_slice(&raw).with_context(|| format!("parsing {}", path.display()))?;
        anyhow::ensure!(!regions.is_empty(), "{} lists no region", path.display());
        config.regions = regions;
    }
    if let Some(path) = &args.instance_types {
        let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let types: Vec<control::config::InstanceType> =
            serde_json::from_slice(&raw).with_context(|| format!("parsing {}", path.display()))?;
        Config::check_instance_types(&types).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        config.instance_types = types;
    }
    if let Some(ms) = args.transition_ms {
        config.timings = Timings { disk_ms: ms, instance_ms: ms, snapshot_ms: ms };
    }
    config.oss_buckets = args.oss_bucket.iter().cloned().collect();
    config.qemu_img = args.qemu_img.clone();
    config.limits = control::config::Limits {
        requests_per_second: args.account_requests_per_second,
        burst: args.account_burst,
        disks: args.quota_disks,
        snapshots: args.quota_snapshots,
        instances: args.quota_instances,
    };
    // Damaged storage metadata must never be served as data, but the API stays up so the
    // operator can see what is wrong: storage operations then fail with InternalError and
    // NBD refuses every export with the reason.
    let (engine, volumes): (Option<Arc<store::Engine>>, Box<dyn control::volumes::Volumes>) =
        match store::Engine::open_with(&dir.join("store"), store::Options { direct_io: args.cache == Cache::None }) {
            Ok(e) => {
                e.start_gc_thread();
                (Some(e.clone()), Box::new(e))
            }
            Err(e) if e.kind == store::ErrorKind::Corrupt => {
                tracing::error!(error = %e, "storage metadata is corrupt: refusing all disk I/O");
                (None, Box::new(control::volumes::Unavailable(format!("storage metadata is corrupt: {e}"))))
            }
            Err(e) => return Err(e).context("opening the storage engine"),
        };
    let control = Control::open(&dir, config, volumes).context("opening the catalog")?;
    if let Some(ms) = args.transition_ms {
        let t = serde_json::json!({"DiskMs": ms, "InstanceMs": ms, "SnapshotMs": ms});
        control.admin("timings", t).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let env_key = match (std::env::var("SNAPDISK_ACCESS_KEY_ID"), std::env::var("SNAPDISK_ACCESS_KEY_SECRET")) {
        (Ok(id), Ok(secret)) if !id.is_empty() && !secret.is_empty() => Some((id, secret)),
        _ => None,
    };
    let boot = control.bootstrap(env_key).context("bootstrapping the first account")?;
    let admin_token = admin_token(&dir)?;
    let control = Arc::new(control);

    let shutdown = CancellationToken::new();
    let fd_limit = crate::listener::raise_fd_limit();
    let nbd_max = args.nbd_max_connections.unwrap_or((fd_limit / 8).clamp(32, 8_192) as usize).max(1);
    let nbd_options = nbd::Options {
        negotiation_timeout: Duration::from_millis(args.nbd_negotiation_timeout_ms.max(1)),
        reply_memory_kib: args.nbd_reply_memory_mib.max(1).saturating_mul(1024),
        max_connections: nbd_max,
        max_connections_per_peer: args.nbd_max_connections_per_peer.unwrap_or((nbd_max / 2).max(1)),
        poll_max_us: args.nbd_poll_max_us.min(1_000),
    };
    // NBD stops after the VMs (their guests flush while powering off), on a token of its own.
    let nbd_shutdown = CancellationToken::new();
    let nbd_server = nbd::Server::with_options(
        Arc::new(dataplane::Exports { control: control.clone(), engine: engine.clone() }),
        nbd_shutdown.clone(),
        nbd_options,
    );
    control.set_events(Arc::new(dataplane::Revoker(nbd_server.registry.clone())));
    let ca = crate::nbd_tls::Authority::open(&dir)?;
    let tls_files = match (&args.nbd_tls_cert, &args.nbd_tls_key) {
        (Some(cert), Some(key)) => {
            let files = crate::nbd_tls::TlsFiles::load(cert, key, args.nbd_tls_client_ca.as_deref())?;
            let config = files.config(&ca)?;
            nbd_server.set_tls(Some(nbd::Tls { config, identify: Arc::new(crate::nbd_tls::identify) }));
            Some(files)
        }
        _ => None,
    };
    let nbd_listener = match args.nbd_listen {
        None => None,
        Some(addr) => {
            if tls_files.is_none() {
                anyhow::ensure!(
                    args.nbd_insecure,
                    "--nbd-listen {addr} without --nbd-tls-cert/--nbd-tls-key would serve every disk to anyone \
                     who can connect; give TLS credentials, or --nbd-insecure to accept that"
                );
                tracing::warn!(%addr, "NBD over TCP without TLS (--nbd-insecure): anyone who can connect may read and write every attached disk");
            }
            Some(tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?)
        }
    };
    let nbd_socket_path = args.nbd_socket.clone().unwrap_or_else(|| dir.join("nbd.sock"));
    let nbd_unix = bind_private_socket(&nbd_socket_path)?;
    let vm_settings = crate::vms::VmSettings {
        qemu: args.qemu.clone(),
        accel: args.accel,
        max_vcpus: args.vm_max_vcpus,
        max_memory_mib: args.vm_max_memory_mib,
        stop_timeout_ms: args.vm_stop_timeout_ms,
    };
    let machines =
        crate::vms::QemuMachines::open(args.vms, vm_settings, dir.join("vms"), nbd_socket_path.clone())?.map(Arc::new);
    if let Some(m) = &machines {
        control.set_machines(m.clone()).context("enabling VMs")?;
    }
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let max_connections = args.max_connections.unwrap_or((fd_limit / 4).clamp(64, 16_384) as usize).max(1);
    let limits = crate::listener::Limits {
        header_timeout: Duration::from_millis(args.http_header_timeout_ms.max(1)),
        body_timeout: Duration::from_millis(args.http_body_timeout_ms.max(1)),
        max_connections,
        max_per_peer: args.max_connections_per_peer.unwrap_or((max_connections / 2).max(1)),
        grace: Duration::from_millis(args.shutdown_grace_ms),
    };
    tracing::info!(fd_limit, ?limits, "API limits");
    // Nonces seen inside the 30-minute window, across restarts and crashes (nonces.rs).
    let (nonce_files, mut nonces) = crate::nonces::NonceFiles::open(&dir, chrono::Utc::now().timestamp())?;
    nonces.set_capacity(args.max_nonces);
    let nonces = Arc::new(nonces);
    let nonce_files = Arc::new(nonce_files);
    let mut state = http::AppState::new(control.clone(), nonces.clone(), admin_token, limits.body_timeout);
    state.nbd_admin = Some(Arc::new(crate::nbd_tls::NbdAdmin {
        ca,
        control: control.clone(),
        server: nbd_server.clone(),
        tls: tls_files,
    }));
    state.vm_admin = machines.clone();
    let app = http::router(state.clone());

    let mut out = std::io::stdout().lock();
    writeln!(out, "api listening on http://{addr}")?;
    if let Some(l) = &nbd_listener {
        writeln!(out, "nbd listening on {}", l.local_addr()?)?;
    }
    writeln!(out, "nbd socket {}", nbd_socket_path.display())?;
    writeln!(out, "account {} AccessKeyId {}", boot.account_id, boot.access_key_id)?;
    if boot.generated {
        let key = serde_json::json!({
            "AccountId": boot.account_id,
            "AccessKeyId": boot.access_key_id,
            "AccessKeySecret": boot.access_key_secret,
        });
        let path = dir.join("bootstrap-key.json");
        write_private(&path, &serde_json::to_vec_pretty(&key)?)?;
        writeln!(out, "AccessKeySecret {} (shown once; also in {})", boot.access_key_secret, path.display())?;
    }
    writeln!(out, "admin token in {}", dir.join("admin-token").display())?;
    out.flush()?;
    drop(out);

    let nonce_checkpoints = {
        let (files, nonces) = (nonce_files.clone(), nonces.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                if files.due() {
                    let (f, n) = (files.clone(), nonces.clone());
                    let saved = tokio::task::spawn_blocking(move || f.checkpoint(&n, chrono::Utc::now().timestamp()));
                    match saved.await {
                        Ok(Ok(kept)) => tracing::debug!(kept, "nonce checkpoint"),
                        Ok(Err(e)) => tracing::error!(error = ?e, "nonce checkpoint failed"),
                        Err(e) => tracing::error!(error = %e, "nonce checkpoint panicked"),
                    }
                }
            }
        })
    };
    let ticker = {
        let control = control.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(25));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut n = 0u64;
            loop {
                every.tick().await;
                n += 1;
                let c = control.clone();
                // Every fourth tick (100 ms) the VMs are brought in line with their instances.
                let reconcile = n.is_multiple_of(4);
                match tokio::task::spawn_blocking(move || {
                    c.tick()?;
                    // Every second, automatic snapshot policies.
                    if n.is_multiple_of(40) {
                        c.run_auto_snapshots(control::model::now_ms())?;
                    }
                    if reconcile {
                        c.run_imports()?;
                        c.reconcile_machines()
                    } else {
                        Ok(())
                    }
                })
                .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = ?e, "completing transitions failed"),
                    Err(e) => tracing::error!(error = %e, "transition task panicked"),
                }
            }
        })
    };
    let nbd_unix_task = tokio::spawn(nbd::serve_unix(nbd_server.clone(), nbd_unix));
    let nbd_task = nbd_listener.map(|l| tokio::spawn(nbd::serve(nbd_server, l)));
    let stop = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        stop.cancel();
    });
    crate::listener::serve(listener, app, limits, shutdown.clone()).await;
    shutdown.cancel();
    // VMs first (documented in docs/vms.md): each guest is asked to power off and killed
    // after the shutdown grace; their instances stay Running and start again with the server.
    ticker.abort();
    if let Some(m) = machines.clone() {
        let grace = limits.grace;
        let _ = tokio::task::spawn_blocking(move || m.shutdown(grace)).await;
    }
    nbd_shutdown.cancel();
    // NBD connections drain, flush and close before the process exits.
    if let Some(t) = nbd_task {
        let _ = t.await;
    }
    let _ = nbd_unix_task.await;
    let _ = std::fs::remove_file(&nbd_socket_path);
    nonce_checkpoints.abort();
    if let Some(engine) = &engine {
        engine.sync().context("flushing the storage engine")?;
    }
    nonce_files.checkpoint(&nonces, chrono::Utc::now().timestamp()).context("saving the nonces")?;
    tracing::info!("stopped");
    Ok(())
}

/// Bind a unix socket only the server's user can open (mode 0600, created so from the
/// start), replacing a stale one.
fn bind_private_socket(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    use nix::sys::stat::{Mode, umask};
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(m) = std::fs::symlink_metadata(path) {
        anyhow::ensure!(m.file_type().is_socket(), "{} exists and is not a socket", path.display());
        std::fs::remove_file(path).with_context(|| format!("removing the stale {}", path.display()))?;
    }
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    umask(old);
    let listener = bound.with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(tokio::net::UnixListener::from_std(listener)?)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

/// The operator token: SNAPDISK_ADMIN_TOKEN (remembered in the data dir), else the stored one,
/// else a new random one.
fn admin_token(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("admin-token");
    if let Ok(t) = std::env::var("SNAPDISK_ADMIN_TOKEN")
        && !t.is_empty()
    {
        write_private(&path, t.as_bytes())?;
        return Ok(t);
    }
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let (_, t) = control::new_key_pair();
    write_private(&path, t.as_bytes())?;
    Ok(t)
}

pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}
