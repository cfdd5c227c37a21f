//! The independent oracle: a capture is decoded by tshark and by kcdscope, and the two must
//! agree message by message on type, error code, client and server names (with name
//! types), realms, top-level PA-DATA types, the KDC's stime/susec, e-text, the PA-FOR-USER
//! user, the additional tickets and the PA-DATA types of METHOD-DATA e-data.
//!
//! tshark's JSON (`-T json --no-duplicate-keys`) nests the messages it finds inside other
//! messages (the TGT inside PA-TGS-REQ, FAST armour); only the top-level message of each
//! PDU is read here. A difference is a problem unless `EXCEPTIONS` explains it.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use kcd_krb5::{NameType, PaDataType};
use serde_json::Value;

use crate::{int, many, rel, replay_json, s, tshark_json};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Msg {
    pub msg_type: String,
    pub error_code: Option<i64>,
    pub cname: Option<(i64, String)>,
    pub realm: Option<String>,
    pub crealm: Option<String>,
    pub sname: Option<(i64, String)>,
    pub padata: Vec<i64>,
    /// KDC time: seconds since the epoch and microseconds.
    pub stime: Option<(i64, i64)>,
    pub e_text: Option<String>,
    pub for_user: Option<(i64, String, String)>,
    pub additional_tickets: Vec<String>,
    /// PA-DATA types of a KRB-ERROR's e-data when it is METHOD-DATA; "BER error" when
    /// tshark could not decode it.
    pub e_data_padata: Option<Result<Vec<i64>, &'static str>>,
}

/// Differences where tshark, not kcdscope, is wrong. Each rule says which field, when it
/// applies, and why; every use is counted and printed.
pub struct Exception {
    pub field: &'static str,
    pub applies: fn(tshark: &Msg, ours: &Msg) -> bool,
    pub why: &'static str,
}

pub const EXCEPTIONS: &[Exception] = &[Exception {
    field: "e_data_padata",
    applies: |t, o| {
        matches!(t.error_code, Some(12 | 13 | 18 | 23))
            && t.e_data_padata == Some(Err("BER error"))
            && matches!(o.e_data_padata, Some(Ok(_)))
    },
    why: "tshark 4.0 picks the e-data decoding by error code: for 12, 13, 18 and 23 it expects \
          Windows' KERB-ERROR-DATA and reports 'BER Error: Wrong field in SEQUENCE' on the valid \
          METHOD-DATA (PA-FX-FAST) that MIT and Samba send (packet-kerberos.c, try_nt_status)",
}];

// ---- tshark side ---------------------------------------------------------------------

const ELEMENTS: &[(&str, &str)] = &[
    ("kerberos.as_req_element", "AS-REQ"),
    ("kerberos.as_rep_element", "AS-REP"),
    ("kerberos.tgs_req_element", "TGS-REQ"),
    ("kerberos.tgs_rep_element", "TGS-REP"),
    ("kerberos.krb_error_element", "KRB-ERROR"),
    ("kerberos.ap_req_element", "AP-REQ"),
    ("kerberos.ap_rep_element", "AP-REP"),
];

fn ts_name(el: &Value, strings_tree: &str, string_key: &str) -> Option<(i64, String)> {
    if el.is_null() {
        return None;
    }
    let nt = int(&el["kerberos.name_type"])?;
    let parts: Vec<String> = many(&el[strings_tree][string_key])
        .into_iter()
        .filter_map(s)
        .collect();
    Some((nt, parts.join("/")))
}

fn ts_padata(e: &Value) -> Vec<i64> {
    many(&e["kerberos.padata_tree"]["kerberos.PA_DATA_element"])
        .into_iter()
        .filter_map(|p| int(&p["kerberos.padata_type"]))
        .collect()
}

/// "Nov 22, 2026 21:14:35.000000000 UTC" (day space-padded) to epoch seconds.
fn ts_time(v: &Value) -> Option<i64> {
    let t = v.as_str()?;
    let t = t.strip_suffix(" UTC")?;
    let t = t.split('.').next()?;
    let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
    NaiveDateTime::parse_from_str(&t, "%b %d, %Y %H:%M:%S")
        .ok()
        .map(|d| d.and_utc().timestamp())
}

