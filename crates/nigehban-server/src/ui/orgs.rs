//! The constituency tree and organisation pages.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use nigehban_policy::OrgKind;
use nigehban_policy::admin::visible_orgs;
use nigehban_store::{ObjectFilter, Org};
use uuid::Uuid;

use super::view::{self, Link, ObjectRow, OrgNames};
use super::{Chrome, UiError, Viewer, render};
use crate::AppState;

/// One party of the tree, with the parties below it that the viewer may see.
struct TreeNode {
    href: String,
    name: String,
    short_name: String,
    kind: &'static str,
    children: Vec<TreeNode>,
}

#[derive(Template)]
#[template(path = "tree.html")]
struct TreePage {
    chrome: Chrome,
    roots: Vec<TreeNode>,
    outside: Vec<TreeNode>,
}

fn rank(k: OrgKind) -> u8 {
    match k {
        OrgKind::National => 0,
        OrgKind::ProvincialCert => 1,
        OrgKind::SectoralCert => 2,
        OrgKind::Organisation => 3,
        OrgKind::AuditFirm => 4,
    }
}

/// The node and (at most three levels of) its visible children. An organisation under a
/// provincial and a sectoral CERT appears under both.
fn node(o: &Org, visible: &[&Org], depth: usize) -> TreeNode {
    let mut children: Vec<&&Org> = visible.iter().filter(|c| c.parents.contains(&o.id)).collect();
    children.sort_by(|a, b| rank(a.kind).cmp(&rank(b.kind)).then_with(|| a.name.cmp(&b.name)));
    TreeNode {
        href: format!("/orgs/{}", o.id),
        name: o.name.clone(),
        short_name: o.short_name.clone(),
        kind: view::org_kind_label(o.kind),
        children: if depth >= 3 {
            Vec::new()
        } else {
            children.into_iter().map(|c| node(c, visible, depth + 1)).collect()
        },
    }
}

/// `GET /tree`: the constituency as far as the viewer may see it.
pub(crate) async fn tree(State(state): State<Arc<AppState>>, v: Viewer) -> Result<Response, UiError> {
    let ids = visible_orgs(&v.auth.principal, &v.tree);
    let all = state.store.orgs().await.map_err(|e| v.fail(e))?;
    let mut visible: Vec<&Org> = all.iter().filter(|o| ids.contains(&o.id)).collect();
    visible.sort_by(|a, b| rank(a.kind).cmp(&rank(b.kind)).then_with(|| a.name.cmp(&b.name)));
    let is_root = |o: &Org| !o.parents.iter().any(|p| ids.contains(p));
    let roots =
        visible.iter().filter(|o| o.kind != OrgKind::AuditFirm && is_root(o)).map(|o| node(o, &visible, 1)).collect();
    let outside = visible.iter().filter(|o| o.kind == OrgKind::AuditFirm).map(|o| node(o, &visible, 3)).collect();
    Ok(render(StatusCode::OK, &TreePage { chrome: v.chrome("Constituency", "/tree"), roots, outside }))
}

#[derive(Template)]
#[template(path = "org.html")]
struct OrgPage {
    chrome: Chrome,
    name: String,
    short_name: String,
    kind: &'static str,
    sector: Option<String>,
    province: Option<String>,
    description: String,
    parents: Vec<Link>,
    children: Vec<Link>,
    contacts: Vec<String>,
    ip_ranges: Vec<String>,
    asns: Vec<String>,
    domains: Vec<String>,
    security_lead: Option<String>,
    reads_content: bool,
    rows: Vec<ObjectRow>,
    more: bool,
}

/// `GET /orgs/{id}`: an organisation's profile and its objects the viewer may see; not found
/// when the viewer may not see the organisation.
pub(crate) async fn org(
    State(state): State<Arc<AppState>>,
    v: Viewer,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let Ok(id) = id.parse::<Uuid>() else { return Err(UiError::not_found(Some(v.chrome("Not found", "")))) };
    let visible = visible_orgs(&v.auth.principal, &v.tree);
    if !visible.contains(&id) {
        return Err(UiError::not_found(Some(v.chrome("Not found", ""))));
    }
    let names = OrgNames::new(state.store.orgs().await.map_err(|e| v.fail(e))?, &v);
    let Some(o) = names.get(id).cloned() else { return Err(UiError::not_found(Some(v.chrome("Not found", "")))) };
    let mut children: Vec<Link> = v
        .tree
        .nodes()
        .filter(|n| n.parents.contains(&id) && visible.contains(&n.id))
        .map(|n| names.link(n.id))
        .collect();
    children.sort_by(|a, b| a.text.cmp(&b.text));
    let security_lead = match o.security_lead {
        Some(u) => state.store.user(u).await.map_err(|e| v.fail(e))?.map(|u| match &u.email {
            Some(e) => format!("{} <{e}>", u.display_name),
            None => u.display_name,
        }),
        None => None,
    };
    let p = &v.auth.principal;
    let reads_content = nigehban_policy::Kind::ALL.iter().any(|k| p.role.reads(*k));
    let filter = ObjectFilter { owner: Some(id), ..ObjectFilter::default() };
    let page = if reads_content {
        state.store.list_objects(p, &v.tree, &filter, None, 25).await.map_err(|e| v.fail(e))?
    } else {
        nigehban_store::Page { items: Vec::new(), next: None }
    };
    let page = OrgPage {
        chrome: v.chrome(o.name.clone(), "/tree"),
        kind: view::org_kind_label(o.kind),
        parents: o.parents.iter().map(|p| names.link(*p)).collect(),
        children,
        contacts: o.profile.contacts.clone(),
        ip_ranges: o.profile.ip_ranges.clone(),
        asns: o.profile.asns.iter().map(|a| format!("AS{a}")).collect(),
        domains: o.profile.domains.clone(),
        description: o.profile.description.clone(),
        security_lead,
        reads_content,
        rows: page.items.iter().map(|x| view::object_row(x, &names)).collect(),
        more: page.next.is_some(),
        name: o.name,
        short_name: o.short_name,
        sector: o.sector,
        province: o.province,
    };
    Ok(render(StatusCode::OK, &page))
}
