//! NBD credentials (docs/nbd.md, "NBD security"): the operator CA kept in the data dir, the
//! client certificates it issues to accounts (the certificate's CN is the account id), the
//! server certificate `snapdisk nbd-tls-init` issues, and the revocation list checked at
//! every TLS handshake. rustls and rcgen do all the cryptography; nothing here is new.
//!
//! Files, in `<data-dir>/nbd-ca/`: `ca-cert.pem`, `ca-key.pem` (0600), `issued.json` (every
//! client certificate issued: serial, account, time, revoked) and `ca-crl.pem` (the current
//! revocation list, for tools that want it).

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use time::{Duration as TimeDelta, OffsetDateTime};

/// One client certificate the CA issued.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Issued {
    /// Lowercase hex of the certificate's serial number.
    pub serial: String,
    pub account_id: String,
    /// Seconds since the epoch.
    pub issued_at: i64,
    /// Seconds since the epoch; set once revoked.
    pub revoked_at: Option<i64>,
}

/// The operator CA and its records.
pub struct Authority {
    dir: PathBuf,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
    issued: Mutex<Vec<Issued>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {}", tmp.display()))?;
    Ok(())
}

fn random_serial() -> SerialNumber {
    let mut b: [u8; 16] = rand::random();
    b[0] &= 0x7f; // positive
    b[0] |= 0x01; // and 16 bytes long, so its hex is stable
    SerialNumber::from_slice(&b)
}

impl Authority {
    /// The CA in `<data_dir>/nbd-ca`, created (key 0600) if there is none yet.
    pub fn open(data_dir: &Path) -> anyhow::Result<Authority> {
        let dir = data_dir.join("nbd-ca");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let (cert_path, key_path) = (dir.join("ca-cert.pem"), dir.join("ca-key.pem"));
        if !key_path.exists() {
            let key = KeyPair::generate().context("generating the NBD CA key")?;
            let mut p = CertificateParams::new(Vec::<String>::new())?;
            p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            p.distinguished_name.push(DnType::CommonName, "Snapdisk NBD CA");
            p.key_usages =
                vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
            p.serial_number = Some(random_serial());
            p.not_before = OffsetDateTime::now_utc() - TimeDelta::days(1);
            p.not_after = OffsetDateTime::now_utc() + TimeDelta::days(3650);
            let cert = p.self_signed(&key)?;
            write_private(&key_path, key.serialize_pem().as_bytes())?;
            std::fs::write(&cert_path, cert.pem()).with_context(|| format!("writing {}", cert_path.display()))?;
        }
        let key_pem = std::fs::read_to_string(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
        let ca_pem = std::fs::read_to_string(&cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, KeyPair::from_pem(&key_pem)?).context("loading the NBD CA")?;
        let issued = match std::fs::read(dir.join("issued.json")) {
            Ok(raw) => serde_json::from_slice(&raw).context("parsing issued.json")?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).context("reading issued.json"),
        };
        let a = Authority { dir, ca_pem, issuer, issued: Mutex::new(issued) };
        a.write_crl()?;
        Ok(a)
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn ca_der(&self) -> anyhow::Result<CertificateDer<'static>> {
        CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).context("parsing the NBD CA certificate")
    }

    fn records(&self) -> std::sync::MutexGuard<'_, Vec<Issued>> {
        self.issued.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, issued: &[Issued]) -> anyhow::Result<()> {
        write_private(&self.dir.join("issued.json"), &serde_json::to_vec_pretty(issued)?)
    }

    /// Issue a client certificate for `account` valid for `days`: (record, certificate PEM,
    /// private key PEM).
    pub fn issue_client(&self, account: &str, days: i64) -> anyhow::Result<(Issued, String, String)> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name.push(DnType::CommonName, account);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let serial = random_serial();
        p.serial_number = Some(serial.clone());
        p.not_before = OffsetDateTime::now_utc() - TimeDelta::hours(1);
        p.not_after = OffsetDateTime::now_utc() + TimeDelta::days(days.max(1));
        let cert = p.signed_by(&key, &self.issuer)?;
        let rec = Issued {
            serial: hex(&serial.to_bytes()),
            account_id: account.to_string(),
            issued_at: chrono::Utc::now().timestamp(),
            revoked_at: None,
        };
        let mut issued = self.records();
        issued.push(rec.clone());
        self.save(&issued)?;
        Ok((rec, cert.pem(), key.serialize_pem()))
    }

    /// A server certificate for `names` (DNS names or IP addresses): (certificate PEM, key PEM).
    pub fn issue_server(&self, names: &[String], days: i64) -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name.push(DnType::CommonName, names.first().map_or("snapdisk", String::as_str));
        for n in names {
            p.subject_alt_names.push(match n.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(n.as_str().try_into()?),
            });
        }
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.serial_number = Some(random_serial());
        p.not_before = OffsetDateTime::now_utc() - TimeDelta::hours(1);
        p.not_after = OffsetDateTime::now_utc() + TimeDelta::days(days.max(1));
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Revoke by serial, or every certificate of an account: the records revoked now.
    pub fn revoke(&self, serial: Option<&str>, account: Option<&str>) -> anyhow::Result<Vec<Issued>> {
        let now = chrono::Utc::now().timestamp();
        let mut issued = self.records();
        let mut hit = Vec::new();
        for r in issued.iter_mut() {
            let wanted = serial.is_some_and(|s| s.eq_ignore_ascii_case(&r.serial)) || account == Some(&r.account_id);
            if wanted && r.revoked_at.is_none() {
                r.revoked_at = Some(now);
                hit.push(r.clone());
            }
        }
        self.save(&issued)?;
        drop(issued);
        self.write_crl()?;
        Ok(hit)
    }

    pub fn list(&self, account: Option<&str>) -> Vec<Issued> {
        self.records().iter().filter(|r| account.is_none_or(|a| a == r.account_id)).cloned().collect()
    }

    /// The revocation list of every revoked certificate, signed by the CA.
    pub fn crl(&self) -> anyhow::Result<CertificateRevocationListDer<'static>> {
        let now = OffsetDateTime::now_utc();
        let mut revoked = Vec::new();
        for r in self.records().iter().filter(|r| r.revoked_at.is_some()) {
            let bytes: Vec<u8> = (0..r.serial.len() / 2)
                .filter_map(|i| u8::from_str_radix(r.serial.get(2 * i..2 * i + 2)?, 16).ok())
                .collect();
            revoked.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: r.revoked_at.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok()).unwrap_or(now),
                reason_code: None,
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: now - TimeDelta::minutes(5),
            next_update: now + TimeDelta::days(3650),
            crl_number: SerialNumber::from(u64::try_from(now.unix_timestamp()).unwrap_or(1)),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.der().clone())
    }

    fn write_crl(&self) -> anyhow::Result<()> {
        let der = self.crl()?;
        let pem = pem_encode("X509 CRL", der.as_ref());
        write_private(&self.dir.join("ca-crl.pem"), pem.as_bytes())
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The account a verified client certificate names (its CN) and its serial (lowercase hex).
pub fn identify(der: &[u8]) -> Option<nbd::Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    if cn.is_empty() {
        return None;
    }
    Some(nbd::Identity { account: cn, credential: hex(cert.raw_serial()) })
}

