//! Marked objects: everything the visibility policy governs (events, alerts, incidents,
//! indicators, sightings, engagements) shares one envelope — kind, owner, TLP, named recipients,
//! assignees, shares — and carries its kind's content as JSON.

use nigehban_policy::{
    Action, Kind, Marking, Principal, Role, Share, ShareTarget, Tlp, Tree, can, read_scope, shares_kept,
};
use serde::Serialize;
use sqlx::QueryBuilder;
use uuid::Uuid;

use crate::audit::{AuditEntry, append_audit};
use crate::{Actor, Dialect, Page, Result, Store, StoreError, new_id, now_micros, on_read, on_write};

/// A marked object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Object {
    pub id: Uuid,
    pub kind: Kind,
    /// The organisation that owns it.
    pub owner: Uuid,
    pub tlp: Tlp,
    pub title: String,
    /// The kind's content.
    pub body: Body,
    pub created_by: Option<Uuid>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Incremented by every change (for optimistic concurrency).
    pub version: i64,
    /// TLP:RED: the named recipients.
    pub recipients: Vec<Uuid>,
    /// Engagements: the assigned auditors.
    pub assignees: Vec<Uuid>,
    /// Shares beyond the owner's chain.
    pub shares: Vec<Share>,
}

impl Object {
    /// What the policy needs to know of it.
    pub fn marking(&self) -> Marking<'_> {
        Marking {
            kind: self.kind,
            owner: self.owner,
            tlp: self.tlp,
            created_by: self.created_by,
            recipients: &self.recipients,
            shares: &self.shares,
            assignees: &self.assignees,
        }
    }
}

/// An object's content: a JSON object's text, as stored. Pages of objects pass it through to
/// their JSON without building and writing out a tree of values for every object (measured:
/// about a tenth of the server's work for a page); [`Body::to_value`] reads it when a caller
/// needs the values.
#[derive(Clone, Serialize)]
#[serde(transparent)]
pub struct Body(Box<serde_json::value::RawValue>);

impl Body {
    /// The text of a value.
    pub fn from_value(v: &serde_json::Value) -> Body {
        // Writing out a `Value` does not fail (its map keys are strings).
        Body(serde_json::value::to_raw_value(v).unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned()))
    }

    /// Stored text, checked to be JSON.
    pub fn parse(text: String) -> Result<Body, serde_json::Error> {
        serde_json::value::RawValue::from_string(text).map(Body)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The values (parsed again at each call).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.0.get()).unwrap_or_default()
    }
}

impl PartialEq for Body {
    fn eq(&self, other: &Body) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Body {}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.get())
    }
}

/// A new object.
#[derive(Debug, Clone)]
pub struct NewObject {
    pub kind: Kind,
    pub owner: Uuid,
    pub tlp: Tlp,
    pub title: String,
    pub body: serde_json::Value,
    pub created_by: Option<Uuid>,
    pub recipients: Vec<Uuid>,
    pub assignees: Vec<Uuid>,
}

/// A change (`None` keeps the current value).
#[derive(Debug, Clone, Default)]
pub struct ObjectUpdate {
    pub title: Option<String>,
    pub body: Option<serde_json::Value>,
    pub tlp: Option<Tlp>,
    pub recipients: Option<Vec<Uuid>>,
    pub assignees: Option<Vec<Uuid>>,
    /// Refuse the change unless the object is still at this version.
    pub expected_version: Option<i64>,
}

/// Filters for lists and searches.
#[derive(Debug, Clone, Default)]
pub struct ObjectFilter {
    pub kind: Option<Kind>,
    pub tlp: Option<Tlp>,
    pub owner: Option<Uuid>,
    /// Words the title contains (case-insensitive).
    pub q: Option<String>,
    /// Alerts only: the triage status.
    pub alert_status: Option<crate::AlertStatus>,
    /// Alerts only: the lowest level (0 informational … 4 critical).
    pub min_level: Option<i64>,
}

