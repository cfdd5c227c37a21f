//! Events handed from one thread to another in batches. An [`Event`] borrows its strings
//! from the packet it was decoded from, so it cannot outlive the decoder's buffers; turning
//! each into an owned event would cost several allocations per message. A batch copies
//! the strings into one text buffer instead and gives the events back borrowing from it:
//! the decoder's thread pays a few small copies per event and no allocation once the
//! batch's buffers have grown.
//!
//! Carried: everything a consumer of Kerberos and anomaly events reads, and the TLS, HTTP,
//! ActiveSync and CRL objects (owned already; cloned, since they are one per connection or
//! transaction). Left out, because
//! they are for export and their consumers read the NDJSON: ETYPE-INFO2 salts in e-data,
//! PA-FOR-USER's auth package, and findings (events the diagnosis itself makes).

use std::borrow::Cow;

use smallvec::SmallVec;

use crate::{SchemaVersion, 
    Anomaly, AnomalyLayer, Crl, Direction, Eas, EData, EDataFormat, EncInfo, EncryptionType, ErrorCode,
    Event, EventType, ForUser, KdcOptions, Krb5, KrbErrorInfo, MessageType, NameType,
    Http, NtStatusInfo, PaDataType, PacOptions, Principal, RequestRef, S4uOptions, S4uX509User,
    TicketId, TicketInfo, Timestamp, Tls, Transport,
};

/// A string in the batch's text.
#[derive(Clone, Copy, Debug)]
struct Span(u32, u32);

/// A run of entries in one of the batch's pools.
#[derive(Clone, Copy, Debug)]
struct Run(u32, u32);

/// An index into a pool; `NONE` for an absent value.
type Idx = u32;
const NONE: Idx = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct PName {
    parts: Run,
    name_type: NameType,
}

#[derive(Clone, Copy, Debug)]
struct PTicket {
    id: Option<TicketId>,
    realm: Option<Span>,
    sname: Idx,
    enc_part: Option<EncInfo>,
}

#[derive(Clone, Copy, Debug)]
struct PError {
    code: ErrorCode,
    stime: Option<Timestamp>,
    ctime: Option<Timestamp>,
    e_text: Option<Span>,
    e_data: Option<(EDataFormat, Run, Option<NtStatusInfo>, Option<i32>)>,
    skew_seconds: Option<f64>,
}

#[derive(Clone, Copy, Debug)]
struct PS4u {
    user: Idx,
    realm: Option<Span>,
    has_certificate: bool,
    options: S4uOptions,
}

#[derive(Clone, Copy, Debug)]
struct PKrb5 {
    msg_type: MessageType,
    direction: Option<Direction>,
    armored: bool,
    realm: Option<Span>,
    cname: Idx,
    crealm: Option<Span>,
    sname: Idx,
    kdc_options: KdcOptions,
    pac_options: PacOptions,
    etypes: Run,
    padata: Run,
    nonce: Option<i64>,
    for_user: Option<(Idx, Option<Span>)>,
    s4u_x509_user: Idx,
    additional_tickets: Run,
    ticket: Idx,
    enc_part: Option<EncInfo>,
    error: Idx,
    request: Option<(Option<Span>, u64, MessageType, i64)>,
    malformed: Option<Span>,
}

#[derive(Clone, Copy, Debug)]
struct Packed {
    timestamp: Timestamp,
    event_type: EventType,
    pcap_file: Option<Span>,
    frame: u64,
    flow_id: Option<Span>,
    src_ip: Option<std::net::IpAddr>,
    src_port: Option<u16>,
    dest_ip: Option<std::net::IpAddr>,
    dest_port: Option<u16>,
    proto: Option<Transport>,
    krb5: Idx,
    anomaly: Option<(AnomalyLayer, Span, Span)>,
    app: Idx,
    device: Option<Span>,
    /// The gateway's events and findings, as JSON in the text buffer: they are few next to
    /// the wire's, and the JSON form carries every field.
    json: Option<Span>,
}