/// What the server's TLS is built from; rebuilt with a new revocation list on each revoke.
pub struct TlsFiles {
    pub cert_chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// Extra client CAs (`--nbd-tls-client-ca`) besides the operator CA.
    pub extra_client_cas: Vec<CertificateDer<'static>>,
}

impl TlsFiles {
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<TlsFiles> {
        let cert_chain = CertificateDer::pem_file_iter(cert)
            .with_context(|| format!("reading {}", cert.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("parsing {}", cert.display()))?;
        if cert_chain.is_empty() {
            bail!("{} holds no certificate", cert.display());
        }
        let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
        let extra_client_cas = match client_ca {
            Some(p) => CertificateDer::pem_file_iter(p)
                .with_context(|| format!("reading {}", p.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("parsing {}", p.display()))?,
            None => Vec::new(),
        };
        Ok(TlsFiles { cert_chain, key, extra_client_cas })
    }

    /// A rustls configuration that requires a client certificate from the operator CA (or an
    /// extra client CA) that is not on the CA's revocation list.
    pub fn config(&self, ca: &Authority) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.ca_der()?)?;
        for c in &self.extra_client_cas {
            roots.add(c.clone())?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .with_crls([ca.crl()?])
            // Certificates of an extra CA have no list here.
            .allow_unknown_revocation_status()
            .only_check_end_entity_revocation()
            .build()?;
        let config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.cert_chain.clone(), self.key.clone_key())
            .context("the NBD server certificate and key do not match")?;
        Ok(Arc::new(config))
    }
}

