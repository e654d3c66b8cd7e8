//! The approval page on the admin listener: `/ui`.
//!
//! Server-rendered HTML that works on a phone, with a little JavaScript
//! (the countdown, and a reload every few seconds while nothing is being
//! typed). Sign in with a token or API key; it is kept in an `HttpOnly`,
//! `SameSite=Strict` cookie (`Secure` when the listener has TLS) and every
//! form carries a token derived from it, so another site cannot post a
//! decision in the approver's name. The page shows:
//!
//! - pending requests the caller may see (its approver groups', an
//!   operator's all, an agent's only its own), with time left, the
//!   statement (SQL structure plain, masked literal insides highlighted),
//!   the facts, the rule and reason, the requester's justification and
//!   the preview; approve or deny with a comment;
//! - the recent history with each decision and its comment;
//! - live sessions (every replica's), with kill for operators.
//!
//! Every value is HTML-escaped; the store checks the rules of each
//! decision (see [`super`]).

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::Record;
use super::display::Kind;
use crate::admin::AdminState;
use crate::identity::{Principal, PrincipalKind};

const COOKIE: &str = "portcullis_token";

/// The page's routes, on the admin API's state.
pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/ui", get(page))
        .route("/ui/login", post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/approvals/{id}/{verb}", post(decide))
        .route("/ui/sessions/{id}/kill", post(kill))
}

/// Escapes text for HTML content and attribute values. (Five characters:
/// a dependency for this would be larger than the function.)
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The form token that proves a post comes from a page this gateway
/// rendered for the holder of `token`.
fn csrf(token: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("portcullis-ui-form\0{token}").as_bytes(),
    );
    hex::encode(digest.as_ref())
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// The signed-in caller and their token, if the cookie holds a valid one.
fn caller(state: &AdminState, headers: &HeaderMap) -> Option<(Principal, String)> {
    let token = cookie_token(headers)?;
    let who = (state.authenticate)(&token).ok()?;
    Some((who, token))
}

fn is_operator(state: &AdminState, who: &Principal) -> bool {
    who.groups.iter().any(|g| state.operator_groups.contains(g))
}

