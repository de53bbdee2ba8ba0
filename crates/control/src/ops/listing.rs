//! Every Describe* lists one kind of resource through [`Listing`]: filters become SQL clauses,
//! rows are read in (created_ms, id) order from an index that starts with the account and
//! region, and only the page is read and rendered. TotalCount of an unfiltered listing comes
//! from the trigger-kept `counts` table (disks, snapshots, instances, images); with filters,
//! or for kinds without such counts, it is a COUNT with the same clauses.
//!
//! Paging (notes §5, DescribeDisks): NextToken/MaxResults continues after the last key
//! returned, so it is stable while resources are created (they sort last) and costs the page
//! whatever the position; PageNumber/PageSize skips `(PageNumber-1)*PageSize` index entries.
//! A NextToken carries its key and a MAC over the key, the account, the resource kind and the
//! filters, so a token that was altered, or that comes from another account or another query,
//! is refused as `InvalidParameter` naming NextToken.

use super::{Fail, R};
use crate::Env;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ecs_api::ApiError;
use ecs_api::Node;
use ecs_api::params::Paging;
use ecs_api::write::{Emit, Out};
use hmac::{Hmac, Mac};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params_from_iter};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Which rows a listing starts from.
#[derive(Clone, Copy)]
pub(crate) enum Scope {
    /// The caller's own resources in the request's region.
    Own,
    /// Also rows shared by every account and region (public images: `account_id = ''`) and
    /// the images other accounts share with the caller (`image_shares`) in the region.
    OwnSharedAndPublic,
}

/// One Describe* query being built: its source view, its filters, then [`Listing::fetch`].
pub(crate) struct Listing<'a> {
    kind: &'static str,
    source: &'static str,
    columns: &'static str,
    env: &'a Env<'a>,
    scope: Scope,
    clauses: Vec<String>,
    params: Vec<SqlValue>,
    /// An `*_ids` filter that is an empty list: the documented result is empty.
    empty: bool,
    /// The region listed when the request named none (see [`Listing::in_region`]).
    region: Option<String>,
}

/// One page of a listing, ready to render.
pub(crate) struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub next_token: Option<String>,
}

impl<'a> Listing<'a> {
    /// `kind` names the counter and the token scope (`disk`, `snapshot`, ...); `source` is a
    /// table or view with `account_id`, `region_id`, `released`, `created_ms` and `id`.
    pub fn new(
        kind: &'static str,
        source: &'static str,
        columns: &'static str,
        env: &'a Env<'a>,
        scope: Scope,
    ) -> Self {
        Listing {
            kind,
            source,
            columns,
            env,
            scope,
            clauses: Vec::new(),
            params: Vec::new(),
            empty: false,
            region: None,
        }
    }

    /// List `region` although the request named none (DescribeVSwitches by VpcId alone lists
    /// the VPC's region).
    pub fn in_region(&mut self, region: &str) -> &mut Self {
        self.region = Some(region.to_string());
        self
    }

    /// The region listed: the request's, or the one set by [`Listing::in_region`].
    fn region(&self) -> &str {
        self.env.region_id.or(self.region.as_deref()).unwrap_or_default()
    }

    /// `column = value` when the filter was given.
    pub fn eq<V: Into<SqlValue>>(&mut self, column: &str, value: Option<V>) -> &mut Self {
        if let Some(v) = value {
            self.clauses.push(format!("{column} = ?"));
            self.params.push(v.into());
        }
        self
    }

    /// `column IN (values)` when the filter was given; an empty list matches nothing.
    pub fn any_of(&mut self, column: &str, values: Option<&[String]>) -> &mut Self {
        if let Some(vs) = values {
            if vs.is_empty() {
                self.empty = true;
            } else {
                self.clauses.push(format!("{column} IN ({})", vec!["?"; vs.len()].join(", ")));
                self.params.extend(vs.iter().map(|v| SqlValue::Text(v.clone())));
            }
        }
        self
    }

