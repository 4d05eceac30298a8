//! The admin listener's `/`: one plain HTML page an operator reads on a Monday morning.
//!
//! Listeners and routes (engine, versions, certificate), certificates (issuer family, the
//! devices that trust it, days left, highlighted under 30), handshakes and failures by reason
//! over the last hour, the last failed handshakes with their diagnosis, devices seen by family
//! and firmware, fingerprints with their User-Agents and a `client_hello` route to paste, and
//! the last reload's result.
//!
//! No external assets and no script: inline CSS only (the admin port sends a
//! `Content-Security-Policy` that forbids anything else). Every value that a client or the
//! config controls (SNI, User-Agent, names, paths, error texts) goes through [`html`]. The
//! page is bounded: at most [`MAX_FINGERPRINTS_SHOWN`] fingerprints and [`MAX_DEVICE_ROWS`]
//! device rows, the failure ring holds [`crate::recent::MAX_FAILURES`].

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::check::Report;
use crate::metrics::Telemetry;
use crate::recent::Hour;

/// How many fingerprints the page lists (most recently seen first; `/fingerprints` has all).
pub const MAX_FINGERPRINTS_SHOWN: usize = 100;
/// How many (family, firmware) rows the page lists (most requests first).
pub const MAX_DEVICE_ROWS: usize = 200;
/// Certificates with fewer days left than this are highlighted.
pub const EXPIRY_WARN_DAYS: i64 = 30;

/// `s` safe as HTML text and inside a quoted attribute: `& < > " '` become entities.
/// (Five characters; a crate for it would be a dependency for ten lines.)
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
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

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