/// The application-layer objects of one event.
#[derive(Clone, Debug, Default)]
struct App {
    tls: Option<Box<Tls>>,
    http: Option<Box<Http>>,
    eas: Option<Box<Eas>>,
    crl: Option<Box<Crl>>,
}

/// Small fixed-size records; strings in one text buffer and the variable parts (names,
/// lists, tickets) in pools, so that pushing an event writes little and allocates nothing
/// once the buffers have grown.
#[derive(Default, Debug)]
pub struct EventBatch {
    text: String,
    events: Vec<Packed>,
    krb5: Vec<PKrb5>,
    names: Vec<PName>,
    parts: Vec<Span>,
    tickets: Vec<PTicket>,
    errors: Vec<PError>,
    s4u: Vec<PS4u>,
    etypes: Vec<EncryptionType>,
    padata: Vec<PaDataType>,
    apps: Vec<App>,
    /// The capture's name repeats on every event: stored once per batch.
    last_file: Option<Span>,
}

fn add<T>(pool: &mut Vec<T>, v: T) -> Idx {
    pool.push(v);
    u32::try_from(pool.len() - 1).unwrap_or(NONE)
}

fn extend<T: Copy>(pool: &mut Vec<T>, items: &[T]) -> Run {
    let start = pool.len();
    pool.extend_from_slice(items);
    Run(u32::try_from(start).unwrap_or(0), u32::try_from(items.len()).unwrap_or(0))
}

fn run<T>(pool: &[T], r: Run) -> &[T] {
    pool.get(r.0 as usize..r.0 as usize + r.1 as usize).unwrap_or(&[])
}

impl EventBatch {
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Empties the batch, keeping its buffers for the next one.
    pub fn clear(&mut self) {
        self.text.clear();
        self.events.clear();
        self.krb5.clear();
        self.names.clear();
        self.parts.clear();
        self.tickets.clear();
        self.errors.clear();
        self.s4u.clear();
        self.etypes.clear();
        self.padata.clear();
        self.apps.clear();
        self.last_file = None;
    }

    pub fn push(&mut self, e: &Event<'_>) {
        // A ticket opened with --keytab is rare and nested: as JSON, like the gateway's events.
        if matches!(e.event_type, EventType::Gateway | EventType::Kcd | EventType::Finding)
            || e.krb5.as_ref().is_some_and(|k| k.decrypted.is_some())
        {
            if let Ok(j) = serde_json::to_string(e) {
                let json = Some(self.put(&j));
                self.events.push(Packed {
                    timestamp: e.timestamp,
                    event_type: e.event_type,
                    pcap_file: None,
                    frame: e.frame,
                    flow_id: None,
                    src_ip: None,
                    src_port: None,
                    dest_ip: None,
                    dest_port: None,
                    proto: None,
                    krb5: NONE,
                    anomaly: None,
                    app: NONE,
                    device: None,
                    json,
                });
                return;
            }
        }
        let pcap_file = e.pcap_file.as_deref().map(|f| self.file(f));
        let device = e.device.as_deref().map(|s| self.put(s));
        let flow_id = e.flow_id.as_deref().map(|s| self.put(s));
        let krb5 = match &e.krb5 {
            Some(k) => {
                let p = self.pack_krb5(k);
                add(&mut self.krb5, p)
            }
            None => NONE,
        };
        let anomaly = e.anomaly.as_ref().map(|a| (a.layer, self.put(&a.kind), self.put(&a.detail)));
        let app = if e.tls.is_some() || e.http.is_some() || e.eas.is_some() || e.crl.is_some() {
            let a = App { tls: e.tls.clone(), http: e.http.clone(), eas: e.eas.clone(), crl: e.crl.clone() };
            add(&mut self.apps, a)
        } else {
            NONE
        };
        self.events.push(Packed {
            timestamp: e.timestamp,
            event_type: e.event_type,
            pcap_file,
            frame: e.frame,
            flow_id,
            src_ip: e.src_ip,
            src_port: e.src_port,
            dest_ip: e.dest_ip,
            dest_port: e.dest_port,
            proto: e.proto,
            krb5,
            anomaly,
            app,
            device,
            json: None,
        });
    }

