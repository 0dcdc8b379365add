//! Lists and pages of marked objects, and the form that reports an incident.

use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use nigehban_policy::admin::visible_orgs;
use nigehban_policy::{Action, Kind, Share, ShareTarget, Tlp, can, can_create, check_share};
use nigehban_store::{NewObject, ObjectFilter};
use serde::Deserialize;
use uuid::Uuid;

use super::view::{self, Choice, Link, ObjectRow, OrgNames, TlpBadge, When};
use super::{Chrome, UiError, Viewer, render};
use crate::AppState;
use crate::api::{decode_cursor, encode_cursor, load};

const PAGE_SIZE: u32 = 25;

/// The kind named by a path segment (plural names only).
fn kind_of(s: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| k.plural() == s)
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    tlp: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    cursor: String,
}

/// The incident form's values (kept when it is shown again with an error).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    tlp: String,
    #[serde(default)]
    description: String,
}

#[derive(Template)]
#[template(path = "objects.html")]
struct ListPage {
    chrome: Chrome,
    heading: &'static str,
    plural: &'static str,
    rows: Vec<ObjectRow>,
    tlp_choices: Vec<Choice>,
    q: String,
    owner: String,
    owner_name: Option<String>,
    filtered: bool,
    paged: bool,
    next_href: Option<String>,
    first_href: String,
    can_create: bool,
    form_title: String,
    form_description: String,
    form_tlps: Vec<Choice>,
    error: Option<String>,
}

fn query_string(tlp: &str, q: &str, owner: &str, cursor: Option<&str>) -> String {
    let mut parts = Vec::new();
    for (k, v) in [("tlp", tlp), ("q", q), ("owner", owner), ("cursor", cursor.unwrap_or(""))] {
        if !v.is_empty() {
            parts.push(format!("{k}={}", view::url_encode(v)));
        }
    }
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
}

async fn list_page(
    state: &AppState,
    v: &Viewer,
    kind: Kind,
    q: ListQuery,
    form: CreateForm,
    error: Option<String>,
) -> Result<ListPage, UiError> {
    let p = &v.auth.principal;
    let bad = |m: String| UiError::page(StatusCode::BAD_REQUEST, "Cannot show this list", m, Some(v.chrome("", "")));
    let tlp = match q.tlp.as_str() {
        "" => None,
        s => Some(s.parse::<Tlp>().map_err(|e| bad(e.to_string()))?),
    };
    let owner = match q.owner.as_str() {
        "" => None,
        s => Some(s.parse::<Uuid>().map_err(|_| bad(format!("owner {s:?} is not an organisation identifier")))?),
    };
    let before = match q.cursor.as_str() {
        "" => None,
        s => Some(decode_cursor(s).map_err(|e| bad(e.message))?),
    };
    let search = q.q.trim().to_owned();
    let filter = ObjectFilter {
        kind: Some(kind),
        tlp,
        owner,
        q: (!search.is_empty()).then(|| search.clone()),
        ..ObjectFilter::default()
    };
    let page = state.store.list_objects(p, &v.tree, &filter, before, PAGE_SIZE).await.map_err(|e| v.fail(e))?;
    let action = if filter.q.is_some() { Action::Search } else { Action::List };
    let names = OrgNames::new(state.store.orgs().await.map_err(|e| v.fail(e))?, v);
    let rows = page
        .items
        .iter()
        .filter(|o| nigehban_policy::can(p, &v.tree, &o.marking(), action).allowed())
        .map(|o| view::object_row(o, &names))
        .collect();
    let tlp_str = tlp.map_or("", Tlp::as_str);
    let base = format!("/objects/{}", kind.plural());
    let can_create = kind == Kind::Incident && can_create(p, kind, p.org).allowed();
    let heading = view::kind_plural_label(kind);
    Ok(ListPage {
        chrome: v.chrome(heading, &base),
        heading,
        plural: kind.plural(),
        rows,
        tlp_choices: view::tlp_choices(tlp_str, Some("Any level")),
        owner_name: owner.map(|o| names.name(o)),
        filtered: tlp.is_some() || owner.is_some() || !search.is_empty(),
        paged: before.is_some(),
        next_href: page
            .next
            .map(|n| format!("{base}{}", query_string(tlp_str, &search, &q.owner, Some(&encode_cursor(n))))),
        first_href: format!("{base}{}", query_string(tlp_str, &search, &q.owner, None)),
        q: search,
        owner: q.owner,
        can_create,
        form_tlps: view::tlp_choices(if form.tlp.is_empty() { "AMBER" } else { &form.tlp }, None),
        form_title: form.title,
        form_description: form.description,
        error,
    })
}

