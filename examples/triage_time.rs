//! Times parse and triage over a maildir (`cargo run --release --example triage_time DIR`).
use std::time::Instant;

fn main() {
    let dir = std::env::args().nth(1).expect("a maildir");
    let mut files = Vec::new();
    for sub in ["cur", "new"] {
        if let Ok(rd) = std::fs::read_dir(format!("{dir}/{sub}")) {
            files.extend(rd.map(|e| e.unwrap().path()));
        }
    }
    let raws: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let own = vec![outreach::domain::EmailAddress::parse("contact@example.org").unwrap()];
    let t = Instant::now();
    let mails: Vec<_> = raws.iter().filter_map(|r| outreach::inbox::parse::parse(r)).collect();
    let parse = t.elapsed();
    let t = Instant::now();
    for m in &mails {
        let _ = outreach::inbox::triage::detect_automatic(m, &own);
    }
    let auto = t.elapsed();
    let t = Instant::now();
    for m in &mails {
        let _ = outreach::inbox::triage::classify(m);
        let _ = outreach::inbox::triage::asks_for_newsletter(m);
        let _ = outreach::inbox::triage::asks_to_join_network(m);
    }
    let classify = t.elapsed();
    let t = Instant::now();
    for m in &mails {
        let _ = outreach::inbox::triage::detect_language(m);
    }
    let lang = t.elapsed();
    let t = Instant::now();
    for m in &mails {
        let _ = outreach::inbox::parse::content_hash(m);
    }
    let hash = t.elapsed();
    println!(
        "{} mails: parse {parse:?}, automatic {auto:?}, classify+asks {classify:?}, language {lang:?}, hash {hash:?}",
        mails.len()
    );
}
