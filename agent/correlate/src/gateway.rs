//! The gateway's own events: each request it served or refused, with the device, its
//! certificate, the user and Exchange's answer.

use kcd_findings::catalogue;
use kcd_findings::device::{self as steps, Step};
use kcd_schema::{Event, KcdStep};

use crate::device::{parse_address, DeviceCert, Observation};
use crate::Correlator;

impl Correlator {
    /// One request the gateway served or refused (`gateway.step` = request).
    pub(crate) fn gateway_request(&mut self, e: &Event<'_>) {
        let Some(g) = &e.gateway else { return };
        if g.step != KcdStep::Request {
            return;
        }
        let at = e.timestamp;
        let ev = self.ev(e);
        let dev = g.device.as_deref();
        let cert = g.certificate.as_deref();
        let upn = g.user.as_deref().or(cert.and_then(|c| c.upn.as_deref()));
        let address = dev.and_then(|d| d.address.as_deref()).and_then(parse_address).or(e.src_ip);
        let backend = g.backend.as_deref().and_then(|b| b.status);
        let failure = g.reason.as_deref().map(|reason| {
            let (step, rule) = match steps::gateway_reason(reason) {
                Some((s, r)) => (s, Some(r)),
                None => {
                    // "kerberos": the delegation client named it; other refusals are about
                    // one malformed request and name no set-up problem.
                    let rule = g.finding.as_deref().and_then(catalogue::by_id);
                    let step = match g.kcd.as_deref().and_then(|k| k.step) {
                        Some(KcdStep::S4u2proxy) => Step::S4u2Proxy,
                        Some(KcdStep::Login | KcdStep::S4u2self) => Step::S4u2Self,
                        _ => rule.map_or(Step::Exchange, steps::step_of),
                    };
                    (step, rule)
                }
            };
            (step, rule, reason.to_string(), g.detail.as_deref().unwrap_or("").to_string(), g.status)
        });
        // Exchange's own failures (5xx) passed through; EAS answers 449 and 451 by design.
        let failure = failure.or_else(|| {
            backend
                .filter(|&s| s >= 500)
                .map(|s| (Step::Exchange, None, format!("http_{s}"), format!("Exchange answered {s}"), Some(s)))
        });
        let ok = failure.is_none() && g.status.is_some_and(|s| s < 500);
        let finding = failure.as_ref().and_then(|f| f.1.map(|r| (r, f.3.clone())));
        let obs = Observation {
            device_id: dev.and_then(|d| d.device_id.as_deref()),
            device_type: dev.and_then(|d| d.device_type.as_deref()),
            fingerprint: cert.map(|c| c.sha256.as_str()),
            address,
            upn,
            cert: cert.map(|c| DeviceCert {
                subject: c.subject.as_str().into(),
                issuer: c.issuer.as_str().into(),
                serial: c.serial.as_str().into(),
                sha256: c.sha256.as_str().into(),
                upn: c.upn.as_deref().map(Into::into),
                not_after: Some(c.not_after),
                revocation: c.revocation.as_deref().map(Into::into),
                cdp: Vec::new(),
            }),
            cmd: dev.and_then(|d| d.cmd.as_deref()),
            user_mismatch: dev.and_then(|d| d.user_mismatch.as_deref()),
            ok,
            request: true,
            reached: None,
            failure,
            exchange_status: backend,
        };
        let Some(key) = self.devices.observe(obs, at, ev) else { return };
        if let Some((rule, detail)) = finding {
            let issuer = cert.map(|c| c.issuer.clone());
            let server = g.spn.as_deref().map(str::to_string);
            self.device_finding(&key, rule, &detail, issuer.as_deref(), server.as_deref(), at, ev);
        }
    }
}