/// `GET /objects/{kind}`: the objects of a kind the viewer may list, newest first, with
/// filters by TLP, owner and words of the title, a page at a time.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    v: Viewer,
    Path(kind): Path<String>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, UiError> {
    let Some(kind) = kind_of(&kind) else { return Err(UiError::not_found(Some(v.chrome("Not found", "")))) };
    if kind == Kind::Alert {
        // Alerts are listed in the triage queue, with the same filters and cursors.
        let q = q.map(|Query(q)| q).unwrap_or_default();
        let to = format!("/alerts{}", query_string(&q.tlp, &q.q, &q.owner, Some(&q.cursor)));
        return Ok(Redirect::to(&to).into_response());
    }
    if !v.role().reads(kind) {
        return Err(UiError::page(
            StatusCode::FORBIDDEN,
            "Not allowed",
            format!(
                "Your role ({}) does not read {}.",
                v.role().label().to_lowercase(),
                view::kind_plural_label(kind).to_lowercase()
            ),
            Some(v.chrome("Not allowed", "")),
        ));
    }
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let page = list_page(&state, &v, kind, q, CreateForm::default(), None).await?;
    Ok(render(StatusCode::OK, &page))
}

/// `POST /objects/incidents`: reports an incident for the viewer's organisation.
pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    v: Viewer,
    Path(kind): Path<String>,
    f: Result<Form<CreateForm>, FormRejection>,
) -> Result<Response, UiError> {
    let Some(kind) = kind_of(&kind) else { return Err(UiError::not_found(Some(v.chrome("Not found", "")))) };
    let f = super::form(f, &v)?;
    v.check_csrf(&f.csrf)?;
    let p = &v.auth.principal;
    if kind != Kind::Incident || !can_create(p, kind, p.org).allowed() {
        return Err(UiError::page(
            StatusCode::FORBIDDEN,
            "Not allowed",
            format!("Your role cannot create {} here.", view::kind_plural_label(kind).to_lowercase()),
            Some(v.chrome("Not allowed", "")),
        ));
    }
    let problem = if f.title.trim().is_empty() {
        Some("Give the incident a title.".to_owned())
    } else if f.title.chars().count() > 300 {
        Some("Keep the title under 300 characters.".to_owned())
    } else if f.description.chars().count() > 20_000 {
        Some("Keep the description under 20,000 characters.".to_owned())
    } else {
        f.tlp.parse::<Tlp>().err().map(|e| format!("Choose a TLP level ({e})."))
    };
    let tlp = match (problem, f.tlp.parse::<Tlp>()) {
        (None, Ok(t)) => t,
        (problem, _) => {
            let message = problem.unwrap_or_else(|| "Choose a TLP level.".to_owned());
            let page = list_page(&state, &v, kind, ListQuery::default(), f, Some(message)).await?;
            return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
        }
    };
    let mut body = serde_json::Map::new();
    body.insert("status".into(), "reported".into());
    if !f.description.trim().is_empty() {
        body.insert("description".into(), f.description.trim().into());
    }
    let new = NewObject {
        kind,
        owner: p.org,
        tlp,
        title: f.title.trim().to_owned(),
        body: serde_json::Value::Object(body),
        created_by: p.user,
        recipients: Vec::new(),
        assignees: Vec::new(),
    };
    let o = state.store.create_object(&v.auth.actor(), &v.tree, new).await.map_err(|e| v.fail(e))?;
    Ok(Redirect::to(&format!("/objects/{}/{}?created=1", kind.plural(), o.id)).into_response())
}

