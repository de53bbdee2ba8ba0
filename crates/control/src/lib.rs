//! The control plane: accounts, resources and their state machines, and the rules of each ECS
//! action. It owns the catalog (SQLite) and drives the storage through [`volumes::Volumes`].
//! Everything here is synchronous; the transport runs it on blocking threads.
//!
//! Writes run one at a time on the writer connection, under the catalog lock. Read-only
//! actions (every Describe*) run on reader connections of their own and never take that lock;
//! they see transitions that are due but not yet completed through the catalog's `*_now`
//! views, so what a poller sees does not depend on when the ticker last ran.

pub mod admin;
pub mod autosnap;
pub mod config;
mod db;
pub mod exports;
mod fairness;
mod guards;
mod imports;
pub mod machines;
pub mod model;
mod ops;
pub mod shapes;
mod sshkeys;
mod transitions;
pub mod volumes;

use config::{Config, Timings};
use ecs_api::action::Request;
use ecs_api::auth::{KeyInfo, KeyStore};
use ecs_api::{ApiError, Code, Node};
use rand::Rng;
use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use volumes::{FaultInjector, Volumes};

pub use db::OpenError;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("catalog query failed")]
    Sql(#[from] rusqlite::Error),
    #[error("storage recovery failed")]
    Volume(#[from] volumes::VolumeError),
    #[error("{0}")]
    Invalid(String),
}

/// What the running server needs from one request's handler besides its result.
pub(crate) struct Env<'a> {
    pub account_id: &'a str,
    pub region_id: Option<&'a str>,
    pub now: i64,
    pub config: &'a Config,
    pub timings: Timings,
    pub volumes: &'a FaultInjector<Box<dyn Volumes>>,
    pub events: Option<std::sync::Arc<dyn exports::Events>>,
    /// The VM runner, when instances run VMs (`machines`).
    pub machines: Option<std::sync::Arc<dyn machines::Machines>>,
    /// What handlers ask of VMs, for the reconciler (`machines`).
    pub vm_requests: &'a machines::VmRequests,
    /// The server's secret for NextToken MACs (`ops::listing`).
    pub paging_key: &'a [u8],
    /// The request's ClientToken, for actions that create something.
    pub client_token: Option<&'a str>,
    /// What makes two calls with one ClientToken "the same" ([`Request::fingerprint`]).
    pub fingerprint: &'a str,
    /// CreateKeyPair's new key, made before the catalog lock is taken (RSA key generation
    /// takes tens of milliseconds, which no other write should wait for).
    pub new_key: std::cell::Cell<Option<Result<sshkeys::Generated, sshkeys::KeyError>>>,
}

impl Env<'_> {
    /// Close data-plane connections to exports this change took away.
    pub fn revoke(&self, exports: &[String]) {
        if let (Some(e), false) = (&self.events, exports.is_empty()) {
            e.revoke(exports);
        }
    }
}

/// A reading connection and the clock its `*_now` views read.
struct Reader {
    conn: Connection,
    now: Arc<AtomicI64>,
}

/// Readers kept open for reuse; more are opened when all are busy.
const MAX_IDLE_READERS: usize = 16;

pub struct Control {
    conn: Mutex<Connection>,
    catalog: PathBuf,
    readers: Mutex<Vec<Reader>>,
    /// AccessKeys already looked up; cleared by every operator command, so a disabled or
    /// deleted key stops working at once.
    keys: RwLock<HashMap<String, KeyInfo>>,
    /// Bumped (under `keys`' write lock) by every clear: a lookup that read the catalog
    /// before a change caches nothing after it.
    key_generation: AtomicU64,
    paging_key: Vec<u8>,
    config: Config,
    volumes: FaultInjector<Box<dyn Volumes>>,
    events: std::sync::RwLock<Option<std::sync::Arc<dyn exports::Events>>>,
    timings: std::sync::RwLock<Timings>,
    throttle: fairness::Throttle,
    machines: std::sync::RwLock<Option<std::sync::Arc<dyn machines::Machines>>>,
    /// Instances whose VM is being launched now (`machines`).
    launching: Mutex<std::collections::HashSet<String>>,
    /// Images an import thread works on now (`imports`).
    importing: Mutex<std::collections::HashSet<String>>,
    vm_requests: machines::VmRequests,
}

/// The bootstrap account's key; `secret_generated` says it was made now and must be shown.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub account_id: String,
    pub access_key_id: String,
    pub access_key_secret: String,
    pub generated: bool,
}

