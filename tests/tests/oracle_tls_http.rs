//! kcdscope's TLS, certificate, HTTP and CRL decoding against tshark's, field by field, on
//! the captures of captures/tls and captures/http (made by tests/lab/tls-http-captures.sh
//! with openssl and nginx). tshark is told the non-standard ports (`-d`); kcdscope finds
//! them by content. Exceptions are named where they are used.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use kcd_decode::Config;
use kcd_tests::{captures, replay_json, require_tshark};
use serde_json::Value;

/// `tshark -T fields`, one Vec of columns per packet; columns with several occurrences
/// are split on ','.
fn fields(path: &Path, filter: &str, cols: &[&str]) -> Vec<Vec<Vec<String>>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(path);
    for p in [4433, 8443] {
        cmd.args(["-d", &format!("tcp.port=={p},tls")]);
    }
    cmd.args(["-Y", filter, "-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"]);
    for c in cols {
        cmd.args(["-e", c]);
    }
    let out = cmd.output().expect("tshark runs");
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            l.split('|')
                .map(|c| if c.is_empty() { Vec::new() } else { c.split(',').map(str::to_string).collect() })
                .collect()
        })
        .collect()
}

fn version(hex: &str) -> String {
    match hex {
        "0x0301" => "TLS 1.0",
        "0x0302" => "TLS 1.1",
        "0x0303" => "TLS 1.2",
        "0x0304" => "TLS 1.3",
        other => other,
    }
    .to_string()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// "2026-12-05T13:01:05Z" as tshark writes it: "2026-12-05 13:01:05 (UTC)".
fn tshark_time(t: &str) -> String {
    format!("{} (UTC)", t.trim_end_matches('Z').replace('T', " "))
}

fn serial(tshark_hex: &str) -> String {
    let s = tshark_hex.trim_start_matches("0x").to_uppercase();
    let t = s.trim_start_matches("00");
    if t.is_empty() { "00".into() } else { t.to_string() }
}

fn tls_events(f: &Path) -> BTreeMap<u64, Value> {
    let (events, _) = replay_json(&[f.to_path_buf()], Config::default());
    events
        .into_iter()
        .filter(|e| e["event_type"] == "tls")
        .map(|e| (e["src_port"].as_u64().expect("client port"), e))
        .collect()
}

#[test]
fn tls_handshakes_and_certificates_agree_with_tshark() {
    require_tshark();
    let files = captures("tls");
    assert!(files.len() >= 2, "captures/tls is empty");
    let (mut hellos, mut alerts, mut certs) = (0, 0, 0);
    for f in &files {
        let ours = tls_events(f);
        // ClientHello: SNI, legacy version, supported_versions, number of suites.
        for row in fields(f, "tls.handshake.type==1", &["tcp.srcport", "tls.handshake.extensions_server_name", "tls.handshake.version", "tls.handshake.extensions.supported_version", "tls.handshake.ciphersuite"]) {
            let port: u64 = row[0][0].parse().expect("port");
            let e = &ours.get(&port).unwrap_or_else(|| panic!("{}: no tls event for client port {port}", f.display()))["tls"];
            assert_eq!(e["sni"].as_str(), row[1].first().map(String::as_str), "SNI, port {port}");
            assert_eq!(e["client_version"].as_str().map(str::to_string), row[2].first().map(|v| version(v)), "client version");
            let sv: Vec<String> = row[3].iter().filter(|v| !v.ends_with("a0a") || v.len() != 6).map(|v| version(v)).collect();
            assert_eq!(strs(&e["client_versions"]), sv, "supported_versions, port {port}");
            assert_eq!(strs(&e["cipher_suites"]).len(), row[4].len(), "cipher suite count, port {port}");
            hellos += 1;
        }
        // ServerHello: the chosen version (supported_versions in TLS 1.3).
        for row in fields(f, "tls.handshake.type==2", &["tcp.dstport", "tls.handshake.version", "tls.handshake.extensions.supported_version"]) {
            let port: u64 = row[0][0].parse().expect("port");
            let want = row[2].first().or(row[1].first()).map(|v| version(v));
            assert_eq!(ours[&port]["tls"]["version"].as_str().map(str::to_string), want, "chosen version, port {port}");
            if want.as_deref() == Some("TLS 1.3") {
                assert_eq!(ours[&port]["tls"]["certificates_visible"], false);
            }
        }
        // Cleartext alerts: level and description, sender.
        for row in fields(f, "tls.alert_message.level", &["tcp.srcport", "tcp.dstport", "tls.alert_message.level", "tls.alert_message.desc"]) {
            let (src, dst): (u64, u64) = (row[0][0].parse().expect("port"), row[1][0].parse().expect("port"));
            let (client, sender) = if ours.contains_key(&src) { (src, "client") } else { (dst, "server") };
            let a = &ours[&client]["tls"]["alert"];
            assert_eq!(a["code"].as_u64().map(|c| c.to_string()), row[3].first().cloned(), "alert, port {client}");
            assert_eq!(a["level"].as_str(), Some(if row[2][0] == "2" { "fatal" } else { "warning" }));
            assert_eq!(a["sender"], sender);
            assert_eq!(ours[&client]["tls"]["outcome"], "alert");
            alerts += 1;
        }
        // Certificate messages, each direction: serials, validity, SAN, URIs, names.
        let cols = ["tcp.srcport", "tcp.dstport", "x509af.serialNumber", "x509af.utcTime", "x509ce.rfc822Name", "x509ce.dNSName", "x509ce.uniformResourceIdentifier", "x509sat.uTF8String", "x509sat.printableString"];
        for row in fields(f, "tls.handshake.type==11", &cols) {
            let (src, dst): (u64, u64) = (row[0][0].parse().expect("port"), row[1][0].parse().expect("port"));
            let (client, key) = if ours.contains_key(&src) { (src, "client_certificates") } else { (dst, "server_certificates") };
            let chain = ours[&client]["tls"][key].as_array().cloned().unwrap_or_default();
            let serials: Vec<String> = row[2].iter().map(|s| serial(s)).collect();
            assert_eq!(chain.iter().map(|c| c["serial"].as_str().unwrap_or("").to_string()).collect::<Vec<_>>(), serials, "serials, port {client}");
            let times: Vec<String> = chain.iter().flat_map(|c| [tshark_time(c["not_before"].as_str().unwrap_or("")), tshark_time(c["not_after"].as_str().unwrap_or(""))]).collect();
            assert_eq!(times, row[3], "validity, port {client}");
            let emails: Vec<String> = chain.iter().flat_map(|c| strs(&c["san_email"])).collect();
            assert_eq!(emails, row[4], "SAN e-mail");
            let dns: Vec<String> = chain.iter().flat_map(|c| strs(&c["san_dns"])).collect();
            assert_eq!(dns, row[5], "SAN DNS");
            // Exception: tshark lists a certificate's URIs in extension order; ours are
            // grouped by extension. Compared as sorted lists.
            let mut uris: Vec<String> = chain
                .iter()
                .flat_map(|c| [strs(&c["cdp"]), strs(&c["delta_cdp"]), strs(&c["aia_ca_issuers"]), strs(&c["aia_ocsp"]), strs(&c["san_uri"])].concat())
                .collect();
            let mut want = row[6].clone();
            uris.sort();
            want.sort();
            // Exception: tshark writes a URI containing ',' (ldap DNs escape it as %2C, so
            // none here) split by its own aggregator; none occur in these captures.
            assert_eq!(uris, want, "URIs, port {client}");
            // Every attribute value tshark shows is in our subject or issuer, and back.
            // Compared as sets: tshark also lists the names inside extensions (the
            // authority key identifier's issuer), which repeat the same values.
            let theirs: std::collections::BTreeSet<String> = [row[7].clone(), row[8].clone()].concat().into_iter().collect();
            let mine: std::collections::BTreeSet<String> = chain
                .iter()
                .flat_map(|c| {
                    [c["issuer"].as_str().unwrap_or(""), c["subject"].as_str().unwrap_or("")]
                        .into_iter()
                        .flat_map(|n| n.split(',').filter_map(|rdn| rdn.split_once('=').map(|(_, v)| v.to_string())).collect::<Vec<_>>())
                })
                .collect();
            assert_eq!(mine, theirs, "name attributes, port {client}");
            certs += 1;
        }
    }
    eprintln!("compared {hellos} ClientHellos, {alerts} alerts, {certs} Certificate messages");
    assert!(hellos >= 8 && alerts >= 3 && certs >= 8, "{hellos} {alerts} {certs}");
}

#[test]
fn device_certificate_checks_name_the_broken_certificates() {
    // Which certificate is broken how is known from how the lab made it
    // (tests/lab/gateway-pki.sh), not from our output.
    let files = captures("tls");
    let mut seen = BTreeMap::new();
    for f in &files {
        for (_, e) in tls_events(f) {
            for c in e["tls"]["client_certificates"].as_array().into_iter().flatten().take(1) {
                seen.insert(c["subject"].as_str().unwrap_or("").to_string(), strs(&c["problems"]));
            }
        }
    }
    assert_eq!(seen["CN=alice"], Vec::<String>::new());
    assert_eq!(seen["CN=expired"], ["expired_at_capture"]);
    assert_eq!(seen["CN=noeku"], ["no_client_auth_eku"]);
    assert_eq!(seen["CN=ldaponly"], ["ldap_only_cdp"]);
}

#[test]
fn http_transactions_and_crls_agree_with_tshark() {
    require_tshark();
    let files = captures("http");
    assert!(files.len() >= 2, "captures/http is empty");
    let mut n = 0;
    for f in &files {
        let (events, _) = replay_json(&[f.to_path_buf()], Config::default());
        let ours: Vec<&Value> = events.iter().filter(|e| e["event_type"] == "http").collect();
        // Requests, in order (several in one frame when pipelined).
        let mut reqs = Vec::new();
        for row in fields(f, "http.request", &["tcp.stream", "http.request.method", "http.request.uri", "http.host"]) {
            for i in 0..row[1].len() {
                reqs.push((row[0][0].clone(), row[1][i].clone(), row[2][i].clone(), row[3].get(i).cloned()));
            }
        }
        // Responses in order per connection. Exception: tshark 4.0 pairs every response
        // of a pipelined burst with the burst's first request (http.response_for.uri);
        // HTTP/1.1 pairs them in order, which is what is compared here.
        let mut resps: BTreeMap<String, Vec<Vec<Vec<String>>>> = BTreeMap::new();
        let cols = ["tcp.stream", "http.response.code", "http.content_type", "x509af.utcTime", "x509af.userCertificate", "x509ce.CRLNumber", "x509ce.BaseCRLNumber"];
        for row in fields(f, "http.response", &cols) {
            resps.entry(row[0][0].clone()).or_default().push(row);
        }
        assert_eq!(ours.len(), reqs.len(), "{}: one event per request", f.display());
        let mut next: BTreeMap<String, usize> = BTreeMap::new();
        for (e, (stream, method, uri, host)) in ours.iter().zip(&reqs) {
            let h = &e["http"];
            assert_eq!(h["http_method"].as_str(), Some(method.as_str()));
            assert_eq!(h["url"].as_str(), Some(uri.as_str()));
            assert_eq!(h["hostname"].as_str(), host.as_deref());
            let i = next.entry(stream.clone()).or_default();
            let r = &resps[stream][*i];
            *i += 1;
            assert_eq!(h["status"].as_u64().map(|s| s.to_string()).as_ref(), r[1].first(), "status of {uri}");
            assert_eq!(h["http_content_type"].as_str(), r[2].first().map(String::as_str), "content type of {uri}");
            let c = &e["crl"];
            if !r[3].is_empty() {
                // tshark: thisUpdate, nextUpdate, then each revoked entry's date.
                assert_eq!(c["this_update"].as_str().map(tshark_time).as_ref(), r[3].first(), "thisUpdate of {uri}");
                assert_eq!(c["next_update"].as_str().map(tshark_time).as_ref(), r[3].get(1), "nextUpdate of {uri}");
                assert_eq!(c["revoked_count"].as_u64(), Some(r[4].len() as u64), "revoked of {uri}");
                assert_eq!(c["crl_number"].as_str().map(|x| u64::from_str_radix(x, 16).expect("hex").to_string()).as_ref(), r[5].first());
                assert_eq!(c["base_crl_number"].as_str().map(|x| u64::from_str_radix(x, 16).expect("hex").to_string()).as_ref(), r[6].first());
                assert_eq!(c["delta"].as_bool().unwrap_or(false), !r[6].is_empty());
            }
            n += 1;
        }
    }
    assert!(n >= 13, "{n} transactions compared");
}

#[test]
fn crl_and_activesync_problems_as_the_lab_made_them() {
    // The lab's script says which CRL is expired, which name IIS refuses and what the
    // ActiveSync queries hold; tshark decodes neither ActiveSync nor these checks.
    let (events, _) = replay_json(&captures("http"), Config::default());
    let by_url = |u: &str| events.iter().find(|e| e["http"]["url"] == u).unwrap_or_else(|| panic!("{u}"));
    assert_eq!(strs(&by_url("/iis/issuing+.crl")["crl"]["problems"]), ["not_found_plus_name"]);
    assert_eq!(strs(&by_url("/pki/missing.crl")["crl"]["problems"]), ["http_error"]);
    assert_eq!(strs(&by_url("/expired/issuing.crl")["crl"]["problems"]), ["expired_at_capture"]);
    assert!(by_url("/pki/issuing.crl")["crl"]["problems"].is_null());
    let eas: Vec<&Value> = events.iter().filter(|e| !e["eas"].is_null()).collect();
    assert_eq!(eas.len(), 3);
    assert_eq!(eas[0]["eas"]["device_id"], "ApplDNQXYZ123");
    assert_eq!(eas[0]["eas"]["user"], "alice@lab.test");
    assert_eq!(eas[0]["http"]["www_authenticate"], serde_json::json!(["Negotiate", "NTLM"]));
    assert_eq!(eas[1]["eas"]["query_form"], "base64");
    assert_eq!(eas[1]["eas"]["user"], "bob");
    assert_eq!(eas[1]["eas"]["device_type"], "SmartPhone");
    assert_eq!(eas[1]["eas"]["device_id"], "00112233445566778899AABBCCDDEEFF");
    assert_eq!(eas[1]["http"]["authorization"]["kind"], "basic");
    assert_eq!(eas[2]["http"]["www_authenticate"], serde_json::json!(["NTLM"]));
    assert_eq!(eas[2]["http"]["authorization"]["ntlm_message"], 1);
    // The credential itself is nowhere in the output.
    let all = serde_json::to_string(&events).expect("json");
    assert!(!all.contains("YWxpY2U6bm90LWEtcmVhbC1wYXNzd29yZA") && !all.contains("not-a-real-password"));
    assert!(!all.contains("TlRMTVNTUAAB"));
}

/// The Kerberos AP-REQ inside `Authorization: Negotiate` (raw krb5 and SPNEGO) against
/// tshark's decode of it, on the Samba lab's real HTTP captures (Apache + mod_auth_gssapi).
#[test]
fn negotiate_ap_req_agrees_with_tshark() {
    require_tshark();
    let mut n = 0;
    for f in captures("krb5").into_iter().filter(|f| f.to_string_lossy().ends_with("_http.pcap")) {
        let (events, _) = replay_json(std::slice::from_ref(&f), Config::default());
        let by_frame: BTreeMap<u64, &Value> = events
            .iter()
            .filter(|e| e["event_type"] == "http")
            .filter_map(|e| e["http"]["request_frame"].as_u64().map(|fr| (fr, e)))
            .collect();
        for row in fields(&f, "http.authorization", &["frame.number", "kerberos.SNameString", "kerberos.realm", "kerberos.etype", "kerberos.kvno", "spnego.MechType"]) {
            let frame: u64 = row[0][0].parse().expect("frame");
            let a = &by_frame[&frame]["http"]["authorization"];
            let k = &a["kerberos"];
            assert_eq!(k["ticket_server"].as_str(), Some(row[1].join("/").as_str()), "{} frame {frame}", f.display());
            assert_eq!(k["realm"].as_str(), row[2].first().map(String::as_str));
            // tshark: the ticket's etype, then the authenticator's.
            let etype = kcd_krb5::EncryptionType(row[3][0].parse().expect("etype"));
            assert_eq!(k["etype"].as_str(), etype.name());
            assert_eq!(k["kvno"].as_u64().map(|v| v.to_string()).as_ref(), row[4].first());
            assert_eq!(a["kind"], if row[5].is_empty() { "kerberos" } else { "spnego" });
            n += 1;
        }
    }
    assert!(n >= 4, "{n} AP-REQs compared");
}