pub fn tshark_msgs(path: &std::path::Path) -> Vec<(u64, Msg)> {
    let mut out = Vec::new();
    for pkt in tshark_json(path, &[88]) {
        let layers = &pkt["_source"]["layers"];
        let frame = int(&layers["frame"]["frame.number"]).unwrap_or(0) as u64;
        for pdu in many(&layers["kerberos"]) {
            let Some((key, name)) = ELEMENTS.iter().find(|(k, _)| !pdu[*k].is_null()) else {
                continue;
            };
            let e = &pdu[*key];
            let mut m = Msg {
                msg_type: name.to_string(),
                ..Msg::default()
            };
            match *name {
                "AS-REQ" | "TGS-REQ" => {
                    m.padata = ts_padata(e);
                    let body = &e["kerberos.req_body_element"];
                    m.cname = ts_name(
                        &body["kerberos.cname_element"],
                        "kerberos.cname_string_tree",
                        "kerberos.CNameString",
                    );
                    m.realm = s(&body["kerberos.realm"]);
                    m.sname = ts_name(
                        &body["kerberos.sname_element"],
                        "kerberos.sname_string_tree",
                        "kerberos.SNameString",
                    );
                    m.additional_tickets =
                        many(&body["kerberos.additional_tickets_tree"]["kerberos.Ticket_element"])
                            .into_iter()
                            .filter_map(|t| {
                                ts_name(
                                    &t["kerberos.sname_element"],
                                    "kerberos.sname_string_tree",
                                    "kerberos.SNameString",
                                )
                            })
                            .map(|(_, n)| n)
                            .collect();
                    for pa in many(&e["kerberos.padata_tree"]["kerberos.PA_DATA_element"]) {
                        if int(&pa["kerberos.padata_type"]) == Some(129) {
                            let v = &pa["kerberos.padata_type_tree"]["kerberos.padata_value_tree"];
                            let user = ts_name(
                                &v["kerberos.name_element"],
                                "kerberos.name_string_tree",
                                "kerberos.KerberosString",
                            );
                            if let (Some((nt, n)), Some(r)) = (user, s(&v["kerberos.realm"])) {
                                m.for_user = Some((nt, n, r));
                            }
                        }
                    }
                }
                "AS-REP" | "TGS-REP" => {
                    m.padata = ts_padata(e);
                    m.crealm = s(&e["kerberos.crealm"]);
                    m.cname = ts_name(
                        &e["kerberos.cname_element"],
                        "kerberos.cname_string_tree",
                        "kerberos.CNameString",
                    );
                    let t = &e["kerberos.ticket_element"];
                    m.realm = s(&t["kerberos.realm"]);
                    m.sname = ts_name(
                        &t["kerberos.sname_element"],
                        "kerberos.sname_string_tree",
                        "kerberos.SNameString",
                    );
                }
                "KRB-ERROR" => {
                    m.error_code = int(&e["kerberos.error_code"]);
                    m.crealm = s(&e["kerberos.crealm"]);
                    m.cname = ts_name(
                        &e["kerberos.cname_element"],
                        "kerberos.cname_string_tree",
                        "kerberos.CNameString",
                    );
                    m.realm = s(&e["kerberos.realm"]);
                    m.sname = ts_name(
                        &e["kerberos.sname_element"],
                        "kerberos.sname_string_tree",
                        "kerberos.SNameString",
                    );
                    m.e_text = s(&e["kerberos.e_text"]);
                    m.stime = ts_time(&e["kerberos.stime"])
                        .map(|t| (t, int(&e["kerberos.susec"]).unwrap_or(0)));
                    let tree = &e["kerberos.e_data_tree"];
                    m.e_data_padata = if e["kerberos.e_data"].is_null() {
                        None
                    } else if tree
                        .as_object()
                        .is_some_and(|o| o.keys().any(|k| k.starts_with("BER Error")))
                    {
                        Some(Err("BER error"))
                    } else if !tree["kerberos.PA_DATA_element"].is_null() {
                        Some(Ok(many(&tree["kerberos.PA_DATA_element"])
                            .into_iter()
                            .filter_map(|p| int(&p["kerberos.padata_type"]))
                            .collect()))
                    } else {
                        Some(Err("not decoded"))
                    };
                }
                _ => {}
            }
            out.push((frame, m));
        }
    }
    out
}

// ---- kcdscope side -------------------------------------------------------------------

fn name_type_number(name: &str) -> i64 {
    NameType::ALL
        .iter()
        .find(|t| t.name() == Some(name))
        .map(|t| i64::from(t.0))
        .or_else(|| name.strip_prefix("name-type-").and_then(|n| n.parse().ok()))
        .unwrap_or(i64::MIN)
}

fn padata_number(name: &str) -> i64 {
    PaDataType::ALL
        .iter()
        .find(|t| t.name() == Some(name))
        .map(|t| i64::from(t.0))
        .or_else(|| name.strip_prefix("padata-").and_then(|n| n.parse().ok()))
        .unwrap_or(i64::MIN)
}