    /// Resources carrying every (key, value) tag; a key alone matches any value. Tags are
    /// stored on the row as a JSON list of [key, value] pairs (`model::tags_json`).
    pub fn tags(&mut self, filters: &[(String, Option<String>)]) -> &mut Self {
        for (k, v) in filters {
            let mut clause = "EXISTS (SELECT 1 FROM json_each(tags) WHERE json_extract(value, '$[0]') = ?".to_string();
            self.params.push(SqlValue::Text(k.clone()));
            if let Some(v) = v {
                clause.push_str(" AND json_extract(value, '$[1]') = ?");
                self.params.push(SqlValue::Text(v.clone()));
            }
            clause.push(')');
            self.clauses.push(clause);
        }
        self
    }

    /// A clause of its own with its parameters (positional `?`).
    pub fn clause(&mut self, sql: &str, params: impl IntoIterator<Item = SqlValue>) -> &mut Self {
        self.clauses.push(sql.to_string());
        self.params.extend(params);
        self
    }

    fn scope_sql(&self) -> (String, Vec<SqlValue>) {
        let acct = SqlValue::Text(self.env.account_id.to_string());
        let region = SqlValue::Text(self.region().to_string());
        match self.scope {
            Scope::Own => ("account_id = ? AND region_id = ? AND released = 0".into(), vec![acct, region]),
            Scope::OwnSharedAndPublic => (
                "(account_id IN (?, '') OR id IN (SELECT image_id FROM image_shares WHERE account_id = ?))
                 AND region_id IN (?, '') AND released = 0"
                    .into(),
                vec![acct.clone(), acct, region],
            ),
        }
    }

    /// The MAC of a key under this listing (account, kind, filters), hex, 16 bytes.
    fn mac(&self, key: &[u8], created_ms: i64, id: &str) -> String {
        let mut m = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes keys of any length");
        for part in [self.env.account_id, self.region(), self.kind] {
            m.update(part.as_bytes());
            m.update(&[0]);
        }
        for c in &self.clauses {
            m.update(c.as_bytes());
            m.update(&[0]);
        }
        for p in &self.params {
            m.update(format!("{p:?}").as_bytes());
            m.update(&[0]);
        }
        m.update(created_ms.to_string().as_bytes());
        m.update(&[0]);
        m.update(id.as_bytes());
        hex::encode(&m.finalize().into_bytes()[..16])
    }

    fn encode_token(&self, key: &[u8], created_ms: i64, id: &str) -> String {
        let body = URL_SAFE_NO_PAD.encode(format!("{created_ms}:{id}"));
        format!("{body}.{}", self.mac(key, created_ms, id))
    }

    fn decode_token(&self, key: &[u8], token: &str) -> R<(i64, String)> {
        let bad = || Fail::Api(ApiError::invalid("NextToken"));
        let (body, mac) = token.split_once('.').ok_or_else(bad)?;
        let raw = URL_SAFE_NO_PAD.decode(body).map_err(|_| bad())?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        let (ms, id) = raw.split_once(':').ok_or_else(bad)?;
        let ms: i64 = ms.parse().map_err(|_| bad())?;
        let want = self.mac(key, ms, id);
        if want.len() != mac.len() || !bool::from(want.as_bytes().ct_eq(mac.as_bytes())) {
            return Err(bad());
        }
        Ok((ms, id.to_string()))
    }

