//! The constituency: nCERT, CERTs, organisations and audit firms, with their profiles.

use nigehban_policy::{OrgKind, OrgNode, Tree};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::audit::{AuditEntry, append_audit};
use crate::{Actor, Result, Store, StoreError, new_id, now_micros, on_read, on_write};

/// An organisation's profile: who to contact and what it owns (used to route findings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrgProfile {
    /// What it does.
    pub description: String,
    /// Contacts: e-mail addresses or phone numbers with a name.
    pub contacts: Vec<String>,
    /// IP ranges it owns (CIDR).
    pub ip_ranges: Vec<String>,
    /// Autonomous system numbers it owns.
    pub asns: Vec<u32>,
    /// Domains it owns.
    pub domains: Vec<String>,
}

/// A party of the constituency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Org {
    /// Identifier.
    pub id: Uuid,
    /// What it is.
    pub kind: OrgKind,
    /// Full name.
    pub name: String,
    /// Short name (unique; used in URLs and logins lists).
    pub short_name: String,
    /// Sector (telecom, energy, government…).
    pub sector: Option<String>,
    /// Province.
    pub province: Option<String>,
    /// Parent CERTs.
    pub parents: Vec<Uuid>,
    /// Profile.
    pub profile: OrgProfile,
    /// Its designated senior security lead (a user of the organisation).
    pub security_lead: Option<Uuid>,
    /// Created (microseconds since the epoch).
    pub created_at: i64,
}

/// A new party.
#[derive(Debug, Clone)]
pub struct NewOrg {
    pub kind: OrgKind,
    pub name: String,
    pub short_name: String,
    pub sector: Option<String>,
    pub province: Option<String>,
    pub parents: Vec<Uuid>,
    pub profile: OrgProfile,
}

/// A change to a party (`None` keeps the current value).
#[derive(Debug, Clone, Default)]
pub struct OrgUpdate {
    pub name: Option<String>,
    pub sector: Option<Option<String>>,
    pub province: Option<Option<String>>,
    pub profile: Option<OrgProfile>,
    pub security_lead: Option<Option<Uuid>>,
}

#[derive(sqlx::FromRow)]
struct OrgRow {
    id: Uuid,
    kind: String,
    name: String,
    short_name: String,
    sector: Option<String>,
    province: Option<String>,
    profile: String,
    security_lead: Option<Uuid>,
    created_at: i64,
}

impl OrgRow {
    fn into_org(self, parents: Vec<Uuid>) -> Result<Org> {
        let kind = self.kind.parse().map_err(StoreError::Corrupt)?;
        let profile = serde_json::from_str(&self.profile)
            .map_err(|e| StoreError::Corrupt(format!("profile of organisation {}: {e}", self.id)))?;
        Ok(Org {
            id: self.id,
            kind,
            name: self.name,
            short_name: self.short_name,
            sector: self.sector,
            province: self.province,
            parents,
            profile,
            security_lead: self.security_lead,
            created_at: self.created_at,
        })
    }
}

const ORG_COLUMNS: &str = "id, kind, name, short_name, sector, province, profile, security_lead, created_at";

impl Store {
    /// Every party, by name.
    pub async fn orgs(&self) -> Result<Vec<Org>> {
        let (rows, parents): (Vec<OrgRow>, Vec<(Uuid, Uuid)>) = on_read!(self, pool => {
            let rows = sqlx::query_as::<_, OrgRow>(sqlx::AssertSqlSafe(format!("SELECT {ORG_COLUMNS} FROM orgs ORDER BY name")))
                .fetch_all(pool)
                .await?;
            let parents = sqlx::query_as("SELECT org_id, parent_id FROM org_parents").fetch_all(pool).await?;
            (rows, parents)
        });
        rows.into_iter()
            .map(|r| {
                let p = parents.iter().filter(|(o, _)| *o == r.id).map(|(_, p)| *p).collect();
                r.into_org(p)
            })
            .collect()
    }

    /// One party.
    pub async fn org(&self, id: Uuid) -> Result<Option<Org>> {
        let found: Option<(OrgRow, Vec<(Uuid,)>)> = on_read!(self, pool => {
            match sqlx::query_as::<_, OrgRow>(sqlx::AssertSqlSafe(format!("SELECT {ORG_COLUMNS} FROM orgs WHERE id = $1")))
                .bind(id)
                .fetch_optional(pool)
                .await?
            {
                None => None,
                Some(row) => {
                    let parents = sqlx::query_as("SELECT parent_id FROM org_parents WHERE org_id = $1")
                        .bind(id)
                        .fetch_all(pool)
                        .await?;
                    Some((row, parents))
                }
            }
        });
        found.map(|(row, parents)| row.into_org(parents.into_iter().map(|(p,)| p).collect())).transpose()
    }