fn our_name(v: &Value) -> Option<(i64, String)> {
    Some((
        name_type_number(v["name_type"].as_str()?),
        v["name"].as_str()?.to_string(),
    ))
}

pub fn our_msgs(events: &[Value]) -> Vec<(u64, Msg)> {
    crate::krb5_events(events)
        .into_iter()
        .map(|e| {
            let k = &e["krb5"];
            let err = &k["error"];
            let stime = err["stime"]
                .as_str()
                .and_then(kcd_schema::Timestamp::parse_rfc3339)
                .map(|t| (t.secs(), i64::from(t.subsec_nanos() / 1000)));
            let m = Msg {
                msg_type: s(&k["msg_type"]).unwrap_or_default(),
                error_code: err["code"].as_i64(),
                cname: our_name(&k["cname"]),
                realm: s(&k["realm"]),
                crealm: s(&k["crealm"]),
                sname: our_name(&k["sname"]),
                padata: k["padata"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(padata_number)
                            .collect()
                    })
                    .unwrap_or_default(),
                stime,
                e_text: s(&err["e_text"]),
                for_user: k["for_user"]["user"].is_object().then(|| {
                    let (nt, n) = our_name(&k["for_user"]["user"]).unwrap_or_default();
                    (nt, n, s(&k["for_user"]["realm"]).unwrap_or_default())
                }),
                e_data_padata: err["e_data"].is_object().then(|| {
                    if err["e_data"]["format"] == "METHOD-DATA" {
                        Ok(err["e_data"]["padata"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(Value::as_str)
                                    .map(padata_number)
                                    .collect()
                            })
                            .unwrap_or_default())
                    } else {
                        Err("not METHOD-DATA")
                    }
                }),
                additional_tickets: k["additional_tickets"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|t| s(&t["sname"]["name"])).collect())
                    .unwrap_or_default(),
            };
            (e["frame"].as_u64().unwrap_or(0), m)
        })
        .collect()
}

pub fn diff(a: &Msg, b: &Msg) -> Vec<(&'static str, String, String)> {
    let mut d = Vec::new();
    macro_rules! cmp {
        ($($f:ident),*) => {$(
            if a.$f != b.$f {
                d.push((stringify!($f), format!("{:?}", a.$f), format!("{:?}", b.$f)));
            }
        )*};
    }
    cmp!(
        msg_type,
        error_code,
        cname,
        realm,
        crealm,
        sname,
        padata,
        stime,
        e_text,
        for_user,
        additional_tickets
    );
    // tshark only decodes e-data for some error codes; compare where it did.
    if a.e_data_padata != b.e_data_padata && a.e_data_padata != Some(Err("not decoded")) {
        d.push((
            "e_data_padata",
            format!("{:?}", a.e_data_padata),
            format!("{:?}", b.e_data_padata),
        ));
    }
    d
}

/// What comparing one file found.
#[derive(Debug, Default)]
pub struct Comparison {
    pub compared: usize,
    pub per_type: BTreeMap<String, usize>,
    pub excused: BTreeMap<&'static str, usize>,
    pub problems: Vec<String>,
}

/// Compares tshark's and kcdscope's reading of one capture.
pub fn compare_file(f: &std::path::Path) -> Comparison {
    let mut c = Comparison::default();
    let theirs = tshark_msgs(f);
    let (events, _) = replay_json(&[f.to_path_buf()], kcd_decode::Config::default());
    let ours = our_msgs(&events);
    let name = rel(f);
    if theirs.len() != ours.len() {
        c.problems.push(format!(
            "{name}: tshark sees {} messages, kcdscope {} (tshark frames {:?}, ours {:?})",
            theirs.len(),
            ours.len(),
            theirs.iter().map(|m| m.0).collect::<Vec<_>>(),
            ours.iter().map(|m| m.0).collect::<Vec<_>>()
        ));
        return c;
    }
    for ((tf, t), (of, o)) in theirs.iter().zip(&ours) {
        c.compared += 1;
        *c.per_type.entry(t.msg_type.clone()).or_default() += 1;
        if tf != of {
            c.problems.push(format!(
                "{name}: message in frame {tf} for tshark, {of} for kcdscope"
            ));
        }
        for (field, want, got) in diff(t, o) {
            if let Some(x) = EXCEPTIONS
                .iter()
                .find(|x| x.field == field && (x.applies)(t, o))
            {
                *c.excused.entry(x.why).or_default() += 1;
                continue;
            }
            c.problems.push(format!(
                "{name} frame {tf} {field}: tshark {want}, kcdscope {got}"
            ));
        }
    }
    c
}