    /// Read one page in one read transaction: the count and the rows agree.
    pub fn fetch<T>(
        &self,
        conn: &Connection,
        paging: &Paging,
        map: impl Fn(&Row) -> rusqlite::Result<T>,
    ) -> R<Page<T>> {
        let key = self.env.paging_key;
        // Check the token before anything else: a bad one is refused even on an empty result.
        let after = match paging {
            Paging::Token { next_token: Some(t), .. } => Some(self.decode_token(key, t)?),
            _ => None,
        };
        if self.empty {
            return Ok(Page { items: Vec::new(), total: 0, next_token: None });
        }
        let (scope, mut params) = self.scope_sql();
        params.extend(self.params.iter().cloned());
        let mut filter = scope;
        for c in &self.clauses {
            filter.push_str(" AND ");
            filter.push_str(c);
        }
        let total = self.count(conn, &filter, &params)?;
        let ncols = self.columns.split(',').count();
        let mut sql = format!("SELECT {}, created_ms, id FROM {} WHERE {filter}", self.columns, self.source);
        let (limit, offset) = match paging {
            Paging::Token { max_results, .. } => (i64::from(*max_results) + 1, 0),
            Paging::Pages { number, size } => {
                (i64::from(*size), i64::from(number.saturating_sub(1)).saturating_mul(i64::from(*size)))
            }
        };
        if let Some((ms, id)) = &after {
            sql.push_str(" AND (created_ms, id) > (?, ?)");
            params.push(SqlValue::Integer(*ms));
            params.push(SqlValue::Text(id.clone()));
        }
        sql.push_str(" ORDER BY created_ms, id LIMIT ? OFFSET ?");
        params.push(SqlValue::Integer(limit));
        params.push(SqlValue::Integer(offset));
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params_from_iter(params.iter()))?;
        let mut items = Vec::new();
        let mut last: Option<(i64, String)> = None;
        let mut more = false;
        while let Some(r) = rows.next()? {
            if matches!(paging, Paging::Token { max_results, .. } if items.len() == *max_results as usize) {
                more = true;
                break;
            }
            items.push(map(r)?);
            last = Some((r.get(ncols)?, r.get(ncols + 1)?));
        }
        let next_token = match (more, last) {
            (true, Some((ms, id))) => Some(self.encode_token(key, ms, &id)),
            _ => None,
        };
        Ok(Page { items, total, next_token })
    }

    fn count(&self, conn: &Connection, filter: &str, params: &[SqlValue]) -> R<i64> {
        // Kinds without trigger-kept counts (snapshot groups, policies, tasks) are counted.
        // Shared rows are nobody's count: a listing that has them is counted too.
        let tracked = crate::db::COUNTED.iter().any(|(_, kind)| *kind == self.kind);
        if self.clauses.is_empty() && tracked && matches!(self.scope, Scope::Own) {
            let own: Option<i64> = conn
                .prepare_cached("SELECT n FROM counts WHERE kind = ?1 AND account_id = ?2 AND region_id = ?3")?
                .query_row([self.kind, self.env.account_id, self.region()], |r| r.get(0))
                .optional()?;
            return Ok(own.unwrap_or(0));
        }
        let sql = format!("SELECT COUNT(*) FROM {} WHERE {filter}", self.source);
        Ok(conn.prepare_cached(&sql)?.query_row(params_from_iter(params.iter()), |r| r.get(0))?)
    }
}

impl<T: Emit + 'static> Page<T> {
    /// Put the page into the response object `out` as `{outer: {inner: [...]}}` with
    /// TotalCount, PageNumber, PageSize and NextToken (empty when there is no more), as every
    /// Describe* answers. The items write themselves when the body is written.
    pub fn render(self, paging: &Paging, list: (&'static str, &'static str), out: &mut Node) {
        out.push(list.0, Node::emit(Items { inner: list.1, items: self.items }));
        out.push("TotalCount", self.total);
        let (number, size) = match paging {
            Paging::Token { max_results, .. } => (1, *max_results),
            Paging::Pages { number, size } => (*number, *size),
        };
        out.push("NextToken", self.next_token.unwrap_or_default());
        out.push("PageNumber", number);
        out.push("PageSize", size);
    }
}

impl<T: Emit + 'static> Page<T> {
    /// As [`Page::render`], for the actions that page by number only and answer no NextToken
    /// (DescribeKeyPairs, DescribeSecurityGroups' PageNumber form): the list, TotalCount,
    /// PageNumber and PageSize.
    pub fn render_numbered(self, page: (u32, u32), list: (&'static str, &'static str), out: &mut Node) {
        out.push(list.0, Node::emit(Items { inner: list.1, items: self.items }));
        out.push("TotalCount", self.total);
        out.push("PageNumber", page.0);
        out.push("PageSize", page.1);
    }
}

/// `{inner: [items]}`, the ECS list shape, written item by item.
struct Items<T> {
    inner: &'static str,
    items: Vec<T>,
}

impl<T: Emit> Emit for Items<T> {
    fn emit(&self, o: &mut dyn Out) {
        o.begin_obj();
        o.name(self.inner);
        o.begin_list();
        for i in &self.items {
            i.emit(o);
        }
        o.end_list();
        o.end_obj();
    }
}
