//! Counters for the summary line. Ordered maps, so the summary is the same on every run.

use std::collections::BTreeMap;

use kcd_krb5::{ErrorCode, MessageType};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub files: u64,
    pub packets: u64,
    pub bytes: u64,
    /// Packets on no port we decode.
    pub other_packets: u64,
    pub messages: u64,
    pub by_type: BTreeMap<i32, u64>,
    pub errors: BTreeMap<i32, u64>,
    pub anomalies: BTreeMap<&'static str, u64>,
    pub tcp_flows: u64,
    pub tcp_retransmitted: u64,
    pub tcp_out_of_order: u64,
    pub replies_without_request: u64,
    pub requests_unanswered: u64,
    /// UDP requests given up because the pending table was full (answered or not).
    pub requests_evicted: u64,
    /// Requests still waiting when the capture ended: too recent to call unanswered.
    pub pending_at_end: u64,
    /// TLS handshakes reported, and HTTP transactions (CRL fetches among them).
    pub tls_handshakes: u64,
    pub http_transactions: u64,
    pub crl_fetches: u64,
    /// With --keytab: tickets opened, not opened, and failures to read them.
    pub keytab: crate::keytab::KeytabStats,
}

impl Stats {
    pub fn anomaly(&mut self, kind: &'static str) {
        *self.anomalies.entry(kind).or_default() += 1;
    }

    pub fn anomaly_total(&self) -> u64 {
        self.anomalies.values().sum()
    }

    /// One line for stderr.
    pub fn summary(&self) -> String {
        let types: Vec<String> = self
            .by_type
            .iter()
            .map(|(t, n)| format!("{} {n}", MessageType(*t)))
            .collect();
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(c, n)| format!("{c} {} {n}", ErrorCode(*c).name().unwrap_or("unknown")))
            .collect();
        let anomalies: Vec<String> = self
            .anomalies
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        format!(
            "kcdscope: {} file{}, {} packets, {} Kerberos messages ({}); KRB-ERROR codes: {}; anomalies: {}; TCP: {} flows, {} retransmitted and {} out-of-order segments; {} replies without a request, {} requests unanswered{}",
            self.files,
            if self.files == 1 { "" } else { "s" },
            self.packets,
            self.messages,
            list(&types),
            list(&errors),
            list(&anomalies),
            self.tcp_flows,
            self.tcp_retransmitted,
            self.tcp_out_of_order,
            self.replies_without_request,
            self.requests_unanswered,
            {
                let mut x = String::new();
                if self.pending_at_end > 0 {
                    x.push_str(&format!(", {} still waiting at the end of the capture", self.pending_at_end));
                }
                if self.requests_evicted > 0 {
                    x.push_str(&format!(", {} given up by a full table (--max-pending-requests)", self.requests_evicted));
                }
                if self.tls_handshakes + self.http_transactions > 0 {
                    x.push_str(&format!(
                        "; {} TLS handshakes, {} HTTP transactions ({} CRL fetches)",
                        self.tls_handshakes, self.http_transactions, self.crl_fetches
                    ));
                }
                let k = &self.keytab;
                if k.tickets_decrypted + k.tickets_not_in_keytab + k.decode_failures > 0 {
                    x.push_str(&format!(
                        "; keytab: {} tickets decrypted, {} in no key of the keytab, {} decryption failures",
                        k.tickets_decrypted, k.tickets_not_in_keytab, k.decode_failures
                    ));
                }
                x
            },
        )
    }
}