/// A row of [`OBJECT_COLUMNS`], read by position (sqlx's derived reader looks each column up
/// by name, a hash lookup per column per row of every page).
struct ObjectRow {
    id: Uuid,
    kind: String,
    owner_org: Uuid,
    tlp: String,
    title: String,
    body: String,
    created_by: Option<Uuid>,
    created_at: i64,
    updated_at: i64,
    version: i64,
    /// The recipients' ids, comma-separated (NULL: none).
    recipients: Option<String>,
    /// The assignees' ids, comma-separated.
    assignees: Option<String>,
    /// The shares, comma-separated, each `by target target_org` (target_org empty unless
    /// the target is `org`).
    shares: Option<String>,
}

impl<'r, R> sqlx::FromRow<'r, R> for ObjectRow
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<Uuid>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<ObjectRow, sqlx::Error> {
        Ok(ObjectRow {
            id: row.try_get(0)?,
            kind: row.try_get(1)?,
            owner_org: row.try_get(2)?,
            tlp: row.try_get(3)?,
            title: row.try_get(4)?,
            body: row.try_get(5)?,
            created_by: row.try_get(6)?,
            created_at: row.try_get(7)?,
            updated_at: row.try_get(8)?,
            version: row.try_get(9)?,
            recipients: row.try_get(10)?,
            assignees: row.try_get(11)?,
            shares: row.try_get(12)?,
        })
    }
}

/// The columns of `objects o` an [`ObjectRow`] reads, in its order: the envelope and the
/// markings kept on the row (see [`refresh_markings`]).
const OBJECT_COLUMNS: &str = "o.id, o.kind, o.owner_org, o.tlp, o.title, o.body, o.created_by, o.created_at, \
     o.updated_at, o.version, o.recipients, o.assignees, o.shares";

/// The statement that rewrites an object's (`$1`) `recipients`, `assignees` and `shares`
/// columns from the three tables that hold them, in the transaction that changed those tables
/// (the expressions of the migration that added the columns). The columns let a page of objects
/// read its markings with its rows (they were three correlated subqueries per row on SQLite, a
/// lateral subquery per row on PostgreSQL) and let the read scope probe the recipients and
/// shares tables only for rows that have some; the tables stay the source of truth.
///
/// On PostgreSQL the caller must hold the object's row lock before it changes the tables (the
/// first statement of the transaction updates or locks the row): two transactions changing one
/// object's markings then run one after the other, and the second one's refresh reads the first
/// one's rows. On SQLite the one writer connection orders every change.
fn refresh_markings(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite => concat!(markings_update_sqlite!(), " WHERE id = $1"),
        Dialect::Postgres => concat!(markings_update_postgres!(), " WHERE id = $1"),
    }
}

/// [`refresh_markings`] for every object that has recipients, assignees or shares in the tables
/// or on its row: for data written straight into the tables (the API benchmark's seeding) and
/// for tests that compare the rows' copies with the tables.
pub(crate) fn refresh_all_markings(d: Dialect) -> &'static str {
    macro_rules! with_markings {
        () => {
            " WHERE id IN (SELECT object_id FROM object_recipients UNION SELECT object_id FROM object_assignees \
               UNION SELECT object_id FROM object_shares) \
               OR recipients IS NOT NULL OR assignees IS NOT NULL OR shares IS NOT NULL"
        };
    }
    match d {
        Dialect::Sqlite => concat!(markings_update_sqlite!(), with_markings!()),
        Dialect::Postgres => concat!(markings_update_postgres!(), with_markings!()),
    }
}

/// The markings' columns rewritten from their tables (SQLite), without the `WHERE`.
macro_rules! markings_update_sqlite {
    () => {
        "UPDATE objects SET \
           recipients = (SELECT group_concat(hex(x.user_id), ',' ORDER BY x.user_id) FROM object_recipients x \
             WHERE x.object_id = objects.id), \
           assignees = (SELECT group_concat(hex(x.user_id), ',' ORDER BY x.user_id) FROM object_assignees x \
             WHERE x.object_id = objects.id), \
           shares = (SELECT group_concat(hex(x.by_org) || ' ' || x.target || ' ' || coalesce(hex(x.target_org), ''), ',' \
             ORDER BY x.created_at, x.by_org) FROM object_shares x WHERE x.object_id = objects.id)"
    };
}

