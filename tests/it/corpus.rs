//! The real-world corpus through the pure parts: parse and triage, no server needed.

use outreach::domain::{Category, EmailAddress};
use outreach::inbox::parse::parse;
use outreach::inbox::triage::{classify, detect_automatic, detect_language};

use crate::helpers::{corpus_dir, eml_files};

#[test]
fn corpus_mail_parses_and_automatic_mail_is_recognised() {
    let Some(dir) = corpus_dir() else {
        eprintln!("corpus not present: skipped");
        return;
    };
    let own = vec![EmailAddress::parse("contact@example.org").unwrap()];
    let mut unparsed = Vec::new();
    let mut answered = Vec::new();
    let mut n = 0;
    for f in eml_files(&dir) {
        n += 1;
        let raw = std::fs::read(&f).unwrap();
        let folder = f.parent().unwrap().file_name().unwrap().to_string_lossy().to_string();
        let Some(m) = parse(&raw) else {
            unparsed.push(f.display().to_string());
            continue;
        };
        let _ = detect_language(&m);
        match detect_automatic(&m, &own) {
            None => {
                let _ = classify(&m);
                if matches!(folder.as_str(), "autoreply" | "bounce" | "list") {
                    answered.push(format!("{}: {:?} from {:?}", f.display(), m.subject, m.from));
                }
            }
            Some((category, rule)) if folder == "bounce" && category != Category::Bounce => {
                eprintln!("bounce folder, filed as automatic (not bounce): {} ({rule})", f.display());
            }
            Some(_) => {}
        }
    }
    eprintln!("{n} corpus files; unparsed (to review): {unparsed:?}");
    assert!(unparsed.len() <= 3, "{unparsed:#?}");
    assert!(answered.is_empty(), "automatic mail that would be answered:\n{}", answered.join("\n"));
}
