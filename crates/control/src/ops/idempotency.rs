//! ClientToken idempotence, as ECS documents it ("How to ensure idempotence"): an action that
//! creates something, sent again with the same ClientToken and the same parameters, returns the
//! first call's result and creates nothing; with other parameters it is refused with
//! `IdempotentParameterMismatch`. Tokens belong to one account.
//!
//! The handler stores its answer with [`remember`] inside the transaction that creates the
//! resource, so a token exists exactly when its resource does. Writes hold the catalog lock,
//! so two concurrent calls with one token serialize: the second finds the first's answer.

use super::{Fail, R};
use crate::Env;
use ecs_api::Code;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;

/// The first call's answer for this request's token, if there was one.
pub(crate) fn replay(conn: &Connection, env: &Env) -> R<Option<Value>> {
    let Some(token) = env.client_token else {
        return Ok(None);
    };
    let row: Option<(String, String)> = conn
        .prepare_cached("SELECT fingerprint, response FROM client_tokens WHERE account_id=?1 AND token=?2")?
        .query_row([env.account_id, token], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        None => Ok(None),
        Some((fp, _)) if fp != env.fingerprint => Err(Code::IdempotentParameterMismatch.into()),
        Some((_, response)) => serde_json::from_str(&response).map(Some).map_err(|e| {
            tracing::error!(error = %e, "a stored ClientToken answer is not JSON");
            Fail::from(Code::InternalError)
        }),
    }
}

/// Keep `response` as the answer for this request's token (inside the creating transaction).
pub(crate) fn remember(tx: &Transaction, env: &Env, response: &Value) -> R<()> {
    if let Some(token) = env.client_token {
        tx.execute(
            "INSERT INTO client_tokens(account_id, token, fingerprint, response, created_ms) VALUES(?1, ?2, ?3, ?4, ?5)",
            params![env.account_id, token, env.fingerprint, response.to_string(), env.now],
        )?;
    }
    Ok(())
}

/// Drop this request's token: its action committed, then failed and was undone entirely.
pub(crate) fn forget(conn: &Connection, env: &Env) -> R<()> {
    if let Some(token) = env.client_token {
        conn.execute("DELETE FROM client_tokens WHERE account_id=?1 AND token=?2", [env.account_id, token])?;
    }
    Ok(())
}
