//! SSH key pairs (API reference: CreateKeyPair, ImportKeyPair, DescribeKeyPairs,
//! AttachKeyPair, DetachKeyPair, DeleteKeyPairs). A pair belongs to one account in one
//! region and is known by its name there; an instance carries the name of the pair bound to
//! it (`instances.key_pair_name`), shown by DescribeInstances and DescribeInstanceAttribute.
//! Snapdisk has no guest OS to put the key into: binding is recorded, as the API shows it.

use super::listing::{Listing, Scope};
use super::{R, begin};
use crate::model::tags_json;
use crate::shapes::TimeText;
use crate::sshkeys::{self, KeyError};
use crate::{Env, new_id};
use ecs_api::keypairs::{CreateKeyPair, DescribeKeyPairs, ImportKeyPair, KeyPairInstances};
use ecs_api::params::Paging;
use ecs_api::write::{Emit, Out};
use ecs_api::{ApiError, Code, Node};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::{Value, json};

/// Key pairs one account may hold in one region (API reference CreateKeyPair: up to 500 per
/// region; more is `QuotaExceed.KeyPair`).
pub(crate) const MAX_PER_REGION: i64 = 500;

fn region<'a>(env: &'a Env) -> &'a str {
    env.region_id.unwrap_or_default()
}

/// The name's pair exists in the caller's region.
fn exists(conn: &Connection, env: &Env, name: &str) -> R<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM key_pairs WHERE account_id=?1 AND region_id=?2 AND name=?3",
            params![env.account_id, region(env), name],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// A new pair's row, after the documented checks: the name is free (`KeyPair.AlreadyExist`)
/// and the region holds fewer than [`MAX_PER_REGION`] (`QuotaExceed.KeyPair`).
fn insert(
    tx: &Transaction,
    env: &Env,
    name: &str,
    public_openssh: &str,
    fingerprint: &str,
    tags: &[(String, String)],
    group: Option<&str>,
) -> R<String> {
    if exists(tx, env, name)? {
        return Err(Code::KeyPairAlreadyExist.into());
    }
    let held: i64 = tx.query_row(
        "SELECT COUNT(*) FROM key_pairs WHERE account_id=?1 AND region_id=?2",
        params![env.account_id, region(env)],
        |r| r.get(0),
    )?;
    if held >= MAX_PER_REGION {
        return Err(Code::QuotaExceedKeyPair.into());
    }
    let id = new_id("skp-");
    tx.execute(
        "INSERT INTO key_pairs(id, account_id, region_id, name, fingerprint, public_key, created_ms, tags,
           resource_group_id) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            id,
            env.account_id,
            region(env),
            name,
            fingerprint,
            public_openssh,
            env.now,
            tags_json(tags),
            group.unwrap_or_default()
        ],
    )?;
    Ok(id)
}

fn key_fault(e: KeyError) -> super::Fail {
    tracing::error!(error = %e, "key pair material");
    ApiError::new(Code::InternalError).into()
}

/// CreateKeyPair: a fresh 2048-bit RSA pair; the private key is answered once and not kept.
pub(crate) fn create(conn: &mut Connection, env: &Env, c: CreateKeyPair) -> R<Value> {
    // Made before the catalog lock was taken (`Env::new_key`), so no other write waits for it.
    let key = match env.new_key.take() {
        Some(made) => made.map_err(key_fault)?,
        None => sshkeys::generate().map_err(key_fault)?,
    };
    let tx = begin(conn)?;
    let id = insert(&tx, env, &c.name, &key.public_openssh, &key.fingerprint, &c.tags, c.resource_group_id.as_deref())?;
    tx.commit()?;
    Ok(json!({
        "KeyPairId": id,
        "KeyPairName": c.name,
        "KeyPairFingerPrint": key.fingerprint,
        "PrivateKeyBody": key.private_pem,
    }))
}

/// ImportKeyPair: a public key in OpenSSH form (else `InvalidPublicKeyBody.Malformed`).
pub(crate) fn import(conn: &mut Connection, env: &Env, i: ImportKeyPair) -> R<Value> {
    let key = sshkeys::import(&i.public_key_body).map_err(|e| match e {
        KeyError::Unsupported => Code::InvalidPublicKeyBodyMalformed.into(),
        other => key_fault(other),
    })?;
    let tx = begin(conn)?;
    let id = insert(&tx, env, &i.name, &key.public_openssh, &key.fingerprint, &i.tags, i.resource_group_id.as_deref())?;
    tx.commit()?;
    Ok(json!({"KeyPairId": id, "KeyPairName": i.name, "KeyPairFingerPrint": key.fingerprint}))
}

/// One pair as DescribeKeyPairs shows it.
struct KeyPairView {
    name: String,
    fingerprint: String,
    /// Only when IncludePublicKey asked for it.
    public_key: Option<String>,
    tags: String,
    resource_group_id: String,
    created_ms: i64,
}

impl Emit for KeyPairView {
    fn emit(&self, o: &mut dyn Out) {
        o.begin_obj();
        o.field("KeyPairName", &self.name);
        o.field("KeyPairFingerPrint", &self.fingerprint);
        o.field("CreationTime", TimeText::minutes(self.created_ms).as_str());
        if let Some(k) = &self.public_key {
            o.field("PublicKey", k);
        }
        o.field("ResourceGroupId", &self.resource_group_id);
        crate::shapes::tags(o, &self.tags);
        o.end_obj();
    }
}