impl Control {
    pub fn open(data_dir: &Path, config: Config, volumes: Box<dyn Volumes>) -> Result<Control, ControlError> {
        std::fs::create_dir_all(data_dir).map_err(|e| ControlError::Invalid(format!("{}: {e}", data_dir.display())))?;
        let catalog = data_dir.join("catalog.sqlite");
        let conn = db::open(&catalog)?;
        let paging_key = db::paging_key(&conn)?;
        let config_timings = config.timings;
        let control = Control {
            conn: Mutex::new(conn),
            catalog,
            readers: Mutex::new(Vec::new()),
            keys: RwLock::new(HashMap::new()),
            key_generation: AtomicU64::new(0),
            paging_key,
            config,
            volumes: FaultInjector::new(volumes),
            events: Default::default(),
            timings: std::sync::RwLock::new(config_timings),
            throttle: fairness::Throttle::default(),
            machines: Default::default(),
            launching: Default::default(),
            importing: Default::default(),
            vm_requests: Default::default(),
        };
        // Instances run VMs only once a runner is set (`set_machines`), in this process. An
        // instance a VM was starting or stopping before gets its timer back, so it does not
        // stay Starting or Stopping when this server runs no VMs.
        {
            let conn = control.lock();
            conn.execute("DELETE FROM settings WHERE key='machines'", [])?;
            conn.execute(
                "INSERT OR IGNORE INTO transitions(kind, id, due_ms)
                 SELECT 'instance', id, ?1 FROM instances
                 WHERE released=0 AND status IN ('Starting', 'Stopping')
                   AND id NOT IN (SELECT id FROM transitions WHERE kind='instance')",
                [model::now_ms()],
            )?;
        }
        match control.setting::<Timings>("timings")? {
            Some(t) => control.cache_timings(t),
            None => control.set_setting("timings", &config_timings)?,
        }
        control.recover()?;
        Ok(control)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        match self.conn.lock() {
            Ok(g) => g,
            // A panic while holding the lock cannot leave a half-written transaction behind:
            // SQLite rolls it back, so the connection is still sound.
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The timings in force (persisted in the catalog, cached here: read on every request).
    pub fn timings(&self) -> Timings {
        self.timings.read().map(|t| *t).unwrap_or(self.config.timings)
    }

    pub(crate) fn cache_timings(&self, t: Timings) {
        if let Ok(mut c) = self.timings.write() {
            *c = t;
        }
    }

    fn setting<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ControlError> {
        let raw: Option<String> =
            self.lock().query_row("SELECT value FROM settings WHERE key=?1", [key], |r| r.get(0)).optional()?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    fn set_setting<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), ControlError> {
        let raw = serde_json::to_string(value).map_err(|e| ControlError::Invalid(e.to_string()))?;
        self.lock().execute("INSERT OR REPLACE INTO settings(key, value) VALUES(?1, ?2)", [key, &raw])?;
        Ok(())
    }

    /// [`Control::respond`], its answer as a `serde_json::Value` (for callers that index into it).
    pub fn handle(&self, account_id: &str, req: Request) -> Result<Value, ApiError> {
        self.respond(account_id, req).map(Node::into_value)
    }

    /// Run one verified, parsed request for `account_id`; the answer is the response body
    /// without its RequestId. Read-only actions run on a reader connection; the others under
    /// the catalog lock, one at a time.
    pub fn respond(&self, account_id: &str, req: Request) -> Result<Node, ApiError> {
        if let Some(region) = req.region_id.as_deref()
            && self.config.region(region).is_none()
        {
            return Err(Code::InvalidRegionIdMalFormed.into());
        }
        let env = Env {
            account_id,
            region_id: req.region_id.as_deref(),
            now: model::now_ms(),
            config: &self.config,
            timings: self.timings(),
            volumes: &self.volumes,
            events: self.events.read().ok().and_then(|e| e.clone()),
            machines: self.machines(),
            vm_requests: &self.vm_requests,
            paging_key: &self.paging_key,
            client_token: req.client_token.as_deref(),
            fingerprint: &req.fingerprint,
            new_key: std::cell::Cell::new(
                matches!(req.action, ecs_api::Action::CreateKeyPair(_)).then(sshkeys::generate),
            ),
        };
        if req.action.is_read_only() {
            return self.read(env.now, |conn| ops::dispatch_read(conn, &env, req.action)).map_err(|e| {
                tracing::error!(error = %e, "catalog read failed");
                ApiError::new(Code::InternalFailure)
            })?;
        }
        let mut conn = self.lock();
        ops::dispatch(&mut conn, &env, req.action)
    }

    /// Run `f` in one read transaction on a reader connection whose views see time `now`
    /// (ms). Never waits for the writer (WAL).
    pub(crate) fn read<T>(&self, now: i64, f: impl FnOnce(&Connection) -> T) -> Result<T, ControlError> {
        let idle = self.readers.lock().ok().and_then(|mut r| r.pop());
        let reader = match idle {
            Some(r) => r,
            None => {
                let now = Arc::new(AtomicI64::new(0));
                Reader { conn: db::open_reader(&self.catalog, now.clone())?, now }
            }
        };
        reader.now.store(now, Ordering::Relaxed);
        // One read transaction, so TotalCount and the page agree (statements cached: these
        // run on every read).
        reader.conn.prepare_cached("BEGIN")?.execute([])?;
        let out = f(&reader.conn);
        reader.conn.prepare_cached("COMMIT")?.execute([])?;
        if let Ok(mut idle) = self.readers.lock()
            && idle.len() < MAX_IDLE_READERS
        {
            idle.push(reader);
        }
        Ok(out)
    }

    /// Forget cached AccessKeys and request-rate buckets (after any operator change).
    pub(crate) fn forget_keys(&self) {
        self.throttle.forget();
        if let Ok(mut k) = self.keys.write() {
            self.key_generation.fetch_add(1, Ordering::SeqCst);
            k.clear();
        }
    }

    /// Complete every transition that is due; the server calls this on a short timer.
    pub fn tick(&self) -> Result<(), ControlError> {
        let mut conn = self.lock();
        transitions::complete_due(&mut conn, model::now_ms())?;
        Ok(())
    }

    /// Replay storage intents left by a crash, so that catalog and storage agree again.
    fn recover(&self) -> Result<(), ControlError> {
        let mut conn = self.lock();
        let timings: Timings = conn
            .query_row("SELECT value FROM settings WHERE key='timings'", [], |r| r.get::<_, String>(0))
            .optional()?
            .and_then(|r| serde_json::from_str(&r).ok())
            .unwrap_or(self.config.timings);
        ops::recover_intents(&mut conn, &self.volumes, timings)
    }

    /// Ensure the bootstrap account exists; with `key` given, that is its AccessKey.
    pub fn bootstrap(&self, key: Option<(String, String)>) -> Result<Bootstrap, ControlError> {
        let conn = self.lock();
        let existing: Option<(String, String, String)> = conn
            .query_row(
                "SELECT k.account_id, k.id, k.secret FROM meta m JOIN access_keys k ON k.id = m.value WHERE m.key='bootstrap_key'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        if let Some((account_id, id, secret)) = existing.clone()
            && key.as_ref().is_none_or(|(k, s)| *k == id && *s == secret)
        {
            return Ok(Bootstrap { account_id, access_key_id: id, access_key_secret: secret, generated: false });
        }
        let account_id = match &existing {
            Some((a, ..)) => a.clone(),
            None => admin::insert_account(&conn, "bootstrap")?,
        };
        let generated = key.is_none();
        let (id, secret) = key.unwrap_or_else(new_key_pair);
        conn.execute(
            "INSERT OR REPLACE INTO access_keys(id, secret, account_id, enabled, created_ms) VALUES(?1, ?2, ?3, 1, ?4)",
            rusqlite::params![id, secret, account_id, model::now_ms()],
        )?;
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('bootstrap_key', ?1)", [&id])?;
        Ok(Bootstrap { account_id, access_key_id: id, access_key_secret: secret, generated })
    }
}

impl KeyStore for Control {
    /// One token from the account's request bucket (`fairness`); its limits are read once
    /// and kept until the next operator command.
    fn admit(&self, account_id: &str) -> Result<(), ApiError> {
        self.throttle.take(account_id, model::now_ms(), || {
            let l = self
                .read(0, |c| fairness::limits(c, account_id, &self.config.limits))
                .ok()
                .and_then(Result::ok)
                .unwrap_or_else(|| self.config.limits.clone());
            (l.requests_per_second, l.burst)
        })
    }

    /// From the cache, else from a reader connection (never the writer's lock).
    fn lookup(&self, access_key_id: &str) -> Option<KeyInfo> {
        if let Some(k) = self.keys.read().ok().and_then(|k| k.get(access_key_id).cloned()) {
            return Some(k);
        }
        let generation = self.key_generation.load(Ordering::SeqCst);
        let found = self
            .read(model::now_ms(), |conn| {
                conn.prepare_cached("SELECT account_id, secret, enabled FROM access_keys WHERE id=?1")?
                    .query_row([access_key_id], |r| {
                        Ok(KeyInfo { account_id: r.get(0)?, secret: r.get(1)?, enabled: r.get(2)? })
                    })
                    .optional()
            })
            .ok()?
            .ok()??;
        if let Ok(mut k) = self.keys.write()
            && self.key_generation.load(Ordering::SeqCst) == generation
        {
            k.insert(access_key_id.to_string(), found.clone());
        }
        Some(found)
    }
}

const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// `prefix` + 20 random lower-case alphanumerics, the shape of ECS ids (`d-bp1...`).
pub(crate) fn new_id(prefix: &str) -> String {
    let mut rng = rand::rng();
    let tail: String = (0..20).map(|_| ALNUM[rng.random_range(0..ALNUM.len())] as char).collect();
    format!("{prefix}{tail}")
}

/// An AccessKey pair in Alibaba's shape: `LTAI` + 20 characters, and a 30-character secret.
pub fn new_key_pair() -> (String, String) {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut pick = |n: usize| -> String { (0..n).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect() };
    (format!("LTAI{}", pick(20)), pick(30))
}