/// The markings' columns rewritten from their tables (PostgreSQL), without the `WHERE`.
macro_rules! markings_update_postgres {
    () => {
        "UPDATE objects SET \
           recipients = (SELECT string_agg(x.user_id::text, ',' ORDER BY x.user_id) FROM object_recipients x \
             WHERE x.object_id = objects.id), \
           assignees = (SELECT string_agg(x.user_id::text, ',' ORDER BY x.user_id) FROM object_assignees x \
             WHERE x.object_id = objects.id), \
           shares = (SELECT string_agg(x.by_org::text || ' ' || x.target || ' ' || coalesce(x.target_org::text, ''), ',' \
             ORDER BY x.created_at, x.by_org) FROM object_shares x WHERE x.object_id = objects.id)"
    };
}
use {markings_update_postgres, markings_update_sqlite};

/// Values the SQLite planner looks up in its statistics (`sqlite_stat4`, after `ANALYZE`) when
/// they are bound make SQLite re-prepare the statement at every execution. On SQLite these
/// values are written into the SQL as literals — UUIDs as blob literals, names from fixed
/// enumerations — so that a principal's list is one prepared statement, reused; PostgreSQL
/// binds them. User text (search words) and the cursor stay bound on both; the page size is
/// written out on both.
pub(crate) fn push_id<DB>(qb: &mut QueryBuilder<DB>, d: Dialect, id: Option<Uuid>)
where
    DB: sqlx::Database,
    for<'t> Option<Uuid>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    match (d, id) {
        (Dialect::Sqlite, Some(id)) => qb.push(format_args!("X'{}'", id.simple())),
        (Dialect::Sqlite, None) => qb.push("NULL"),
        (Dialect::Postgres, id) => qb.push_bind(id),
    };
}

/// A name from a fixed enumeration (a kind, a TLP), as [`push_id`] does.
pub(crate) fn push_name<DB>(qb: &mut QueryBuilder<DB>, d: Dialect, name: &'static str)
where
    DB: sqlx::Database,
    for<'t> &'static str: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'_');
    match d {
        Dialect::Sqlite if plain => qb.push(format_args!("'{name}'")),
        _ => qb.push_bind(name),
    };
}

fn share_columns(s: &Share) -> (&'static str, Option<Uuid>) {
    match s.target {
        ShareTarget::Org(o) => ("org", Some(o)),
        ShareTarget::Community => ("community", None),
        ShareTarget::Public => ("public", None),
    }
}

fn parse_id(object: Uuid, what: &str, s: &str) -> Result<Uuid> {
    Uuid::try_parse(s).map_err(|_| StoreError::Corrupt(format!("{what} of {object}: {s:?} is not an id")))
}

fn parse_ids(object: Uuid, what: &str, list: Option<&str>) -> Result<Vec<Uuid>> {
    list.map_or(Ok(Vec::new()), |l| l.split(',').map(|s| parse_id(object, what, s)).collect())
}

fn parse_shares(object: Uuid, list: Option<&str>) -> Result<Vec<Share>> {
    let Some(list) = list else { return Ok(Vec::new()) };
    list.split(',')
        .map(|s| {
            let mut parts = s.split(' ');
            let (Some(by), Some(target), Some(org), None) = (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(StoreError::Corrupt(format!("share of {object}: {s:?}")));
            };
            let by = parse_id(object, "share", by)?;
            let target = match (target, org) {
                ("org", org) if !org.is_empty() => ShareTarget::Org(parse_id(object, "share", org)?),
                ("community", "") => ShareTarget::Community,
                ("public", "") => ShareTarget::Public,
                _ => return Err(StoreError::Corrupt(format!("share of {object}: target {target:?} {org:?}"))),
            };
            Ok(Share { by, target })
        })
        .collect()
}

fn row_to_object(r: ObjectRow) -> Result<Object> {
    Ok(Object {
        kind: r.kind.parse().map_err(StoreError::Corrupt)?,
        owner: r.owner_org,
        tlp: r.tlp.parse().map_err(|e: nigehban_policy::TlpError| StoreError::Corrupt(e.to_string()))?,
        title: r.title,
        body: Body::parse(r.body).map_err(|e| StoreError::Corrupt(format!("body of {}: {e}", r.id)))?,
        created_by: r.created_by,
        created_at: r.created_at,
        updated_at: r.updated_at,
        version: r.version,
        recipients: parse_ids(r.id, "recipient", r.recipients.as_deref())?,
        assignees: parse_ids(r.id, "assignee", r.assignees.as_deref())?,
        shares: parse_shares(r.id, r.shares.as_deref())?,
        id: r.id,
    })
}