    /// The events, in the order they were pushed, borrowing from the batch.
    pub fn iter(&self) -> impl Iterator<Item = Event<'_>> {
        self.events.iter().map(move |p| self.unpack(p))
    }

    fn put(&mut self, s: &str) -> Span {
        let start = self.text.len();
        self.text.push_str(s);
        // A batch holds a few thousand events: far below 4 GiB of text.
        Span(u32::try_from(start).unwrap_or(u32::MAX), u32::try_from(self.text.len()).unwrap_or(u32::MAX))
    }

    fn file(&mut self, f: &str) -> Span {
        if let Some(span) = self.last_file {
            if self.get(span) == f {
                return span;
            }
        }
        let span = self.put(f);
        self.last_file = Some(span);
        span
    }

    fn get(&self, s: Span) -> &str {
        self.text.get(s.0 as usize..s.1 as usize).unwrap_or("")
    }

    fn name(&mut self, p: Option<&Principal<'_>>) -> Idx {
        let Some(p) = p else { return NONE };
        let start = self.parts.len();
        for part in &p.parts {
            let s = self.put(part);
            self.parts.push(s);
        }
        let parts = Run(u32::try_from(start).unwrap_or(0), u32::try_from(p.parts.len()).unwrap_or(0));
        add(&mut self.names, PName { parts, name_type: p.name_type })
    }

    fn ticket(&mut self, t: &TicketInfo<'_>) -> PTicket {
        PTicket {
            id: t.id,
            realm: t.realm.as_deref().map(|s| self.put(s)),
            sname: self.name(t.sname.as_ref()),
            enc_part: t.enc_part,
        }
    }

    fn pack_krb5(&mut self, k: &Krb5<'_>) -> PKrb5 {
        let additional_tickets = {
            let packed: SmallVec<[PTicket; 2]> = k.additional_tickets.iter().map(|t| self.ticket(t)).collect();
            extend(&mut self.tickets, &packed)
        };
        let ticket = match &k.ticket {
            Some(t) => {
                let p = self.ticket(t);
                add(&mut self.tickets, p)
            }
            None => NONE,
        };
        let s4u_x509_user = match &k.s4u_x509_user {
            Some(x) => {
                let p = PS4u {
                    user: self.name(x.user.as_ref()),
                    realm: x.realm.as_deref().map(|s| self.put(s)),
                    has_certificate: x.has_certificate,
                    options: x.options,
                };
                add(&mut self.s4u, p)
            }
            None => NONE,
        };
        let error = match &k.error {
            Some(x) => {
                let p = PError {
                    code: x.code,
                    stime: x.stime,
                    ctime: x.ctime,
                    e_text: x.e_text.as_deref().map(|s| self.put(s)),
                    e_data: x
                        .e_data
                        .as_ref()
                        .map(|d| (d.format, extend(&mut self.padata, &d.padata), d.ntstatus, d.data_type)),
                    skew_seconds: x.skew_seconds,
                };
                add(&mut self.errors, p)
            }
            None => NONE,
        };
        PKrb5 {
            msg_type: k.msg_type,
            direction: k.direction,
            armored: k.armored,
            realm: k.realm.as_deref().map(|s| self.put(s)),
            cname: self.name(k.cname.as_ref()),
            crealm: k.crealm.as_deref().map(|s| self.put(s)),
            sname: self.name(k.sname.as_ref()),
            kdc_options: k.kdc_options,
            pac_options: k.pac_options,
            etypes: extend(&mut self.etypes, &k.etypes),
            padata: extend(&mut self.padata, &k.padata),
            nonce: k.nonce,
            for_user: k
                .for_user
                .as_ref()
                .map(|f| (self.name(f.user.as_ref()), f.realm.as_deref().map(|s| self.put(s)))),
            s4u_x509_user,
            additional_tickets,
            ticket,
            enc_part: k.enc_part,
            error,
            request: k.request.as_ref().map(|r| {
                (r.pcap_file.as_deref().map(|f| self.file(f)), r.frame, r.msg_type, r.latency_us)
            }),
            malformed: k.malformed.as_deref().map(|s| self.put(s)),
        }
    }

    fn str(&self, s: Span) -> Cow<'_, str> {
        Cow::Borrowed(self.get(s))
    }

    fn opt(&self, s: Option<Span>) -> Option<Cow<'_, str>> {
        s.map(|s| self.str(s))
    }

    fn unname(&self, i: Idx) -> Option<Principal<'_>> {
        let p = self.names.get(i as usize)?;
        Some(Principal {
            parts: run(&self.parts, p.parts).iter().map(|&s| self.str(s)).collect(),
            name_type: p.name_type,
        })
    }

    fn unticket(&self, t: &PTicket) -> TicketInfo<'_> {
        TicketInfo { id: t.id, realm: self.opt(t.realm), sname: self.unname(t.sname), enc_part: t.enc_part }
    }

    fn unpack(&self, p: &Packed) -> Event<'_> {
        if let Some(j) = p.json {
            if let Ok(e) = serde_json::from_str::<Event<'_>>(self.get(j)) {
                return e;
            }
        }
        let app = self.apps.get(p.app as usize).cloned().unwrap_or_default();
        Event {
            schema_version: SchemaVersion,
            timestamp: p.timestamp,
            event_type: p.event_type,
            pcap_file: self.opt(p.pcap_file),
            frame: p.frame,
            flow_id: self.opt(p.flow_id),
            src_ip: p.src_ip,
            src_port: p.src_port,
            dest_ip: p.dest_ip,
            dest_port: p.dest_port,
            proto: p.proto,
            krb5: self.krb5.get(p.krb5 as usize).map(|k| self.unkrb5(k)),
            anomaly: p.anomaly.map(|(layer, kind, detail)| Anomaly {
                layer,
                kind: self.str(kind),
                detail: self.str(detail),
                count: None,
                first_frame: None,
            }),
            finding: None,
            gateway: None,
            tls: app.tls,
            http: app.http,
            eas: app.eas,
            crl: app.crl,
            device: self.opt(p.device),
        }
    }

    fn unkrb5(&self, k: &PKrb5) -> Krb5<'_> {
        Krb5 {
            msg_type: k.msg_type,
            direction: k.direction,
            realm: self.opt(k.realm),
            cname: self.unname(k.cname),
            crealm: self.opt(k.crealm),
            sname: self.unname(k.sname),
            kdc_options: k.kdc_options,
            etypes: run(&self.etypes, k.etypes).iter().copied().collect(),
            nonce: k.nonce,
            // The diagnosis has no use for the requested times: they stay on the decoder's
            // side.
            from: None,
            till: None,
            rtime: None,
            padata: run(&self.padata, k.padata).iter().copied().collect(),
            for_user: k.for_user.map(|(user, realm)| ForUser {
                user: self.unname(user),
                realm: self.opt(realm),
                auth_package: None,
            }),
            s4u_x509_user: self.s4u.get(k.s4u_x509_user as usize).map(|x| S4uX509User {
                user: self.unname(x.user),
                realm: self.opt(x.realm),
                has_certificate: x.has_certificate,
                options: x.options,
            }),
            pac_options: k.pac_options,
            additional_tickets: run(&self.tickets, k.additional_tickets).iter().map(|t| self.unticket(t)).collect(),
            ticket: self.tickets.get(k.ticket as usize).map(|t| self.unticket(t)),
            enc_part: k.enc_part,
            armored: k.armored,
            decrypted: None,
            error: self.errors.get(k.error as usize).map(|x| KrbErrorInfo {
                code: x.code,
                stime: x.stime,
                ctime: x.ctime,
                e_text: self.opt(x.e_text),
                e_data: x.e_data.map(|(format, padata, ntstatus, data_type)| EData {
                    format,
                    padata: run(&self.padata, padata).iter().copied().collect(),
                    ntstatus,
                    etype_info2: SmallVec::new(),
                    data_type,
                }),
                skew_seconds: x.skew_seconds,
            }),
            request: k.request.map(|(file, frame, msg_type, latency_us)| RequestRef {
                pcap_file: self.opt(file),
                frame,
                msg_type,
                latency_us,
            }),
            malformed: self.opt(k.malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(file: &'static str, user: &'static str) -> Event<'static> {
        Event {
            schema_version: SchemaVersion,
            timestamp: Timestamp(1_700_000_000_123_456_789),
            event_type: EventType::Krb5,
            pcap_file: Some(Cow::Borrowed(file)),
            frame: 7,
            flow_id: Some(Cow::Borrowed("1:abc=")),
            src_ip: "10.0.0.1".parse().ok(),
            src_port: Some(50000),
            dest_ip: "10.0.0.2".parse().ok(),
            dest_port: Some(88),
            proto: Some(Transport::Udp),
            krb5: Some(Krb5 {
                msg_type: MessageType(13),
                realm: Some(Cow::Borrowed("LAB.TEST")),
                cname: Some(Principal {
                    parts: smallvec::smallvec![Cow::Borrowed("svc"), Cow::Owned("x".to_string())],
                    name_type: NameType(1),
                }),
                for_user: Some(ForUser {
                    user: Some(Principal::new(user, NameType(10))),
                    realm: Some(Cow::Borrowed("LAB.TEST")),
                    auth_package: None,
                }),
                additional_tickets: smallvec::smallvec![TicketInfo {
                    id: Some(TicketId([1; 8])),
                    realm: Some(Cow::Borrowed("LAB.TEST")),
                    sname: Some(Principal::new("svc", NameType(1))),
                    enc_part: None,
                }],
                error: Some(KrbErrorInfo {
                    code: ErrorCode(13),
                    stime: Some(Timestamp(5)),
                    ctime: None,
                    e_text: Some(Cow::Borrowed("no")),
                    e_data: None,
                    skew_seconds: Some(-1.5),
                }),
                request: Some(RequestRef {
                    pcap_file: Some(Cow::Borrowed(file)),
                    frame: 3,
                    msg_type: MessageType(12),
                    latency_us: 250,
                }),
                ..Krb5::default()
            }),
            anomaly: Some(Anomaly {
                layer: AnomalyLayer::Tcp,
                kind: Cow::Borrowed("gap"),
                detail: Cow::Borrowed("10 bytes"),
                count: None,
                first_frame: None,
            }),
            finding: None,
            gateway: None,
            tls: None,
            http: None,
            eas: None,
            crl: None,
            device: None,
        }
    }

    #[test]
    fn events_come_back_equal_and_in_order() {
        let mut b = EventBatch::default();
        let a = event("one.pcap", "alice@lab.test");
        let c = event("two.pcap", "bob@lab.test");
        b.push(&a);
        b.push(&a);
        b.push(&c);
        // Debug shows every field, and a Cow the same whether borrowed or owned.
        let shown = |b: &EventBatch| b.iter().map(|e| format!("{e:?}")).collect::<Vec<_>>();
        assert_eq!(shown(&b), [&a, &a, &c].map(|e| format!("{e:?}")));
        b.clear();
        assert!(b.is_empty());
        b.push(&c);
        assert_eq!(shown(&b), [format!("{c:?}")]);
    }
}
