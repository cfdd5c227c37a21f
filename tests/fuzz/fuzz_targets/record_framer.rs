//! The TCP record framer: however a stream is cut into pushes, it yields the same records
//! and anomalies as one push, and never holds more than the cap allows.
#![no_main]
use kcd_krb5::frame::{FrameEvent, RecordFramer};
use libfuzzer_sys::fuzz_target;

const CAP: usize = 4096;

fn run(chunks: &[&[u8]]) -> (Vec<String>, usize) {
    let mut f = RecordFramer::new(CAP);
    let mut out = Vec::new();
    let mut peak = 0;
    for c in chunks {
        f.push(c, &mut |e| {
            out.push(match e {
                FrameEvent::Record(r) => format!("rec {:?}", r),
                FrameEvent::Skipped { .. } => "skipped".to_string(),
                other => format!("{other:?}"),
            })
        });
        peak = peak.max(f.buffered());
    }
    (out, peak)
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else { return };
    let (whole, _) = run(&[stream]);
    let step = usize::from(seed % 61) + 1;
    let chunks: Vec<&[u8]> = stream.chunks(step).collect();
    let (cut, peak) = run(&chunks);
    // Resynchronisation may skip in different-sized pieces; records must agree.
    let recs = |v: &[String]| v.iter().filter(|s| s.starts_with("rec")).cloned().collect::<Vec<_>>();
    assert_eq!(recs(&cut), recs(&whole));
    assert!(peak <= CAP + 4 + step, "buffered {peak}");
});