const STYLE: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}\
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.6em 0 .4em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.3em 0}th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}\
th{background:#f0f0f0}code,pre,.mono{font-family:ui-monospace,monospace;font-size:12px}\
pre{background:#f6f6f6;border:1px solid #ddd;padding:4px 6px;margin:2px 0;white-space:pre-wrap}\
.ok{color:#176b1e}.warn{background:#fff3c4}.bad{background:#ffd6d6}.dim{color:#777}\
nav a{margin-right:1em}ul{margin:0;padding-left:1.2em}\
.chart{display:flex;align-items:flex-end;height:64px;gap:1px;border-bottom:1px solid #999;margin:.4em 0}\
.chart div{flex:1;display:flex;flex-direction:column-reverse;min-width:4px}\
.chart .s{background:#6ab06f}.chart .f{background:#d9534f}.axis{display:flex;justify-content:space-between;width:100%}\
p.trust{margin:0 0 .3em}tr.diag td{border-top:none;background:#fafafa;overflow-wrap:anywhere;padding-bottom:5px}td.ciphers{max-width:16em;overflow-wrap:anywhere}\
table.wide{width:100%}";

/// What the page is built from.
pub struct Page<'a> {
    pub report: &'a Report,
    pub telemetry: &'a Telemetry,
    pub now: SystemTime,
    pub draining: bool,
}

/// The whole page.
pub fn render(p: &Page<'_>) -> String {
    let mut o = String::with_capacity(64 * 1024);
    let recent = &p.telemetry.recent;
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>provgate status</title><style>{STYLE}</style></head><body>\n\
         <h1>provgate status</h1>\n<p class=\"dim\">provgate {} &middot; page generated {} \
         &middot; up since {} &middot; config {}{}</p>\n",
        html(env!("CARGO_PKG_VERSION")),
        time(p.now),
        time(recent.started()),
        html(&p.report.file),
        if p.draining {
            " &middot; <b class=\"bad\">draining</b>"
        } else {
            ""
        },
    );
    o.push_str(
        "<nav><a href=\"#reload\">reload</a><a href=\"#warnings\">warnings</a>\
         <a href=\"#listeners\">listeners</a><a href=\"#certificates\">certificates</a>\
         <a href=\"#handshakes\">handshakes</a><a href=\"#failures\">failed handshakes</a>\
         <a href=\"#devices\">devices</a><a href=\"#fingerprints\">fingerprints</a></nav>\n",
    );
    reload(&mut o, p);
    warnings(&mut o, p.report, &p.telemetry.recent.name_warnings());
    listeners(&mut o, p.report);
    certificates(&mut o, p.report);
    handshakes(&mut o, &recent.hour());
    failures(&mut o, p);
    devices(&mut o, p.telemetry);
    fingerprints(&mut o, p.telemetry);
    o.push_str("</body></html>\n");
    o
}

fn reload(o: &mut String, p: &Page<'_>) {
    o.push_str("<h2 id=\"reload\">Last reload</h2>\n");
    match p.telemetry.recent.last_reload() {
        None => o.push_str("<p id=\"reload-result\">none since start</p>\n"),
        Some(r) => match r.result {
            Ok(()) => {
                let _ = writeln!(
                    o,
                    "<p id=\"reload-result\" class=\"ok\">{}: ok</p>",
                    time(r.at)
                );
            }
            Err(e) => {
                let _ = writeln!(
                    o,
                    "<p id=\"reload-result\" class=\"bad\">{}: failed, still serving the \
                     previous configuration: {}</p>",
                    time(r.at),
                    html(&e)
                );
            }
        },
    }
}

/// `provgate check`'s warnings for the running config, then those of the certificate-name
/// (DNS) check that ran in the background at start or the last reload (this page never waits
/// on DNS).
fn warnings(o: &mut String, r: &Report, names: &[crate::check::Warning]) {
    let all: Vec<&crate::check::Warning> = r.warnings.iter().chain(names).collect();
    let _ = writeln!(o, "<h2 id=\"warnings\">Warnings ({})</h2>", all.len());
    if all.is_empty() {
        o.push_str(
            "<p class=\"ok\">none (as <code>provgate check</code> finds them, with the \
             certificate names looked up at start or the last reload)</p>\n",
        );
        return;
    }
    o.push_str("<table><tr><th>code</th><th>where</th><th>message</th></tr>\n");
    for w in all {
        let place: Vec<String> = [
            w.listener.as_deref().map(|l| format!("listener {l}")),
            w.route.as_deref().map(|r| format!("route {r}")),
            w.certificate.as_deref().map(|c| format!("certificate {c}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        let _ = writeln!(
            o,
            "<tr class=\"warn\"><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            html(w.code),
            html(&place.join(", ")),
            html(&w.message)
        );
    }
    o.push_str("</table>\n");
}

fn listeners(o: &mut String, r: &Report) {
    o.push_str(
        "<h2 id=\"listeners\">Listeners and routes</h2>\n<table id=\"routes\"><tr>\
         <th>listener</th><th>bind</th><th>route</th><th>SNI</th><th>engine</th>\
         <th>versions</th><th>certificate</th><th>profile</th><th>backend</th>\
         <th>client auth</th></tr>\n",
    );
    for l in &r.listeners {
        for route in &l.routes {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                html(&l.name),
                html(&l.bind.join(", ")),
                html(&route.name),
                html(&route.sni.join(", ")),
                html(&route.engine),
                html(&route.versions.join(", ")),
                html(route.certificate.as_deref().unwrap_or("none (plain HTTP)")),
                html(&route.profile),
                html(&route.backend),
                html(&route.client_auth),
            );
        }
    }
    o.push_str("</table>\n");
}

fn certificates(o: &mut String, r: &Report) {
    o.push_str(
        "<h2 id=\"certificates\">Certificates</h2>\n<table id=\"certs\"><tr><th>name</th>\
         <th>CN</th><th>issuer</th><th>issuer family</th><th>devices that trust it</th>\
         <th>not after</th><th>days left</th></tr>\n",
    );
    for c in &r.certificates {
        let class = if c.days_left < 0 {
            " class=\"bad\""
        } else if c.days_left < EXPIRY_WARN_DAYS {
            " class=\"warn\""
        } else {
            ""
        };
        let family = c
            .vendor_ca
            .map_or("unknown (not a built-in vendor CA)", |v| v.family);
        let mut devices = String::new();
        if c.devices.is_empty() {
            devices.push_str("<span class=\"dim\">none known</span>");
        }
        // One line per source, the source named once.
        let mut sources: Vec<&str> = c.devices.iter().map(|d| d.source).collect();
        sources.dedup();
        for source in sources {
            let rows: Vec<String> = c
                .devices
                .iter()
                .filter(|d| d.source == source)
                .map(|d| {
                    if d.note.is_empty() {
                        html(&d.label())
                    } else {
                        format!("{} <i>({})</i>", html(&d.label()), html(d.note))
                    }
                })
                .collect();
            let _ = write!(
                devices,
                "<p class=\"trust\">{} <span class=\"dim\">&mdash; {}</span></p>",
                rows.join("; "),
                html(source)
            );
        }
        let _ = writeln!(
            o,
            "<tr{class}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{devices}</td>\
             <td>{}</td><td class=\"days\">{}</td></tr>",
            html(&c.name),
            html(c.cn.as_deref().unwrap_or("-")),
            html(&c.issuer),
            html(family),
            html(&c.not_after),
            c.days_left,
        );
    }
    o.push_str("</table>\n");
}

fn handshakes(o: &mut String, h: &Hour) {
    let (ok, failed) = (h.successes(), h.failures());
    let _ = writeln!(
        o,
        "<h2 id=\"handshakes\">Handshakes, last hour</h2>\n<p id=\"hour-totals\">\
         {} handshakes: <b class=\"ok\">{ok} succeeded</b>, <b>{failed} failed</b></p>",
        ok + failed
    );
    // One column a minute, oldest left: successes green, failures red on top.
    let peak = h
        .per_minute
        .iter()
        .map(|m| m.1 + m.2)
        .max()
        .unwrap_or(0)
        .max(1);
    o.push_str("<div class=\"chart\" aria-label=\"handshakes per minute\">");
    for &(ago, s, f) in &h.per_minute {
        let px = |n: u64| n * 60 / peak;
        let _ = write!(
            o,
            "<div title=\"{ago} min ago: {s} ok, {f} failed\">\
             <span class=\"s\" style=\"height:{}px\"></span>\
             <span class=\"f\" style=\"height:{}px\"></span></div>",
            px(s),
            px(f)
        );
    }
    o.push_str(
        "</div><div class=\"axis dim\"><span>60 min ago</span><span>one column per minute: \
         green succeeded, red failed</span><span>now</span></div>\n",
    );
    o.push_str("<table id=\"reasons\"><tr><th>failure reason</th><th>count</th></tr>\n");
    if h.by_reason.is_empty() {
        o.push_str("<tr><td colspan=\"2\" class=\"ok\">no failures</td></tr>\n");
    }
    for (reason, n) in &h.by_reason {
        let _ = writeln!(
            o,
            "<tr><td><code>{}</code></td><td>{n}</td></tr>",
            html(reason)
        );
    }
    o.push_str("</table>\n");
}

fn failures(o: &mut String, p: &Page<'_>) {
    let last = p.telemetry.recent.last_failures();
    let _ = writeln!(
        o,
        "<h2 id=\"failures\">Last {} failed handshakes</h2>",
        crate::recent::MAX_FAILURES
    );
    o.push_str(
        "<table id=\"failed\" class=\"wide\"><tr><th>time</th><th>listener</th><th>route</th>\
         <th>client</th><th>reason</th><th>engine</th><th>offered versions</th>\
         <th>offered ciphers</th><th>SNI</th><th>JA4</th></tr>\n",
    );
    if last.is_empty() {
        o.push_str("<tr><td colspan=\"10\" class=\"ok\">none since start</td></tr>\n");
    }
    for f in &last {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"mono\">{}</td>\
             <td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"mono ciphers\">{}</td>\
             <td class=\"mono\">{}</td><td class=\"mono\">{}</td></tr>\n\
             <tr class=\"diag\"><td colspan=\"10\">&rarr; {}</td></tr>",
            time(f.at),
            html(&f.listener),
            html(&f.route),
            html(&f.client.to_string()),
            html(f.reason),
            html(f.engine),
            html(&f.versions),
            html(&f.ciphers),
            html(&f.sni),
            html(&f.ja4),
            html(&f.diagnosis),
        );
    }
    o.push_str("</table>\n");
}

/// (family, firmware, requests) from `provgate_devices_seen_total`, most requests first.
fn devices_seen(t: &Telemetry) -> Vec<(String, String, u64)> {
    use prometheus::core::Collector as _;
    let mut rows = Vec::new();
    for family in t.metrics.devices_seen.collect() {
        for m in family.get_metric() {
            let label = |name: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map_or_else(String::new, |l| l.value().to_string())
            };
            // A counter's value is a whole number of requests.
            let n = m.get_counter().get_value() as u64;
            rows.push((label("family"), label("firmware"), n));
        }
    }
    rows.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
    rows
}

fn devices(o: &mut String, t: &Telemetry) {
    let rows = devices_seen(t);
    o.push_str(
        "<h2 id=\"devices\">Devices seen since start</h2>\n<p class=\"dim\">requests by \
         device family and firmware, from the User-Agent</p>\n<table id=\"device-table\">\
         <tr><th>family</th><th>firmware</th><th>requests</th></tr>\n",
    );
    if rows.is_empty() {
        o.push_str("<tr><td colspan=\"3\" class=\"dim\">no requests yet</td></tr>\n");
    }
    for (family, firmware, n) in rows.iter().take(MAX_DEVICE_ROWS) {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{n}</td></tr>",
            html(family),
            html(firmware)
        );
    }
    o.push_str("</table>\n");
    if rows.len() > MAX_DEVICE_ROWS {
        let _ = writeln!(
            o,
            "<p class=\"dim\">{} more rows in /metrics (provgate_devices_seen_total)</p>",
            rows.len() - MAX_DEVICE_ROWS
        );
    }
}

/// A route matching this fingerprint, to paste under a listener (`certificate` to fill in).
pub fn client_hello_route(f: &crate::fingerprint::FingerprintStats) -> String {
    let short = f.ja4.split('_').next().unwrap_or(&f.ja4);
    format!(
        "    routes:\n      - name: ja4-{short}\n        match:\n          client_hello:\n            \
         format: {}\n            max_version: {}\n            ja4: [\"{}\"]\n        \
         certificate: CHANGE-ME   # the certificate of their CA family\n",
        f.format, f.max_version, f.ja4
    )
}

fn fingerprints(o: &mut String, t: &Telemetry) {
    let all = t.fingerprints.snapshot();
    let _ = writeln!(
        o,
        "<h2 id=\"fingerprints\">Fingerprints ({} seen)</h2>\n<p class=\"dim\">most recently \
         seen first; device ids masked as in /fingerprints unless admin.show_device_ids</p>\n\
         <table id=\"fingerprint-table\"><tr><th>JA4</th><th>hello</th><th>connections</th>\
         <th>User-Agents</th><th>client_hello route</th></tr>",
        all.len()
    );
    for f in all.iter().take(MAX_FINGERPRINTS_SHOWN) {
        let agents = if f.user_agents.is_empty() {
            "<span class=\"dim\">none yet</span>".to_string()
        } else {
            let items: String = f
                .user_agents
                .iter()
                .map(|a| format!("<li class=\"ua\">{}</li>", html(a)))
                .collect();
            format!("<ul>{items}</ul>")
        };
        let _ = writeln!(
            o,
            "<tr><td class=\"mono\">{}</td><td>{} up to {}</td><td>{}</td><td>{agents}</td>\
             <td><pre class=\"snippet\">{}</pre></td></tr>",
            html(&f.ja4),
            html(f.format),
            html(&f.max_version),
            f.connections,
            html(&client_hello_route(f)),
        );
    }
    o.push_str("</table>\n");
    if all.len() > MAX_FINGERPRINTS_SHOWN {
        let _ = writeln!(
            o,
            "<p class=\"dim\">{} more in /fingerprints</p>",
            all.len() - MAX_FINGERPRINTS_SHOWN
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_markup_and_quotes() {
        assert_eq!(
            html("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(html("prov.example.com"), "prov.example.com");
        assert_eq!(html("caf\u{e9}"), "caf\u{e9}");
    }

    #[test]
    fn client_hello_route_is_yaml_with_the_match_keys() {
        let f = crate::fingerprint::FingerprintStats {
            ja4: "t10i090000_0d77b2003a3f_000000000000".into(),
            format: "tls",
            max_version: "tls1.0".into(),
            connections: 1,
            user_agents: vec![],
        };
        let snippet = client_hello_route(&f);
        let v: serde_yaml::Value = serde_yaml::from_str(&snippet).unwrap_or_default();
        let hello = &v["routes"][0]["match"]["client_hello"];
        assert_eq!(hello["format"].as_str(), Some("tls"));
        assert_eq!(hello["max_version"].as_str(), Some("tls1.0"));
        assert_eq!(
            hello["ja4"][0].as_str(),
            Some("t10i090000_0d77b2003a3f_000000000000")
        );
        assert_eq!(v["routes"][0]["name"].as_str(), Some("ja4-t10i090000"));
    }
}
