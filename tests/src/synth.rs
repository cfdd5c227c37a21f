//! Event sequences made from arbitrary bytes, for the correlator's robustness (a proptest
//! here, a fuzz target in tests/fuzz): every kind of message between a few clients and KDCs,
//! replies pointing at real and made-up requests, times that jump back and forth.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};

use kcd_schema::{
    kdc_options, Anomaly, AnomalyLayer, Direction, EData, EDataFormat, ErrorCode, Event, EventType, Flags32,
    ForUser, KdcOptions, Krb5, KrbErrorInfo, MessageType, NameType, NtStatus, NtStatusInfo, Principal,
    RequestRef, TicketId, TicketInfo, Timestamp, Transport,
};

const USERS: [&str; 4] = ["alice", "bob", "svc", "alice@corp.test"];
const SPNS: [&str; 3] = ["HTTP/mail.corp.test", "svc", "krbtgt/CORP.TEST"];
const CODES: [i32; 16] = [6, 7, 12, 13, 14, 18, 23, 24, 25, 37, 41, 52, 60, 68, 31, 0];

fn ip(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))
}

fn principal(name: &'static str) -> Principal<'static> {
    let t = if name.contains('@') { NameType::NT_ENTERPRISE } else { NameType::NT_PRINCIPAL };
    Principal { parts: name.split('/').map(Cow::Borrowed).collect(), name_type: t }
}

/// Every 12 bytes make one event.
pub fn events_from_bytes(data: &[u8]) -> Vec<Event<'static>> {
    let mut out = Vec::new();
    let mut t: i64 = 1_700_000_000_000_000_000;
    for (n, c) in data.chunks_exact(12).enumerate() {
        let frame = n as u64 + 1;
        t += i64::from(i16::from_le_bytes([c[7], c[8]])) * 10_000_000;
        let client = ip(1 + c[1] % 3);
        let kdc = ip(10 + c[2] % 3);
        let proto = if c[3] & 1 == 0 { Transport::Udp } else { Transport::Tcp };
        let nonce = i64::from(u16::from_le_bytes([c[4], c[5]]) % 64);
        let user = USERS[usize::from(c[10]) % USERS.len()];
        let spn = SPNS[usize::from(c[10] >> 4) % SPNS.len()];
        let ticket = Some(TicketId([c[11] % 4; 8]));
        let mut k = Krb5 { realm: Some(Cow::Borrowed("CORP.TEST")), ..Krb5::default() };
        let kind = c[0] % 10;
        let to_kdc = kind < 4;
        match kind {
            0 => {
                k.msg_type = MessageType::AS_REQ;
                k.cname = Some(principal(user));
                k.sname = Some(principal("krbtgt/CORP.TEST"));
                k.nonce = Some(nonce);
            }
            1 => {
                k.msg_type = MessageType::TGS_REQ;
                k.sname = Some(principal(spn));
                k.nonce = Some(nonce);
                k.for_user = Some(ForUser {
                    user: Some(principal(user)),
                    realm: Some(Cow::Borrowed("CORP.TEST")),
                    auth_package: None,
                });
            }
            2 => {
                k.msg_type = MessageType::TGS_REQ;
                k.sname = Some(principal(spn));
                k.nonce = Some(nonce);
                k.kdc_options = KdcOptions(Flags32::empty().with(kdc_options::CNAME_IN_ADDL_TKT));
                k.additional_tickets.push(TicketInfo { id: ticket, realm: None, sname: None, enc_part: None });
            }
            3 => {
                k.msg_type = MessageType::TGS_REQ;
                k.sname = Some(principal(spn));
                k.nonce = (c[6] & 1 == 0).then_some(nonce);
            }
            4 | 5 => {
                k.msg_type = if kind == 4 { MessageType::AS_REP } else { MessageType::TGS_REP };
                k.cname = Some(principal(user));
                k.sname = Some(principal(spn));
                k.ticket = Some(TicketInfo { id: ticket, realm: None, sname: None, enc_part: None });
            }
            6 | 7 => {
                k.msg_type = MessageType::KRB_ERROR;
                k.cname = (c[6] & 0x80 != 0).then(|| principal(user));
                k.sname = Some(principal(spn));
                let nt = [None, Some(0xC000_00BB), Some(0xC000_0272), Some(0xC000_0072)][usize::from(c[6] >> 5) % 4];
                k.error = Some(KrbErrorInfo {
                    code: ErrorCode(CODES[usize::from(c[6]) % CODES.len()]),
                    stime: None,
                    ctime: None,
                    e_text: (c[11] & 0x10 != 0).then_some(Cow::Borrowed("EVIDENCE_TKT_NOT_FORWARDABLE")),
                    e_data: nt.map(|n| EData {
                        format: EDataFormat::KerbErrorData,
                        padata: Default::default(),
                        ntstatus: Some(NtStatusInfo(NtStatus(n))),
                        etype_info2: Default::default(),
                        data_type: None,
                    }),
                    skew_seconds: Some(f64::from(c[9] as i8) * 3.0),
                });
            }
            8 => {
                let mut e = Event::bare(Timestamp(t), EventType::Anomaly, Some(Cow::Borrowed("synth")), frame);
                e.src_ip = Some(client);
                e.dest_ip = Some(kdc);
                e.dest_port = Some(88);
                e.anomaly = Some(Anomaly {
                    layer: AnomalyLayer::Tcp,
                    kind: Cow::Borrowed("tcp_no_answer"),
                    detail: Cow::Borrowed(""),
                    count: None,
                    first_frame: None,
                });
                out.push(e);
                continue;
            }
            _ => {
                // Events without addresses or bodies must be ignored, not trusted.
                out.push(Event::bare(Timestamp(t), EventType::Krb5, None, frame));
                continue;
            }
        }
        if !to_kdc {
            k.request = Some(RequestRef {
                pcap_file: None,
                frame: frame.saturating_sub(u64::from(c[9] % 8) + 1),
                msg_type: MessageType::AS_REQ,
                latency_us: i64::from(c[9]) * 100,
            });
        }
        k.direction = Some(if to_kdc { Direction::ToKdc } else { Direction::FromKdc });
        let mut e = Event::bare(Timestamp(t), EventType::Krb5, Some(Cow::Borrowed("synth")), frame);
        let (src, dst) = if to_kdc { (client, kdc) } else { (kdc, client) };
        e.src_ip = Some(src);
        e.dest_ip = Some(dst);
        e.src_port = Some(if to_kdc { 40000 } else { 88 });
        e.dest_port = Some(if to_kdc { 88 } else { 40000 });
        e.proto = Some(proto);
        e.flow_id = Some(Cow::Owned(format!("1:{src}-{dst}")));
        e.krb5 = Some(k);
        out.push(e);
    }
    out
}
