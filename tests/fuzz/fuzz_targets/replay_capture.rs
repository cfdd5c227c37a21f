//! The whole agent on arbitrary capture-file bytes: pcap/pcapng parsing, link layers,
//! defragmentation, TCP reassembly, Kerberos. Nothing may panic; every event must
//! serialise, and the correlator digests them all.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut dec = kcd_decode::Decoder::new(kcd_decode::Config { max_tcp_flows: 64, max_reassembly_memory: 1 << 20, ..Default::default() });
    let mut corr = kcd_correlate::Correlator::new(Default::default());
    let mut buf = Vec::new();
    let mut sink = |e: &kcd_schema::Event<'_>| {
        buf.clear();
        e.write_json(&mut buf);
        corr.event(e);
    };
    let _ = kcd_capture::replay_reader(std::io::Cursor::new(data.to_vec()), "fuzz", &mut dec, &mut sink);
    dec.finish(&mut sink);
    corr.finish();
    for f in corr.findings() {
        buf.clear();
        f.into_event().write_json(&mut buf);
    }
});