/// Who may see a request: its requester; people in its approver groups
/// and operators. An agent or service sees only its own.
fn may_see(state: &AdminState, who: &Principal, r: &Record) -> bool {
    if who.kind != PrincipalKind::Human {
        return who.id == r.requester;
    }
    who.id == r.requester
        || who.groups.iter().any(|g| r.groups.contains(g))
        || is_operator(state, who)
}

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0;padding:0 1rem 2rem;max-width:60rem;background:#fafafa;color:#222}
header{display:flex;justify-content:space-between;align-items:center;border-bottom:1px solid #ccc;margin-bottom:1rem}
h1{font-size:1.3rem} h2{font-size:1.1rem;margin-top:2rem}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.8rem;margin:.8rem 0}
pre.sql{white-space:pre-wrap;word-break:break-word;background:#f3f3f3;padding:.6rem;border-radius:4px;font-size:.95rem}
.lit{background:#fff3c4;color:#7a4b00;border-bottom:1px dotted #7a4b00}
.cmt{color:#777;font-style:italic} .par{background:#e3f0ff;color:#003d7a} .opq{background:#fde0e0}
.meta{font-size:.9rem;color:#555} .left{font-weight:bold}
textarea{width:100%;box-sizing:border-box;min-height:2.5rem;font:inherit}
button{font:inherit;padding:.5rem 1rem;margin:.3rem .3rem 0 0;border-radius:4px;border:1px solid #888;cursor:pointer}
button.ok{background:#1f7a33;color:#fff;border-color:#1f7a33} button.no{background:#a11;color:#fff;border-color:#a11}
table{border-collapse:collapse;width:100%;font-size:.9rem} td,th{border-bottom:1px solid #ddd;padding:.3rem;text-align:left;vertical-align:top}
.msg{background:#eef;padding:.5rem;border-radius:4px} .err{background:#fee}
input[type=password]{width:100%;font:inherit;padding:.4rem;box-sizing:border-box}
";

const SCRIPT: &str = "
function tick(){var now=Date.now()/1000;document.querySelectorAll('[data-expires]').forEach(function(e){
var s=Math.max(0,Math.round(e.dataset.expires-now));e.textContent=s>0?(Math.floor(s/60)+'m '+(s%60)+'s left'):'expired';});}
setInterval(tick,1000);tick();
setInterval(function(){var busy=Array.prototype.some.call(document.querySelectorAll('textarea'),function(t){return t.value||t===document.activeElement;});
if(!busy&&!document.querySelector('input[type=password]'))location.reload();},5000);
";

fn shell(body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>Portcullis approvals</title><style>{STYLE}</style></head>\
         <body>{body}<script>{SCRIPT}</script></body></html>"
    ))
}

fn sign_in(message: Option<&str>) -> Response {
    let message = message
        .map(|m| format!("<p class='msg err'>{}</p>", esc(m)))
        .unwrap_or_default();
    shell(&format!(
        "<header><h1>Portcullis approvals</h1></header>{message}\
         <form method=post action=/ui/login class=card>\
         <label>Your token or API key<br><input type=password name=token autocomplete=off required></label>\
         <button type=submit class=ok>Sign in</button></form>"
    ))
    .into_response()
}

/// The statement, SQL structure plain and masked insides highlighted.
fn statement(r: &Record) -> String {
    let mut out = String::from("<pre class=sql>");
    for s in &r.shown.segments {
        let text = esc(&s.text);
        match s.kind {
            Kind::Sql => out.push_str(&text),
            Kind::Literal => out.push_str(&format!("<span class=lit>{text}</span>")),
            Kind::Comment => out.push_str(&format!("<span class=cmt>{text}</span>")),
            Kind::Param => out.push_str(&format!("<span class=par>{text}</span>")),
            Kind::Opaque => out.push_str(&format!("<span class=opq>{text}</span>")),
        }
    }
    if r.shown.segments.is_empty() {
        out.push_str(&esc(&r.command));
    }
    out.push_str("</pre>");
    out
}

fn pending_card(r: &Record, form: &str, mine: bool) -> String {
    let facts = serde_json::to_string(&r.facts).unwrap_or_default();
    let votes = if r.votes.is_empty() {
        String::new()
    } else {
        format!(
            "<p class=meta>So far: {}</p>",
            r.votes
                .iter()
                .map(|v| format!(
                    "{} {}{}",
                    esc(&v.approver),
                    if v.approve { "approved" } else { "denied" },
                    v.comment
                        .as_deref()
                        .map(|c| format!(" (“{}”)", esc(c)))
                        .unwrap_or_default()
                ))
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    let actions = if mine {
        "<p class=meta>You made this request; someone else decides.</p>".to_owned()
    } else {
        format!(
            "<form method=post action='/ui/approvals/{id}/approve'>\
             <input type=hidden name=csrf value='{form}'>\
             <textarea name=comment placeholder='Comment (recorded in the audit trail)'></textarea>\
             <button type=submit class=ok formaction='/ui/approvals/{id}/approve'>Approve</button>\
             <button type=submit class=no formaction='/ui/approvals/{id}/deny'>Deny</button></form>",
            id = esc(&r.id),
        )
    };
    format!(
        "<div class=card id='{id}'><div class=meta><b>{id}</b> · <span class=left data-expires='{expires}'></span> · \
         {requester} on <b>{connection}</b> · session {session}</div>\
         {statement}\
         <p class=meta>Rule <b>{rule}</b>: {reason}</p>{justification}{preview}\
         <p class=meta>Needs {need} approval(s) from {groups}</p>{ticket}{votes}\
         <details><summary class=meta>Facts</summary><pre class=sql>{facts}</pre></details>{actions}</div>",
        id = esc(&r.id),
        expires = r.expires_at,
        requester = esc(&r.requester),
        connection = esc(&r.connection),
        session = esc(&r.session_id),
        statement = statement(r),
        rule = esc(&r.rule_id),
        reason = esc(&r.reason),
        justification = r
            .justification
            .as_deref()
            .map(|j| format!("<p class=meta>Requester's reason: {}</p>", esc(j)))
            .unwrap_or_default(),
        preview = r
            .preview
            .as_deref()
            .map(|p| format!("<p class=meta>Preview: <b>{}</b></p>", esc(p)))
            .unwrap_or_default(),
        need = r.min_approvals.max(1),
        groups = esc(&r.groups.join(", ")),
        ticket = r
            .ticket
            .as_ref()
            .map(|t| format!(
                "<p class=meta>Ticket mode: nothing waits; once approved, the requester's retry \
                 of exactly this statement runs once, within {} s of the approval.</p>",
                t.ttl
            ))
            .unwrap_or_default(),
        facts = esc(&facts),
    )
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    msg: Option<String>,
}

async fn page(
    State(state): State<AdminState>,
    axum::extract::Query(q): axum::extract::Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let Some((who, token)) = caller(&state, &headers) else {
        return sign_in(None);
    };
    let form = csrf(&token);
    let mut body = format!(
        "<header><h1>Portcullis approvals</h1><form method=post action=/ui/logout>\
         <span class=meta>{} ({})</span> <input type=hidden name=csrf value='{form}'>\
         <button type=submit>Sign out</button></form></header>",
        esc(&who.id),
        who.kind.as_str()
    );
    if let Some(m) = &q.msg {
        body.push_str(&format!("<p class=msg>{}</p>", esc(m)));
    }
    if who.kind != PrincipalKind::Human {
        body.push_str(
            "<p class=meta>Only people approve: as an agent or service you see your own \
             requests.</p>",
        );
    }
    body.push_str("<h2>Pending</h2>");
    match state.approvals.list().await {
        Ok(list) => {
            let visible: Vec<&Record> = list.iter().filter(|r| may_see(&state, &who, r)).collect();
            if visible.is_empty() {
                body.push_str("<p class=meta>Nothing is waiting.</p>");
            }
            for r in visible {
                body.push_str(&pending_card(r, &form, r.requester == who.id));
            }
        }
        Err(e) => body.push_str(&format!("<p class='msg err'>{}</p>", esc(&e.to_string()))),
    }
    body.push_str("<h2>Recent</h2>");
    match state.approvals.history(30).await {
        Ok(list) => {
            body.push_str("<table><tr><th>Request</th><th>State</th><th>Decisions</th></tr>");
            for r in list.iter().filter(|r| may_see(&state, &who, r)) {
                let decisions = r
                    .votes
                    .iter()
                    .map(|v| {
                        format!(
                            "{} {}{}",
                            esc(&v.approver),
                            if v.approve { "approved" } else { "denied" },
                            v.comment
                                .as_deref()
                                .map(|c| format!(": “{}”", esc(c)))
                                .unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("<br>");
                body.push_str(&format!(
                    "<tr><td><b>{}</b> {} on {}<br><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                    esc(&r.id),
                    esc(&r.requester),
                    esc(&r.connection),
                    esc(&r.command),
                    r.state.as_str(),
                    decisions
                ));
            }
            body.push_str("</table>");
        }
        Err(e) => body.push_str(&format!("<p class='msg err'>{}</p>", esc(&e.to_string()))),
    }
    if is_operator(&state, &who) {
        body.push_str("<h2>Live sessions</h2>");
        match (state.sessions)().await {
            Ok(serde_json::Value::Array(list)) => {
                body.push_str(
                    "<table><tr><th>Session</th><th>Who</th><th>Connection</th><th></th></tr>",
                );
                for s in list {
                    let field = |k: &str| {
                        s.get(k)
                            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                            .unwrap_or_default()
                    };
                    let id = field("session");
                    body.push_str(&format!(
                        "<tr><td>{id_text}</td><td>{who} ({kind})</td><td>{conn} · {secs}s</td><td>\
                         <form method=post action='/ui/sessions/{id_url}/kill'>\
                         <input type=hidden name=csrf value='{form}'>\
                         <button type=submit class=no>Kill</button></form></td></tr>",
                        id_text = esc(&id),
                        id_url = esc(&id.replace('/', "~")),
                        who = esc(&field("principal")),
                        kind = esc(&field("kind")),
                        conn = esc(&field("connection")),
                        secs = esc(&field("seconds")),
                    ));
                }
                body.push_str("</table>");
            }
            Ok(_) => {}
            Err(e) => body.push_str(&format!("<p class='msg err'>{}</p>", esc(&e))),
        }
    }
    let mut response = shell(&body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(state): State<AdminState>, Form(f): Form<LoginForm>) -> Response {
    let token = f.token.trim();
    if let Err(e) = (state.authenticate)(token) {
        return sign_in(Some(&format!("not signed in: {e}")));
    }
    // A token is base64url, JWT dots or an API key: nothing a cookie cannot hold.
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.~+/=".contains(&b))
    {
        return sign_in(Some("this token cannot be kept in a cookie"));
    }
    let secure = if state.tls { "; Secure" } else { "" };
    let mut response = Redirect::to("/ui").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict{secure}"
    )) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[derive(Debug, Deserialize)]
struct ActionForm {
    csrf: String,
    #[serde(default)]
    comment: Option<String>,
}

fn checked(
    state: &AdminState,
    headers: &HeaderMap,
    f: &ActionForm,
) -> Result<Principal, Box<Response>> {
    let Some((who, token)) = caller(state, headers) else {
        return Err(Box::new(Redirect::to("/ui").into_response()));
    };
    let expected = csrf(&token);
    let same = expected.len() == f.csrf.len()
        && expected
            .bytes()
            .zip(f.csrf.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err(Box::new(
            (
                StatusCode::FORBIDDEN,
                "this form did not come from this page",
            )
                .into_response(),
        ));
    }
    Ok(who)
}

fn back(message: &str) -> Response {
    let encoded: String = message
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    Redirect::to(&format!("/ui?msg={encoded}")).into_response()
}

async fn logout(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Form(f): Form<ActionForm>,
) -> Response {
    if let Err(r) = checked(&state, &headers, &f) {
        return *r;
    }
    let mut response = Redirect::to("/ui").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "portcullis_token=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}

async fn decide(
    State(state): State<AdminState>,
    Path((id, verb)): Path<(String, String)>,
    headers: HeaderMap,
    Form(f): Form<ActionForm>,
) -> Response {
    let who = match checked(&state, &headers, &f) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let approve = match verb.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return (StatusCode::NOT_FOUND, "no such action").into_response(),
    };
    match state
        .approvals
        .decide(&id, &who, approve, f.comment.as_deref())
        .await
    {
        Ok(super::Decided::Released) => back(&format!("{id} approved: the statement runs now")),
        Ok(super::Decided::Recorded { have, need }) => back(&format!(
            "{id}: your approval is recorded ({have} of {need})"
        )),
        Ok(super::Decided::Denied) => back(&format!("{id} denied")),
        Err(e) => back(&format!("{id}: {e}")),
    }
}

async fn kill(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<ActionForm>,
) -> Response {
    let who = match checked(&state, &headers, &f) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    if !is_operator(&state, &who) {
        return back(&format!("{} is not an operator", who.id));
    }
    let id = id.replace('~', "/");
    match (state.kill)(id.clone(), who.id.clone()).await {
        Ok(true) => back(&format!("session {id} ended")),
        Ok(false) => back(&format!("no live session {id}")),
        Err(e) => back(&format!("session {id}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn form_tokens_differ_per_token() {
        assert_ne!(csrf("a"), csrf("b"));
        assert_eq!(csrf("a"), csrf("a"));
    }
}