    /// One party by its short name.
    pub async fn org_by_short_name(&self, short_name: &str) -> Result<Option<Org>> {
        let id: Option<(Uuid,)> = on_read!(self, pool => {
            sqlx::query_as("SELECT id FROM orgs WHERE short_name = $1").bind(short_name).fetch_optional(pool).await?
        });
        match id {
            Some((id,)) => self.org(id).await,
            None => Ok(None),
        }
    }

    /// The constituency tree, checked.
    pub async fn tree(&self) -> Result<Tree> {
        let orgs = self.orgs().await?;
        Tree::new(orgs.into_iter().map(|o| OrgNode { id: o.id, kind: o.kind, parents: o.parents }))
            .map_err(|e| StoreError::Corrupt(format!("constituency tree: {e}")))
    }

    /// Adds a party; the tree must stay valid (one nCERT, CERTs under it, organisations under at
    /// most one provincial and one sectoral CERT).
    pub async fn create_org(&self, actor: &Actor, new: NewOrg) -> Result<Org> {
        if new.name.trim().is_empty() || new.short_name.trim().is_empty() {
            return Err(StoreError::Invalid("name and short_name must not be empty".into()));
        }
        let id = new_id();
        // Check the tree with the new node before writing anything.
        let mut nodes: Vec<OrgNode> =
            self.orgs().await?.into_iter().map(|o| OrgNode { id: o.id, kind: o.kind, parents: o.parents }).collect();
        nodes.push(OrgNode { id, kind: new.kind, parents: new.parents.clone() });
        Tree::new(nodes).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let profile = serde_json::to_string(&new.profile).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let created_at = now_micros();
        let detail = serde_json::json!({
            "kind": new.kind.as_str(), "name": new.name, "short_name": new.short_name, "parents": new.parents,
        });
        on_write!(self, pool, d => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO orgs (id, kind, name, short_name, sector, province, profile, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id)
            .bind(new.kind.as_str())
            .bind(&new.name)
            .bind(&new.short_name)
            .bind(&new.sector)
            .bind(&new.province)
            .bind(&profile)
            .bind(created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::unique(e, || format!("an organisation named {:?} or {:?} exists", new.name, new.short_name)))?;
            for p in &new.parents {
                sqlx::query("INSERT INTO org_parents (org_id, parent_id) VALUES ($1, $2)")
                    .bind(id)
                    .bind(p)
                    .execute(&mut *tx)
                    .await?;
            }
            append_audit!(tx, d, actor, AuditEntry::new("org.create", "org", id, detail));
            tx.commit().await?;
        });
        Ok(Org {
            id,
            kind: new.kind,
            name: new.name,
            short_name: new.short_name,
            sector: new.sector,
            province: new.province,
            parents: new.parents,
            profile: new.profile,
            security_lead: None,
            created_at,
        })
    }

    /// Changes a party's profile.
    pub async fn update_org(&self, actor: &Actor, id: Uuid, update: OrgUpdate) -> Result<Org> {
        let mut org = self.org(id).await?.ok_or(StoreError::NotFound("organisation"))?;
        let mut changed = serde_json::Map::new();
        if let Some(name) = update.name {
            if name.trim().is_empty() {
                return Err(StoreError::Invalid("name must not be empty".into()));
            }
            changed.insert("name".into(), name.clone().into());
            org.name = name;
        }
        if let Some(sector) = update.sector {
            changed.insert("sector".into(), serde_json::json!(sector));
            org.sector = sector;
        }
        if let Some(province) = update.province {
            changed.insert("province".into(), serde_json::json!(province));
            org.province = province;
        }
        if let Some(profile) = update.profile {
            changed.insert("profile".into(), serde_json::json!(profile));
            org.profile = profile;
        }
        if let Some(lead) = update.security_lead {
            if let Some(lead) = lead {
                let user = self.user(lead).await?.ok_or(StoreError::Invalid("security lead: no such user".into()))?;
                if user.org != id {
                    return Err(StoreError::Invalid("the security lead must be a user of the organisation".into()));
                }
            }
            changed.insert("security_lead".into(), serde_json::json!(lead));
            org.security_lead = lead;
        }
        let profile = serde_json::to_string(&org.profile).map_err(|e| StoreError::Invalid(e.to_string()))?;
        on_write!(self, pool, d => {
            let mut tx = pool.begin().await?;
            sqlx::query("UPDATE orgs SET name = $1, sector = $2, province = $3, profile = $4, security_lead = $5 WHERE id = $6")
                .bind(&org.name)
                .bind(&org.sector)
                .bind(&org.province)
                .bind(&profile)
                .bind(org.security_lead)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::unique(e, || format!("an organisation named {:?} exists", org.name)))?;
            append_audit!(tx, d, actor, AuditEntry::new("org.update", "org", id, serde_json::Value::Object(changed)));
            tx.commit().await?;
        });
        Ok(org)
    }
}