/// The operator commands for NBD credentials, run by the HTTP transport's `/admin/` route.
pub struct NbdAdmin {
    pub ca: Authority,
    pub control: Arc<control::Control>,
    pub server: Arc<nbd::Server>,
    /// Set when TLS is configured: revocations rebuild the server's configuration.
    pub tls: Option<TlsFiles>,
}

/// The commands [`NbdAdmin::run`] answers.
pub const COMMANDS: [&str; 3] = ["nbd-credential-issue", "nbd-credential-revoke", "nbd-credential-list"];

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct IssueBody {
    account_id: String,
    days: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RevokeBody {
    serial: Option<String>,
    account_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ListBody {
    account_id: Option<String>,
}

/// An operator command's failure: (HTTP status, message).
pub type AdminFailure = (u16, String);

fn parse<T: for<'de> Deserialize<'de>>(body: serde_json::Value) -> Result<T, AdminFailure> {
    let body = if body.is_null() { serde_json::json!({}) } else { body };
    serde_json::from_value(body).map_err(|e| (400, format!("bad body: {e}")))
}

impl NbdAdmin {
    /// Run one of [`COMMANDS`]; blocking (it waits for revoked connections to close).
    pub fn run(&self, command: &str, body: serde_json::Value) -> Result<serde_json::Value, AdminFailure> {
        let internal = |e: anyhow::Error| (500, format!("{e:#}"));
        match command {
            "nbd-credential-issue" => {
                let b: IssueBody = parse(body)?;
                if !self.control.account_exists(&b.account_id) {
                    return Err((404, format!("no account {}", b.account_id)));
                }
                let (rec, cert, key) = self.ca.issue_client(&b.account_id, b.days.unwrap_or(365)).map_err(internal)?;
                Ok(serde_json::json!({
                    "AccountId": rec.account_id,
                    "Serial": rec.serial,
                    "CertificatePem": cert,
                    "PrivateKeyPem": key,
                    "CaCertificatePem": self.ca.ca_pem(),
                }))
            }
            "nbd-credential-revoke" => {
                let b: RevokeBody = parse(body)?;
                if b.serial.is_none() && b.account_id.is_none() {
                    return Err((400, "give Serial or AccountId".into()));
                }
                let revoked = self.ca.revoke(b.serial.as_deref(), b.account_id.as_deref()).map_err(internal)?;
                if revoked.is_empty()
                    && b.serial.is_some()
                    && self.ca.list(None).iter().all(|r| Some(&r.serial) != b.serial.as_ref())
                {
                    return Err((404, "no such credential".into()));
                }
                // New handshakes see the new list at once; then live connections close.
                if let Some(files) = &self.tls {
                    let config = files.config(&self.ca).map_err(internal)?;
                    self.server.set_tls(Some(nbd::Tls { config, identify: Arc::new(identify) }));
                }
                let mut closed = 0;
                for r in &revoked {
                    closed += self.server.registry.revoke_credential(&r.serial, std::time::Duration::from_secs(10));
                }
                Ok(serde_json::json!({"Revoked": revoked, "ClosedConnections": closed}))
            }
            "nbd-credential-list" => {
                let b: ListBody = parse(body)?;
                Ok(serde_json::json!({"Credentials": self.ca.list(b.account_id.as_deref())}))
            }
            other => Err((404, format!("unknown command {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_name_their_account_and_revocation_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::open(dir.path()).unwrap();
        let (rec, cert, _key) = ca.issue_client("1234567890123456", 30).unwrap();
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let id = identify(&der).unwrap();
        assert_eq!(id.account, "1234567890123456");
        assert_eq!(id.credential, rec.serial);
        let mode = std::fs::metadata(dir.path().join("nbd-ca/ca-key.pem")).unwrap();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777, 0o600);
        assert_eq!(ca.revoke(Some(&rec.serial), None).unwrap().len(), 1);
        assert_eq!(ca.revoke(Some(&rec.serial), None).unwrap().len(), 0, "once");
        // The CA reopens with its records.
        let again = Authority::open(dir.path()).unwrap();
        assert_eq!(again.ca_pem(), ca.ca_pem());
        assert!(again.list(None)[0].revoked_at.is_some());
        let der = again.crl().unwrap();
        let crl = x509_parser::parse_x509_crl(der.as_ref()).unwrap().1;
        assert_eq!(crl.iter_revoked_certificates().count(), 1);
    }
}
