//! Decode cost per message on the real messages in assets/: rasn's typed decode vs the
//! borrowed view. `cargo bench -p kcd-krb5` prints nanoseconds per message for each.

use std::hint::black_box;
use std::time::Instant;

use kcd_krb5::view::MessageView;

fn main() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/assets");
    let mut msgs: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("assets/")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "bin"))
        .filter_map(|e| {
            Some((
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).ok()?,
            ))
        })
        .collect();
    msgs.sort();
    let rounds = 20_000;
    let time = |f: &dyn Fn(&[u8]) -> bool| {
        let t = Instant::now();
        for _ in 0..rounds {
            for (_, m) in &msgs {
                black_box(f(black_box(m)));
            }
        }
        t.elapsed().as_nanos() as f64 / (rounds * msgs.len()) as f64
    };
    let typed = time(&|m| kcd_krb5::decode_message(m).is_ok());
    let view = time(&|m| MessageView::parse(m).is_ok_and(|v| v.malformed.is_none()));
    println!(
        "{} messages, mean {} bytes",
        msgs.len(),
        msgs.iter().map(|(_, m)| m.len()).sum::<usize>() / msgs.len()
    );
    println!("rasn typed decode: {typed:>7.0} ns/message");
    println!("borrowed view:     {view:>7.0} ns/message");
}
