//! Incident captures built into the binary, so that `kcdscope` with no arguments shows
//! something real wherever it runs. All come from the project's labs (captures/krb5/*).

// In capture-time order, so that they read as one capture.
pub const CAPTURES: &[(&str, &[u8])] = &[
    (
        "mit-lab/d_response_too_big.pcap",
        include_bytes!("../../../captures/krb5/mit-lab/d_response_too_big.pcap"),
    ),
    (
        "mit-lab/d_tcp_blocked.pcap",
        include_bytes!("../../../captures/krb5/mit-lab/d_tcp_blocked.pcap"),
    ),
    (
        "mit-lab/e_skew_as_timesync_off.pcap",
        include_bytes!("../../../captures/krb5/mit-lab/e_skew_as_timesync_off.pcap"),
    ),
    (
        "mit-lab/g_kdc_failover.pcap",
        include_bytes!("../../../captures/krb5/mit-lab/g_kdc_failover.pcap"),
    ),
    (
        "mit-lab/h_s4u2proxy_no_protocol_transition.pcap",
        include_bytes!("../../../captures/krb5/mit-lab/h_s4u2proxy_no_protocol_transition.pcap"),
    ),
    (
        "samba-lab/ok_http.pcap",
        include_bytes!("../../../captures/krb5/samba-lab/ok_http.pcap"),
    ),
    (
        "samba-lab/disabled_user.pcap",
        include_bytes!("../../../captures/krb5/samba-lab/disabled_user.pcap"),
    ),
    (
        "samba-lab/target_unknown.pcap",
        include_bytes!("../../../captures/krb5/samba-lab/target_unknown.pcap"),
    ),
    (
        "samba-lab/target_not_allowed.pcap",
        include_bytes!("../../../captures/krb5/samba-lab/target_not_allowed.pcap"),
    ),
    (
        "samba-lab/no_protocol_transition.pcap",
        include_bytes!("../../../captures/krb5/samba-lab/no_protocol_transition.pcap"),
    ),
];

/// The bundled incident of the terminal UI: one gateway serving a device user per outcome
/// (captures/incident/README.md), then the KDC's clock going wrong.
pub const INCIDENT: &[(&str, &[u8])] = &[
    ("incident/incident.pcap", include_bytes!("../../../captures/incident/incident.pcap")),
    ("incident/incident-clock.pcap", include_bytes!("../../../captures/incident/incident-clock.pcap")),
];