/// DescribeKeyPairs: the caller's pairs in the region, oldest first, filtered in SQL (name
/// exact or with `*` wildcards, fingerprint, tags) and read a page at a time.
pub(crate) fn describe(conn: &Connection, env: &Env, d: DescribeKeyPairs) -> R<Node> {
    let mut q = Listing::new(
        "key_pair",
        "key_pairs",
        "name, fingerprint, public_key, tags, resource_group_id",
        env,
        Scope::Own,
    );
    match d.name {
        Some(n) if n.contains('*') => {
            q.clause("name GLOB ?", [ecs_api::keypairs::name_glob(&n).into()]);
        }
        n => {
            q.eq("name", n);
        }
    }
    q.eq("fingerprint", d.fingerprint).eq("resource_group_id", d.resource_group_id).tags(&d.tags);
    let paging = Paging::Pages { number: d.page.0, size: d.page.1 };
    let include = d.include_public_key;
    let page = q.fetch(conn, &paging, |r| {
        Ok(KeyPairView {
            name: r.get(0)?,
            fingerprint: r.get(1)?,
            public_key: if include { Some(r.get(2)?) } else { None },
            tags: r.get(3)?,
            resource_group_id: r.get(4)?,
            created_ms: r.get(5)?,
        })
    })?;
    let mut out = Node::obj();
    page.render_numbered(d.page, ("KeyPairs", "KeyPair"), &mut out);
    Ok(out)
}

/// Instances AttachKeyPair and DetachKeyPair may change now: Running (the key counts from
/// the next RebootInstance) or Stopped (from the next StartInstance), as the reference says.
fn settled(status: &str) -> bool {
    status == "Running" || status == "Stopped"
}

/// The caller's live instances in the region among `ids`, with their states, in `ids`' order;
/// one that is not is `InvalidInstanceIds.ValueNotSupported`.
fn instances(tx: &Transaction, env: &Env, ids: &[String]) -> R<Vec<(String, String, Option<String>)>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let row = tx
            .query_row(
                "SELECT status, key_pair_name FROM instances
                 WHERE id=?1 AND account_id=?2 AND region_id=?3 AND released=0",
                params![id, env.account_id, region(env)],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)),
            )
            .optional()?;
        let (status, bound) = row.ok_or(Code::InvalidInstanceIdsValueNotSupported)?;
        out.push((id.clone(), status, bound));
    }
    Ok(out)
}

/// AttachKeyPair (`attach`) or DetachKeyPair: per instance, bind the pair (replacing any
/// other) or unbind it. An instance in a transitional state is a failed result
/// (`IncorrectInstanceStatus`), as is, for Detach, one the pair is not bound to
/// (`InvalidKeyPairName.NotFound`); the others succeed. Answers the documented Results list.
pub(crate) fn bind(conn: &mut Connection, env: &Env, k: KeyPairInstances, attach: bool) -> R<Value> {
    let tx = begin(conn)?;
    if !exists(&tx, env, &k.name)? {
        return Err(Code::InvalidKeyPairNameNotFound.into());
    }
    let mut results = Vec::with_capacity(k.instance_ids.len());
    let mut failed = 0usize;
    for (id, status, bound) in instances(&tx, env, &k.instance_ids)? {
        let refusal = if !settled(&status) {
            Some(Code::IncorrectInstanceStatus)
        } else if !attach && bound.as_deref() != Some(k.name.as_str()) {
            Some(Code::InvalidKeyPairNameNotFound)
        } else {
            None
        };
        match refusal {
            Some(code) => {
                failed += 1;
                results.push(
                    json!({"InstanceId": id, "Success": "false", "Code": code.as_str(), "Message": code.message()}),
                );
            }
            None => {
                let value = if attach { Some(k.name.as_str()) } else { None };
                tx.execute("UPDATE instances SET key_pair_name=?2 WHERE id=?1", params![id, value])?;
                results.push(json!({"InstanceId": id, "Success": "true", "Code": "200", "Message": "successful"}));
            }
        }
    }
    tx.commit()?;
    Ok(json!({
        "KeyPairName": k.name,
        "TotalCount": results.len().to_string(),
        "FailCount": failed.to_string(),
        "Results": {"Result": results},
    }))
}

/// DeleteKeyPairs: all named pairs or none. A name the caller has no pair of is
/// `InvalidKeyPair.NotFound`; a pair still bound to an instance is
/// `InvalidParameter.KeypairAlreadyAttachedInstance` (API reference).
pub(crate) fn delete(conn: &mut Connection, env: &Env, names: &[String]) -> R<Value> {
    let tx = begin(conn)?;
    for name in names {
        if !exists(&tx, env, name)? {
            return Err(Code::InvalidKeyPairNotFound.into());
        }
        let bound = tx
            .query_row(
                "SELECT 1 FROM instances WHERE account_id=?1 AND region_id=?2 AND key_pair_name=?3 AND released=0",
                params![env.account_id, region(env), name],
                |_| Ok(()),
            )
            .optional()?;
        if bound.is_some() {
            return Err(Code::KeypairAlreadyAttachedInstance.into());
        }
    }
    for name in names {
        tx.execute(
            "DELETE FROM key_pairs WHERE account_id=?1 AND region_id=?2 AND name=?3",
            params![env.account_id, region(env), name],
        )?;
    }
    tx.commit()?;
    Ok(json!({}))
}

/// RunInstances and CreateInstance with `KeyPairName`: the pair must be the caller's in the
/// region (`InvalidKeyPairName.NotFound`, 404, the RunInstances row).
pub(crate) fn check_for_new_instance(conn: &Connection, env: &Env, name: Option<&str>) -> R<()> {
    match name {
        Some(n) if !exists(conn, env, n)? => Err(Code::RunKeyPairNameNotFound.into()),
        _ => Ok(()),
    }
}