/// Escapes `%`, `_` and `\` for a LIKE pattern with `ESCAPE '\'`.
pub(crate) fn like_pattern(q: &str) -> String {
    let mut out = String::from("%");
    for c in q.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

impl Store {
    /// TLP:RED recipients are users of the owner's chain, or, on an engagement, auditors assigned
    /// to it (an audit firm is outside every chain); assignees are auditors.
    async fn check_people(
        &self,
        tree: &Tree,
        kind: Kind,
        owner: Uuid,
        recipients: &[Uuid],
        assignees: &[Uuid],
    ) -> Result<()> {
        let chain = tree.chain(owner);
        for r in recipients {
            let user =
                self.user(*r).await?.ok_or_else(|| StoreError::Invalid(format!("recipient {r}: no such user")))?;
            let assigned_auditor = kind == Kind::Engagement && user.role == Role::Auditor && assignees.contains(r);
            if !chain.contains(&user.org) && !assigned_auditor {
                return Err(StoreError::Invalid(format!(
                    "recipient {}: TLP:RED recipients are chosen among the owner's organisation and its CERTs \
                     (and, on an engagement, the auditors assigned to it)",
                    user.username
                )));
            }
        }
        for a in assignees {
            let user =
                self.user(*a).await?.ok_or_else(|| StoreError::Invalid(format!("assignee {a}: no such user")))?;
            if user.role != Role::Auditor {
                return Err(StoreError::Invalid(format!("assignee {}: only auditors are assigned", user.username)));
            }
        }
        Ok(())
    }

    /// Creates an object. The caller has checked [`nigehban_policy::can_create`].
    pub async fn create_object(&self, actor: &Actor, tree: &Tree, new: NewObject) -> Result<Object> {
        if new.title.trim().is_empty() {
            return Err(StoreError::Invalid("title must not be empty".into()));
        }
        if tree.get(new.owner).is_none() {
            return Err(StoreError::Invalid("owner: no such organisation".into()));
        }
        self.check_people(tree, new.kind, new.owner, &new.recipients, &new.assignees).await?;
        let id = new_id();
        let now = now_micros();
        let body = Body::from_value(&new.body);
        let detail = serde_json::json!({
            "kind": new.kind.as_str(), "owner": new.owner, "tlp": new.tlp.as_str(),
            "recipients": new.recipients, "assignees": new.assignees,
        });
        on_write!(self, pool, d => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO objects (id, kind, owner_org, tlp, title, body, created_by, created_at, updated_at, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 1)",
            )
            .bind(id)
            .bind(new.kind.as_str())
            .bind(new.owner)
            .bind(new.tlp.as_str())
            .bind(&new.title)
            .bind(body.get())
            .bind(new.created_by)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            for u in &new.recipients {
                sqlx::query("INSERT INTO object_recipients (object_id, user_id) VALUES ($1, $2)")
                    .bind(id).bind(u).execute(&mut *tx).await?;
            }
            for u in &new.assignees {
                sqlx::query("INSERT INTO object_assignees (object_id, user_id) VALUES ($1, $2)")
                    .bind(id).bind(u).execute(&mut *tx).await?;
            }
            if !new.recipients.is_empty() || !new.assignees.is_empty() {
                sqlx::query(refresh_markings(d)).bind(id).execute(&mut *tx).await?;
            }
            append_audit!(tx, d, actor, AuditEntry::new("object.create", new.kind.as_str(), id, detail));
            tx.commit().await?;
        });
        Ok(Object {
            id,
            kind: new.kind,
            owner: new.owner,
            tlp: new.tlp,
            title: new.title,
            body,
            created_by: new.created_by,
            created_at: now,
            updated_at: now,
            version: 1,
            recipients: new.recipients,
            assignees: new.assignees,
            shares: Vec::new(),
        })
    }

    /// One object, with its marking (the caller applies the policy).
    pub async fn object(&self, id: Uuid) -> Result<Option<Object>> {
        let row: Option<ObjectRow> = on_read!(self, pool, _d => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {OBJECT_COLUMNS} FROM objects o WHERE o.id = $1")))
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        row.map(row_to_object).transpose()
    }

    /// The objects the principal may list, newest first, `limit` at a time after `before`.
    /// Filtered in the database by the principal's read scope; each row re-checked by the policy.
    pub async fn list_objects(
        &self,
        who: &Principal,
        tree: &Tree,
        filter: &ObjectFilter,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<Object>> {
        let scope = read_scope(who, tree);
        let kinds: Vec<Kind> = scope.kinds.iter().copied().filter(|k| filter.kind.is_none_or(|f| f == *k)).collect();
        if kinds.is_empty() {
            return Ok(Page { items: Vec::new(), next: None });
        }
        let limit = limit.clamp(1, 500);
        let rows: Vec<ObjectRow> = on_read!(self, pool, d => {
            let mut qb = QueryBuilder::new(format!("SELECT {OBJECT_COLUMNS} FROM objects o WHERE o.kind IN ("));
            for (i, k) in kinds.iter().enumerate() {
                qb.push(if i == 0 { "" } else { ", " });
                push_name(&mut qb, d, k.as_str());
            }
            qb.push(") AND (");
            if scope.assigned_only {
                qb.push("EXISTS (SELECT 1 FROM object_assignees a WHERE a.object_id = o.id AND a.user_id = ");
                push_id(&mut qb, d, scope.user);
                qb.push(") AND (o.tlp <> 'RED' OR o.created_by = ");
                push_id(&mut qb, d, scope.user);
                qb.push(" OR EXISTS (SELECT 1 FROM object_recipients r WHERE r.object_id = o.id AND r.user_id = ");
                push_id(&mut qb, d, scope.user);
                qb.push("))");
            } else {
                qb.push("FALSE");
                if !scope.chain_owners.is_empty() {
                    qb.push(" OR (o.tlp <> 'RED' AND o.owner_org IN (");
                    for (i, o) in scope.chain_owners.iter().enumerate() {
                        qb.push(if i == 0 { "" } else { ", " });
                        push_id(&mut qb, d, Some(*o));
                    }
                    qb.push("))");
                }
                // The recipients and shares tables are probed only for rows that have some
                // (the row's own copy of its markings says so).
                if let Some(user) = scope.user {
                    qb.push(" OR (o.tlp = 'RED' AND (o.created_by = ");
                    push_id(&mut qb, d, Some(user));
                    qb.push(" OR (o.recipients IS NOT NULL AND EXISTS (SELECT 1 FROM object_recipients r \
                             WHERE r.object_id = o.id AND r.user_id = ");
                    push_id(&mut qb, d, Some(user));
                    qb.push("))))");
                }
                // A share is looked up by the row's id, row by row, until the page is full.
                // PostgreSQL would turn an `EXISTS` here into a hash of every share the
                // principal can see, built at each execution: a probe per row is cheaper (a
                // page reads a few dozen rows) and does not grow with the shares.
                qb.push(match d {
                    Dialect::Sqlite => {
                        " OR (o.tlp IN ('CLEAR', 'GREEN', 'AMBER') AND o.shares IS NOT NULL AND EXISTS (SELECT 1"
                    }
                    Dialect::Postgres => {
                        " OR (o.tlp IN ('CLEAR', 'GREEN', 'AMBER') AND o.shares IS NOT NULL AND (SELECT 1"
                    }
                });
                qb.push(" FROM object_shares s WHERE s.object_id = o.id AND (s.target = 'public' OR s.target_org = ");
                push_id(&mut qb, d, Some(scope.org));
                if scope.community {
                    qb.push(" OR s.target = 'community'");
                }
                qb.push(match d {
                    Dialect::Sqlite => ")))",
                    Dialect::Postgres => ") LIMIT 1) IS NOT NULL)",
                });
            }
            qb.push(")");
            if let Some(t) = filter.tlp {
                qb.push(" AND o.tlp = ");
                push_name(&mut qb, d, t.as_str());
            }
            if let Some(owner) = filter.owner {
                qb.push(" AND o.owner_org = ");
                push_id(&mut qb, d, Some(owner));
            }
            if let Some(q) = filter.q.as_deref().filter(|q| !q.trim().is_empty()) {
                qb.push(" AND lower(o.title) LIKE ");
                qb.push_bind(like_pattern(q.trim()));
                qb.push(" ESCAPE '\\'");
            }
            if filter.alert_status.is_some() || filter.min_level.is_some() {
                qb.push(" AND EXISTS (SELECT 1 FROM alert_details x WHERE x.object_id = o.id");
                if let Some(s) = filter.alert_status {
                    qb.push(" AND x.status = ");
                    push_name(&mut qb, d, s.as_str());
                }
                if let Some(l) = filter.min_level {
                    qb.push(format_args!(" AND x.level_rank >= {}", l.clamp(0, 4)));
                }
                qb.push(")");
            }
            if let Some(b) = before {
                qb.push(" AND o.id < ");
                qb.push_bind(b);
            }
            // An integer of ours, written out: SQLite re-prepares a statement whose LIMIT is bound.
            qb.push(format_args!(" ORDER BY o.id DESC LIMIT {}", i64::from(limit) + 1));
            qb.build_query_as().fetch_all(pool).await?
        });
        let more = rows.len() > limit as usize;
        let mut items: Vec<Object> = rows.into_iter().take(limit as usize).map(row_to_object).collect::<Result<_>>()?;
        let next = if more { items.last().map(|o| o.id) } else { None };
        let before_check = items.len();
        items.retain(|o| can(who, tree, &o.marking(), Action::List).allowed());
        if items.len() != before_check {
            tracing::error!(
                message = "Rows the read scope admitted were refused by the policy; they were dropped.",
                dropped = before_check - items.len()
            );
        }
        Ok(Page { items, next })
    }

    /// How many objects of each kind the principal may list.
    pub async fn count_objects(&self, who: &Principal, tree: &Tree) -> Result<Vec<(Kind, u64)>> {
        // Counting goes through the same query as listing, so a count never reveals more than a list.
        let mut out = Vec::new();
        for kind in read_scope(who, tree).kinds {
            let mut n = 0u64;
            let mut before = None;
            loop {
                let filter = ObjectFilter { kind: Some(kind), ..ObjectFilter::default() };
                let page = self.list_objects(who, tree, &filter, before, 500).await?;
                n += page.items.len() as u64;
                match page.next {
                    Some(b) if n < 10_000 => before = Some(b),
                    _ => break,
                }
            }
            out.push((kind, n));
        }
        Ok(out)
    }

    /// Changes an object. The caller has checked [`nigehban_policy::can`] with `Write`. Raising
    /// the TLP withdraws the shares the new level does not allow (each withdrawal audited).
    pub async fn update_object(&self, actor: &Actor, tree: &Tree, id: Uuid, update: ObjectUpdate) -> Result<Object> {
        let mut o = self.object(id).await?.ok_or(StoreError::NotFound("object"))?;
        if let Some(v) = update.expected_version
            && v != o.version
        {
            return Err(StoreError::Conflict(format!(
                "the object changed since you read it (version {} now, {v} expected)",
                o.version
            )));
        }
        let mut changed = serde_json::Map::new();
        if let Some(t) = update.title {
            if t.trim().is_empty() {
                return Err(StoreError::Invalid("title must not be empty".into()));
            }
            changed.insert("title".into(), "changed".into());
            o.title = t;
        }
        if let Some(b) = update.body {
            changed.insert("body".into(), "changed".into());
            o.body = Body::from_value(&b);
        }
        if let Some(r) = update.recipients {
            changed.insert("recipients".into(), serde_json::json!(r));
            o.recipients = r;
        }
        if let Some(a) = update.assignees {
            changed.insert("assignees".into(), serde_json::json!(a));
            o.assignees = a;
        }
        self.check_people(tree, o.kind, o.owner, &o.recipients, &o.assignees).await?;
        let mut withdrawn = Vec::new();
        if let Some(t) = update.tlp {
            changed.insert("tlp".into(), serde_json::json!({"from": o.tlp.as_str(), "to": t.as_str()}));
            o.tlp = t;
            let kept = shares_kept(tree, o.owner, t, &o.shares);
            withdrawn = o.shares.iter().copied().filter(|s| !kept.contains(s)).collect();
            o.shares = kept;
        }
        o.version += 1;
        o.updated_at = now_micros();
        on_write!(self, pool, d => {
            let mut tx = pool.begin().await?;
            let done = sqlx::query(
                "UPDATE objects SET title = $1, body = $2, tlp = $3, updated_at = $4, version = $5 WHERE id = $6 AND version = $7",
            )
            .bind(&o.title)
            .bind(o.body.get())
            .bind(o.tlp.as_str())
            .bind(o.updated_at)
            .bind(o.version)
            .bind(id)
            .bind(o.version - 1)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done == 0 {
                return Err(StoreError::Conflict("the object changed while this change was made; try again".into()));
            }
            sqlx::query("DELETE FROM object_recipients WHERE object_id = $1").bind(id).execute(&mut *tx).await?;
            for u in &o.recipients {
                sqlx::query("INSERT INTO object_recipients (object_id, user_id) VALUES ($1, $2)")
                    .bind(id).bind(u).execute(&mut *tx).await?;
            }
            sqlx::query("DELETE FROM object_assignees WHERE object_id = $1").bind(id).execute(&mut *tx).await?;
            for u in &o.assignees {
                sqlx::query("INSERT INTO object_assignees (object_id, user_id) VALUES ($1, $2)")
                    .bind(id).bind(u).execute(&mut *tx).await?;
            }
            for s in &withdrawn {
                let (target, target_org) = share_columns(s);
                sqlx::query(
                    "DELETE FROM object_shares WHERE object_id = $1 AND by_org = $2 AND target = $3 \
                     AND (target_org = $4 OR (target_org IS NULL AND $4 IS NULL))",
                )
                .bind(id)
                .bind(s.by)
                .bind(target)
                .bind(target_org)
                .execute(&mut *tx)
                .await?;
                append_audit!(tx, d, actor, AuditEntry::new("object.unshare", o.kind.as_str(), id, serde_json::json!({
                    "by": s.by, "target": target, "target_org": target_org, "reason": format!("TLP raised to {}", o.tlp.as_str()),
                })));
            }
            sqlx::query(refresh_markings(d)).bind(id).execute(&mut *tx).await?;
            append_audit!(tx, d, actor, AuditEntry::new("object.update", o.kind.as_str(), id, serde_json::Value::Object(changed)));
            tx.commit().await?;
        });
        Ok(o)
    }

    /// Records a share. The caller has checked [`nigehban_policy::check_share`]. Sharing twice
    /// with the same target is a no-op.
    pub async fn share_object(&self, actor: &Actor, id: Uuid, share: Share) -> Result<Object> {
        let o = self.object(id).await?.ok_or(StoreError::NotFound("object"))?;
        if o.shares.contains(&share) {
            return Ok(o);
        }
        let (target, target_org) = share_columns(&share);
        let now = now_micros();
        on_write!(self, pool, d => {
            let mut tx = pool.begin().await?;
            if d == Dialect::Postgres {
                // The row lock [`refresh_markings`] needs.
                sqlx::query("SELECT 1 FROM objects WHERE id = $1 FOR UPDATE").bind(id).execute(&mut *tx).await?;
            }
            sqlx::query(
                "INSERT INTO object_shares (object_id, by_org, target, target_org, created_by, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(share.by)
            .bind(target)
            .bind(target_org)
            .bind(actor.user)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(refresh_markings(d)).bind(id).execute(&mut *tx).await?;
            append_audit!(tx, d, actor, AuditEntry::new("object.share", o.kind.as_str(), id, serde_json::json!({
                "by": share.by, "target": target, "target_org": target_org, "tlp": o.tlp.as_str(),
            })));
            tx.commit().await?;
        });
        self.object(id).await?.ok_or(StoreError::NotFound("object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_the_json_text_of_its_value_and_reads_back_to_it() {
        let v = serde_json::json!({
            "title": "Ransomware note \"READ_ME\"\n\u{1F512} — تاوان",
            "zeta": 1, "alpha": [1.5, -2, null, true], "nested": {"b": {}, "a": []},
        });
        let body = Body::from_value(&v);
        assert_eq!(body.get(), serde_json::to_string(&v).unwrap(), "written as serde_json writes it, keys in order");
        assert_eq!(body.to_value(), v);
        let stored = Body::parse(body.get().to_owned()).unwrap();
        assert_eq!(stored, body);
        // In a page it is written out as is.
        assert_eq!(serde_json::to_string(&stored).unwrap(), body.get());
        assert!(Body::parse("{\"unterminated\": ".to_owned()).is_err());
        assert!(Body::parse(String::new()).is_err());
    }
}