#[derive(Template)]
#[template(path = "object.html")]
struct DetailPage {
    chrome: Chrome,
    kind: &'static str,
    plural: &'static str,
    list_label: &'static str,
    title: String,
    tlp: TlpBadge,
    owner: Link,
    created: When,
    updated: When,
    version: i64,
    created_by: Option<String>,
    fields: Vec<(String, String)>,
    chain: bool,
    recipients: Vec<String>,
    assignees: Vec<String>,
    shares: Vec<String>,
    created_notice: bool,
    shared_notice: bool,
    share_targets: Vec<Choice>,
    share_action: String,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct DetailQuery {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    shared: Option<String>,
}

/// Where the viewer may share the object: organisations it may see, the community, the
/// public, each as the policy allows for the object's TLP (none unless the viewer may share).
fn share_targets(v: &Viewer, o: &nigehban_store::Object, names: &OrgNames) -> Vec<(ShareTarget, String)> {
    let p = &v.auth.principal;
    if !can(p, &v.tree, &o.marking(), Action::Share).allowed() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for t in [ShareTarget::Community, ShareTarget::Public] {
        let label = if t == ShareTarget::Community { "The whole community" } else { "The public" };
        out.push((t, label.to_owned()));
    }
    let mut orgs: Vec<(ShareTarget, String)> = visible_orgs(p, &v.tree)
        .into_iter()
        .filter(|org| !v.tree.relation(*org, o.owner).in_chain())
        .map(|org| (ShareTarget::Org(org), names.name(org)))
        .collect();
    orgs.sort_by(|a, b| a.1.cmp(&b.1));
    out.extend(orgs);
    out.retain(|(t, _)| {
        !o.shares.contains(&Share { by: p.org, target: *t }) && check_share(p, &v.tree, &o.marking(), *t).allowed()
    });
    out
}

fn target_value(t: ShareTarget) -> String {
    match t {
        ShareTarget::Org(o) => o.to_string(),
        ShareTarget::Community => "community".to_owned(),
        ShareTarget::Public => "public".to_owned(),
    }
}

async fn display_name(state: &AppState, id: Uuid) -> String {
    match state.store.user(id).await {
        Ok(Some(u)) => u.display_name,
        _ => "a former user".to_owned(),
    }
}

/// `GET /objects/{kind}/{id}`: one object; not found when the viewer may not see it.
pub(crate) async fn detail(
    State(state): State<Arc<AppState>>,
    v: Viewer,
    Path((kind, id)): Path<(String, String)>,
    q: Result<Query<DetailQuery>, QueryRejection>,
) -> Result<Response, UiError> {
    let not_found = || UiError::not_found(Some(v.chrome("Not found", "")));
    let (Some(kind), Ok(id)) = (kind_of(&kind), id.parse::<Uuid>()) else { return Err(not_found()) };
    let (o, tree) = load(&state, &v.auth, kind, id, Action::Read).await.map_err(|e| v.fail(e))?;
    let names = OrgNames::new(state.store.orgs().await.map_err(|e| v.fail(e))?, &v);
    // The envelope (who named whom, who shared with whom) is for the owner's chain, as in the API.
    let chain = tree.relation(v.auth.principal.org, o.owner).in_chain();
    let mut recipients = Vec::new();
    let mut assignees = Vec::new();
    let mut shares = Vec::new();
    let mut created_by = None;
    if chain {
        for u in &o.recipients {
            recipients.push(display_name(&state, *u).await);
        }
        for s in &o.shares {
            let to = match s.target {
                ShareTarget::Org(org) => names.name(org),
                ShareTarget::Community => "the whole community".to_owned(),
                ShareTarget::Public => "the public".to_owned(),
            };
            shares.push(format!("{} shared it with {to}", names.name(s.by)));
        }
        if let Some(u) = o.created_by {
            created_by = Some(display_name(&state, u).await);
        }
    }
    let assigned = v.auth.principal.user.is_some_and(|u| o.assignees.contains(&u));
    if chain || assigned {
        for u in &o.assignees {
            assignees.push(display_name(&state, *u).await);
        }
    }
    let fields = match &o.body.to_value() {
        serde_json::Value::Object(m) => {
            m.iter().map(|(k, val)| (view::field_label(k), view::value_text(val))).collect()
        }
        serde_json::Value::Null => Vec::new(),
        other => vec![("Content".to_owned(), view::value_text(other))],
    };
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let share_targets = share_targets(&v, &o, &names)
        .into_iter()
        .map(|(t, label)| Choice { value: target_value(t), label, selected: false })
        .collect();
    let page = DetailPage {
        chrome: v.chrome(o.title.clone(), &format!("/objects/{}", kind.plural())),
        kind: view::kind_label(kind),
        plural: kind.plural(),
        list_label: view::kind_plural_label(kind),
        tlp: view::tlp_badge(o.tlp),
        owner: names.link(o.owner),
        created: view::when(o.created_at),
        updated: view::when(o.updated_at),
        version: o.version,
        created_by,
        fields,
        chain,
        recipients,
        assignees,
        shares,
        created_notice: q.created.is_some(),
        shared_notice: q.shared.is_some(),
        share_targets,
        share_action: format!("/objects/{}/{}/shares", kind.plural(), o.id),
        title: o.title,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ShareForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    target: String,
}

/// `POST /objects/{kind}/{id}/shares`: a CERT manager shares the object beyond the owner's
/// chain, as far as its TLP allows (the share is in the audit log).
pub(crate) async fn share(
    State(state): State<Arc<AppState>>,
    v: Viewer,
    Path((kind, id)): Path<(String, String)>,
    f: Result<Form<ShareForm>, FormRejection>,
) -> Result<Response, UiError> {
    let not_found = || UiError::not_found(Some(v.chrome("Not found", "")));
    let (Some(kind), Ok(id)) = (kind_of(&kind), id.parse::<Uuid>()) else { return Err(not_found()) };
    let f = super::form(f, &v)?;
    v.check_csrf(&f.csrf)?;
    let (o, _) = load(&state, &v.auth, kind, id, Action::Share).await.map_err(|e| v.fail(e))?;
    let names = OrgNames::new(state.store.orgs().await.map_err(|e| v.fail(e))?, &v);
    let Some((target, _)) = share_targets(&v, &o, &names).into_iter().find(|(t, _)| target_value(*t) == f.target)
    else {
        return Err(UiError::page(
            StatusCode::FORBIDDEN,
            "Not allowed",
            format!("{} material cannot be shared with that recipient by you.", o.tlp),
            Some(v.chrome("Not allowed", "")),
        ));
    };
    state
        .store
        .share_object(&v.auth.actor(), id, Share { by: v.auth.principal.org, target })
        .await
        .map_err(|e| v.fail(e))?;
    Ok(Redirect::to(&format!("/objects/{}/{id}?shared=1", kind.plural())).into_response())
}
